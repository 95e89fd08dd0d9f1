"""Both graph drivers on real filesystems: merged views across layers, changes, diffs; overlay's
mounts (refcounts, many layers, cleanup). Every mount is made in a private temp dir and undone."""

from __future__ import annotations

import io
import os
import stat
import subprocess
from collections.abc import Iterator

import pytest

from refengine.drivers.graph import DriverError, GraphDriver, detect_driver, make_driver
from refengine.drivers.graph.changes import ChangeKind
from refengine.drivers.graph.overlay import MAX_DEPTH, mounts

from .graph_testlib import d, f, layer_tar, opaque, read, scratch, snapshot, sym, whiteout

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="overlay mounts and ownership need root")

LAYER1 = [d("a"), f("a/f1", "one"), f("a/f2", "two"), d("b"), f("b/x", "x"), d("c"), f("c/y", "y"),
          f("d", "file d"), d("e"), d("e/deep"), f("e/deep/z", "z"), sym("link", "a/f2")]
LAYER2 = [d("a"), whiteout("a/f1"), d("b"), opaque("b"), f("b/z", "zz"), whiteout("c"), d("d"), f("d/inner", "i"),
          d("e"), f("e/new", "n")]
LAYER3 = [d("a"), f("a/f1", "again"), whiteout("d"), d("e"), d("e/deep"), opaque("e/deep")]
MERGED = {"a": {"f1": "again", "f2": "two"}, "b": {"z": "zz"}, "e": {"new": "n", "deep": None}}


@pytest.fixture(params=["overlay2", "vfs"])
def driver(request: pytest.FixtureRequest) -> Iterator[GraphDriver]:
    with scratch() as root:
        drv = make_driver(request.param, os.path.join(root, request.param))
        try:
            yield drv
        finally:
            drv.cleanup()


def build(driver: GraphDriver, layers: list[list], prefix: str = "L") -> list[str]:
    ids: list[str] = []
    for i, entries in enumerate(layers):
        layer_id = f"{prefix}{i}"
        parent = ids[-1] if ids else None
        driver.create(layer_id, parent)
        driver.apply_diff(layer_id, parent, io.BytesIO(layer_tar(entries)))
        ids.append(layer_id)
    return ids


def test_whiteouts_and_opaque_dirs_resolve_in_the_merged_view(driver: GraphDriver) -> None:
    ids = build(driver, [LAYER1, LAYER2, LAYER3])
    driver.create("rw", ids[-1], rw=True)
    root = driver.get("rw")
    try:
        assert sorted(os.listdir(root)) == ["a", "b", "e", "link"]
        for directory, files in MERGED.items():
            assert sorted(os.listdir(os.path.join(root, directory))) == sorted(files), directory
            for name, content in files.items():
                if content is not None:
                    assert read(root, f"{directory}/{name}") == content
        assert os.listdir(os.path.join(root, "e/deep")) == []  # opaque over a dir that had z
        assert read(root, "link") == "two"
    finally:
        driver.put("rw")


def test_image_layer_view_is_the_same(driver: GraphDriver) -> None:
    ids = build(driver, [LAYER1, LAYER2])
    root = driver.get(ids[-1])
    try:
        assert sorted(os.listdir(root)) == ["a", "b", "d", "e", "link"]
        assert sorted(os.listdir(os.path.join(root, "b"))) == ["z"]
        assert os.path.isdir(os.path.join(root, "d"))  # a directory replaced the file
    finally:
        driver.put(ids[-1])


def mutate(root: str) -> None:
    with open(os.path.join(root, "a/f2"), "w") as fh:
        fh.write("changed")  # modified (size)
    os.unlink(os.path.join(root, "a/f1"))  # deleted
    os.makedirs(os.path.join(root, "new/sub"))
    with open(os.path.join(root, "new/sub/file"), "w") as fh:
        fh.write("added")
    os.chmod(os.path.join(root, "b"), 0o700)  # modified dir (mode)
    subprocess.run(["rm", "-rf", os.path.join(root, "e")], check=True)  # deleted tree
    os.symlink("a/f2", os.path.join(root, "link2"))


EXPECTED_CHANGES = [("/a", 0), ("/a/f1", 2), ("/a/f2", 0), ("/b", 0), ("/e", 2), ("/link2", 1), ("/new", 1),
                    ("/new/sub", 1), ("/new/sub/file", 1)]


def test_changes_of_a_container_layer(driver: GraphDriver) -> None:
    ids = build(driver, [LAYER1, LAYER2, LAYER3])
    driver.create("rw", ids[-1], rw=True)
    root = driver.get("rw")
    try:
        mutate(root)
    finally:
        driver.put("rw")
    changes = driver.changes("rw", ids[-1])
    assert [(c.path, int(c.kind)) for c in changes] == EXPECTED_CHANGES
    assert changes[0].to_api() == {"Path": "/a", "Kind": 0}
    assert driver.diff_size("rw", ids[-1]) >= len("changed") + len("added")


