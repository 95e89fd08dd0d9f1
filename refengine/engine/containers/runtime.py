"""The part of running containers that the container jobs call: root filesystems now, processes next.

`LayerRuntime` gives each container its writable layer (and the `-init` layer) from the image
store at create, its sizes, and removes them at remove. Starting processes (the exec driver over
libcontainer) extends it; until then a container can be created, inspected, listed and removed
but not started.
"""

from __future__ import annotations

import asyncio

from ...images.errors import LayerNotFound
from ...images.store import ImageStore
from .record import Container


class LayerRuntime:
    def __init__(self, images: ImageStore) -> None:
        self.images = images

    async def prepare(self, c: Container) -> None:
        top = self.images.by_id(c.image_id).top_layer if c.image_id else None  # no image: a build's FROM scratch
        await asyncio.to_thread(self.images.layers.create_rw, c.id, top)

    async def cleanup(self, c: Container) -> None:
        await asyncio.to_thread(self.images.layers.remove_rw, c.id)

    def size(self, c: Container) -> tuple[int, int]:
        """(SizeRw, SizeRootFs); (0, 0) for a container whose layer a concurrent remove took away
        while a list or /system/df walked the store: dockerd's getSize logs that and answers 0 too."""
        try:
            return self.images.layers.rw_size(c.id)
        except (LayerNotFound, FileNotFoundError):
            return 0, 0

    def exec_ids(self, c: Container) -> list[str]:
        """ExecIDs of inspect: nothing runs here, so none."""
        return []

    async def kill_and_wait(self, c: Container) -> None:
        """Nothing runs yet; a container record marked running (from an older state) is just set exited."""
        c.state.running = c.state.paused = c.state.restarting = False
        c.state.status = "exited"

    async def update_resources(self, c: Container) -> None:
        return None
