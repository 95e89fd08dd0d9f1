"""The engine's own layer-tar extractor.

`tarfile.extractall` cannot unpack image layers: its safe filters refuse device nodes and strip
setuid bits, and no filter knows whiteouts, applies PAX xattrs or keeps numeric ownership. This
module applies a layer tar onto a directory the way dockerd's `archive.UnpackLayer` does, with
whiteouts translated for the driver:

- overlay: `.wh.<name>` becomes a 0/0 character device, `.wh..wh..opq` the
  `trusted.overlay.opaque=y` xattr on the directory (what overlayfs itself writes);
- delete (vfs: the layer is unpacked onto a full copy of its parent): the named files go, and an
  opaque directory loses everything the layer did not itself put there.

No chroot (a threaded daemon can't chroot or chdir safely), so paths are resolved by hand, one
component at a time, and refused with `UnsafeLayerError` if they would leave the layer: `..`,
absolute names, a symlink whose relative target climbs out (dockerd refuses those too), and any
write through a symlink that is absolute or points out of the layer.
"""

from __future__ import annotations

import bz2
import enum
import errno
import gzip
import hashlib
import io
import lzma
import os
import posixpath
import shutil
import stat
import tarfile
from dataclasses import dataclass, field
from typing import BinaryIO

WHITEOUT_PREFIX = ".wh."
WHITEOUT_META_PREFIX = ".wh..wh."
WHITEOUT_OPAQUE = ".wh..wh..opq"
OVERLAY_OPAQUE_XATTR = "trusted.overlay.opaque"
XATTR_PAX_PREFIX = "SCHILY.xattr."
CHUNK = 1 << 20
MAX_SYMLINK_HOPS = 40


class LayerError(ValueError):
    """A layer tar this extractor cannot apply."""


class UnsafeLayerError(LayerError):
    """An entry that would write outside the layer directory."""


class LayerFormatError(LayerError):
    """A corrupt tar, an unsupported entry type or compression, or an impossible path."""


class WhiteoutMode(enum.Enum):
    OVERLAY = "overlay"
    DELETE = "delete"


@dataclass
class ApplyStats:
    """What one layer's extraction produced. `size` is dockerd's layer size: regular-file bytes
    (each inode once) plus symlink target lengths, as `directory.Size` counts a diff dir."""

    size: int = 0
    entries: int = 0
    skipped: list[str] = field(default_factory=list)  # things this host refused (e.g. mknod in a userns)


class DigestReader(io.RawIOBase):
    """Reads a stream while hashing (and optionally copying) every byte: a layer's diff ID is the
    sha256 of the whole uncompressed tar, trailing zero blocks included."""

    def __init__(self, source: BinaryIO, sink: BinaryIO | None = None) -> None:
        self.source, self.sink = source, sink
        self.hash = hashlib.sha256()
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
        data = self.source.read(len(buffer))
        if not data:
            return 0
        n = len(data)
        buffer[:n] = data
        self.hash.update(data)
        self.count += n
        if self.sink is not None:
            self.sink.write(data)
        return n

    def drain(self) -> None:
        while self.read(CHUNK):
            pass

    @property
    def digest(self) -> str:
        return "sha256:" + self.hash.hexdigest()


def decompress(stream: BinaryIO) -> BinaryIO:
    """The uncompressed view of a layer: gzip, bzip2 and xz are sniffed as dockerd does."""
    buffered = stream if isinstance(stream, io.BufferedReader) else io.BufferedReader(_Raw(stream), CHUNK)
    head = buffered.peek(6)[:6]
    if head.startswith(b"\x1f\x8b"):
        return gzip.GzipFile(fileobj=buffered, mode="rb")  # type: ignore[return-value]
    if head.startswith(b"BZh"):
        return bz2.BZ2File(buffered)  # type: ignore[return-value]
    if head.startswith(b"\xfd7zXZ\x00"):
        return lzma.LZMAFile(buffered)  # type: ignore[return-value]
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        raise LayerFormatError("zstd-compressed layers are not supported by this engine")
    return buffered


