"""The classic image builder (`POST /build`): Dockerfile parsing and the step-by-step build."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

from .. import filters as flt
from ..containers.lifecycle import Lifecycle
from ..containers.store import ContainerStore
from ..engine import Engine, Job
from ..errors import InvalidParameter
from ..images import _spool
from .builder import BuildOptions, build


def register(engine: Engine, store: ContainerStore, life: Lifecycle) -> None:
    async def image_build(job: Job) -> AsyncIterator[bytes]:
        path = await _spool(job.getenv("body"))
        try:
            return await build(engine, store, life, path, job.getenv("options") or BuildOptions())
        finally:
            os.unlink(path)  # the context is unpacked before the first line

    async def build_cache_prune(job: Job) -> dict[str, object]:
        """`POST /build/prune` prunes BuildKit's cache. refengine keeps none: the classic builder's cache is
        images, which a build prune leaves, as dockerd does. The filters are checked as dockerd checks them."""
        try:
            f = flt.parse(job.getenv("filters"), BUILD_CACHE_FILTERS)
        except InvalidParameter as exc:
            raise InvalidParameter(f"failed to prune build cache: {exc}") from None
        for key in ("until", "unused-for"):
            for value in f.get(key, []):
                if flt.duration(value) is None:
                    raise InvalidParameter(f"failed to prune build cache: \"{key}\" filter expects a duration "
                                           f"(e.g., '24h'): {value!r}")
        return {"CachesDeleted": [], "SpaceReclaimed": 0}

    engine.register("image_build", image_build)
    engine.register("build_cache_prune", build_cache_prune)


# the filters BuildKit's cache prune knows (dockerd 20.10)
BUILD_CACHE_FILTERS = ("until", "unused-for", "id", "parent", "type", "description", "inuse", "shared", "private")
