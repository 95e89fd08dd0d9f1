"""The probe image tar is deterministic and in the layout `docker load` reads."""

from __future__ import annotations

import io
import json
import tarfile

import pytest

from conformance.probe_image import BusyboxNotFound, build_probe_tar, find_busybox


@pytest.fixture(scope="module")
def built() -> tuple:
    try:
        find_busybox()
    except BusyboxNotFound as exc:
        pytest.skip(str(exc))
    return build_probe_tar("unit")


def test_deterministic(built) -> None:
    assert build_probe_tar("unit")[1] == built[1]


def test_manifest_and_layers(built) -> None:
    names, data = built
    tar = tarfile.open(fileobj=io.BytesIO(data))
    manifest = json.load(tar.extractfile("manifest.json"))
    assert [m["RepoTags"] for m in manifest] == [[names.base], [names.config]]
    assert len(manifest[0]["Layers"]) == 1 and len(manifest[1]["Layers"]) == 2
    layer = tarfile.open(fileobj=tar.extractfile(manifest[0]["Layers"][0]))
    members = {m.name: m for m in layer.getmembers()}
    assert members["bin/busybox"].isfile() and members["bin/busybox"].mode == 0o755
    assert members["bin/sh"].issym() and members["bin/sh"].linkname == "/bin/busybox"
    assert members["tmp"].mode == 0o1777
    assert b"root:x:0:0" in layer.extractfile("etc/passwd").read()


def test_config_diff_ids_match_layers(built) -> None:
    import hashlib
    _, data = built
    tar = tarfile.open(fileobj=io.BytesIO(data))
    for m in json.load(tar.extractfile("manifest.json")):
        config = json.load(tar.extractfile(m["Config"]))
        digests = ["sha256:" + hashlib.sha256(tar.extractfile(p).read()).hexdigest() for p in m["Layers"]]
        assert config["rootfs"]["diff_ids"] == digests
