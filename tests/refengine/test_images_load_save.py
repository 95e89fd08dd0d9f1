"""`docker load` of docker-save archives and OCI layouts, bad input, and save → load round trips,
including dockerd loading what this engine saves."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import tarfile
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from conformance.probe_image import ProbeImages
from refengine.drivers.graph import make_driver
from refengine.images import ImageStore
from refengine.images.errors import ImageNotFound, InvalidReference, LoadError
from refengine.images.load import host_arch, human_size, progress_item

from .graph_testlib import (
    d,
    docker_session,
    docker_stream,
    docker_url,
    dockerd_available,
    f,
    layer_tar,
    probe_images_or_skip,
    scratch,
)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the store's drivers need root")


@pytest.fixture(scope="module")
def probe() -> tuple[ProbeImages, bytes]:
    return probe_images_or_skip("ls")


@pytest.fixture
def store() -> Iterator[ImageStore]:
    with scratch("refengine-load-") as root:
        driver = make_driver("overlay2", os.path.join(root, "overlay2"))
        try:
            yield ImageStore(os.path.join(root, "image", "overlay2"), driver)
        finally:
            driver.cleanup()


def load(store: ImageStore, data: bytes, quiet: bool = True) -> list[dict[str, Any]]:
    return list(store.load(io.BytesIO(data), quiet=quiet))


def archive(files: dict[str, bytes | str], links: dict[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, content in files.items():
            data = content.encode() if isinstance(content, str) else content
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    return buf.getvalue()


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def config_for(layers: list[bytes], **extra: Any) -> bytes:
    return json.dumps({"architecture": host_arch(), "os": "linux", "created": "2024-01-02T03:04:05.5Z",
                       "config": {"Cmd": ["sh"], **extra},
                       "rootfs": {"type": "layers", "diff_ids": [sha(x) for x in layers]},
                       "history": [{"created": "2024-01-02T03:04:05Z", "created_by": f"layer {i}"}
                                   for i in range(len(layers))]}).encode()


def save_archive(layers: list[bytes], tags: list[str], config: bytes | None = None) -> bytes:
    config = config or config_for(layers)
    files: dict[str, bytes | str] = {f"{sha(config)[7:]}.json": config}
    names = []
    for i, layer in enumerate(layers):
        files[f"l{i}/layer.tar"] = layer
        names.append(f"l{i}/layer.tar")
    files["manifest.json"] = json.dumps([{"Config": f"{sha(config)[7:]}.json", "RepoTags": tags, "Layers": names}])
    return archive(files)


# --- docker-save format --------------------------------------------------------------------------


def test_load_probe_messages_and_idempotence(store: ImageStore, probe: tuple[ProbeImages, bytes]) -> None:
    names, data = probe
    messages = load(store, data, quiet=False)
    streams = [m["stream"] for m in messages if "stream" in m]
    assert streams == [f"Loaded image: {names.base}\n", f"Loaded image: {names.config}\n"]
    progress = [m for m in messages if m.get("status") == "Loading layer"]
    assert len(progress) == 2 and progress[0]["progress"].startswith("[" + "=" * 50 + ">]")
    assert load(store, data) == [{"stream": f"Loaded image: {names.base}\n"},
                                 {"stream": f"Loaded image: {names.config}\n"}]  # nothing new to load
    assert len(store.images()) == 2 and len(store.layers.all()) == 2


def test_load_untagged_and_retag_messages(store: ImageStore) -> None:
    one, two = layer_tar([f("one", "1")]), layer_tar([f("two", "2")])
    messages = load(store, save_archive([one], []))
    image_id = sha(config_for([one]))
    assert messages == [{"stream": f"Loaded image ID: {image_id}\n"}]
    load(store, save_archive([one], ["app:v1"]))
    messages = load(store, save_archive([one, two], ["app:v1"]))
    assert messages == [
        {"stream": f"The image app:v1 already exists, renaming the old one with ID {image_id} to empty string\n"},
        {"stream": "Loaded image: app:v1\n"}]
    assert store.get("app:v1").id == sha(config_for([one, two]))
    assert store.inspect("app:v1")["Metadata"]["LastTagTime"] == "0001-01-01T00:00:00Z"  # as dockerd: load sets none


def test_load_follows_save_symlinks_and_compressed_archives(store: ImageStore) -> None:
    layer = layer_tar([d("etc"), f("etc/os-release", "ID=test\n")])
    config = config_for([layer, layer])
    files: dict[str, bytes | str] = {f"{sha(config)[7:]}.json": config, "a/layer.tar": layer,
                                     "manifest.json": json.dumps([{"Config": f"{sha(config)[7:]}.json",
                                                                   "RepoTags": ["dup:1"],
                                                                   "Layers": ["a/layer.tar", "b/layer.tar"]}])}
    data = archive(files, links={"b/layer.tar": "../a/layer.tar"})
    assert load(store, gzip.compress(data)) == [{"stream": "Loaded image: dup:1\n"}]
    assert len(store.layers.all()) == 2  # the same diff twice is two chain IDs


@pytest.mark.parametrize("data, message", [
    (b"garbage" * 100, "Error processing tar file"),
    (b"", "open repositories: no such file or directory"),
    (archive({"foo": "x"}), "open repositories: no such file or directory"),
    (archive({"repositories": "{}"}), "legacy (pre-1.10) docker save format"),
    (archive({"manifest.json": json.dumps([{"Config": "nope.json", "RepoTags": ["x:y"], "Layers": []}])}),
     "open nope.json: no such file or directory"),
    (archive({"manifest.json": "notjson"}), "invalid JSON in manifest.json"),
    (archive({"manifest.json": json.dumps([{"Config": "../../etc/passwd", "Layers": []}])}),
     "no such file or directory"),
])
def test_bad_archives(store: ImageStore, data: bytes, message: str) -> None:
    with pytest.raises(LoadError, match=re.escape(message)) as info:
        load(store, data)
    assert info.value.http_status == 400


def test_bad_layers_and_configs(store: ImageStore) -> None:
    good = layer_tar([f("ok", "1")])
    with pytest.raises(LoadError, match="^invalid manifest, layers length mismatch: expected 2, got 1$"):
        cfg = config_for([good])
        load(store, archive({"c.json": cfg, "l/layer.tar": good, "manifest.json": json.dumps(
            [{"Config": "c.json", "RepoTags": [], "Layers": ["l/layer.tar", "l/layer.tar"]}])}))
    other = layer_tar([f("other", "2")])
    with pytest.raises(LoadError, match=f"^invalid diffID for layer 0: expected '{sha(good)}', got '{sha(other)}'$"):
        load(store, save_archive([other], ["x:y"], config=config_for([good])))
    evil = layer_tar([f("../../escape", "x")])
    with pytest.raises(LoadError, match="refusing layer entry '../../escape'"):
        load(store, save_archive([evil], ["evil:1"]))
    with pytest.raises(LoadError, match="invalid reference format: repository name must be lowercase"):
        load(store, save_archive([good], ["Bad:tag"]))
    with pytest.raises(LoadError, match="invalid tag 'notag@sha256"):
        load(store, save_archive([good], ["notag@sha256:" + "a" * 64]))
    with pytest.raises(LoadError, match="cannot load windows image on linux"):
        load(store, save_archive([good], [], config=json.dumps({
            "os": "windows", "rootfs": {"type": "layers", "diff_ids": [sha(good)]}}).encode()))
    # Nothing half-loaded stays behind.
    assert store.images() == [] and store.layers.all() == [] and store.driver.ids() == []


# --- OCI image layout ----------------------------------------------------------------------------


def oci_layout(annotations: list[dict[str, str]], platforms: bool = False) -> tuple[bytes, list[str]]:
    blobs: dict[str, bytes] = {}

    def blob(data: bytes) -> dict[str, Any]:
        blobs[f"blobs/sha256/{sha(data)[7:]}"] = data
        return {"digest": sha(data), "size": len(data)}

    index_manifests, ids = [], []
    for n, annotation in enumerate(annotations):
        plain = layer_tar([d("srv"), f(f"srv/file{n}", f"content {n}")])
        second = layer_tar([f("etc/motd", f"motd {n}")])
        config = config_for([plain, second], Labels={"n": str(n)})
        ids.append(sha(config))
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **blob(config)},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", **blob(plain)},
                       {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **blob(gzip.compress(second))}],
        }).encode()
        descriptor = {"mediaType": "application/vnd.oci.image.manifest.v1+json", **blob(manifest)}
        if platforms:
            # An index: the other platform's manifest is not even in the layout (never read).
            index = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                                "manifests": [
                                    {"mediaType": "application/vnd.oci.image.manifest.v1+json",
                                     "digest": "sha256:" + "e" * 64, "size": 1,
                                     "platform": {"os": "linux", "architecture": "s390x"}},
                                    {**descriptor, "platform": {"os": "linux", "architecture": host_arch()}}]})
            descriptor = {"mediaType": "application/vnd.oci.image.index.v1+json", **blob(index.encode())}
        index_manifests.append({**descriptor, "annotations": annotation})
    files: dict[str, bytes | str] = {"oci-layout": '{"imageLayoutVersion":"1.0.0"}',
                                     "index.json": json.dumps({"schemaVersion": 2, "manifests": index_manifests}),
                                     **blobs}
    return archive(files), ids


def test_load_oci_layout(store: ImageStore) -> None:
    data, ids = oci_layout([{"io.containerd.image.name": "docker.io/library/ocitest:1.0",
                             "org.opencontainers.image.ref.name": "1.0"},
                            {"org.opencontainers.image.ref.name": "localhost:5000/team/app:v2"}], platforms=True)
    assert load(store, data) == [{"stream": "Loaded image: ocitest:1.0\n"},
                                 {"stream": "Loaded image: localhost:5000/team/app:v2\n"}]
    assert store.get("ocitest:1.0").id == ids[0]
    image = store.get("localhost:5000/team/app:v2")
    root = store.driver.get(store.layers.get(image.top_layer).cache_id)  # type: ignore[arg-type]
    try:
        with open(os.path.join(root, "etc/motd")) as fh:
            assert fh.read() == "motd 1"  # the gzip layer
        assert os.path.exists(os.path.join(root, "srv/file1"))
    finally:
        store.driver.put(store.layers.get(image.top_layer).cache_id)  # type: ignore[arg-type]


def test_load_oci_layout_with_a_bare_tag_is_untagged(store: ImageStore) -> None:
    data, ids = oci_layout([{"org.opencontainers.image.ref.name": "latest"}])
    assert load(store, data) == [{"stream": f"Loaded image ID: {ids[0]}\n"}]
    assert store.repo_tags(ids[0]) == []


def test_bad_oci_layouts(store: ImageStore) -> None:
    data, _ = oci_layout([{}])
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]
    blob = next(n for n in members if n.startswith("blobs/") and len(members[n]) > 1000)
    corrupt = dict(members, **{blob: members[blob][:-1] + b"!"})
    with pytest.raises(LoadError, match="does not match its digest"):
        load(store, archive(corrupt))
    no_layout = {k: v for k, v in members.items() if k != "oci-layout"}
    with pytest.raises(LoadError, match="open oci-layout: no such file or directory"):
        load(store, archive(no_layout))


# --- save ----------------------------------------------------------------------------------------


def test_save_load_round_trip(store: ImageStore, probe: tuple[ProbeImages, bytes]) -> None:
    names, data = probe
    load(store, data)
    store.tag(names.config, "extra", "t")
    out = io.BytesIO()
    store.save([names.base, names.config, "extra"], out)
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
        repositories = json.load(tar.extractfile("repositories"))  # type: ignore[arg-type]
        links = [m for m in tar.getmembers() if m.issym()]
    assert sorted(tag for item in manifest for tag in item["RepoTags"]) == sorted(
        [names.base, names.config, "extra:t"])
    assert set(repositories) == {names.base.split(":")[0], "extra"}
    assert len(links) == 1  # the shared busybox layer is written once, then linked
    with scratch("refengine-load2-") as root:
        driver = make_driver("vfs", os.path.join(root, "vfs"))
        other = ImageStore(os.path.join(root, "image"), driver)
        messages = load(other, out.getvalue())
        assert {m["stream"] for m in messages} == {f"Loaded image: {n}\n" for n in (names.base, names.config,
                                                                                    "extra:t")}
        for name in (names.base, names.config, "extra:t"):
            assert other.get(name).id == store.get(name).id
            assert other.inspect(name)["Size"] == store.inspect(name)["Size"]
        assert [layer.diff_id for layer in other.layers.all()] == [layer.diff_id for layer in store.layers.all()]


def test_save_name_errors(store: ImageStore, probe: tuple[ProbeImages, bytes]) -> None:
    load(store, probe[1])
    with pytest.raises(ImageNotFound, match="No such image: nosuch:tag"):
        store.save(["nosuch:tag"], io.BytesIO())
    with pytest.raises(ImageNotFound, match="No such image: nosuch"):
        store.save(["nosuch"], io.BytesIO())
    with pytest.raises(InvalidReference):
        store.save(["UPPER"], io.BytesIO())
    out = io.BytesIO()
    store.save([store.get(probe[0].base).id], out)  # by ID: untagged
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tar:
        assert json.load(tar.extractfile("manifest.json"))[0]["RepoTags"] is None  # type: ignore[arg-type]
        assert "repositories" not in tar.getnames()


def test_progress_formatting() -> None:
    assert human_size(1985685) == "1.986MB" and human_size(999) == "999B" and human_size(10240) == "10.24kB"
    item = progress_item("Loading layer", "abc", 512, 1024)
    assert item["progress"] == "[" + "=" * 25 + ">" + " " * 25 + "]     512B/1.024kB"


# --- dockerd -------------------------------------------------------------------------------------

needs_dockerd = pytest.mark.skipif(not dockerd_available(), reason="dockerd is not running")


@needs_dockerd
def test_dockerd_loads_what_we_save(store: ImageStore, probe: tuple[ProbeImages, bytes]) -> None:
    names, data = probe
    load(store, data)
    tag = f"refengine-save-{uuid.uuid4().hex[:10]}:t"
    store.tag(names.config, tag.split(":")[0], "t")
    out = io.BytesIO()
    store.save([tag], out)
    docker = docker_session()
    response = docker.post(docker_url("/images/load"), data=out.getvalue(),
                           headers={"Content-Type": "application/x-tar"})
    try:
        assert response.status_code == 200
        assert {"stream": f"Loaded image: {tag}\n"} in docker_stream(response), response.text
        theirs = docker.get(docker_url(f"/images/{tag}/json")).json()
        ours = store.inspect(tag)
        for key in ("Id", "Size", "RootFS", "Created", "Architecture", "Os"):
            assert theirs[key] == ours[key], key
        # dockerd shows Go's nil fields as null; refengine leaves them out (the schema has no x-nullable there)
        assert {k: v for k, v in theirs["Config"].items() if v is not None} == ours["Config"]
        assert docker.get(docker_url(f"/images/{tag}/history")).json()[0]["Size"] == store.history(tag)[0]["Size"]
    finally:
        docker.delete(docker_url(f"/images/{tag}"))
    assert docker.get(docker_url(f"/images/{tag}/json")).status_code == 404


@needs_dockerd
def test_load_errors_read_like_dockerd(store: ImageStore) -> None:
    """The same broken archives, fed to both: the messages carry dockerd's text."""
    good, other = layer_tar([f("ok", "1")]), layer_tar([f("other", "2")])
    cases = [
        archive({"c.json": config_for([good]), "l/layer.tar": good, "manifest.json": json.dumps(
            [{"Config": "c.json", "RepoTags": [], "Layers": ["l/layer.tar", "l/layer.tar"]}])}),
        save_archive([other], [f"refengine-bad-{uuid.uuid4().hex[:8]}:x"], config=config_for([good])),
    ]
    docker = docker_session()
    for data in cases:
        theirs = docker_stream(docker.post(docker_url("/images/load?quiet=1"), data=data))[-1]["error"]
        with pytest.raises(LoadError) as info:
            load(store, data)
        # dockerd quotes with Go's %q (double quotes); the text is otherwise the same.
        assert str(info.value).replace("'", '"') == theirs
