"""Volumes with the `local` driver: named and anonymous directories under the daemon's root.

A volume's record is `<root>/volumes/<name>/volume.json`, its data `<root>/volumes/<name>/_data`.
Local driver options `type`, `device`, `o` are kept and applied (a mount) when a container uses it.
Which containers use a volume is the container store's knowledge: it is asked through `users`.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import secrets
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from . import filters as flt
from .engine import Engine, Job
from .errors import Conflict, InvalidParameter, NotFound
from .state import read_json, write_json

NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
LOCAL_OPTS = {"type", "device", "o", "size"}
LIST_FILTERS = ("name", "driver", "label", "dangling")
PRUNE_FILTERS = ("label", "label!")


@dataclass
class Volume:
    name: str
    driver: str = "local"
    labels: dict[str, str] = field(default_factory=dict)
    options: dict[str, str] = field(default_factory=dict)
    created_at: str = ""
    anonymous: bool = False

    def api(self, root: str) -> dict[str, Any]:
        """The Volume object of the Engine API."""
        return {"Name": self.name, "Driver": self.driver, "Mountpoint": data_dir(root, self.name),
                "CreatedAt": self.created_at, "Labels": dict(self.labels), "Scope": "local",
                "Options": dict(self.options)}


def data_dir(root: str, name: str) -> str:
    return os.path.join(root, "volumes", name, "_data")


class VolumeStore:
    def __init__(self, root: str) -> None:
        self.root = root
        self.dir = os.path.join(root, "volumes")
        os.makedirs(self.dir, mode=0o701, exist_ok=True)
        self.volumes: dict[str, Volume] = {}
        self.users: Callable[[str], list[str]] = lambda name: []  # container IDs using a volume
        for name in sorted(os.listdir(self.dir)):
            path = os.path.join(self.dir, name, "volume.json")
            if os.path.exists(path):
                self.volumes[name] = Volume(**read_json(path))

    def _save(self, vol: Volume) -> None:
        write_json(os.path.join(self.dir, vol.name, "volume.json"), asdict(vol))

    def get(self, name: str) -> Volume:
        try:
            return self.volumes[name]
        except KeyError:
            raise NotFound(f"get {name}: no such volume") from None

    def create(self, name: str | None = None, driver: str | None = None, labels: dict[str, str] | None = None,
               options: dict[str, str] | None = None, anonymous: bool = False) -> Volume:
        driver = driver or "local"
        if driver != "local":
            raise NotFound(f"error looking up volume plugin {driver}: plugin \"{driver}\" not found")
        if name:
            if not NAME_RE.match(name):
                raise InvalidParameter(
                    f'create {name}: "{name}" includes invalid characters for a local volume name, only '
                    f'"[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass a host directory, '
                    f'use absolute path')
            if name in self.volumes:  # dockerd hands back the existing volume unchanged
                return self.volumes[name]
        else:
            name, anonymous = secrets.token_hex(32), True
        for key in options or {}:
            if key not in LOCAL_OPTS:
                raise InvalidParameter(f'create {name}: invalid option key: "{key}"')
        vol = Volume(name=name, driver=driver, labels=dict(labels or {}), options=dict(options or {}),
                     created_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
                     anonymous=anonymous)
        os.makedirs(data_dir(self.root, name), mode=0o755, exist_ok=True)
        self._save(vol)
        self.volumes[name] = vol
        return vol

    def remove(self, name: str, force: bool = False) -> None:
        if name not in self.volumes:
            if force:
                return
            raise NotFound(f"get {name}: no such volume")
        users = self.users(name)
        if users:  # even force does not remove a volume in use, as dockerd
            raise Conflict(f"remove {name}: volume is in use - [{', '.join(users)}]")
        shutil.rmtree(os.path.join(self.dir, name), ignore_errors=True)
        del self.volumes[name]

    def list(self, f: flt.Filters) -> list[Volume]:
        dangling = flt.boolean(f, "dangling")
        out = []
        for vol in list(self.volumes.values()):  # /system/df lists from a thread while the loop creates
            if "name" in f and not any(n in vol.name for n in f["name"]):
                continue
            if "driver" in f and vol.driver not in f["driver"]:
                continue
            if "label" in f and not flt.match_labels(vol.labels, f["label"]):
                continue
            if dangling is not None and (not self.users(vol.name)) != dangling:
                continue
            out.append(vol)
        return sorted(out, key=lambda v: v.name)

    def size(self, name: str) -> int:
        """Bytes of the volume's files: UsageData.Size of /system/df, and what prune reclaims."""
        return _du(data_dir(self.root, name))

    def prune(self, f: flt.Filters) -> tuple[list[str], int]:
        deleted, reclaimed = [], 0
        for vol in list(self.volumes.values()):
            if self.users(vol.name):
                continue
            if not flt.prune_selects(f, None, vol.labels):  # no `until` for volumes (dockerd 20.10)
                continue
            reclaimed += self.size(vol.name)
            self.remove(vol.name)
            deleted.append(vol.name)
        return deleted, reclaimed


def _du(path: str) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                pass
    return total


def register(engine: Engine, store: VolumeStore,
             event: Callable[[str, str, dict[str, str]], None] = lambda action, name, attrs: None) -> None:
    def create(job: Job) -> dict[str, Any]:
        body = job.getenv("body") or {}
        if not isinstance(body, dict):
            raise InvalidParameter("the volume config must be a JSON object")
        for key, kind in (("Name", str), ("Driver", str), ("Labels", dict), ("DriverOpts", dict)):
            if body.get(key) is not None and not isinstance(body[key], kind):
                raise InvalidParameter(f"{key} must be a {'string' if kind is str else 'JSON object'}")
        existed = body.get("Name") in store.volumes
        vol = store.create(body.get("Name"), body.get("Driver"), body.get("Labels"), body.get("DriverOpts"))
        if not existed:
            event("create", vol.name, {"driver": vol.driver})
        return vol.api(store.root)

    def inspect(job: Job) -> dict[str, Any]:
        return store.get(job.args[0]).api(store.root)

    def listing(job: Job) -> dict[str, Any]:
        f = flt.parse(job.getenv("filters"), LIST_FILTERS)
        return {"Volumes": [v.api(store.root) for v in store.list(f)], "Warnings": []}

    def remove(job: Job) -> None:
        name = job.args[0]
        existed = name in store.volumes
        store.remove(name, force=bool(job.getenv("force")))
        if existed:
            event("destroy", name, {"driver": "local"})

    def prune(job: Job) -> dict[str, Any]:
        deleted, reclaimed = store.prune(flt.parse(job.getenv("filters"), PRUNE_FILTERS))
        for name in deleted:
            event("destroy", name, {"driver": "local"})
        return {"VolumesDeleted": deleted, "SpaceReclaimed": reclaimed}

    engine.register("volume_create", create)
    engine.register("volume_inspect", inspect)
    engine.register("volume_list", listing)
    engine.register("volume_remove", remove)
    engine.register("volume_prune", prune)
