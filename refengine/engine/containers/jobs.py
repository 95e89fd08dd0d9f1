"""Container jobs that need no running process: create, inspect, list, rename, update, remove, prune.

Images come through `ImageLookup` (the image store fills it in); stopping a running container on
forced removal and applying updated limits to a live one go through `Runtime` (the exec driver).
"""

from __future__ import annotations

import re
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from .. import filters as flt
from ..engine import Engine, Job
from ..errors import Conflict, InvalidParameter, NotFound
from . import config as cfgmod
from . import views
from .record import Container, now_rfc3339, parse_rfc3339
from .store import ContainerStore

LIST_FILTERS = ("id", "name", "label", "status", "exited", "ancestor", "before", "since", "volume", "network",
                "health", "isolation", "is-task", "publish", "expose")
PRUNE_FILTERS = ("label", "label!", "until")
STATUSES = ("created", "restarting", "running", "removing", "paused", "exited", "dead")
UPDATABLE = set(cfgmod.RESOURCE_KEYS) | {"RestartPolicy"}


@dataclass
class ResolvedImage:
    id: str  # sha256:...
    config: dict[str, Any]
    ref: str  # the reference as the client gave it


class ImageLookup(Protocol):
    def resolve(self, ref: str) -> ResolvedImage: ...


class Runtime(Protocol):
    """What the container jobs need from the part that runs containers."""

    async def kill_and_wait(self, c: Container) -> None: ...
    async def update_resources(self, c: Container) -> None: ...
    def size(self, c: Container) -> tuple[int, int]: ...
    def exec_ids(self, c: Container) -> list[str]: ...
    async def prepare(self, c: Container) -> None: ...
    async def cleanup(self, c: Container) -> None: ...


@dataclass
class Hooks:
    """Callbacks into other subsystems (events, volumes), filled in by the daemon at start-up."""

    event: Callable[[str, str, Container, dict[str, str]], None] = lambda kind, action, c, extra: None
    volumes_of: Callable[[Container], list[str]] = lambda c: []
    remove_anonymous_volumes: Callable[[Container], None] = lambda c: None
    networks_of: Callable[[Container], list[str]] = lambda c: list(((c.network_settings or {})
                                                                     .get("Networks") or {}).keys())
    configure: Callable[[Container], None] = lambda c: None  # endpoints etc., before the container is stored
    extra: dict[str, Any] = field(default_factory=dict)


def _matches(c: Container, f: flt.Filters, store: ContainerStore, hooks: Hooks) -> bool:
    if "id" in f and not any(c.id.startswith(v) for v in f["id"]):
        return False
    if "name" in f and not any(re.search(v, c.name) for v in f["name"]):
        return False
    if "label" in f and not flt.match_labels(c.config.get("Labels"), f["label"]):
        return False
    if "status" in f and c.state.status not in f["status"]:
        return False
    if "exited" in f:
        codes = []
        for v in f["exited"]:
            try:
                codes.append(int(v))
            except ValueError:
                raise InvalidParameter(f"invalid filter 'exited={v}'") from None
        if c.state.status != "exited" or c.state.exit_code not in codes:
            return False
    if "ancestor" in f and not any(v in (c.config.get("Image"), c.image_id, c.image_id.removeprefix("sha256:"))
                                   or c.image_id.removeprefix("sha256:").startswith(v) for v in f["ancestor"]):
        return False
    for key, newer in (("before", False), ("since", True)):
        for ref in f.get(key, []):
            other = store.get(ref)
            a, b = parse_rfc3339(c.created), parse_rfc3339(other.created)
            if (newer and not a > b) or (not newer and not a < b):
                return False
    if "volume" in f and not any(v in hooks.volumes_of(c) or any(m.get("Destination") == v for m in c.mounts)
                                 for v in f["volume"]):
        return False
    if "network" in f and not any(v in hooks.networks_of(c) for v in f["network"]):
        return False
    if "publish" in f or "expose" in f:
        ports = set((c.network_settings or {}).get("Ports") or {}) | set(c.config.get("ExposedPorts") or {})
        for key in ("publish", "expose"):
            for v in f.get(key, []):
                if v not in ports and f"{v}/tcp" not in ports:
                    return False
    if "is-task" in f and flt.boolean(f, "is-task"):
        return False
    return True