class _Raw(io.RawIOBase):
    """Any object with read() as a RawIOBase, so io.BufferedReader can peek at it."""

    def __init__(self, source: BinaryIO) -> None:
        self.source = source

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
        data = self.source.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def clean_name(name: str) -> str:
    """A tar member name as a path relative to the layer root, or UnsafeLayerError."""
    if name.startswith("/"):
        raise UnsafeLayerError(f"refusing layer entry {name!r}: absolute paths are not allowed in a layer")
    cleaned = posixpath.normpath(name)
    if cleaned == ".." or cleaned.startswith("../"):
        raise UnsafeLayerError(f"refusing layer entry {name!r}: it is outside of the layer")
    return cleaned


def is_whiteout_device(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _lstat(path: str) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None


class _Resolver:
    """Resolves layer-relative directories to real ones inside the root, following only
    relative symlinks that stay in the layer (the chroot semantics dockerd gets for free)."""

    def __init__(self, root: str) -> None:
        self.root = root

    def directory(self, rel: str, entry: str, create: bool) -> str | None:
        """The real path of directory `rel` (created if missing and `create`), else None."""
        real: list[str] = []
        queue = [c for c in rel.split("/") if c not in ("", ".")]
        hops = 0
        while queue:
            comp = queue.pop(0)
            if comp in ("", "."):
                continue
            if comp == "..":
                if not real:
                    raise UnsafeLayerError(f"refusing layer entry {entry!r}: it resolves outside of the layer")
                real.pop()
                continue
            path = os.path.join(self.root, *real, comp)
            st = _lstat(path)
            if st is None:
                if not create:
                    return None
                # dockerd creates missing parents 0600; 0755 keeps the merged view usable.
                os.mkdir(path, 0o755)
                real.append(comp)
            elif stat.S_ISLNK(st.st_mode):
                hops += 1
                if hops > MAX_SYMLINK_HOPS:
                    raise LayerFormatError(f"layer entry {entry!r}: too many levels of symbolic links")
                target = os.readlink(path)
                if target.startswith("/"):
                    raise UnsafeLayerError(
                        f"refusing layer entry {entry!r}: it writes through the symlink "
                        f"{'/'.join([*real, comp])!r} -> {target!r}, which points outside of the layer")
                queue[:0] = target.split("/")
            elif stat.S_ISDIR(st.st_mode):
                real.append(comp)
            else:
                raise LayerFormatError(f"layer entry {entry!r}: {'/'.join([*real, comp])!r} is not a directory")
        return os.path.join(self.root, *real)


def _remove(path: str) -> None:
    st = _lstat(path)
    if st is None:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(path)
    else:
        os.unlink(path)


def _ns(info: tarfile.TarInfo, key: str, fallback: float) -> int:
    """A PAX time as exact nanoseconds (tarfile's float would round them)."""
    raw = info.pax_headers.get(key)
    if raw:
        whole, _, frac = raw.partition(".")
        try:
            sign = -1 if whole.startswith("-") else 1
            return int(whole) * 1_000_000_000 + sign * int((frac + "000000000")[:9] or 0)
        except ValueError:
            pass
    return int(fallback * 1_000_000_000)


class LayerApplier:
    """One layer's extraction onto `root`; `apply` consumes the whole stream."""

    def __init__(self, root: str, whiteouts: WhiteoutMode) -> None:
        self.root = os.path.abspath(root)
        self.mode = whiteouts
        self.resolver = _Resolver(self.root)
        self.stats = ApplyStats()
        self.unpacked: set[str] = set()  # real paths this layer wrote (an opaque dir keeps them)
        self.dirs: list[tuple[str, tarfile.TarInfo]] = []
        self.inodes: set[tuple[int, int]] = set()
        self.privileged = os.geteuid() == 0

    def apply(self, stream: BinaryIO) -> ApplyStats:
        try:
            with tarfile.open(fileobj=stream, mode="r|", errorlevel=2) as tar:
                for info in tar:
                    self._entry(tar, info)
        except tarfile.TarError as exc:
            raise LayerFormatError(f"invalid layer tar: {exc}") from None
        while stream.read(CHUNK):  # the padding after the end-of-archive blocks is part of the diff ID
            pass
        # Directory times last: creating their children changed them.
        for path, info in reversed(self.dirs):
            self._times(path, info)
        return self.stats

    def _entry(self, tar: tarfile.TarFile, info: tarfile.TarInfo) -> None:
        name = clean_name(info.name)
        self.stats.entries += 1
        parent_rel, base = posixpath.split(name)
        if name == ".":
            if not info.isdir():
                raise LayerFormatError("layer entry '.' must be a directory")
            self._metadata(self.root, info)
            self.dirs.append((self.root, info))
            return
        if base.startswith(WHITEOUT_PREFIX):
            self._whiteout(name, parent_rel, base, info)
            return
        parent = self.resolver.directory(parent_rel, info.name, create=True)
        assert parent is not None
        path = os.path.join(parent, base)
        existing = _lstat(path)
        if existing is not None and not (stat.S_ISDIR(existing.st_mode) and info.isdir()):
            _remove(path)
        if info.isdir():
            if existing is None or not stat.S_ISDIR(existing.st_mode):
                os.mkdir(path, 0o700)
            self.dirs.append((path, info))
        elif info.isreg():
            self._regular(tar, info, path)
        elif info.issym():
            self._symlink(info, name, path)
        elif info.islnk():
            self._hardlink(info, path)
        elif info.ischr() or info.isblk():
            kind = stat.S_IFCHR if info.ischr() else stat.S_IFBLK
            try:
                os.mknod(path, kind | 0o600, os.makedev(info.devmajor, info.devminor))
            except PermissionError:
                self.stats.skipped.append(name)  # as dockerd in a user namespace: no device nodes
                return
        elif info.isfifo():
            os.mkfifo(path, 0o600)
        else:
            raise LayerFormatError(f"layer entry {info.name!r}: unhandled tar header type {info.type!r}")
        self.unpacked.add(path)
        if not info.isreg():  # regular files got their metadata through the open fd
            self._metadata(path, info)
            if not info.isdir():
                self._times(path, info)

    def _regular(self, tar: tarfile.TarFile, info: tarfile.TarInfo, path: str) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            src = tar.extractfile(info)
            if src is not None:
                with os.fdopen(os.dup(fd), "wb", closefd=True) as out:
                    shutil.copyfileobj(src, out, CHUNK)
            st = os.fstat(fd)
            if (st.st_dev, st.st_ino) not in self.inodes:
                self.inodes.add((st.st_dev, st.st_ino))
                self.stats.size += st.st_size
            self._metadata(fd, info)
            os.utime(fd, ns=(_ns(info, "atime", info.mtime), _ns(info, "mtime", info.mtime)))
        finally:
            os.close(fd)

    def _symlink(self, info: tarfile.TarInfo, name: str, path: str) -> None:
        target = info.linkname
        if not target.startswith("/"):
            joined = posixpath.normpath(posixpath.join(posixpath.dirname(name), target))
            if joined == ".." or joined.startswith("../"):
                raise UnsafeLayerError(f"refusing layer entry {info.name!r}: invalid symlink "
                                       f"{name!r} -> {target!r} points outside of the layer")
        os.symlink(target, path)
        self.stats.size += len(os.fsencode(target))

    def _hardlink(self, info: tarfile.TarInfo, path: str) -> None:
        target_name = clean_name(info.linkname)
        if target_name.startswith(WHITEOUT_META_PREFIX):
            raise LayerFormatError(f"layer entry {info.name!r}: aufs hardlink layers are not supported")
        tparent_rel, tbase = posixpath.split(target_name)
        tparent = self.resolver.directory(tparent_rel, info.name, create=False)
        target = os.path.join(tparent, tbase) if tparent is not None and tbase not in ("", ".") else None
        st = _lstat(target) if target else None
        if target is None or st is None:
            raise LayerFormatError(f"layer entry {info.name!r}: hardlink target {info.linkname!r} does not exist")
        if stat.S_ISDIR(st.st_mode):
            raise LayerFormatError(f"layer entry {info.name!r}: hardlink target {info.linkname!r} is a directory")
        os.link(target, path, follow_symlinks=False)

    def _whiteout(self, name: str, parent_rel: str, base: str, info: tarfile.TarInfo) -> None:
        if base == WHITEOUT_OPAQUE:
            parent = self.resolver.directory(parent_rel, info.name, create=self.mode is WhiteoutMode.OVERLAY)
            if parent is None:
                return
            if self.mode is WhiteoutMode.OVERLAY:
                os.setxattr(parent, OVERLAY_OPAQUE_XATTR, b"y", follow_symlinks=False)
            else:
                self._clear_opaque(parent)
            return
        if base.startswith(WHITEOUT_META_PREFIX):
            return  # aufs metadata (.wh..wh.plnk, .wh..wh.aufs): dockerd skips it too
        original = base[len(WHITEOUT_PREFIX):]
        if original in ("", ".", ".."):
            raise LayerFormatError(f"layer entry {info.name!r}: invalid whiteout")
        if self.mode is WhiteoutMode.OVERLAY:
            parent = self.resolver.directory(parent_rel, info.name, create=True)
            assert parent is not None
            path = os.path.join(parent, original)
            _remove(path)
            os.mknod(path, stat.S_IFCHR | 0o000, os.makedev(0, 0))
            if self.privileged:
                os.lchown(path, info.uid, info.gid)
            self.unpacked.add(path)
        else:
            parent = self.resolver.directory(parent_rel, info.name, create=False)
            if parent is not None:
                _remove(os.path.join(parent, original))

    def _clear_opaque(self, directory: str) -> None:
        for dirpath, dirnames, filenames in os.walk(directory, topdown=True):
            for entry in list(dirnames):
                path = os.path.join(dirpath, entry)
                if path not in self.unpacked:
                    dirnames.remove(entry)
                    _remove(path)
            for entry in filenames:
                path = os.path.join(dirpath, entry)
                if path not in self.unpacked:
                    _remove(path)

    def _metadata(self, target: str | int, info: tarfile.TarInfo) -> None:
        """Owner, then xattrs, then mode: chown clears setuid bits, so chmod comes after it."""
        is_link = info.issym()
        if self.privileged:
            if isinstance(target, int):
                os.fchown(target, info.uid, info.gid)
            else:
                os.lchown(target, info.uid, info.gid)
        for key, value in info.pax_headers.items():
            if not key.startswith(XATTR_PAX_PREFIX):
                continue
            attr = key[len(XATTR_PAX_PREFIX):]
            if attr.startswith("trusted.overlay."):
                continue  # overlayfs' own metadata (redirects, origins) must not come from an image
            data = value.encode("utf-8", "surrogateescape")
            try:
                if isinstance(target, int):
                    os.setxattr(target, attr, data)
                else:
                    os.setxattr(target, attr, data, follow_symlinks=False)
            except OSError as exc:
                if exc.errno not in (errno.ENOTSUP, errno.EPERM, errno.EOPNOTSUPP):
                    raise
                self.stats.skipped.append(f"{info.name} xattr {attr}")
        if not is_link:  # Linux has no lchmod; a symlink's mode is meaningless anyway
            os.chmod(target, info.mode & 0o7777)

    def _times(self, path: str, info: tarfile.TarInfo) -> None:
        mtime = _ns(info, "mtime", info.mtime)
        atime = _ns(info, "atime", info.mtime)
        os.utime(path, ns=(atime, mtime), follow_symlinks=False)


def apply_tar(stream: BinaryIO, dest: str, whiteouts: WhiteoutMode) -> ApplyStats:
    """Apply one uncompressed layer tar onto `dest`; reads `stream` to its end."""
    return LayerApplier(dest, whiteouts).apply(stream)
