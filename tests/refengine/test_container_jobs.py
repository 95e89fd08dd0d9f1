"""Container jobs without a running process: create rules, merge with the image, lookups, list filters."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from refengine.engine import Engine, JobError
from refengine.engine.containers.jobs import Hooks, ResolvedImage, register
from refengine.engine.containers.record import Container
from refengine.engine.containers.store import ContainerStore
from refengine.engine.errors import NotFound

IMAGE_CONFIG = {"Env": ["PATH=/bin", "A=image"], "Entrypoint": ["/bin/echo", "ep"], "Cmd": ["dflt"],
                "Labels": {"from": "image", "both": "image"}, "WorkingDir": "/srv", "StopSignal": "SIGUSR1"}


class Images:
    def resolve(self, ref: str) -> ResolvedImage:
        if ref.startswith("missing"):
            raise NotFound(f"No such image: {ref}")
        return ResolvedImage("sha256:" + "ab" * 32, IMAGE_CONFIG if ref == "rich" else {"Cmd": ["sh"]}, ref)


class NoRuntime:
    async def kill_and_wait(self, c: Container) -> None:
        c.state.running, c.state.status = False, "exited"

    async def update_resources(self, c: Container) -> None:
        pass

    def size(self, c: Container) -> tuple[int, int]:
        return 0, 0

    def exec_ids(self, c: Container) -> list[str]:
        return []

    async def prepare(self, c: Container) -> None:
        pass

    async def cleanup(self, c: Container) -> None:
        pass


@pytest.fixture
def run(tmp_path):
    engine = Engine()
    store = ContainerStore(str(tmp_path))
    register(engine, store, Images(), NoRuntime(), Hooks(), "vfs")

    def call(job_name: str, /, *args: str, **env: Any) -> Any:
        try:
            return asyncio.run(engine.run(job_name, *args, **env))
        except JobError as exc:
            raise exc.cause from None
    call.store = store
    return call


def test_create_merges_image_config(run) -> None:
    cid = run("container_create", body={"Image": "rich", "Env": ["A=mine"], "Labels": {"both": "mine"}})["Id"]
    info = run("container_inspect", cid)
    assert info["Path"] == "/bin/echo" and info["Args"] == ["ep", "dflt"]
    assert info["Config"]["Env"] == ["PATH=/bin", "A=mine"]
    assert info["Config"]["Labels"] == {"from": "image", "both": "mine"}
    assert info["Config"]["Hostname"] == cid[:12] and info["Name"].startswith("/")
    assert info["HostConfig"]["NetworkMode"] == "default" and info["State"]["Status"] == "created"


def test_entrypoint_drops_image_cmd(run) -> None:
    info = run("container_inspect", run("container_create", body={"Image": "rich", "Entrypoint": ["/bin/true"]})["Id"])
    assert (info["Path"], info["Args"], info["Config"]["Cmd"]) == ("/bin/true", [], [])


@pytest.mark.parametrize("name,status", [("ok-name", None), ("-x", 400), ("a", 400), ("x/y", 400)])
def test_name_rules(run, name: str, status: int | None) -> None:
    if status is None:
        run("container_create", body={"Image": "base"}, name=name)
        assert run("container_inspect", name)["Name"] == "/" + name
    else:
        with pytest.raises(Exception) as exc:
            run("container_create", body={"Image": "base"}, name=name)
        assert exc.value.http_status == status


def test_conflict_and_lookup(run) -> None:
    cid = run("container_create", body={"Image": "base"}, name="taken")["Id"]
    with pytest.raises(Exception, match="already in use") as exc:
        run("container_create", body={"Image": "base"}, name="taken")
    assert exc.value.http_status == 409
    assert run("container_inspect", cid[:12])["Id"] == cid
    with pytest.raises(NotFound, match="No such container: nope"):
        run("container_inspect", "nope")
    with pytest.raises(NotFound, match="No such image: missing:1"):
        run("container_create", body={"Image": "missing:1"})


def test_list_filters(run) -> None:
    a = run("container_create", body={"Image": "base", "Labels": {"k": "1"}})["Id"]
    run("container_create", body={"Image": "base", "Labels": {"k": "2"}})
    assert run("container_list", all=False) == []
    got = run("container_list", all=True, filters=json.dumps({"label": ["k=1"]}))
    assert [c["Id"] for c in got] == [a] and got[0]["State"] == "created" and got[0]["Status"] == "Created"
    with pytest.raises(Exception, match="Invalid filter 'status=nope'"):
        run("container_list", all=True, filters=json.dumps({"status": ["nope"]}))


def test_store_survives_reload(run, tmp_path) -> None:
    cid = run("container_create", body={"Image": "base"}, name="kept")["Id"]
    again = ContainerStore(str(tmp_path))
    assert again.get("kept").id == cid


def test_remove_and_update(run) -> None:
    cid = run("container_create", body={"Image": "base"})["Id"]
    assert run("container_update", cid, body={"Memory": 64 * 1024 * 1024}) == {"Warnings": []}
    assert run("container_inspect", cid)["HostConfig"]["Memory"] == 64 * 1024 * 1024
    with pytest.raises(Exception, match="Minimum memory limit") as exc:
        run("container_update", cid, body={"Memory": 1})
    assert exc.value.http_status == 400
    run("container_remove", cid)
    with pytest.raises(NotFound):
        run("container_inspect", cid)


# dockerd 20.10's answers, measured on this host (the image is looked up only after these checks)
@pytest.mark.parametrize("host_config,message", [
    ({"Mounts": [{"Type": "bogus", "Target": "/x"}]}, 'invalid mount config for type "bogus": mount type unknown'),
    ({"Mounts": [{"Target": "/x"}]}, 'invalid mount config for type "": mount type unknown'),
    ({"Mounts": [{"Type": "bogus"}]}, 'invalid mount config for type "bogus": field Target must not be empty'),
    ({"Mounts": [{"Type": "bind", "Target": "/x"}]}, 'for type "bind": field Source must not be empty'),
    ({"Mounts": [{"Type": "bind", "Target": "/", "Source": "/tmp"}]}, "destination can't be '/'"),
    ({"Mounts": [{"Type": "bind", "Target": "x", "Source": "/tmp"}]}, "'x' mount path must be absolute"),
    ({"Mounts": [{"Type": "bind", "Target": "/x", "Source": "/no/such/dir-zz"}]},
     "bind source path does not exist: /no/such/dir-zz"),
    ({"Mounts": [{"Type": "tmpfs", "Target": "/x", "Source": "/tmp"}]}, "field Source must not be specified"),
    ({"Mounts": [{"Type": "volume", "Target": "/x", "ReadOnly": True}]}, "when using anonymous volumes"),
    ({"PortBindings": {"bad": [{"HostPort": "1"}]}}, 'invalid port specification: "bad"'),
    ({"PortBindings": {"80-90/tcp": [{"HostPort": "1"}]}}, 'invalid port specification: "80-90"'),
    ({"PortBindings": {"80/tcp": [{"HostPort": "abc"}]}}, 'invalid port specification: "abc"'),
    ({"PortBindings": {"80/tcp": [{"HostPort": "9-2"}]}}, 'invalid port specification: "9-2"'),
    ({"PortBindings": {"80/tcp": [{"HostPort": "70000"}]}}, 'invalid port specification: "70000"'),
])
def test_create_refuses_bad_mounts_and_ports(run, host_config: dict[str, Any], message: str) -> None:
    with pytest.raises(Exception) as exc:
        run("container_create", body={"Image": "missing:1", "HostConfig": host_config})
    assert exc.value.http_status == 400
    assert message in str(exc.value)


@pytest.mark.parametrize("host_config", [
    {"Mounts": [{"Type": "bind", "Target": "/x", "Source": "/tmp", "BindOptions": {"Propagation": "rslave"}}]},
    {"Mounts": [{"Type": "volume", "Target": "/x"}, {"Type": "tmpfs", "Target": "/y"}]},
    {"PortBindings": {"80/tcp": [{"HostPort": "8000-8010"}], "53/udp": [{}], "81": None}},
])
def test_create_accepts_good_mounts_and_ports(run, host_config: dict[str, Any]) -> None:
    cid = run("container_create", body={"Image": "base", "HostConfig": host_config})["Id"]
    assert run("container_inspect", cid)["HostConfig"]["Mounts" if "Mounts" in host_config else "PortBindings"]
