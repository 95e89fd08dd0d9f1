"""/containers/{id}/archive: stat (HEAD), download (GET) and upload (PUT) of paths in a container's rootfs.

Paths are resolved inside the container's root filesystem with symlinks confined to it (an absolute
link target means the container's root, as in a chroot). Paths under volumes and bind mounts are
not visible this way yet (dockerd resolves them in the container's mount namespace).
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import stat
import tarfile
from collections.abc import Callable, Iterator
from typing import Any

from ...engine.clock import rfc3339_nano
from ...engine.containers.record import Container
from ...engine.containers.store import ContainerStore
from ...engine.errors import InvalidParameter, NotFound
from ...images.store import ImageStore
from ..http import Request, Response
from ..router import Router

# Go's os.FileMode type bits, which the path stat header carries
GO_MODE_DIR, GO_MODE_SYMLINK, GO_MODE_DEVICE = 1 << 31, 1 << 27, 1 << 26
GO_MODE_PIPE, GO_MODE_SOCKET, GO_MODE_SETUID, GO_MODE_SETGID = 1 << 25, 1 << 24, 1 << 23, 1 << 22
GO_MODE_CHAR, GO_MODE_STICKY = 1 << 21, 1 << 20


def go_mode(st: os.stat_result) -> int:
    mode = st.st_mode & 0o777
    kind = stat.S_IFMT(st.st_mode)
    mode |= {stat.S_IFDIR: GO_MODE_DIR, stat.S_IFLNK: GO_MODE_SYMLINK, stat.S_IFIFO: GO_MODE_PIPE,
             stat.S_IFSOCK: GO_MODE_SOCKET, stat.S_IFBLK: GO_MODE_DEVICE,
             stat.S_IFCHR: GO_MODE_DEVICE | GO_MODE_CHAR}.get(kind, 0)
    if st.st_mode & stat.S_ISUID:
        mode |= GO_MODE_SETUID
    if st.st_mode & stat.S_ISGID:
        mode |= GO_MODE_SETGID
    if st.st_mode & stat.S_ISVTX:
        mode |= GO_MODE_STICKY
    return mode


# Extraction filters (PEP 706) came with Python 3.11.4; an earlier 3.11 gets the same checks from _compat_tar_filter.
EXTRACTION_FILTERS = hasattr(tarfile, "data_filter")


class UnsafeMemberError(tarfile.TarError):
    """An archive member that would be written, or point, outside the extraction directory."""


def extract(data: bytes, dest: str) -> None:
    """Unpack an uploaded tar into `dest` (a directory in a container's rootfs).

    Each member is checked just before it is written (earlier members may have made symlinks): as
    tarfile's "tar" filter does, leading slashes are stripped, a member whose path resolves outside
    `dest` (``..``, through a symlink) is refused and setuid/setgid/sticky and group/other write bits
    are cleared; in addition, as dockerd's untar and tarfile's "data" filter do, hard links to files
    outside `dest` and relative symlinks that climb out of it are refused. Device nodes and FIFOs are
    made, as dockerd makes them (they land in the container's rootfs; its device cgroup governs their
    use). Absolute symlinks stay: they name paths from the container's root.
    """
    dest = os.path.realpath(dest)  # the helpers compare resolved paths against it
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
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


def register(router: Router, store: ContainerStore, images: ImageStore,
             event: Callable[[str, Container, dict[str, str]], None]) -> None:
    """`event` logs a container event (dockerd: archive-path for a download, extract-to-dir for an upload)."""
    async def with_rootfs(cid: str, fn: Any) -> Any:
        root = await asyncio.to_thread(images.layers.mount, cid)  # refcounted: fine while it runs
        try:
            return await asyncio.to_thread(fn, root)
        finally:
            await asyncio.to_thread(images.layers.unmount, cid)

    def path_param(request: Request) -> str:
        path = request.q("path")
        if not path:
            raise InvalidParameter("path is required: GET /containers/{id}/archive?path=<path in the container>")
        return path

    def stat_of(root: str, path: str, cid: str) -> tuple[str, dict[str, Any]]:
        host = resolve(root, path)
        try:
            st = os.lstat(host)
        except FileNotFoundError:
            raise NotFound(f"Could not find the file {path} in container {cid}") from None
        link = os.readlink(host) if stat.S_ISLNK(st.st_mode) else ""
        name = os.path.basename(path.rstrip("/")) or "/"
        return host, {"name": name, "size": st.st_size, "mode": go_mode(st),
                      "mtime": rfc3339_nano(st.st_mtime_ns), "linkTarget": link}

    def header(info: dict[str, Any]) -> tuple[str, str]:
        return ("X-Docker-Container-Path-Stat", base64.b64encode(json.dumps(info).encode()).decode())

    async def head(request: Request) -> Response:
        c = store.get(request.params["id"])
        path = path_param(request)
        _, info = await with_rootfs(c.id, lambda root: stat_of(root, path, c.id))
        return Response(200, headers=[header(info)])

    async def get(request: Request) -> Response:
        c = store.get(request.params["id"])
        path = path_param(request)

        def pack(root: str) -> tuple[bytes, dict[str, Any]]:
            host, info = stat_of(root, path, c.id)
            buf = io.BytesIO()
            with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
                tar.add(host, arcname=info["name"], recursive=True)
            return buf.getvalue(), info
        data, info = await with_rootfs(c.id, pack)
        event("archive-path", c, {})
        return Response(200, data, headers=[header(info)], content_type="application/x-tar")

    async def put(request: Request) -> Response:
        c = store.get(request.params["id"])
        path = path_param(request)
        data = await request.body(limit=8 << 30)

        def unpack(root: str) -> None:
            dest = resolve(root, path, follow_last=True)
            if not os.path.exists(dest):
                raise NotFound(f"Could not find the file {path} in container {c.id}")
            if not os.path.isdir(dest):
                raise InvalidParameter(f"extraction point is not a directory: {path}")
            try:
                extract(data, dest)
            except (tarfile.TarError, OSError) as exc:
                raise InvalidParameter(f"cannot extract the archive into {path}: {exc}") from None
        await with_rootfs(c.id, unpack)
        event("extract-to-dir", c, {})
        return Response(200)

    router.add("HEAD", "/containers/{id}/archive", head)
    router.add("GET", "/containers/{id}/archive", get)
    router.add("PUT", "/containers/{id}/archive", put)
