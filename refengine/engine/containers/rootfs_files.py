"""Files into and out of a container's root filesystem: the hardened untar of uploads (PUT /archive,
the builder's COPY) and path resolution with symlinks confined to the root (as in a chroot)."""

from __future__ import annotations

import io
import os
import tarfile
from collections.abc import Iterator
from typing import BinaryIO

from ..errors import InvalidParameter

# Extraction filters (PEP 706) came with Python 3.11.4; an earlier 3.11 gets the same checks from _compat_tar_filter.
EXTRACTION_FILTERS = hasattr(tarfile, "data_filter")


class UnsafeMemberError(tarfile.TarError):
    """An archive member that would be written, or point, outside the extraction directory."""


def extract(data: bytes | BinaryIO, dest: str) -> None:
    """Unpack an uploaded tar (bytes, or a file positioned at its start) into `dest` (a directory in a
    container's rootfs).

    Each member is checked just before it is written (earlier members may have made symlinks): as
    tarfile's "tar" filter does, leading slashes are stripped, a member whose path resolves outside
    `dest` (``..``, through a symlink) is refused and setuid/setgid/sticky and group/other write bits
    are cleared; in addition, as dockerd's untar and tarfile's "data" filter do, hard links to files
    outside `dest` and relative symlinks that climb out of it are refused. Device nodes and FIFOs are
    made, as dockerd makes them (they land in the container's rootfs; its device cgroup governs their
    use). Absolute symlinks stay: they name paths from the container's root.
    """
    dest = os.path.realpath(dest)  # the helpers compare resolved paths against it
    with tarfile.open(fileobj=io.BytesIO(data) if isinstance(data, bytes) else data) as tar:
        if EXTRACTION_FILTERS:
            tar.extractall(dest, filter=_filter)
        else:
            tar.extractall(dest, members=_vetted(tar.getmembers(), dest))


def _filter(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo:
    member = tarfile.tar_filter(member, dest)  # type: ignore[attr-defined]
    _check_links(member, dest)
    return member


def _vetted(members: list[tarfile.TarInfo], dest: str) -> Iterator[tarfile.TarInfo]:
    """The members as _filter would pass them, checked one by one as extractall reaches them (lazily)."""
    for member in members:
        _compat_tar_filter(member, dest)
        _check_links(member, dest)
        yield member


def _compat_tar_filter(member: tarfile.TarInfo, dest: str) -> None:
    """What tarfile.tar_filter does, in place (the members are this extraction's own); `dest` is resolved."""
    name = member.name.lstrip("/")
    target = os.path.realpath(os.path.join(dest, name))
    if os.path.commonpath([target, dest]) != dest:
        raise UnsafeMemberError(f"{member.name!r} would be extracted to {target!r}, outside the destination")
    member.name = name
    if member.mode is not None:
        member.mode &= 0o755


def _check_links(member: tarfile.TarInfo, dest: str) -> None:
    """Hard links must name a file inside `dest` (resolved), relative symlinks must not climb out of it."""
    if member.islnk():
        target = os.path.realpath(os.path.join(dest, member.linkname))
        if os.path.commonpath([target, dest]) != dest:
            raise UnsafeMemberError(f"{member.name!r} is a hard link to {member.linkname!r}, outside the destination")
    elif member.issym() and not member.linkname.startswith("/"):
        target = os.path.normpath(os.path.join(dest, os.path.dirname(member.name), member.linkname))
        if os.path.commonpath([target, dest]) != dest:
            raise UnsafeMemberError(f"{member.name!r} is a symlink to {member.linkname!r}, which climbs out of the "
                                    "destination")


def resolve(root: str, path: str, follow_last: bool = False) -> str:
    """`path` inside `root` on the host, following symlinks without leaving root."""
    parts = [p for p in path.split("/") if p not in ("", ".")]
    current, hops = root, 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            current = os.path.dirname(current) if current != root else root
            continue
        candidate = os.path.join(current, part)
        if os.path.islink(candidate) and (parts or follow_last):
            hops += 1
            if hops > 40:
                raise InvalidParameter(f"too many levels of symbolic links: {path}")
            target = os.readlink(candidate)
            parts = [p for p in target.split("/") if p not in ("", ".")] + parts
            current = root if target.startswith("/") else current
            continue
        current = candidate
    return current
