"""`docker import` and the image half of `docker commit`, with their Dockerfile `changes`."""

from __future__ import annotations

import gzip
import io
import json
import os
from collections.abc import Iterator

import pytest

from conformance.probe_image import ProbeImages
from refengine.drivers.graph import make_driver
from refengine.drivers.graph.changes import EMPTY_TAR_DIGEST
from refengine.images import ImageStore
from refengine.images.errors import DeleteConflict, InvalidArgument
from refengine.images.importer import apply_changes

from .graph_testlib import d, f, layer_tar, probe_images_or_skip, scratch

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the store's drivers need root")


@pytest.fixture
def store() -> Iterator[ImageStore]:
    with scratch("refengine-import-") as root:
        driver = make_driver("overlay2", os.path.join(root, "overlay2"))
        try:
            yield ImageStore(os.path.join(root, "image", "overlay2"), driver)
        finally:
            driver.cleanup()


def test_import_a_rootfs_tar(store: ImageStore) -> None:
    rootfs = layer_tar([d("bin"), f("bin/tool", "#!/bin/sh\n", mode=0o755), d("etc"), f("etc/hostname", "x\n")])
    events: list[str] = []
    store.on_event = lambda action, image_id, name: events.append(action)
    items = list(store.import_image(io.BytesIO(gzip.compress(rootfs)), repo="imported", tag="v1",
                                    changes=['CMD ["/bin/tool", "arg"]', "ENV A=b C='d e'", "EXPOSE 80 53/udp",
                                             "LABEL k=v", "WORKDIR /srv", "WORKDIR sub", "USER 1000"],
                                    docker_version="0.1.0"))
    image = store.get("imported:v1")
    assert items == [{"status": image.id}]
    assert events == ["tag", "import"]
    doc = image.document
    assert list(doc) == sorted(doc)  # dockerd marshals image configs with sorted keys
    assert doc["comment"] == "Imported from -" and doc["history"][0]["comment"] == "Imported from -"
    assert doc["rootfs"]["diff_ids"] == [store.layers.all()[0].diff_id]
    assert doc["docker_version"] == "0.1.0"
    config = store.inspect("imported:v1")["Config"]
    assert config["Cmd"] == ["/bin/tool", "arg"] and config["Env"] == ["A=b", "C=d e"]
    assert config["ExposedPorts"] == {"80/tcp": {}, "53/udp": {}} and config["Labels"] == {"k": "v"}
    assert (config["WorkingDir"], config["User"]) == ("/srv/sub", "1000")
    assert store.summaries()[0]["Size"] == len("#!/bin/sh\n") + len("x\n")


def test_import_errors(store: ImageStore) -> None:
    with pytest.raises(InvalidArgument, match="^run is not a valid change command$"):
        list(store.import_image(io.BytesIO(layer_tar([])), changes=["RUN echo"]))
    with pytest.raises(InvalidArgument, match="cannot import digest reference"):
        list(store.import_image(io.BytesIO(layer_tar([])), repo="x@sha256:" + "a" * 64))
    with pytest.raises(InvalidArgument, match="refusing layer entry"):
        list(store.import_image(io.BytesIO(layer_tar([f("../x", "1")]))))
    assert store.images() == [] and store.layers.all() == []


@pytest.mark.parametrize("changes, expected", [
    (["ENTRYPOINT /bin/app"], {"Entrypoint": ["/bin/sh", "-c", "/bin/app"], "Cmd": None}),
    (["CMD x", "ENTRYPOINT [\"/e\"]"], {"Entrypoint": ["/e"], "Cmd": ["/bin/sh", "-c", "x"]}),
    (["ENV PATH /usr/bin"], {"Env": ["A=1", "PATH=/usr/bin"]}),
    (["ENV A=2"], {"Env": ["A=2"]}),
    (["VOLUME /data /logs"], {"Volumes": {"/data": {}, "/logs": {}}}),
    (['VOLUME ["/v"]'], {"Volumes": {"/v": {}}}),
    (["ONBUILD RUN make"], {"OnBuild": ["RUN make"]}),
    (["HEALTHCHECK --interval=1m30s --retries=3 CMD curl -f http://x/"],
     {"Healthcheck": {"Test": ["CMD-SHELL", "curl -f http://x/"], "Interval": 90 * 10**9, "Retries": 3}}),
    (["HEALTHCHECK NONE"], {"Healthcheck": {"Test": ["NONE"]}}),
])
def test_apply_changes(changes: list[str], expected: dict) -> None:
    result = apply_changes({"Env": ["A=1"], "Cmd": ["old"]}, changes)
    for key, value in expected.items():
        assert result.get(key) == value, key


