"""overlay2: each layer a `diff` dir; a filesystem with parents is an overlayfs mount.

Layout (dockerd's overlay2):

    <root>/<id>/diff      the layer's own files (overlay whiteouts and opaque xattrs included)
    <root>/<id>/link      the layer's short name; <root>/l/<short> -> ../<id>/diff
    <root>/<id>/lower     its parents top first, as short links: "l/AAA:l/BBB"
    <root>/<id>/work      overlayfs' work dir; <root>/<id>/merged the mount point
    <root>/<id>/committed present on image layers: they are mounted read-only

The mount options must fit in one page. Short links keep them small (`<root>/l/<26 chars>` per
parent); past a page they are given relative to `<root>` by a helper process started in that
directory, since a threaded daemon can't chdir. 128 parents is dockerd's limit too.
"""

from __future__ import annotations

import base64
import ctypes
import os
import secrets
import shutil
import subprocess
import sys
import threading
from typing import BinaryIO

from . import DriverError
from .changes import Change, dir_size, overlay_changes, write_changes
from .extract import ApplyStats, WhiteoutMode, apply_tar

MAX_DEPTH = 128
LINK_DIR = "l"
MNT_DETACH = 2
_LIBC = ctypes.CDLL(None, use_errno=True)

# Run in a child whose cwd is the driver root: relative lowerdirs resolve there.
_MOUNT_HELPER = (
    "import ctypes,os,sys\n"
    "libc=ctypes.CDLL(None,use_errno=True)\n"
    "if libc.mount(b'overlay',os.fsencode(sys.argv[1]),b'overlay',0,os.fsencode(sys.argv[2]))!=0:\n"
    "    e=ctypes.get_errno(); sys.stderr.write(os.strerror(e)); sys.exit(1)\n"
)


