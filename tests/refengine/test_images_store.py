"""The image store: lookups, tags, dockerd's delete rules with refcounted layers, RW layers,
views, and reload from the state dir. The `changes` semantics are cross-checked with dockerd."""

from __future__ import annotations

import io
import json
import os
import subprocess
import tarfile
from collections.abc import Iterator

import pytest

from conformance.probe_image import ProbeImages
from refengine.drivers.graph import GraphDriver, make_driver
from refengine.images import ContainerUse, Image, ImageStore
from refengine.images.errors import (
    DeleteConflict,
    ImageConflict,
    ImageNotFound,
    InvalidArgument,
    InvalidReference,
    ReferenceInUse,
)
from refengine.images.layers import chain_ids
from refengine.images.reference import parse_normalized_named

from .graph_testlib import docker_session, docker_url, dockerd_available, probe_images_or_skip, scratch

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the store's drivers need root")


@pytest.fixture(scope="module")
def probe() -> tuple[ProbeImages, bytes]:
    return probe_images_or_skip("store")


@pytest.fixture(params=["overlay2", "vfs"])
def env(request: pytest.FixtureRequest) -> Iterator[tuple[str, GraphDriver]]:
    with scratch("refengine-store-") as root:
        driver = make_driver(request.param, os.path.join(root, request.param))
        try:
            yield root, driver
        finally:
            driver.cleanup()


@pytest.fixture
def store(env: tuple[str, GraphDriver], probe: tuple[ProbeImages, bytes]) -> ImageStore:
    root, driver = env
    st = ImageStore(os.path.join(root, "image", driver.name), driver)
    list(st.load(io.BytesIO(probe[1]), quiet=True))
    return st


def test_lookups(store: ImageStore, probe: tuple[ProbeImages, bytes]) -> None:
    names = probe[0]
    image = store.get(names.config)
    assert store.get(image.id) is image
    assert store.get(image.id.removeprefix("sha256:")) is image
    assert store.get(image.id[7:19]) is image  # unique ID prefix
    assert store.get("sha256:" + image.id[7:19]) is image
    assert store.get(names.base.removesuffix(":latest")).id == store.get(names.base).id
    assert image.config["Entrypoint"] == ["/bin/echo", "entrypoint"]
    with pytest.raises(ImageNotFound, match="^No such image: nosuch:latest$") as info:
        store.get("nosuch")
    assert info.value.http_status == 404
    with pytest.raises(ImageNotFound, match="^No such image: sha256:" + "0" * 64):
        store.get("sha256:" + "0" * 64)
    with pytest.raises(InvalidReference, match="repository name must be lowercase"):
        store.get("NoSuch")
    with pytest.raises(ImageNotFound, match="^no such image: nosuch: No such image: nosuch:latest$"):
        store.inspect("nosuch")


def test_tag_untag_and_conflicts(store: ImageStore, probe: tuple[ProbeImages, bytes]) -> None:
    names = probe[0]
    base = store.get(names.base)
    events: list[tuple[str, str, str]] = []
    store.on_event = lambda action, image_id, name: events.append((action, image_id, name))
    assert store.tag(names.base, "localhost:5000/app", "v1") == "localhost:5000/app:v1"
    assert store.tag(names.base, "other") == "other:latest"
    assert store.get("localhost:5000/app:v1").id == base.id
    assert store.repo_tags(base.id) == sorted([names.base, "localhost:5000/app:v1", "other:latest"])
    assert store.inspect("other")["Metadata"]["LastTagTime"] != "0001-01-01T00:00:00Z"
    assert ("tag", base.id, "other:latest") in events
    with pytest.raises(InvalidReference, match="invalid tag format"):
        store.tag(names.base, "app", "bad:tag")
    with pytest.raises(InvalidArgument, match="refusing to create an ambiguous tag using digest algorithm as name"):
        store.tag(names.base, "sha256", "x")
    with pytest.raises(ImageConflict, match="^Conflict: Tag other:latest is already set to image sha256:"):
        store.add_reference(parse_normalized_named("other:latest"), store.get(names.config).id, force=False)
    # Untagging one of several tags only untags.
    assert store.delete("other") == [{"Untagged": "other:latest"}]
    assert store.get(names.base).id == base.id


