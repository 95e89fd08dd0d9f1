"""vfs: every layer a full copy of its parent plus its own changes. Slow and disk-hungry, but it
needs nothing from the kernel, so it works where overlayfs doesn't (and is the tests' baseline)."""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import BinaryIO

from . import DriverError
from .changes import Change, changes_dirs, changes_size, write_changes
from .extract import ApplyStats, WhiteoutMode, apply_tar


class VfsDriver:
    name = "vfs"

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)
        os.makedirs(self._dirs, mode=0o700, exist_ok=True)

    @property
    def _dirs(self) -> str:
        return os.path.join(self.root, "dir")

    def _path(self, layer_id: str) -> str:
        if not layer_id or "/" in layer_id or layer_id in (".", ".."):
            raise DriverError(f"invalid layer id {layer_id!r}")
        return os.path.join(self._dirs, layer_id)

    def create(self, layer_id: str, parent: str | None, *, rw: bool = False) -> None:
        path = self._path(layer_id)
        os.mkdir(path, 0o755)
        if parent:
            # cp -a keeps what a layer is made of: owners, modes, times, hardlinks, xattrs, devices.
            done = subprocess.run(["cp", "-a", "--", self._path(parent) + "/.", path + "/"],
                                  capture_output=True, text=True)
            if done.returncode != 0:
                shutil.rmtree(path, ignore_errors=True)
                raise DriverError(f"vfs: copying layer {parent} failed: {done.stderr.strip()}")

    def remove(self, layer_id: str) -> None:
        shutil.rmtree(self._path(layer_id), ignore_errors=True)

    def exists(self, layer_id: str) -> bool:
        return os.path.isdir(self._path(layer_id))

    def ids(self) -> list[str]:
        return [e for e in os.listdir(self._dirs) if os.path.isdir(os.path.join(self._dirs, e))]

    def get(self, layer_id: str) -> str:
        path = self._path(layer_id)
        if not os.path.isdir(path):
            raise DriverError(f"vfs: layer {layer_id} does not exist")
        return path

    def put(self, layer_id: str) -> None:
        pass

    def apply_diff(self, layer_id: str, parent: str | None, stream: BinaryIO) -> ApplyStats:
        return apply_tar(stream, self._path(layer_id), WhiteoutMode.DELETE)

    def changes(self, layer_id: str, parent: str | None) -> list[Change]:
        return changes_dirs(self._path(layer_id), self._path(parent) if parent else None)

    def diff(self, layer_id: str, parent: str | None, out: BinaryIO) -> None:
        write_changes(out, self._path(layer_id), self.changes(layer_id, parent))

    def diff_size(self, layer_id: str, parent: str | None) -> int:
        """dockerd's naive ChangesSize: added and modified non-directories, each inode once."""
        return changes_size(self._path(layer_id), self.changes(layer_id, parent))

    def metadata(self, layer_id: str) -> dict[str, str] | None:
        return None

    def status(self) -> list[list[str]]:
        return []

    def cleanup(self) -> None:
        pass