def test_apply_changes_refuses_what_dockerd_refuses() -> None:
    for change, message in [("STOPSIGNAL SIGTERM", "stopsignal is not a valid change command"),
                            ("ONBUILD ONBUILD RUN x", "ONBUILD isn't allowed as an ONBUILD trigger"),
                            ("HEALTHCHECK --interval=abc CMD x", "invalid duration"),
                            ("EXPOSE http", "Invalid containerPort: http")]:
        with pytest.raises(InvalidArgument, match=message):
            apply_changes({}, [change])


@pytest.fixture(scope="module")
def probe() -> tuple[ProbeImages, bytes]:
    return probe_images_or_skip("imp")


def test_commit_a_container_layer(store: ImageStore, probe: tuple[ProbeImages, bytes]) -> None:
    names, data = probe
    list(store.load(io.BytesIO(data)))
    parent = store.get(names.config)
    store.layers.create_rw("c1", parent.top_layer)
    root = store.layers.mount("c1")
    try:
        with open(os.path.join(root, "srv/committed.txt"), "w") as fh:
            fh.write("kept")
        os.unlink(os.path.join(root, "srv/hello.txt"))
    finally:
        store.layers.unmount("c1")
    container_cfg = {"Cmd": ["sh", "-c", "edit"], "Env": ["A=1"]}
    image, ref = store.commit("c1", parent_image_id=parent.id, config=apply_changes(container_cfg, ["CMD [\"sh\"]"]),
                              container_cfg=container_cfg, author="me", comment="snapshot", repo="snap", tag="1")
    assert ref == "snap:1" and store.get("snap:1").id == image.id
    assert image.parent == parent.id and store.inspect("snap:1")["Parent"] == parent.id
    assert image.diff_ids[:2] == parent.diff_ids and len(image.diff_ids) == 3
    history = store.history("snap:1")
    assert history[0]["CreatedBy"] == "sh -c edit" and history[0]["Comment"] == "snapshot"
    assert history[1]["Id"] == parent.id  # the parent image names the next entry, as dockerd shows
    assert store.inspect("snap:1")["Author"] == "me" and store.inspect("snap:1")["Container"] == "c1"
    cache = store.layers.get(image.top_layer).cache_id  # type: ignore[arg-type]
    view = store.driver.get(cache)
    try:
        assert sorted(os.listdir(os.path.join(view, "srv"))) == ["committed.txt"]
    finally:
        store.driver.put(cache)
    # The parent can't go while a child image exists.
    with pytest.raises(DeleteConflict, match="image has dependent child images"):
        store.delete(parent.id, force=True)


def test_commit_without_changes_is_an_empty_layer(store: ImageStore, probe: tuple[ProbeImages, bytes]) -> None:
    list(store.load(io.BytesIO(probe[1])))
    parent = store.get(probe[0].base)
    store.layers.create_rw("c2", parent.top_layer)
    before = {layer.chain_id for layer in store.layers.all()}
    image, ref = store.commit("c2", parent_image_id=parent.id, config=parent.config, container_cfg={})
    assert ref == "" and image.diff_ids == parent.diff_ids
    assert image.document["history"][-1]["empty_layer"] is True
    assert {layer.chain_id for layer in store.layers.all()} == before
    assert EMPTY_TAR_DIGEST not in json.dumps(image.document)