def test_diff_of_a_container_layer_reapplies_to_the_same_tree(driver: GraphDriver) -> None:
    ids = build(driver, [LAYER1, LAYER2, LAYER3])
    driver.create("rw", ids[-1], rw=True)
    root = driver.get("rw")
    try:
        mutate(root)
        expected = snapshot(root)
    finally:
        driver.put("rw")
    out = io.BytesIO()
    driver.diff("rw", ids[-1], out)
    driver.create("committed", ids[-1])
    driver.apply_diff("committed", ids[-1], io.BytesIO(out.getvalue()))
    root = driver.get("committed")
    try:
        assert snapshot(root) == expected
    finally:
        driver.put("committed")
    assert [(c.path, int(c.kind)) for c in driver.changes("committed", ids[-1])] == EXPECTED_CHANGES


def test_opaque_directory_made_in_a_container_is_a_diff_of_deletions(driver: GraphDriver) -> None:
    ids = build(driver, [LAYER1])
    driver.create("rw", ids[-1], rw=True)
    root = driver.get("rw")
    try:
        subprocess.run(["rm", "-rf", os.path.join(root, "a")], check=True)
        os.mkdir(os.path.join(root, "a"))
        with open(os.path.join(root, "a/f3"), "w") as fh:
            fh.write("3")
    finally:
        driver.put("rw")
    changes = {(c.path, c.kind) for c in driver.changes("rw", ids[-1])}
    assert {("/a/f1", ChangeKind.DELETE), ("/a/f2", ChangeKind.DELETE), ("/a/f3", ChangeKind.ADD)} <= changes


def test_empty_diff_is_the_go_empty_tar(driver: GraphDriver) -> None:
    ids = build(driver, [LAYER1])
    driver.create("rw", ids[-1], rw=True)
    out = io.BytesIO()
    driver.diff("rw", ids[-1], out)
    assert out.getvalue() == b"\0" * 1024
    assert driver.changes("rw", ids[-1]) == []


def test_remove_and_ids(driver: GraphDriver) -> None:
    ids = build(driver, [LAYER1, LAYER2])
    assert set(ids) <= set(driver.ids())
    driver.remove(ids[1])
    assert not driver.exists(ids[1]) and driver.exists(ids[0])


# --- overlay specifics -------------------------------------------------------------------------


@pytest.fixture
def overlay() -> Iterator[GraphDriver]:
    with scratch() as root:
        drv = make_driver("overlay2", os.path.join(root, "overlay2"))
        try:
            yield drv
        finally:
            drv.cleanup()


def mounted(path: str) -> bool:
    return any(point == path for point, _ in mounts())


def test_overlay_mounts_are_refcounted_and_removed(overlay: GraphDriver) -> None:
    ids = build(overlay, [LAYER1])
    overlay.create("rw", ids[0], rw=True)
    first = overlay.get("rw")
    assert overlay.get("rw") == first and mounted(first)
    overlay.put("rw")
    assert mounted(first)
    overlay.put("rw")
    assert not mounted(first)
    assert overlay.get(ids[0]).endswith("/diff")  # a base layer needs no mount
    meta = overlay.metadata("rw")
    assert meta is not None and list(meta) == ["LowerDir", "MergedDir", "UpperDir", "WorkDir"]
    assert meta["LowerDir"] == os.path.join(overlay.root, ids[0], "diff")
    overlay.get("rw")
    overlay.remove("rw")  # removing unmounts
    assert not mounted(first) and not overlay.exists("rw")


def test_overlay_many_layers_use_short_relative_lowerdirs(overlay: GraphDriver) -> None:
    parent = None
    for i in range(MAX_DEPTH):
        layer = f"layer{i:03d}"
        overlay.create(layer, parent)
        overlay.apply_diff(layer, parent, io.BytesIO(layer_tar([f(f"file{i:03d}", str(i))])))
        parent = layer
    # 128 lowers: absolute paths would pass a page; relative `l/<short>` links fit.
    overlay.create("rw", parent, rw=True)
    root = overlay.get("rw")
    try:
        names = os.listdir(root)
        assert len(names) == MAX_DEPTH and read(root, "file000") == "0"
    finally:
        overlay.put("rw")
    assert not mounted(root)
    with pytest.raises(DriverError, match="max depth exceeded"):
        overlay.create("too-deep", "rw")


def test_overlay_cleanup_unmounts_everything(overlay: GraphDriver) -> None:
    ids = build(overlay, [LAYER1, LAYER2])
    overlay.create("rw1", ids[-1], rw=True)
    overlay.create("rw2", ids[-1], rw=True)
    paths = [overlay.get("rw1"), overlay.get("rw2"), overlay.get(ids[-1])]
    assert all(mounted(p) for p in paths)
    overlay.cleanup()
    assert not any(mounted(p) for p in paths)


def test_overlay_status_and_detection() -> None:
    with scratch() as root:
        drv = detect_driver(root)
        assert drv.name == "overlay2"
        status = dict(map(tuple, drv.status()))  # type: ignore[arg-type]
        assert status["Supports d_type"] == "true" and status["Backing Filesystem"]
        assert make_driver("vfs", os.path.join(root, "vfs")).metadata("x") is None
        with pytest.raises(DriverError, match="driver not supported"):
            make_driver("aufs", root)


def test_overlay_whiteout_files_are_devices_in_the_diff(overlay: GraphDriver) -> None:
    build(overlay, [LAYER1, LAYER2])
    st = os.lstat(os.path.join(overlay.root, "L1", "diff", "c"))
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
    assert os.getxattr(os.path.join(overlay.root, "L1", "diff", "b"), "trusted.overlay.opaque") == b"y"
