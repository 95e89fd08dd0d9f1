"""PUT /containers/{id}/archive's extraction: the same checks with tarfile's extraction filters (Python
3.11.4+) and without them (3.11.0-3.11.3, e.g. Debian 12's 3.11.2: the fallback), against malicious tars."""

from __future__ import annotations

import io
import os
import stat
import tarfile

import pytest

from refengine.engine.containers import rootfs_files as archive


@pytest.fixture(params=["filters", "fallback"])
def mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "filters":
        if not archive.EXTRACTION_FILTERS:
            pytest.skip("this Python's tarfile has no extraction filters (before 3.11.4)")
    elif archive.EXTRACTION_FILTERS:
        # the feature taken away: extractall as before 3.11.4, which has no `filter` keyword (TypeError) and
        # checks nothing itself ("fully_trusted", so that a newer default filter adds no checks of its own)
        real = tarfile.TarFile.extractall

        def old_extractall(self, path=".", members=None, *, numeric_owner=False):  # type: ignore[no-untyped-def]
            return real(self, path, members, numeric_owner=numeric_owner, filter="fully_trusted")
        monkeypatch.setattr(tarfile.TarFile, "extractall", old_extractall)
        monkeypatch.setattr(archive, "EXTRACTION_FILTERS", False)
    return request.param


@pytest.fixture
def dirs(tmp_path) -> tuple[str, str]:
    """(dest, outside): the extraction directory and a sibling that must stay untouched."""
    dest, outside = tmp_path / "root" / "dest", tmp_path / "outside"
    dest.mkdir(parents=True)
    outside.mkdir()
    (outside / "secret").write_text("host secret")
    return str(dest), str(outside)


def _tar(*members: tuple[str, bytes | str | None, dict]) -> bytes:
    """A tar of (name, content or link target, TarInfo attributes) entries."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, payload, attrs in members:
            info = tarfile.TarInfo(name)
            for key, value in attrs.items():
                setattr(info, key, value)
            if isinstance(payload, str):
                info.linkname = payload
                tar.addfile(info)
            elif payload is None:
                tar.addfile(info)
            else:
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
    return buf.getvalue()


def _refused(data: bytes, dest: str) -> None:
    with pytest.raises(tarfile.TarError):
        archive.extract(data, dest)


def _outside_untouched(outside: str) -> None:
    assert sorted(os.listdir(outside)) == ["secret"]
    with open(os.path.join(outside, "secret")) as fh:
        assert fh.read() == "host secret"


def test_plain_members_extracted(mode: str, dirs: tuple[str, str]) -> None:
    dest, _ = dirs
    archive.extract(_tar(("d", None, {"type": tarfile.DIRTYPE, "mode": 0o555}),
                         ("d/f", b"data", {"mode": 0o4755}),
                         ("d/rel", "f", {"type": tarfile.SYMTYPE}),
                         ("d/abs", "/etc/passwd", {"type": tarfile.SYMTYPE}),
                         ("plain", b"p", {}),
                         ("hard", "plain", {"type": tarfile.LNKTYPE})), dest)
    with open(os.path.join(dest, "d", "f"), "rb") as fh:
        assert fh.read() == b"data"
    assert stat.S_IMODE(os.stat(os.path.join(dest, "d", "f")).st_mode) == 0o755, "setuid must be cleared"
    assert stat.S_IMODE(os.stat(os.path.join(dest, "d")).st_mode) == 0o555, "a directory's mode is set at the end"
    assert os.readlink(os.path.join(dest, "d", "rel")) == "f"
    # an absolute symlink names a path from the container's root: kept, never followed on the host
    assert os.readlink(os.path.join(dest, "d", "abs")) == "/etc/passwd"
    assert os.path.samefile(os.path.join(dest, "hard"), os.path.join(dest, "plain"))


def test_leading_slash_stays_inside(mode: str, dirs: tuple[str, str]) -> None:
    dest, outside = dirs
    archive.extract(_tar((outside + "/planted", b"x", {})), dest)
    assert os.path.isfile(os.path.join(dest, outside.lstrip("/"), "planted"))
    _outside_untouched(outside)


@pytest.mark.parametrize("name", ["../../outside/planted", "a/../../../outside/planted"])
def test_dotdot_refused(mode: str, dirs: tuple[str, str], name: str) -> None:
    dest, outside = dirs
    _refused(_tar((name, b"x", {})), dest)
    _outside_untouched(outside)


def test_write_through_symlink_refused(mode: str, dirs: tuple[str, str]) -> None:
    dest, outside = dirs
    _refused(_tar(("out", outside, {"type": tarfile.SYMTYPE}), ("out/planted", b"x", {})), dest)
    _outside_untouched(outside)


def test_file_over_symlink_refused(mode: str, dirs: tuple[str, str]) -> None:
    """A regular file whose name is an earlier symlink to a host file would overwrite that file."""
    dest, outside = dirs
    secret = os.path.join(outside, "secret")
    _refused(_tar(("x", secret, {"type": tarfile.SYMTYPE}), ("x", b"overwritten", {})), dest)
    _outside_untouched(outside)


def test_relative_symlink_out_refused(mode: str, dirs: tuple[str, str]) -> None:
    dest, outside = dirs
    _refused(_tar(("sub/up", "../../../outside/secret", {"type": tarfile.SYMTYPE})), dest)
    assert not os.path.lexists(os.path.join(dest, "sub", "up"))


@pytest.mark.parametrize("link", ["../../outside/secret", "/etc/passwd"])
def test_hard_link_out_refused(mode: str, dirs: tuple[str, str], link: str) -> None:
    dest, outside = dirs
    _refused(_tar(("hl", link, {"type": tarfile.LNKTYPE})), dest)
    assert not os.path.lexists(os.path.join(dest, "hl"))
    _outside_untouched(outside)


def test_hard_link_through_symlink_refused(mode: str, dirs: tuple[str, str]) -> None:
    dest, outside = dirs
    _refused(_tar(("s", os.path.join(outside, "secret"), {"type": tarfile.SYMTYPE}),
                  ("hl", "s", {"type": tarfile.LNKTYPE})), dest)
    assert not os.path.lexists(os.path.join(dest, "hl"))


@pytest.mark.parametrize("kind", [tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.FIFOTYPE])
def test_devices_made_as_dockerd_makes_them(mode: str, dirs: tuple[str, str], kind: bytes) -> None:
    dest, _ = dirs
    archive.extract(_tar(("dev", None, {"type": kind, "devmajor": 1, "devminor": 3, "mode": 0o644})), dest)
    st = os.lstat(os.path.join(dest, "dev"))
    want = {tarfile.CHRTYPE: stat.S_ISCHR, tarfile.BLKTYPE: stat.S_ISBLK, tarfile.FIFOTYPE: stat.S_ISFIFO}[kind]
    assert want(st.st_mode), f"member of type {kind!r} became mode {oct(st.st_mode)}"
