"""The classic image builder (`POST /build`): Dockerfile parsing and the step-by-step build."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

from ..containers.lifecycle import Lifecycle
from ..containers.store import ContainerStore
from ..engine import Engine, Job
from ..images import _spool
from .builder import BuildOptions, build


def register(engine: Engine, store: ContainerStore, life: Lifecycle) -> None:
    async def image_build(job: Job) -> AsyncIterator[bytes]:
        path = await _spool(job.getenv("body"))
        try:
            return await build(engine, store, life, path, job.getenv("options") or BuildOptions())
        finally:
            os.unlink(path)  # the context is unpacked before the first line

    engine.register("image_build", image_build)
