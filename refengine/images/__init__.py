"""Images: references, the content-addressed image and layer stores, load/save/import/commit.

The daemon builds one `ImageStore(root, driver)` (root: `<data-root>/image/<driver name>`, driver:
`refengine.drivers.graph.make_driver`) and fills in its hooks (`containers_using` or `in_use`,
`on_event`). Errors are `refengine.images.errors` classes, each with its HTTP status.
"""

from .errors import DeleteConflict, ImageConflict, ImageError, ImageNotFound, InvalidArgument, LoadError
from .layers import Layer, LayerStore, RWLayer
from .reference import Reference, parse_any_reference, parse_normalized_named
from .store import ContainerUse, Image, ImageStore

__all__ = [
    "ContainerUse", "DeleteConflict", "Image", "ImageConflict", "ImageError", "ImageNotFound", "ImageStore",
    "InvalidArgument", "Layer", "LayerStore", "LoadError", "RWLayer", "Reference", "parse_any_reference",
    "parse_normalized_named",
]