def register(engine: Engine, store: ContainerStore, images: ImageLookup, runtime: Runtime, hooks: Hooks,
             driver_name: str) -> None:
    async def create(job: Job) -> dict[str, Any]:
        body = job.getenv("body")
        if not isinstance(body, dict):
            raise InvalidParameter("config cannot be empty in order to create a container")
        cfgmod.check_types(body)
        name = job.getenv("name")
        name = cfgmod.check_name(name) if name else None
        if name and name in store.names:
            store.reserve(name, "")  # raises the Conflict with dockerd's text
        image_ref = body.get("Image") or ""
        if job.getenv("scratch"):  # the builder's step on `FROM scratch`: an empty root filesystem, no image
            image = ResolvedImage("", {}, "")
        elif not image_ref:
            raise InvalidParameter("No command specified" if not body.get("Cmd") else
                                   "config cannot be empty in order to create a container")
        else:
            image = images.resolve(image_ref)
        config = cfgmod.merge(body, image.config, image_ref)
        host_config = cfgmod.host_config(body)
        for key in ("PidMode", "IpcMode"):  # a container:<ref> donor must exist (dockerd checks at create)
            mode = host_config.get(key) or ""
            if mode.startswith("container:"):
                ref = mode.split(":", 1)[1]
                try:
                    store.get(ref)
                except NotFound:
                    raise InvalidParameter(f"No such container: {ref}") from None
        warnings = cfgmod.discard_unsupported(host_config)
        cid = store.new_id()
        if not config.get("Hostname"):
            # dockerd: the host's name with the host's network, else the ID's first 12 characters
            config["Hostname"] = socket.gethostname() if host_config.get("NetworkMode") == "host" else cid[:12]
        argv = (config.get("Entrypoint") or []) + (config.get("Cmd") or [])
        if not name:
            name = "/" + _generated_name(store)
        c = Container(id=cid, name=name, created=now_rfc3339(), image_id=image.id, path=argv[0], args=argv[1:],
                      config=config, host_config=host_config, driver=driver_name,
                      networking=(body.get("NetworkingConfig") or {}).get("EndpointsConfig") or {})
        hooks.configure(c)
        store.add(c)
        try:
            await runtime.prepare(c)
            store.save(c)
        except BaseException:
            store.remove(c)
            raise
        hooks.event("container", "create", c, {})
        return {"Id": cid, "Warnings": warnings}

    async def inspect(job: Job) -> dict[str, Any]:
        c = store.get(job.args[0])
        return views.inspect(c, runtime.size(c) if job.getenv("size") else None, runtime.exec_ids(c))

    async def listing(job: Job) -> list[dict[str, Any]]:
        f = flt.parse(job.getenv("filters"), LIST_FILTERS)
        for v in f.get("status", []):
            if v not in STATUSES:
                raise InvalidParameter(f"Invalid filter 'status={v}'")
        limit = job.getenv("limit")
        show_all = bool(job.getenv("all")) or bool(f.get("status")) or bool(f.get("exited")) or bool(limit and limit > 0)
        found = [c for c in store if (show_all or c.state.status in ("running", "paused", "restarting"))
                 and _matches(c, f, store, hooks)]
        found.sort(key=lambda c: c.created, reverse=True)
        if limit is not None and limit > 0:
            found = found[:limit]
        size = bool(job.getenv("size"))
        return [views.summary(c, runtime.size(c) if size else None) for c in found]

    async def rename(job: Job) -> None:
        c = store.get(job.args[0])
        new = job.getenv("name") or ""
        if not new:
            raise InvalidParameter("Neither old nor new names may be empty")
        new = cfgmod.check_name(new)
        if new == c.name:
            raise Conflict(f"Renaming a container with the same name as its current name: {new}")
        old = c.name
        store.rename(c, new)
        hooks.event("container", "rename", c, {"oldName": old})

    async def update(job: Job) -> dict[str, Any]:
        c = store.get(job.args[0])
        body = job.getenv("body") or {}
        if not isinstance(body, dict):
            raise InvalidParameter("the update must be a JSON object")
        unknown = [k for k in body if k not in UPDATABLE]
        if unknown:
            raise InvalidParameter(f"unknown update fields: {', '.join(unknown)}")
        merged = dict(c.host_config)
        merged.update({k: v for k, v in body.items() if v is not None})
        cfgmod.check_resources({k: v for k, v in body.items()} | {"Memory": merged.get("Memory"),
                                                                  "MemorySwap": merged.get("MemorySwap"),
                                                                  "AutoRemove": merged.get("AutoRemove")})
        if merged.get("AutoRemove") and "RestartPolicy" in body:
            name = (body.get("RestartPolicy") or {}).get("Name", "")
            if name not in ("", "no"):
                raise InvalidParameter("Restart policy cannot be updated because AutoRemove is enabled for the container")
        before = dict(c.host_config)
        c.host_config = merged
        if c.state.running:
            try:
                await runtime.update_resources(c)
            except BaseException:
                c.host_config = before
                raise
        store.save(c)
        hooks.event("container", "update", c, {})
        return {"Warnings": []}

    async def remove(job: Job) -> None:
        c = store.get(job.args[0])
        force, volumes = bool(job.getenv("force")), bool(job.getenv("volumes"))
        if job.getenv("link"):
            raise InvalidParameter("Conflict, cannot remove the default link name of the container")
        if c.state.status == "removing":
            raise Conflict(f"removal of container {c.id} is already in progress")
        if c.state.running or c.state.paused or c.state.restarting:
            if not force:
                what = "paused" if c.state.paused else "running"
                raise Conflict(f"You cannot remove a {what} container {c.id}. Stop the container before attempting "
                               f"removal or force remove")
            await runtime.kill_and_wait(c)
        c.state.status = "removing"
        await runtime.cleanup(c)
        store.remove(c)  # first: the volumes are no longer in use once the container is gone
        if volumes:
            hooks.remove_anonymous_volumes(c)
        hooks.event("container", "destroy", c, {})

    async def prune(job: Job) -> dict[str, Any]:
        f = flt.parse(job.getenv("filters"), PRUNE_FILTERS)
        until = flt.until(f)
        deleted, reclaimed = [], 0
        for c in store:
            if c.state.status not in ("created", "exited", "dead"):
                continue
            if not flt.prune_selects(f, until, c.config.get("Labels"), c.created):
                continue
            reclaimed += runtime.size(c)[0]
            await runtime.cleanup(c)
            store.remove(c)
            hooks.event("container", "destroy", c, {})
            deleted.append(c.id)
        return {"ContainersDeleted": deleted, "SpaceReclaimed": reclaimed}

    for name, fn in (("container_create", create), ("container_inspect", inspect), ("container_list", listing),
                     ("container_rename", rename), ("container_update", update), ("container_remove", remove),
                     ("container_prune", prune)):
        engine.register(name, fn)


_LEFT = ("admiring", "brave", "clever", "eager", "focused", "gallant", "happy", "jolly", "keen", "lucid",
         "modest", "nifty", "quirky", "sharp", "tender", "vibrant", "wizardly", "zealous")
_RIGHT = ("babbage", "curie", "darwin", "euclid", "fermat", "galileo", "hopper", "johnson", "kepler",
          "lovelace", "noether", "pascal", "ritchie", "shannon", "thompson", "turing", "wozniak", "yonath")


def _generated_name(store: ContainerStore) -> str:
    import secrets
    for _ in range(100):
        name = f"{secrets.choice(_LEFT)}_{secrets.choice(_RIGHT)}"
        if "/" + name not in store.names:
            return name
    return f"{secrets.choice(_LEFT)}_{secrets.choice(_RIGHT)}{secrets.randbelow(100)}"
