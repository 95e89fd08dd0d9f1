"""The layer extractor: entry types, ownership, modes, times, xattrs, whiteouts, and refusals."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
from collections.abc import Iterator

import pytest

from refengine.drivers.graph.extract import (
    DigestReader,
    LayerFormatError,
    UnsafeLayerError,
    WhiteoutMode,
    apply_tar,
    decompress,
)

from .graph_testlib import Entry, d, f, hard, layer_tar, opaque, scratch, sym, whiteout

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="ownership, devices and trusted xattrs need root")


@pytest.fixture
def root() -> Iterator[str]:
    with scratch("refengine-extract-") as path:
        os.mkdir(os.path.join(path, "layer"))
        yield os.path.join(path, "layer")


def apply(root: str, entries: list[Entry], mode: WhiteoutMode = WhiteoutMode.OVERLAY):
    return apply_tar(io.BytesIO(layer_tar(entries)), root, mode)


def test_entry_types_ownership_modes_and_times(root: str) -> None:
    stats = apply(root, [
        d("bin", mode=0o755),
        f("bin/su", b"#!/bin/sh\n", mode=0o4755, uid=0, gid=0),
        f("bin/sg", b"x", mode=0o2711, uid=1000, gid=50),
        d("tmp", mode=0o1777),
        f("home/u/file", b"owned", uid=1234, gid=4321, mode=0o600),
        sym("bin/sh", "/bin/busybox"),
        hard("bin/su2", "bin/su", mode=0o4755),
        Entry("dev/null", b"3", None, mode=0o666, dev=(1, 3)),
        Entry("dev/sda", b"4", None, mode=0o660, dev=(8, 0), gid=6),
        Entry("run/fifo", b"6", None, mode=0o620),
    ])
    st = os.lstat(os.path.join(root, "bin/su"))
    assert stat.S_IMODE(st.st_mode) == 0o4755  # setuid kept: chmod after chown
    st = os.lstat(os.path.join(root, "bin/sg"))
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o2711, 1000, 50)
    assert stat.S_IMODE(os.lstat(os.path.join(root, "tmp")).st_mode) == 0o1777
    st = os.lstat(os.path.join(root, "home/u/file"))
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1234, 4321, 0o600)
    assert os.readlink(os.path.join(root, "bin/sh")) == "/bin/busybox"
    assert os.lstat(os.path.join(root, "bin/su2")).st_ino == os.lstat(os.path.join(root, "bin/su")).st_ino
    null = os.lstat(os.path.join(root, "dev/null"))
    assert stat.S_ISCHR(null.st_mode) and (os.major(null.st_rdev), os.minor(null.st_rdev)) == (1, 3)
    sda = os.lstat(os.path.join(root, "dev/sda"))
    assert stat.S_ISBLK(sda.st_mode) and sda.st_gid == 6 and stat.S_IMODE(sda.st_mode) == 0o660
    assert stat.S_ISFIFO(os.lstat(os.path.join(root, "run/fifo")).st_mode)
    # Times: files, symlinks and directories (set last, after their children were written).
    for rel in ("bin/su", "bin/sh", "bin", "tmp"):
        assert os.lstat(os.path.join(root, rel)).st_mtime == 1700000000, rel
    assert stats.size == len(b"#!/bin/sh\n") + 1 + len(b"owned") + len("/bin/busybox")


def test_pax_xattrs_capabilities_and_fractional_mtime(root: str) -> None:
    cap = bytes.fromhex("0100000200200000000000000000000000000000")  # cap_net_bind_service, effective
    apply(root, [f("ping", b"elf", mode=0o755, mtime=1700000000.5,
                   pax={"SCHILY.xattr.security.capability": cap.decode("utf-8", "surrogateescape"),
                        "SCHILY.xattr.user.note": "hello", "SCHILY.xattr.trusted.overlay.redirect": "/etc",
                        "mtime": "1700000000.123456789"})])
    path = os.path.join(root, "ping")
    assert os.getxattr(path, "security.capability") == cap
    assert os.getxattr(path, "user.note") == b"hello"
    # overlayfs' own metadata never comes from an image
    assert "trusted.overlay.redirect" not in os.listxattr(path)
    assert os.lstat(path).st_mtime_ns == 1700000000123456789


@pytest.mark.parametrize("entries, needle", [
    ([f("../escape", "x")], "outside of the layer"),
    ([f("a/../../escape", "x")], "outside of the layer"),
    ([f("/etc/evil", "x")], "absolute paths"),
    ([sym("evil", "/etc"), f("evil/passwd", "pwned")], "writes through the symlink"),
    ([d("a"), sym("a/up", "../../.."), f("a/up/x", "x")], "invalid symlink"),
    ([sym("up", ".."), f("up/x", "x")], "invalid symlink"),
    ([hard("stolen", "../../etc/passwd")], "outside of the layer"),
    ([sym("evil", "/etc"), whiteout("evil/passwd")], "writes through the symlink"),
])
def test_escapes_are_refused(root: str, entries: list[Entry], needle: str) -> None:
    outside = os.path.dirname(root)
    before = sorted(os.listdir(outside))
    with pytest.raises(UnsafeLayerError, match=needle):
        apply(root, entries)
    assert sorted(os.listdir(outside)) == before
    assert not os.path.exists(os.path.join(outside, "escape"))


def test_relative_symlink_inside_the_layer_is_followed(root: str) -> None:
    apply(root, [d("usr"), d("usr/lib"), sym("lib", "usr/lib"), f("lib/libc.so", "c")], WhiteoutMode.DELETE)
    assert os.path.isfile(os.path.join(root, "usr/lib/libc.so"))
    assert os.path.islink(os.path.join(root, "lib"))


def test_existing_symlink_is_replaced_not_followed(root: str) -> None:
    target = os.path.join(os.path.dirname(root), "victim")
    with open(target, "w") as fh:
        fh.write("safe")
    os.symlink(target, os.path.join(root, "file"))
    apply(root, [f("file", "new")], WhiteoutMode.DELETE)
    assert not os.path.islink(os.path.join(root, "file"))
    with open(target) as fh:
        assert fh.read() == "safe"


def test_bad_entries_are_clear_errors(root: str) -> None:
    with pytest.raises(LayerFormatError, match="hardlink target"):
        apply(root, [hard("a", "missing")])
    with pytest.raises(LayerFormatError, match="not a directory"):
        apply(root, [f("file", "x"), f("file/child", "y")])
    with pytest.raises(LayerFormatError, match="invalid layer tar"):
        apply_tar(io.BytesIO(b"x" * 1024), root, WhiteoutMode.DELETE)


def test_overlay_whiteouts_become_devices_and_xattrs(root: str) -> None:
    apply(root, [d("etc"), whiteout("etc/motd"), d("var"), opaque("var"), f("var/new", "n"), opaque("made/by")])
    wh = os.lstat(os.path.join(root, "etc/motd"))
    assert stat.S_ISCHR(wh.st_mode) and wh.st_rdev == 0
    assert os.getxattr(os.path.join(root, "var"), "trusted.overlay.opaque") == b"y"
    assert os.getxattr(os.path.join(root, "made/by"), "trusted.overlay.opaque") == b"y"
    assert not os.path.exists(os.path.join(root, "var/.wh..wh..opq"))


def test_delete_mode_whiteouts_remove_files_but_keep_this_layers_own(root: str) -> None:
    apply(root, [d("a"), f("a/old1", "1"), f("a/old2", "2"), d("b"), f("b/gone", "g"), f("keep", "k")],
          WhiteoutMode.DELETE)
    apply(root, [d("a"), f("a/mine", "m"), opaque("a"), whiteout("b"), whiteout("nothing/there")],
          WhiteoutMode.DELETE)
    assert sorted(os.listdir(os.path.join(root, "a"))) == ["mine"]
    assert sorted(os.listdir(root)) == ["a", "keep"]


def test_digest_covers_the_whole_stream_and_compressed_input_is_sniffed(root: str) -> None:
    data = layer_tar([f("x", "y")]) + b"\0" * 4096  # trailing padding beyond the end-of-archive
    reader = DigestReader(decompress(io.BytesIO(gzip.compress(data))))
    apply_tar(reader, root, WhiteoutMode.DELETE)
    assert reader.digest == "sha256:" + hashlib.sha256(data).hexdigest()
    assert reader.count == len(data)


def test_hardlink_header_metadata_applies_to_the_shared_inode(root: str) -> None:
    # As dockerd: the link's header mode/owner are applied (tar writers copy the target's).
    apply(root, [f("a", "x", mode=0o755), hard("b", "a", mode=0o700, uid=7)], WhiteoutMode.DELETE)
    st = os.lstat(os.path.join(root, "a"))
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_nlink) == (0o700, 7, 2)
