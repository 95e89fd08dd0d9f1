"""docker cp through refengined with more data than it should hold: PUT and GET /containers/{id}/archive
spool to disk, so the daemon's peak RSS (VmHWM) grows by far less than the archive (both directions
held the whole tar in memory before: a 64 MiB copy raised the peak by more than 64 MiB)."""

from __future__ import annotations

import io
import os
import tarfile
from collections.abc import Iterator

import pytest

from .daemons import refengined_with_probe

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="refengined runs containers as root")

SIZE = 64 << 20
MARGIN = 24 << 20  # what the daemon may grow by while copying SIZE bytes


@pytest.fixture(scope="module")
def daemon() -> Iterator[tuple[object, str, int, str]]:
    with refengined_with_probe("archive") as d:
        yield d.client, d.image, d.pid, d.data_root


def _kib(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith(key + ":"))


def _open_files(pid: int) -> list[str]:
    targets = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            targets.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:
            pass
    return targets


def _big_tar(path: str) -> None:
    """A tar holding one SIZE-byte file, written to disk in pieces (the test holds no copy in memory)."""
    with tarfile.open(path, "w") as tar:
        info = tarfile.TarInfo("big.bin")
        info.size = SIZE
        tar.addfile(info, _Pattern(SIZE))


class _Pattern(io.RawIOBase):
    """SIZE bytes of a repeating pattern, read in whatever pieces tarfile asks for."""

    def __init__(self, size: int) -> None:
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:  # type: ignore[no-untyped-def]
        n = min(len(buf), self.left)
        buf[:n] = bytes(range(256)) * (n // 256) + bytes(range(n % 256))
        self.left -= n
        return n


def test_copy_in_and_out_without_holding_it(daemon, tmp_path) -> None:
    cl, image, pid, data_root = daemon
    c = cl.containers.create(image, ["true"], network_mode="none")
    try:
        src = str(tmp_path / "in.tar")
        _big_tar(src)
        before = _kib(pid, "VmHWM") * 1024
        with open(src, "rb") as fh:
            assert c.put_archive("/tmp", fh), "PUT /containers/{id}/archive failed"
        grew_in = _kib(pid, "VmHWM") * 1024 - before
        assert grew_in < MARGIN, (f"copying {SIZE >> 20} MiB into a container raised the daemon's peak RSS by "
                                  f"{grew_in >> 20} MiB: the upload is held in memory")
        before = _kib(pid, "VmHWM") * 1024
        chunks, stat = c.get_archive("/tmp/big.bin")
        assert stat["size"] == SIZE, stat
        out = str(tmp_path / "out.tar")
        with open(out, "wb") as fh:
            fh.write(next(chunks))
            # mid-stream: the spool is a deleted file under <data-root>/tmp, as dockerd's (not /tmp)
            spools = [t for t in _open_files(pid) if t.startswith(os.path.join(data_root, "tmp") + "/")]
            assert spools, f"no spool file of the daemon under {data_root}/tmp while it streams: {_open_files(pid)}"
            for chunk in chunks:
                fh.write(chunk)
        grew_out = _kib(pid, "VmHWM") * 1024 - before
        assert grew_out < MARGIN, (f"copying {SIZE >> 20} MiB out of a container raised the daemon's peak RSS by "
                                   f"{grew_out >> 20} MiB: the download is built in memory")
        with tarfile.open(out) as tar:
            member = tar.getmember("big.bin")
            assert member.size == SIZE
            got = tar.extractfile(member)
            assert got is not None and got.read(1024) == bytes(range(256)) * 4
    finally:
        c.remove(force=True, v=True)