def test_delete_rules_and_layer_refcounts(store: ImageStore, probe: tuple[ProbeImages, bytes]) -> None:
    names = probe[0]
    base, rich = store.get(names.base), store.get(names.config)
    shared = base.top_layer
    assert rich.diff_ids[0] == base.diff_ids[0]  # the busybox layer is shared
    store.tag(names.base, "second", "tag")
    with pytest.raises(DeleteConflict) as info:
        store.delete(base.id[7:19])
    assert str(info.value) == (f"conflict: unable to delete {base.id[7:19]} (must be forced) - "
                               "image is referenced in multiple repositories")
    assert info.value.http_status == 409
    records = store.delete(base.id, force=True)
    assert records == [{"Untagged": names.base}, {"Untagged": "second:tag"}, {"Deleted": base.id}]
    # The base layer survives: the rich image still uses it.
    assert store.layers.has(shared)
    records = store.delete(names.config)
    assert records[:2] == [{"Untagged": names.config}, {"Deleted": rich.id}]
    assert {r["Deleted"] for r in records[2:]} == set(store_chain(rich))
    assert store.layers.all() == [] and store.driver.ids() == []
    with pytest.raises(ImageNotFound):
        store.delete(names.config)


def store_chain(image: Image) -> list[str]:
    return chain_ids(image.diff_ids)


def test_containers_block_deletes(store: ImageStore, probe: tuple[ProbeImages, bytes]) -> None:
    names = probe[0]
    rich = store.get(names.config)
    users = {rich.id: [ContainerUse("c0ffee" * 10 + "abcd", running=False)]}
    store.containers_using = lambda image_id: users.get(image_id, [])
    with pytest.raises(ReferenceInUse) as info:
        store.delete(names.config)
    assert str(info.value) == (f'conflict: unable to remove repository reference "{names.config}" (must force) - '
                               f"container c0ffeec0ffee is using its referenced image {rich.id[7:19]}")
    with pytest.raises(DeleteConflict, match=r"\(must be forced\) - image is being used by stopped container "
                                             "c0ffeec0ffee"):
        store.delete(rich.id)
    users[rich.id] = [ContainerUse("beef" * 16, running=True)]
    with pytest.raises(DeleteConflict, match=r"\(cannot be forced\) - image is being used by running container "
                                             "beefbeefbeef"):
        store.delete(rich.id, force=True)
    # Forced untag of a running container's image: the tag goes, the image stays (dangling).
    assert store.delete(names.config, force=True) == [{"Untagged": names.config}]
    assert store.get(rich.id).id == rich.id
    # The plain boolean hook works too.
    store.containers_using = None
    store.in_use = lambda image_id: image_id == rich.id
    with pytest.raises(DeleteConflict, match="image is being used by a stopped container"):
        store.delete(rich.id)
    store.tag(rich.id, "only", "tag")
    with pytest.raises(ReferenceInUse, match='"only:tag" \\(must force\\) - a container is using its referenced'):
        store.delete("only:tag")


def test_rw_layer_keeps_layers_of_a_force_deleted_image(store: ImageStore, probe: tuple[ProbeImages, bytes]) -> None:
    names = probe[0]
    rich = store.get(names.config)
    rw = store.layers.create_rw("ctr1", rich.top_layer)
    root = store.layers.mount("ctr1")
    try:
        assert os.path.isfile(os.path.join(root, "srv/hello.txt")) and os.path.isfile(os.path.join(root, ".dockerenv"))
        assert os.path.islink(os.path.join(root, "etc/mtab"))
        with open(os.path.join(root, "srv/new.txt"), "w") as fh:
            fh.write("12345")
    finally:
        store.layers.unmount("ctr1")
    assert [c.to_api() for c in store.layers.changes("ctr1")] == [{"Path": "/srv", "Kind": 0},
                                                                  {"Path": "/srv/new.txt", "Kind": 1}]
    size_rw, size_root = store.layers.rw_size("ctr1")
    assert size_rw >= 5 and size_root == store.size(rich) + size_rw
    exported = io.BytesIO()
    store.layers.export("ctr1", exported)
    with tarfile.open(fileobj=io.BytesIO(exported.getvalue())) as tar:
        assert {"srv/new.txt", "bin/busybox", "etc/passwd"} <= set(tar.getnames())
    records = store.delete(rich.id, force=True)
    assert records == [{"Untagged": names.config}, {"Deleted": rich.id}]  # layers still used by ctr1
    assert store.layers.has(rich.top_layer)  # type: ignore[arg-type]
    store.layers.remove_rw("ctr1")
    removed = store.collect_layers()
    assert [layer.chain_id for layer in removed] == [rich.top_layer]
    assert rw.mount_id not in store.driver.ids()


