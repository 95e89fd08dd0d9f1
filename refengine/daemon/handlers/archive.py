"""/containers/{id}/archive: stat (HEAD), download (GET) and upload (PUT) of paths in a container's rootfs.

Paths are resolved inside the container's root filesystem with symlinks confined to it (an absolute
link target means the container's root, as in a chroot). Paths under volumes and bind mounts are
not visible this way yet (dockerd resolves them in the container's mount namespace).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import stat
import tarfile
import tempfile
from collections.abc import Callable
from typing import Any, BinaryIO

from ...engine.clock import rfc3339_nano
from ...engine.containers.record import Container
from ...engine.containers.rootfs_files import extract, resolve
from ...engine.containers.store import ContainerStore
from ...engine.errors import InvalidParameter, NotFound
from ...images.store import ImageStore
from ..http import Request, Response, StreamResponse, file_body
from ..router import Router

# Go's os.FileMode type bits, which the path stat header carries
GO_MODE_DIR, GO_MODE_SYMLINK, GO_MODE_DEVICE = 1 << 31, 1 << 27, 1 << 26
GO_MODE_PIPE, GO_MODE_SOCKET, GO_MODE_SETUID, GO_MODE_SETGID = 1 << 25, 1 << 24, 1 << 23, 1 << 22
GO_MODE_CHAR, GO_MODE_STICKY = 1 << 21, 1 << 20
MAX_UPLOAD = 8 << 30  # an upload beyond this is refused (413)


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

    async def get(request: Request) -> StreamResponse:
        c = store.get(request.params["id"])
        path = path_param(request)
        spool = tempfile.TemporaryFile(prefix="refengine-archive-")  # a tree can be far larger than memory

        def pack(root: str) -> dict[str, Any]:
            host, info = stat_of(root, path, c.id)
            with tarfile.open(fileobj=spool, mode="w", format=tarfile.PAX_FORMAT) as tar:
                tar.add(host, arcname=info["name"], recursive=True)
            spool.seek(0)
            return info
        try:
            info = await with_rootfs(c.id, pack)
        except BaseException:
            spool.close()
            raise
        event("archive-path", c, {})
        return StreamResponse(file_body(spool), headers=[header(info)], content_type="application/x-tar")

    async def put(request: Request) -> Response:
        c = store.get(request.params["id"])
        path = path_param(request)

        def unpack(root: str, data: BinaryIO) -> None:
            dest = resolve(root, path, follow_last=True)
            if not os.path.exists(dest):
                raise NotFound(f"Could not find the file {path} in container {c.id}")
            if not os.path.isdir(dest):
                raise InvalidParameter(f"extraction point is not a directory: {path}")
            try:
                extract(data, dest)
            except (tarfile.TarError, OSError) as exc:
                raise InvalidParameter(f"cannot extract the archive into {path}: {exc}") from None
        with tempfile.TemporaryFile(prefix="refengine-archive-") as data:  # spooled to disk, not memory
            async for chunk in request.chunks(limit=MAX_UPLOAD):
                data.write(chunk)
            data.seek(0)
            await with_rootfs(c.id, lambda root: unpack(root, data))
        event("extract-to-dir", c, {})
        return Response(200)

    router.add("HEAD", "/containers/{id}/archive", head)
    router.add("GET", "/containers/{id}/archive", get)
    router.add("PUT", "/containers/{id}/archive", put)
