"""`POST /commit` (docker commit): a container's changes as a new image, as dockerd 20.10 makes it.

The run config is the request's (or, without one, the container's), with the `changes` (Dockerfile
instructions) applied, then completed from the container's own config (dockerd's `merge`); the
layer is the container's RW layer over its image (images/importer.commit_image). A running
container is paused meanwhile unless `pause=0`, so the layer is not written to while it is read.
"""

from __future__ import annotations

import asyncio
import copy
from typing import Any

from ...images.importer import apply_changes, target_reference
from ..engine import Engine, Job
from ..errors import InvalidParameter
from ..system import VERSION
from .lifecycle import Lifecycle
from .store import ContainerStore


def merge(user: dict[str, Any], container: dict[str, Any]) -> dict[str, Any]:
    """dockerd's merge(userConf, imageConf) for commit: what the new config leaves empty comes from
    the container's config; Env, ExposedPorts, Labels and Volumes are unions (the new config wins)."""
    out = copy.deepcopy(user)
    if not out.get("User"):
        out["User"] = container.get("User") or ""
    ports = dict(out.get("ExposedPorts") or {})
    out["ExposedPorts"] = {**(container.get("ExposedPorts") or {}), **ports} or container.get("ExposedPorts")
    env = list(out.get("Env") or [])
    if not env:
        out["Env"] = container.get("Env")
    else:
        keys = {e.split("=", 1)[0] for e in env}
        out["Env"] = env + [e for e in container.get("Env") or [] if e.split("=", 1)[0] not in keys]
    out["Labels"] = {**(container.get("Labels") or {}), **(out.get("Labels") or {})}
    if not out.get("Entrypoint"):
        if not out.get("Cmd"):
            out["Cmd"] = container.get("Cmd")
        if out.get("Entrypoint") is None:
            out["Entrypoint"] = container.get("Entrypoint")
    if out.get("Healthcheck") is None and container.get("Healthcheck") is not None:
        out["Healthcheck"] = container["Healthcheck"]
    if not out.get("WorkingDir"):
        out["WorkingDir"] = container.get("WorkingDir") or ""
    volumes = out.get("Volumes") or {}
    out["Volumes"] = {**volumes, **(container.get("Volumes") or {})} if volumes else container.get("Volumes")
    if not out.get("StopSignal") and container.get("StopSignal"):
        out["StopSignal"] = container["StopSignal"]
    return out


def register(engine: Engine, store: ContainerStore, life: Lifecycle) -> None:
    async def commit(job: Job) -> dict[str, Any]:
        ref = job.args[0] if job.args else ""
        if not ref:
            raise InvalidParameter('invalid name or ID supplied: ""')
        c = store.get(ref)
        body = job.getenv("config")
        if body is not None and not isinstance(body, dict):
            raise InvalidParameter("the commit config must be a JSON object")
        config = merge(apply_changes(body or c.config, job.getenv("changes") or []), c.config)
        target_reference(job.getenv("repo") or "", job.getenv("tag") or "", "commit")  # a bad name: 400 first
        pause = bool(job.getenv("pause")) and c.id in life.running and not c.state.paused
        if pause:
            await life.pause(c, True)
        try:
            image, tagged = await asyncio.to_thread(
                life.images.commit, c.id, parent_image_id=c.image_id, config=config, container_cfg=c.config,
                author=job.getenv("author") or "", comment=job.getenv("comment") or "", docker_version=VERSION,
                repo=job.getenv("repo") or "", tag=job.getenv("tag") or "")
        finally:
            if pause and c.id in life.running and c.state.paused:
                await life.pause(c, False)
        life.event("commit", c, {"comment": job.getenv("comment") or "", "imageID": image.id, "imageRef": tagged})
        return {"Id": image.id}

    engine.register("container_commit", commit)
