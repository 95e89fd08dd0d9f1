"""Filesystem diffs (`GET /containers/{id}/changes`, commit) and tar writers (`export`, `save`).

Both drivers report what dockerd 20.10's naive diff reports: a path is Added if the parent view
lacks it, Deleted if only the parent view has it, Modified if mode, owner, rdev, file capability
or (non-directories) size or mtime differ; every directory above a change is Modified unless it
is itself Added. vfs compares two full trees; overlay walks only the upper dir and looks paths up
in the lower layers' merged view (whiteouts and opaque dirs respected), which gives the same answer.
"""

from __future__ import annotations

import enum
import os
import stat
import tarfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from .extract import OVERLAY_OPAQUE_XATTR, WHITEOUT_PREFIX, is_whiteout_device

CAPABILITY_XATTR = "security.capability"


class ChangeKind(enum.IntEnum):
    MODIFY = 0
    ADD = 1
    DELETE = 2

    @property
    def letter(self) -> str:
        return "CAD"[self]


@dataclass(frozen=True)
class Change:
    path: str  # absolute inside the container: "/etc/passwd"
    kind: ChangeKind

    def to_api(self) -> dict[str, object]:
        """One item of `GET /containers/{id}/changes`."""
        return {"Path": self.path, "Kind": int(self.kind)}


def _lstat(path: str) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None


def _capability(path: str) -> bytes | None:
    try:
        return os.getxattr(path, CAPABILITY_XATTR, follow_symlinks=False)
    except OSError:
        return None


def _is_opaque(path: str) -> bool:
    try:
        return os.getxattr(path, OVERLAY_OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False


def stat_different(old: os.stat_result, new: os.stat_result) -> bool:
    """dockerd's statDifferent: directories' size and mtime are not a measure of change."""
    if (old.st_mode, old.st_uid, old.st_gid, old.st_rdev) != (new.st_mode, new.st_uid, new.st_gid, new.st_rdev):
        return True
    if stat.S_ISDIR(old.st_mode):
        return False
    same_time = old.st_mtime_ns // 10**9 == new.st_mtime_ns // 10**9 and (
        old.st_mtime_ns == new.st_mtime_ns or old.st_mtime_ns % 10**9 == 0 or new.st_mtime_ns % 10**9 == 0)
    return not same_time or old.st_size != new.st_size


def _scandir(path: str | None) -> dict[str, os.stat_result]:
    if path is None:
        return {}
    try:
        with os.scandir(path) as it:
            return {e.name: e.stat(follow_symlinks=False) for e in it}
    except (FileNotFoundError, NotADirectoryError):
        return {}


def _join(rel: str, name: str) -> str:
    return f"{rel.rstrip('/')}/{name}"


def changes_dirs(new_root: str, old_root: str | None) -> list[Change]:
    """vfs: compare the layer's full tree with its parent's (None: an empty parent)."""
    out: list[Change] = []
    _compare_dirs(new_root, old_root, "/", out, added=True)
    return sort_changes(out)


def _compare_dirs(new_dir: str, old_dir: str | None, rel: str, out: list[Change], added: bool) -> None:
    mark = len(out)
    new_entries, old_entries = _scandir(new_dir), _scandir(old_dir)
    for name in sorted(new_entries):
        new_st, old_st = new_entries[name], old_entries.get(name)
        path = _join(rel, name)
        new_path = os.path.join(new_dir, name)
        old_path = os.path.join(old_dir, name) if old_dir is not None and old_st is not None else None
        child_added = True
        if old_st is None:
            out.append(Change(path, ChangeKind.ADD))
        elif stat_different(old_st, new_st) or _capability(new_path) != _capability(old_path or ""):
            out.append(Change(path, ChangeKind.MODIFY))
        else:
            child_added = False
        if stat.S_ISDIR(new_st.st_mode):
            old_sub = old_path if old_st is not None and stat.S_ISDIR(old_st.st_mode) else None
            _compare_dirs(new_path, old_sub, path, out, child_added)
    for name in sorted(set(old_entries) - set(new_entries)):
        out.append(Change(_join(rel, name), ChangeKind.DELETE))
    if len(out) > mark and not added and rel != "/":
        out.insert(mark, Change(rel, ChangeKind.MODIFY))


