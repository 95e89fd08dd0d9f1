"""Image-store errors, each carrying the HTTP status dockerd gives the same failure.

They subclass the engine's error classes so the daemon's router maps them without knowing this
package. Message texts follow dockerd 20.10 (daemon/images, reference store, tarexport).
"""

from __future__ import annotations

from ..engine.errors import Conflict, EngineError, InvalidParameter, NotFound


def short_id(image_or_layer_id: str) -> str:
    """dockerd's `stringid.TruncateID`: drop the algorithm, keep 12 hex digits."""
    return image_or_layer_id.partition(":")[2][:12] if ":" in image_or_layer_id else image_or_layer_id[:12]


class ImageError(EngineError):
    """Base of every error this package raises."""


class ImageNotFound(ImageError, NotFound):
    """404: `No such image: busybox:latest` (a name without a tag is shown with `:latest`)."""

    def __init__(self, ref: str, message: str | None = None) -> None:
        super().__init__(message or f"No such image: {ref}")
        self.ref = ref


class InvalidArgument(ImageError, InvalidParameter):
    """400: a malformed reference, tag, config or archive."""


class InvalidReference(InvalidArgument):
    """400: the text of distribution/reference's parse errors, e.g. `invalid reference format`."""


class LoadError(InvalidArgument):
    """400: `docker load` input that is not a docker-save archive or an OCI image layout."""


class ImageConflict(ImageError, Conflict):
    """409: a delete or tag that dockerd refuses without (or even with) force."""


class DeleteConflict(ImageConflict):
    """dockerd's imageDeleteConflict: `conflict: unable to delete <id> (must be forced) - <why>`."""

    def __init__(self, image_id: str, message: str, *, hard: bool, used: bool = False) -> None:
        self.image_id, self.reason, self.hard, self.used = image_id, message, hard, used
        force = "cannot be forced" if hard else "must be forced"
        super().__init__(f"conflict: unable to delete {short_id(image_id)} ({force}) - {message}")


class ReferenceInUse(ImageConflict):
    """Untagging the last tag of an image a container uses (it would leave the image dangling)."""

    def __init__(self, ref: str, container_id: str, image_id: str) -> None:
        who = f"container {short_id(container_id)}" if container_id else "a container"
        super().__init__(f'conflict: unable to remove repository reference "{ref}" (must force) - {who} '
                         f"is using its referenced image {short_id(image_id)}")


class LayerNotFound(ImageError, NotFound):
    def __init__(self, what: str) -> None:
        super().__init__(f"layer does not exist: {what}")


class LayerInUse(ImageConflict):
    """A layer still referenced by an image, a child layer or a container's RW layer."""