def test_size_of_a_container_removed_meanwhile_is_zero(store: ImageStore, probe: tuple[ProbeImages, bytes]) -> None:
    """A list with size=1 or /system/df snapshots the containers, then sizes each; a remove in between
    took the layer away (CI: /system/df answered 404 under -n 2). dockerd's getSize answers 0 then."""
    from refengine.engine.containers.record import Container
    from refengine.engine.containers.runtime import LayerRuntime

    runtime = LayerRuntime(store)
    store.layers.create_rw("gone", store.get(probe[0].config).top_layer)
    c = Container(id="gone", name="/gone", created="", image_id=store.get(probe[0].config).id, path="true",
                  args=[], config={}, host_config={})
    assert runtime.size(c)[1] > 0
    store.layers.remove_rw("gone")
    assert runtime.size(c) == (0, 0)


def test_reload_from_the_state_dir(env: tuple[str, GraphDriver], store: ImageStore,
                                   probe: tuple[ProbeImages, bytes]) -> None:
    names = probe[0]
    store.tag(names.base, "kept", "v1")
    store.layers.create_rw("ctr", store.get(names.base).top_layer)
    before = (store.summaries(all=True), store.inspect("kept:v1"), store.history(names.config))
    # Crash leftovers: a partial layer registration, a half-written image, an orphan driver layer.
    os.makedirs(os.path.join(store.layers.root, "tmp", "partial"))
    os.makedirs(os.path.join(store.root, "imagedb", "ab" * 32))
    store.driver.create("orphan", None)
    root, driver = env
    reloaded = ImageStore(store.root, make_driver(driver.name, driver.root))
    assert (reloaded.summaries(all=True), reloaded.inspect("kept:v1"), reloaded.history(names.config)) == before
    assert reloaded.layers.get_rw("ctr").parent == reloaded.get(names.base).top_layer
    assert os.listdir(os.path.join(store.layers.root, "tmp")) == []
    assert not os.path.exists(os.path.join(store.root, "imagedb", "ab" * 32))
    assert not reloaded.driver.exists("orphan")
    with open(os.path.join(store.root, "repositories.json")) as fh:
        assert "kept" in json.load(fh)["Repositories"]


def test_views(store: ImageStore, probe: tuple[ProbeImages, bytes]) -> None:
    names = probe[0]
    base, rich = store.get(names.base), store.get(names.config)
    listing = store.summaries()
    assert [item["Id"] for item in listing] == sorted([base.id, rich.id], reverse=True)  # same Created
    item = next(i for i in listing if i["Id"] == rich.id)
    assert item["Size"] == item["VirtualSize"] == store.size(rich)
    assert (item["SharedSize"], item["Containers"], item["RepoDigests"], item["ParentId"]) == (-1, -1, [], "")
    assert item["Labels"]["org.conformance.variant"] == "rich"
    extra = {i["Id"]: i for i in store.summaries(shared_size=True, container_count=lambda image_id: 2)}
    assert extra[rich.id]["SharedSize"] == store.layers.get(base.top_layer).size  # type: ignore[arg-type]
    assert extra[rich.id]["Containers"] == 2
    assert [i["Id"] for i in store.summaries(filters={"label": ["org.conformance.variant=rich"]})] == [rich.id]
    assert [i["Id"] for i in store.summaries(filters={"reference": [names.base.split(":")[0] + ":lat*"]})] == [
        base.id]
    with pytest.raises(InvalidArgument, match=r"^Invalid filter 'dangling=\[maybe\]'$"):
        store.summaries(filters={"dangling": ["maybe"]})
    with pytest.raises(InvalidArgument, match="^Invalid filter 'color'$"):
        store.summaries(filters={"color": ["red"]})
    assert store.summaries(filters={"dangling": ["true"]}) == []
    store.delete(names.base, force=True)  # untag only: the layer stays for the rich image...
    store.delete(names.config)
    assert store.summaries() == []