class LowerView:
    """The merged view of overlay lower dirs (top first), as overlayfs resolves it."""

    def __init__(self, lowers: list[str]) -> None:
        self.lowers = lowers

    def dir_layers(self, parts: list[str]) -> list[str]:
        """The lower dirs whose copy of directory `parts` shows in the merged view."""
        layers = list(self.lowers)
        for i in range(len(parts)):
            found: list[str] = []
            for layer in layers:
                path = os.path.join(layer, *parts[: i + 1])
                st = _lstat(path)
                if st is None:
                    continue
                if is_whiteout_device(st) or not stat.S_ISDIR(st.st_mode):
                    break  # a whiteout or a file hides every lower copy
                found.append(layer)
                if _is_opaque(path):
                    break
            layers = found
            if not layers:
                break
        return layers

    def entries(self, parts: list[str]) -> dict[str, tuple[os.stat_result, str]]:
        """The merged listing of a lower directory: name → (stat, path of the visible copy)."""
        seen: dict[str, tuple[os.stat_result, str] | None] = {}
        for layer in self.dir_layers(parts):
            directory = os.path.join(layer, *parts)
            for name, st in _scandir(directory).items():
                if name not in seen:
                    seen[name] = None if is_whiteout_device(st) else (st, os.path.join(directory, name))
        return {k: v for k, v in seen.items() if v is not None}


def overlay_changes(upper: str, lowers: list[str]) -> list[Change]:
    """overlay: walk the upper dir only; each entry is looked up in the lowers' merged view."""
    out: list[Change] = []
    _walk_upper(upper, LowerView(lowers), [], out, reported=True, has_lower=True)
    return sort_changes(out)


def _walk_upper(upper_dir: str, view: LowerView, parts: list[str], out: list[Change], *, reported: bool,
                has_lower: bool) -> None:
    """`reported`: this directory is already listed (added or modified); `has_lower`: the lowers
    hold a directory at this path, so entries must be looked up there."""
    mark = len(out)
    rel = "/" + "/".join(parts)
    lower = view.entries(parts) if has_lower else {}
    upper_entries = _scandir(upper_dir)
    for name in sorted(upper_entries):
        st = upper_entries[name]
        path = _join(rel, name)
        upper_path = os.path.join(upper_dir, name)
        below = lower.get(name)
        if is_whiteout_device(st):
            if below is not None:
                out.append(Change(path, ChangeKind.DELETE))
            continue
        listed = True
        if below is None:
            out.append(Change(path, ChangeKind.ADD))
        elif stat_different(below[0], st) or _capability(upper_path) != _capability(below[1]):
            out.append(Change(path, ChangeKind.MODIFY))
        else:
            listed = False
        if stat.S_ISDIR(st.st_mode):
            lower_is_dir = below is not None and stat.S_ISDIR(below[0].st_mode)
            _walk_upper(upper_path, view, [*parts, name], out, reported=listed, has_lower=lower_is_dir)
    if has_lower and parts and _is_opaque(upper_dir):
        # An opaque dir hides every lower entry it does not itself hold: those are deleted.
        for gone in sorted(set(lower) - set(upper_entries)):
            out.append(Change(_join(rel, gone), ChangeKind.DELETE))
    if len(out) > mark and not reported:
        out.insert(mark, Change(rel, ChangeKind.MODIFY))


def sort_changes(changes: list[Change]) -> list[Change]:
    """Tree order (parents first, siblings by name): both drivers list changes identically."""
    return sorted(changes, key=lambda c: c.path.split("/"))


def dir_size(root: str) -> int:
    """dockerd's `directory.Size`: every non-directory's size (symlinks included), each inode once."""
    seen: set[int] = set()
    total = 0
    for dirpath, dirnames, filenames in os.walk(root):
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            st = _lstat(os.path.join(dirpath, name))
            if st is None or st.st_size == 0 or st.st_ino in seen:
                continue
            seen.add(st.st_ino)
            total += st.st_size
    return total


def changes_size(root: str, changes: Iterable[Change]) -> int:
    """dockerd's `ChangesSize`: added or modified non-directories under `root`, each inode once."""
    seen: set[int] = set()
    total = 0
    for change in changes:
        if change.kind is ChangeKind.DELETE:
            continue
        st = _lstat(os.path.join(root, change.path.lstrip("/")))
        if st is None or stat.S_ISDIR(st.st_mode) or st.st_ino in seen:
            continue
        if st.st_nlink > 1:
            seen.add(st.st_ino)
        total += st.st_size
    return total


# --- tar writing -------------------------------------------------------------------------------


class _Counting:
    """A write-only stream with tell(): what tarfile's "w" mode needs from a socket or pipe."""

    def __init__(self, out: BinaryIO) -> None:
        self.out, self.offset = out, 0

    def write(self, data: bytes) -> int:
        self.out.write(data)
        self.offset += len(data)
        return len(data)

    def tell(self) -> int:
        return self.offset


