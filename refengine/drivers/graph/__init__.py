"""Graph drivers: where image layers and container RW layers live, and how a rootfs is assembled.

A layer is a directory named by an opaque ID (dockerd's cache ID); `create` makes an empty one on
top of a parent, `apply_diff` unpacks a layer tar into it, `get` returns a path holding the
layer's full filesystem (mounting if needed, reference-counted) and `put` releases it.
"""

from __future__ import annotations

import os
from typing import BinaryIO, Protocol, runtime_checkable

from .changes import Change
from .extract import ApplyStats


class DriverError(RuntimeError):
    """A driver that can't work on this host, or a layer operation the kernel refused."""


@runtime_checkable
class GraphDriver(Protocol):
    name: str
    root: str

    def create(self, layer_id: str, parent: str | None, *, rw: bool = False) -> None:
        """An empty layer over `parent`; `rw` for a container's writable layer."""

    def remove(self, layer_id: str) -> None:
        """Delete the layer (unmounting it first if a mount is left)."""

    def exists(self, layer_id: str) -> bool: ...

    def ids(self) -> list[str]:
        """Every layer the driver holds (the layer store removes ones it has no record of)."""

    def get(self, layer_id: str) -> str:
        """The path of the layer's full filesystem; every `get` needs a `put`."""

    def put(self, layer_id: str) -> None: ...

    def apply_diff(self, layer_id: str, parent: str | None, stream: BinaryIO) -> ApplyStats:
        """Unpack an uncompressed layer tar into a layer `create`d on `parent`."""

    def changes(self, layer_id: str, parent: str | None) -> list[Change]: ...

    def diff(self, layer_id: str, parent: str | None, out: BinaryIO) -> None:
        """Write the layer's changes against `parent` as a layer tar (commit)."""

    def diff_size(self, layer_id: str, parent: str | None) -> int:
        """Bytes the layer adds over `parent` (a container's SizeRw)."""

    def metadata(self, layer_id: str) -> dict[str, str] | None:
        """GraphDriver.Data of inspect (None: JSON null, as dockerd's vfs)."""

    def status(self) -> list[list[str]]:
        """DriverStatus of `GET /info`."""

    def cleanup(self) -> None:
        """Unmount everything the driver mounted (daemon shutdown)."""


def make_driver(name: str, root: str) -> GraphDriver:
    """The driver `name` (`overlay2`, alias `overlay`; `vfs`) storing its layers under `root`."""
    if name in ("overlay2", "overlay"):
        from .overlay import OverlayDriver

        return OverlayDriver(root)
    if name == "vfs":
        from .vfs import VfsDriver

        return VfsDriver(root)
    raise DriverError(f"error initializing graphdriver: driver not supported: {name}")


def detect_driver(data_root: str, preferred: str = "") -> GraphDriver:
    """`preferred`, or overlay2 when this host can mount it, else vfs; home is `data_root/<name>`."""
    if preferred:
        return make_driver(preferred, os.path.join(data_root, "overlay2" if preferred == "overlay" else preferred))
    try:
        return make_driver("overlay2", os.path.join(data_root, "overlay2"))
    except DriverError:
        return make_driver("vfs", os.path.join(data_root, "vfs"))


__all__ = ["Change", "DriverError", "GraphDriver", "detect_driver", "make_driver"]
