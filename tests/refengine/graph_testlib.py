"""Helpers for the graph-driver and image-store tests: layer tars, scratch dirs that never leak a
mount, tree snapshots, and dockerd access for cross-checks."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import stat
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from refengine.drivers.graph.overlay import mounts, unmount

DOCKER_SOCK = "/var/run/docker.sock"
EPOCH = 1700000000


@dataclass
class Entry:
    name: str
    kind: bytes = tarfile.REGTYPE
    data: bytes | None = None
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    link: str = ""
    mtime: float = EPOCH
    pax: dict[str, str] = field(default_factory=dict)
    dev: tuple[int, int] = (0, 0)


def f(name: str, data: bytes | str = b"", **kw: Any) -> Entry:
    return Entry(name, tarfile.REGTYPE, data.encode() if isinstance(data, str) else data, **kw)


def d(name: str, mode: int = 0o755, **kw: Any) -> Entry:
    return Entry(name.rstrip("/") + "/", tarfile.DIRTYPE, None, mode=mode, **kw)


def sym(name: str, target: str) -> Entry:
    return Entry(name, tarfile.SYMTYPE, None, mode=0o777, link=target)


def hard(name: str, target: str, **kw: Any) -> Entry:
    """A hardlink; tar writers repeat the target's mode and owner in its header (dockerd applies them)."""
    return Entry(name, tarfile.LNKTYPE, None, link=target, **kw)


def whiteout(path: str) -> Entry:
    parent, _, base = path.rpartition("/")
    return f(f"{parent}/.wh.{base}" if parent else f".wh.{base}", mode=0o600)


def opaque(directory: str) -> Entry:
    return f(f"{directory.rstrip('/')}/.wh..wh..opq", mode=0o600)


def layer_tar(entries: list[Entry]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for e in entries:
            info = tarfile.TarInfo(e.name)
            info.type, info.mode, info.uid, info.gid, info.mtime = e.kind, e.mode, e.uid, e.gid, e.mtime
            info.linkname, info.uname, info.gname = e.link, "", ""
            info.devmajor, info.devminor = e.dev
            if e.pax:
                info.pax_headers = dict(e.pax)
            if e.data is not None:
                info.size = len(e.data)
                tar.addfile(info, io.BytesIO(e.data))
            else:
                tar.addfile(info)
    return buf.getvalue()


def unmount_below(path: str) -> None:
    prefix = os.path.realpath(path).rstrip("/") + "/"
    for point, _ in reversed(mounts()):
        if point.startswith(prefix):
            unmount(point)


@contextlib.contextmanager
def scratch(prefix: str = "refengine-graph-") -> Iterator[str]:
    """A private temp dir; whatever is mounted below it is unmounted before it is removed."""
    path = tempfile.mkdtemp(prefix=prefix)
    try:
        yield path
    finally:
        unmount_below(path)
        shutil.rmtree(path, ignore_errors=True)


def snapshot(root: str) -> dict[str, tuple[Any, ...]]:
    """path → (type, mode, uid, gid, size or target, content) of a tree, for comparisons."""
    out: dict[str, tuple[Any, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames + filenames):
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            rel = os.path.relpath(path, root)
            if stat.S_ISLNK(st.st_mode):
                extra: Any = os.readlink(path)
            elif stat.S_ISREG(st.st_mode):
                with open(path, "rb") as fh:
                    extra = fh.read()
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                extra = (os.major(st.st_rdev), os.minor(st.st_rdev))
            else:
                extra = None
            out[rel] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, extra)
    return out


def read(root: str, rel: str) -> str:
    with open(os.path.join(root, rel)) as fh:
        return fh.read()


# --- dockerd -------------------------------------------------------------------------------------


def dockerd_available() -> bool:
    if not os.path.exists(DOCKER_SOCK):
        return False
    try:
        return docker_session().get(docker_url("/_ping"), timeout=5).text == "OK"
    except Exception:
        return False


def docker_session() -> Any:
    import requests_unixsocket

    return requests_unixsocket.Session()


def docker_url(path: str) -> str:
    return "http+unix://" + DOCKER_SOCK.replace("/", "%2F") + "/v1.41" + path


def docker_stream(response: Any) -> list[dict[str, Any]]:
    return [json.loads(line) for line in response.text.splitlines() if line.strip()]


def probe_images_or_skip(prefix: str) -> tuple[Any, bytes]:
    """The harness's probe images (names, docker-save tar) under a unique run id; skip without busybox-static."""
    import uuid

    import pytest

    from conformance.probe_image import build_probe_tar, find_busybox
    try:
        find_busybox()
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    return build_probe_tar(f"{prefix}-{uuid.uuid4().hex[:8]}")