def test_untagged_image_listing(store: ImageStore, probe: tuple[ProbeImages, bytes]) -> None:
    names = probe[0]
    rich = store.get(names.config)
    store.remove_reference(parse_normalized_named(names.config))
    dangling = store.summaries(filters={"dangling": ["true"]})
    assert [(i["Id"], i["RepoTags"], i["RepoDigests"]) for i in dangling] == [
        (rich.id, ["<none>:<none>"], ["<none>@<none>"])]
    assert rich.id not in {i["Id"] for i in store.summaries(filters={"dangling": ["false"]})}


def test_inspect_and_history_shapes(store: ImageStore, probe: tuple[ProbeImages, bytes]) -> None:
    names = probe[0]
    data = store.inspect(names.config)
    assert list(data) == ["Id", "RepoTags", "RepoDigests", "Parent", "Comment", "Created", "Container",
                          "ContainerConfig", "DockerVersion", "Author", "Config", "Architecture", "Os", "Size",
                          "VirtualSize", "GraphDriver", "RootFS", "Metadata"]
    assert data["Config"]["StopSignal"] == "SIGUSR1" and data["Config"]["ExposedPorts"] == {"8080/tcp": {}}
    assert "Cmd" not in data["ContainerConfig"] and "ExposedPorts" not in data["ContainerConfig"]
    assert data["Created"] == "2023-11-14T22:13:20Z" and data["RepoDigests"] == []
    assert data["GraphDriver"]["Name"] == store.driver.name
    assert data["RootFS"] == {"Type": "layers", "Layers": store.get(names.config).diff_ids}
    history = store.history(names.config)
    assert [(h["Id"], h["CreatedBy"], h["Tags"]) for h in history] == [
        (data["Id"], "conformance-harness: probe files", [names.config]),
        ("<missing>", "conformance-harness: busybox-static rootfs", [])]
    assert history[0]["Size"] == len("hello from the probe image\n")


# --- cross-check with dockerd ------------------------------------------------------------------

SCRIPT = ("touch /tmp/new && rm /etc/group && echo x >> /etc/passwd && mkdir -p /srv/d/e && "
          "rm -rf /home/probe && chmod 700 /srv && ln -s /bin/busybox /usr/bin/extra && rm /bin/ls")


@pytest.mark.skipif(not dockerd_available(), reason="dockerd is not running")
def test_changes_match_dockerd(store: ImageStore, probe: tuple[ProbeImages, bytes]) -> None:
    names = probe[0]
    docker = docker_session()
    # dockerd: load the probe images (already there or not), run the script, read its changes.
    docker.post(docker_url("/images/load?quiet=1"), data=probe[1]).raise_for_status()
    created = docker.post(docker_url("/containers/create"), json={
        "Image": names.config, "Entrypoint": ["/bin/sh", "-c", SCRIPT], "Cmd": None,
        "HostConfig": {"NetworkMode": "none"}})
    created.raise_for_status()
    cid = created.json()["Id"]
    try:
        docker.post(docker_url(f"/containers/{cid}/start")).raise_for_status()
        assert docker.post(docker_url(f"/containers/{cid}/wait")).json()["StatusCode"] == 0
        theirs = docker.get(docker_url(f"/containers/{cid}/changes")).json()
    finally:
        docker.delete(docker_url(f"/containers/{cid}?force=1&v=1"))  # v=1: the image declares a volume
        for name in names.all:
            docker.delete(docker_url(f"/images/{name}"))
    # Ours: the same script in a chroot of our container rootfs.
    store.layers.create_rw("cross", store.get(names.config).top_layer)
    root = store.layers.mount("cross")
    try:
        subprocess.run(["chroot", root, "/bin/sh", "-c", SCRIPT], check=True, timeout=30)
    finally:
        store.layers.unmount("cross")
    ours = [c.to_api() for c in store.layers.changes("cross")]
    key = lambda c: c["Path"]  # noqa: E731 - dockerd lists in no particular order
    assert sorted(ours, key=key) == sorted(theirs, key=key)