class _GoTarFile(tarfile.TarFile):
    """Ends the archive as Go's archive/tar does: two zero blocks, no padding to a 10 KiB record.
    So an empty change set is the 1024-byte empty tar, whose digest dockerd treats as no layer."""

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.mode in ("a", "w", "x"):
            self.fileobj.write(tarfile.NUL * (tarfile.BLOCKSIZE * 2))  # type: ignore[union-attr]
            self.offset += tarfile.BLOCKSIZE * 2


def open_tar_writer(out: BinaryIO) -> tarfile.TarFile:
    return _GoTarFile(fileobj=_Counting(out), mode="w", format=tarfile.PAX_FORMAT)  # type: ignore[arg-type]


EMPTY_TAR_DIGEST = "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef"


class TarWriter:
    """Writes filesystem entries as dockerd's archive package does: numeric owners, no user or
    group names, hardlinks kept, `security.capability` as a PAX xattr, sockets skipped."""

    def __init__(self, out: BinaryIO) -> None:
        self.tar = open_tar_writer(out)
        self.links: dict[tuple[int, int], str] = {}

    def add(self, path: str, name: str) -> None:
        """Add the file at `path` as member `name` (not recursive)."""
        st = os.lstat(path)
        if stat.S_ISSOCK(st.st_mode):
            return
        info = tarfile.TarInfo(name + "/" if stat.S_ISDIR(st.st_mode) else name)
        info.mode = stat.S_IMODE(st.st_mode)
        info.uid, info.gid = st.st_uid, st.st_gid
        info.uname = info.gname = ""
        info.mtime = st.st_mtime_ns // 10**9
        cap = _capability(path)
        if cap is not None:
            info.pax_headers = {"SCHILY.xattr." + CAPABILITY_XATTR: cap.decode("utf-8", "surrogateescape")}
        key = (st.st_dev, st.st_ino)
        if stat.S_ISREG(st.st_mode) and st.st_nlink > 1 and key in self.links:
            info.type, info.linkname = tarfile.LNKTYPE, self.links[key]
            self.tar.addfile(info)
            return
        if stat.S_ISREG(st.st_mode):
            info.type, info.size = tarfile.REGTYPE, st.st_size
            if st.st_nlink > 1:
                self.links[key] = name
            with open(path, "rb", buffering=0) as fh:
                self.tar.addfile(info, fh)
            return
        if stat.S_ISDIR(st.st_mode):
            info.type = tarfile.DIRTYPE
        elif stat.S_ISLNK(st.st_mode):
            info.type, info.linkname = tarfile.SYMTYPE, os.readlink(path)
        elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
            info.type = tarfile.CHRTYPE if stat.S_ISCHR(st.st_mode) else tarfile.BLKTYPE
            info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
        elif stat.S_ISFIFO(st.st_mode):
            info.type = tarfile.FIFOTYPE
        else:
            return
        self.tar.addfile(info)

    def add_whiteout(self, name: str, mtime: int) -> None:
        info = tarfile.TarInfo(name)
        info.mode, info.mtime, info.uname, info.gname = 0, mtime, "", ""
        self.tar.addfile(info)

    def close(self) -> None:
        self.tar.close()


def walk_tree(root: str) -> Iterator[tuple[str, str]]:
    """(absolute path, member name) for every entry under root, parents before children."""
    stack = [("", root)]
    while stack:
        rel, path = stack.pop()
        try:
            with os.scandir(path) as it:
                entries = sorted(it, key=lambda e: e.name, reverse=True)
        except NotADirectoryError:
            continue
        subdirs = []
        for entry in reversed(entries):
            name = f"{rel}{entry.name}"
            yield entry.path, name
            if entry.is_dir(follow_symlinks=False):
                subdirs.append((name + "/", entry.path))
        stack.extend(reversed(subdirs))


def write_tree(out: BinaryIO, root: str) -> None:
    """`docker export`: the whole (mounted) filesystem as one tar."""
    writer = TarWriter(out)
    for path, name in walk_tree(root):
        writer.add(path, name)
    writer.close()


def write_changes(out: BinaryIO, root: str, changes: Iterable[Change]) -> None:
    """A layer tar of `changes` read from `root` (commit), as dockerd's ExportChanges writes it:
    a deletion becomes an empty `.wh.<name>` file; a directory is written without its children.

    `root` is the overlay upper dir or the vfs layer dir: every added or modified path (and each
    directory above one) exists there.
    """
    writer = TarWriter(out)
    now = int(time.time())
    for change in sorted(changes, key=lambda c: c.path.split("/")):
        rel = change.path.lstrip("/")
        if change.kind is ChangeKind.DELETE:
            parent, _, base = rel.rpartition("/")
            writer.add_whiteout(f"{parent}/{WHITEOUT_PREFIX}{base}" if parent else WHITEOUT_PREFIX + base, now)
        else:
            writer.add(os.path.join(root, rel), rel)
    writer.close()
