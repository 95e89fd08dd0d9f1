"""The container store: records on disk (one JSON per container), lookups by ID, prefix and name."""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator

from ..errors import Conflict, InvalidParameter, NotFound
from ..state import read_json, write_json
from .record import Container


class ContainerStore:
    def __init__(self, root: str) -> None:
        self.dir = os.path.join(root, "containers")
        os.makedirs(self.dir, mode=0o710, exist_ok=True)
        self.by_id: dict[str, Container] = {}
        self.names: dict[str, str] = {}  # "/name" -> id
        for cid in sorted(os.listdir(self.dir)):
            path = os.path.join(self.dir, cid, "config.json")
            if os.path.exists(path):
                c = Container.from_json(read_json(path))
                self.by_id[c.id] = c
                self.names[c.name] = c.id

    def container_dir(self, cid: str) -> str:
        return os.path.join(self.dir, cid)

    def new_id(self) -> str:
        while True:
            cid = secrets.token_hex(32)
            # an all-digit short ID would be read as a number by some tools; dockerd avoids it too
            if not cid[:12].isdigit() and cid not in self.by_id:
                return cid

    def reserve(self, name: str, cid: str) -> None:
        owner = self.names.get(name)
        if owner and owner != cid:
            raise Conflict(f'Conflict. The container name "{name}" is already in use by container "{owner}". '
                           f"You have to remove (or rename) that container to be able to reuse that name.")
        self.names[name] = cid

    def add(self, c: Container) -> None:
        self.reserve(c.name, c.id)
        self.by_id[c.id] = c
        os.makedirs(self.container_dir(c.id), mode=0o710, exist_ok=True)
        self.save(c)

    def save(self, c: Container) -> None:
        write_json(os.path.join(self.container_dir(c.id), "config.json"), c.to_json())

    def get(self, ref: str) -> Container:
        """By full ID, by name (with or without the slash), then by unique ID prefix — dockerd's order."""
        if ref in self.by_id:
            return self.by_id[ref]
        name = ref if ref.startswith("/") else "/" + ref
        if name in self.names:
            return self.by_id[self.names[name]]
        if ref:
            found = [c for cid, c in self.by_id.items() if cid.startswith(ref)]
            if len(found) == 1:
                return found[0]
            if len(found) > 1:
                raise InvalidParameter(f"multiple IDs found with provided prefix: {ref}")
        raise NotFound(f"No such container: {ref}")

    def rename(self, c: Container, new: str) -> None:
        old = c.name
        self.reserve(new, c.id)
        if old != new:
            self.names.pop(old, None)
        c.name = new
        self.save(c)

    def remove(self, c: Container) -> None:
        self.by_id.pop(c.id, None)
        if self.names.get(c.name) == c.id:
            del self.names[c.name]
        shutil.rmtree(self.container_dir(c.id), ignore_errors=True)

    def __iter__(self) -> Iterator[Container]:
        return iter(list(self.by_id.values()))

    def __len__(self) -> int:
        return len(self.by_id)