def mount_overlay(target: str, options: str, cwd: str | None = None) -> None:
    if cwd is None:
        rc = _LIBC.mount(b"overlay", os.fsencode(target), b"overlay", 0, os.fsencode(options))
        if rc != 0:
            err = ctypes.get_errno()
            raise DriverError(f"error creating overlay mount to {target}: {os.strerror(err)}")
        return
    done = subprocess.run([sys.executable, "-I", "-S", "-c", _MOUNT_HELPER, target, options], cwd=cwd,
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise DriverError(f"error creating overlay mount to {target}: {done.stderr.strip() or done.returncode}")


def unmount(target: str, flags: int = MNT_DETACH) -> None:
    if _LIBC.umount2(os.fsencode(target), flags) != 0:
        err = ctypes.get_errno()
        if err not in (22, 2):  # EINVAL: not a mount point; ENOENT: gone already
            raise DriverError(f"unmounting {target}: {os.strerror(err)}")


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo.
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and len(field[i + 1: i + 4]) == 3 and all(c in "01234567" for c in field[i + 1: i + 4]):
            out.append(chr(int(field[i + 1: i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def mounts() -> list[tuple[str, str]]:
    """(mount point, fs type) of this process's mount namespace, in mount order."""
    result = []
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            fields = line.split()
            sep = fields.index("-")
            result.append((_unescape(fields[4]), fields[sep + 1]))
    return result


def backing_fs(path: str) -> str:
    """The filesystem `path` lives on, named as dockerd's DriverStatus names it."""
    path = os.path.realpath(path)
    best, fstype = "", "unknown"
    for point, kind in mounts():
        if (path == point or path.startswith(point.rstrip("/") + "/")) and len(point) >= len(best):
            best, fstype = point, kind
    return {"ext2": "extfs", "ext3": "extfs", "ext4": "extfs"}.get(fstype, fstype)


def _short_id() -> str:
    # dockerd's overlay2 link names: 26 characters of base32 randomness.
    return base64.b32encode(secrets.token_bytes(16)).decode().rstrip("=")


class OverlayDriver:
    name = "overlay2"

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)
        self._lock = threading.Lock()
        self._refs: dict[str, int] = {}
        self._page = os.sysconf("SC_PAGESIZE")
        self._extra = self._mount_options()
        os.makedirs(os.path.join(self.root, LINK_DIR), mode=0o700, exist_ok=True)
        self._check_supported()
        self._remove_dangling_links()

    def _remove_dangling_links(self) -> None:
        """Short links whose layer is gone (a crash inside create or remove)."""
        links = os.path.join(self.root, LINK_DIR)
        for name in os.listdir(links):
            if not os.path.exists(os.path.join(links, name)):
                os.unlink(os.path.join(links, name))

    @staticmethod
    def _mount_options() -> str:
        """Turn off overlayfs features that break layer diffs, where this kernel has them:
        the inode index (lowers are shared by many mounts), redirects and metacopy (the upper
        dir must hold whole files for `changes`, commit and export)."""
        opts = []
        for param, opt in (("index", "index=off"), ("redirect_dir", "redirect_dir=off"),
                           ("metacopy", "metacopy=off")):
            if os.path.exists(f"/sys/module/overlay/parameters/{param}"):
                opts.append(opt)
        return "".join(o + "," for o in opts)

    def _check_supported(self) -> None:
        with open("/proc/filesystems") as fh:
            if not any(line.split()[-1:] == ["overlay"] for line in fh):
                raise DriverError("overlay2: the kernel has no overlay filesystem")
        if backing_fs(self.root) in ("overlay", "aufs", "ecryptfs"):
            raise DriverError(f"overlay2 is not supported over {backing_fs(self.root)}")
        probe = os.path.join(self.root, f"probe-{secrets.token_hex(4)}")
        try:
            for sub in ("lower", "upper", "work", "merged"):
                os.makedirs(os.path.join(probe, sub))
            mount_overlay(os.path.join(probe, "merged"), f"{self._extra}lowerdir={probe}/lower,"
                          f"upperdir={probe}/upper,workdir={probe}/work")
            unmount(os.path.join(probe, "merged"), 0)
        except (DriverError, OSError) as exc:
            raise DriverError(f"overlay2 is not supported here: {exc}") from None
        finally:
            shutil.rmtree(probe, ignore_errors=True)

    # --- paths ---------------------------------------------------------------------------------

    def _dir(self, layer_id: str) -> str:
        if not layer_id or "/" in layer_id or layer_id in (".", "..", LINK_DIR):
            raise DriverError(f"invalid layer id {layer_id!r}")
        return os.path.join(self.root, layer_id)

    def _read(self, layer_id: str, name: str) -> str | None:
        try:
            with open(os.path.join(self._dir(layer_id), name)) as fh:
                return fh.read().strip()
        except FileNotFoundError:
            return None

    def _lowers(self, layer_id: str) -> list[str]:
        """Short-link paths (relative to root) of the parents, top first."""
        lower = self._read(layer_id, "lower")
        return lower.split(":") if lower else []

    def _lower_dirs(self, layer_id: str) -> list[str]:
        """The parents' real diff dirs, top first (what inspect shows as LowerDir)."""
        dirs = []
        for link in self._lowers(layer_id):
            target = os.readlink(os.path.join(self.root, link))
            dirs.append(os.path.normpath(os.path.join(self.root, LINK_DIR, target)))
        return dirs

    def diff_dir(self, layer_id: str) -> str:
        return os.path.join(self._dir(layer_id), "diff")

    # --- lifecycle -----------------------------------------------------------------------------

    def create(self, layer_id: str, parent: str | None, *, rw: bool = False) -> None:
        path = self._dir(layer_id)
        lowers: list[str] = []
        if parent:
            parent_link = self._read(parent, "link")
            if parent_link is None:
                raise DriverError(f"overlay2: parent layer {parent} does not exist")
            lowers = [f"{LINK_DIR}/{parent_link}", *self._lowers(parent)]
            if len(lowers) > MAX_DEPTH:
                raise DriverError("max depth exceeded")
        os.mkdir(path, 0o700)
        try:
            os.mkdir(os.path.join(path, "diff"), 0o755)
            link = _short_id()
            os.symlink(f"../{layer_id}/diff", os.path.join(self.root, LINK_DIR, link))
            self._write(path, "link", link)
            if lowers:
                self._write(path, "lower", ":".join(lowers))
                os.mkdir(os.path.join(path, "work"), 0o700)
            if not rw:
                self._write(path, "committed", "")
        except BaseException:
            self.remove(layer_id)
            raise

    @staticmethod
    def _write(path: str, name: str, text: str) -> None:
        with open(os.path.join(path, name), "w") as fh:
            fh.write(text)

    def remove(self, layer_id: str) -> None:
        path = self._dir(layer_id)
        merged = os.path.join(path, "merged")
        with self._lock:
            self._refs.pop(layer_id, None)
            if self._is_mounted(merged):
                unmount(merged)
        link = self._read(layer_id, "link")
        if link:
            try:
                os.unlink(os.path.join(self.root, LINK_DIR, link))
            except FileNotFoundError:
                pass
        shutil.rmtree(path, ignore_errors=True)

    def exists(self, layer_id: str) -> bool:
        return os.path.isdir(self._dir(layer_id))

    def ids(self) -> list[str]:
        return [e for e in os.listdir(self.root) if e != LINK_DIR and os.path.isdir(os.path.join(self.root, e))]

    @staticmethod
    def _is_mounted(path: str) -> bool:
        return any(point == path for point, _ in mounts())

    def get(self, layer_id: str) -> str:
        path = self._dir(layer_id)
        if not os.path.isdir(path):
            raise DriverError(f"overlay2: layer {layer_id} does not exist")
        lowers = self._lowers(layer_id)
        if not lowers:
            return os.path.join(path, "diff")  # a base layer is its own filesystem
        merged = os.path.join(path, "merged")
        with self._lock:
            count = self._refs.get(layer_id, 0)
            if count == 0 and not self._is_mounted(merged):  # a restarted daemon may find it mounted
                os.makedirs(merged, mode=0o700, exist_ok=True)
                self._mount(layer_id, lowers, merged)
            self._refs[layer_id] = count + 1
        return merged

    def _mount(self, layer_id: str, lowers: list[str], merged: str) -> None:
        readonly = os.path.exists(os.path.join(self._dir(layer_id), "committed"))
        absolute = [os.path.join(self.root, link) for link in lowers]
        diff, work = self.diff_dir(layer_id), os.path.join(self._dir(layer_id), "work")
        if readonly:
            options = f"{self._extra}lowerdir={diff}:{':'.join(absolute)}"
        else:
            options = f"{self._extra}lowerdir={':'.join(absolute)},upperdir={diff},workdir={work}"
        if len(options) <= self._page - 1:
            mount_overlay(merged, options)
            return
        if readonly:
            options = f"{self._extra}lowerdir={layer_id}/diff:{':'.join(lowers)}"
        else:
            options = (f"{self._extra}lowerdir={':'.join(lowers)},upperdir={layer_id}/diff,"
                       f"workdir={layer_id}/work")
        if len(options) > self._page - 1:
            raise DriverError(f"cannot mount layer, mount label too large {len(options)}")
        mount_overlay(f"{layer_id}/merged", options, cwd=self.root)

    def put(self, layer_id: str) -> None:
        if not self._lowers(layer_id):
            return
        merged = os.path.join(self._dir(layer_id), "merged")
        with self._lock:
            count = self._refs.get(layer_id, 0) - 1
            if count > 0:
                self._refs[layer_id] = count
                return
            self._refs.pop(layer_id, None)
            unmount(merged)
            try:
                os.rmdir(merged)
            except OSError:
                pass

    # --- content -------------------------------------------------------------------------------

    def apply_diff(self, layer_id: str, parent: str | None, stream: BinaryIO) -> ApplyStats:
        return apply_tar(stream, self.diff_dir(layer_id), WhiteoutMode.OVERLAY)

    def changes(self, layer_id: str, parent: str | None) -> list[Change]:
        return overlay_changes(self.diff_dir(layer_id), self._lower_dirs(layer_id))

    def diff(self, layer_id: str, parent: str | None, out: BinaryIO) -> None:
        write_changes(out, self.diff_dir(layer_id), self.changes(layer_id, parent))

    def diff_size(self, layer_id: str, parent: str | None) -> int:
        """dockerd's native overlay DiffSize: everything in the upper dir, each inode once."""
        return dir_size(self.diff_dir(layer_id))

    def metadata(self, layer_id: str) -> dict[str, str] | None:
        path = self._dir(layer_id)
        data = {"MergedDir": os.path.join(path, "merged"), "UpperDir": os.path.join(path, "diff"),
                "WorkDir": os.path.join(path, "work")}
        lowers = self._lower_dirs(layer_id)
        if lowers:
            data["LowerDir"] = ":".join(lowers)
        return dict(sorted(data.items()))  # Go marshals map keys sorted

    def status(self) -> list[list[str]]:
        return [["Backing Filesystem", backing_fs(self.root)], ["Supports d_type", "true"],
                ["Native Overlay Diff", "true"], ["userxattr", "false"]]

    def cleanup(self) -> None:
        with self._lock:
            self._refs.clear()
            prefix = self.root.rstrip("/") + "/"
            for point, _ in reversed(mounts()):
                if point.startswith(prefix):
                    unmount(point)
