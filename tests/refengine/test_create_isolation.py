"""Isolation settings at create and start, without running a container: dockerd's refusals and
warnings (measured on dockerd 20.10 here), inspect's Mounts, /dev/shm for the IPC modes, and the
native driver's translation of UTS, IPC and bind propagation modes."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from refengine.drivers.exec import native
from refengine.engine.containers import config as cfgmod
from refengine.engine.containers import ipc, mountpoints
from refengine.engine.containers.record import Container
from refengine.engine.errors import NotFound
from refengine.libcontainer import cgroups
from refengine.libcontainer.config import HostSetupError
from refengine.libcontainer.propagation import mount_of

from .test_container_jobs import run  # noqa: F401 - the fixture


@pytest.mark.parametrize("host_config,message", [
    ({"CapAdd": ["CONF_NO_SUCH_CAP"]}, 'invalid CapAdd: unknown capability: "CAP_CONF_NO_SUCH_CAP"'),
    ({"CapDrop": ["foo"]}, 'invalid CapDrop: unknown capability: "CAP_FOO"'),
    ({"CgroupnsMode": "bogus"}, "invalid cgroup namespace mode: bogus"),
    ({"PidMode": "container:nonexist"}, "No such container: nonexist"),
    ({"IpcMode": "container:nonexist"}, "No such container: nonexist"),
    ({"CpusetCpus": "abc"}, "Invalid value abc for cpuset cpus: invalid format: abc"),
    ({"CpusetCpus": "1-0"}, "Invalid value 1-0 for cpuset cpus: invalid format: 1-0"),
    ({"CpusetCpus": "0,4095"}, "Requested CPUs are not available - requested 0,4095, available: "),
    ({"CpusetMems": "4095"}, "Requested memory nodes are not available - requested 4095, available: "),
    ({"Init": "yes"}, "invalid type for HostConfig.Init: str"),
])
def test_create_refuses(run, host_config: dict[str, Any], message: str) -> None:  # noqa: F811
    with pytest.raises(Exception) as exc:
        run("container_create", body={"Image": "base", "HostConfig": host_config})
    assert exc.value.http_status == 400
    assert message in str(exc.value)


def test_hostname_with_host_uts_refused(run) -> None:  # noqa: F811
    with pytest.raises(Exception) as exc:
        run("container_create", body={"Image": "base", "Hostname": "x", "HostConfig": {"UTSMode": "host"}})
    assert exc.value.http_status == 400 and "conflicting options: hostname and the UTS mode" in str(exc.value)


@pytest.mark.parametrize("caps", [["chown", "CAP_NET_ADMIN"], ["ALL"], ["all", "cap_sys_admin"]])
def test_known_capabilities_accepted(run, caps: list[str]) -> None:  # noqa: F811
    cid = run("container_create", body={"Image": "base", "HostConfig": {"CapAdd": caps, "CapDrop": caps}})["Id"]
    assert run("container_inspect", cid)["HostConfig"]["CapAdd"] == caps


def test_hostname_defaults(run) -> None:  # noqa: F811
    cid = run("container_create", body={"Image": "base"})["Id"]
    assert run("container_inspect", cid)["Config"]["Hostname"] == cid[:12]
    cid = run("container_create", body={"Image": "base", "HostConfig": {"NetworkMode": "host"}})["Id"]
    assert run("container_inspect", cid)["Config"]["Hostname"] == socket.gethostname()


@pytest.mark.parametrize("weight_supported", [True, False])
def test_create_warnings(run, monkeypatch, weight_supported: bool) -> None:  # noqa: F811
    monkeypatch.setattr(cgroups, "blkio_support", lambda: cgroups.BlkioSupport(weight_supported, False, True))
    ans = run("container_create", body={"Image": "base", "HostConfig": {"KernelMemory": 16 << 20,
                                                                        "BlkioWeight": 300}})
    hc = run("container_inspect", ans["Id"])["HostConfig"]
    assert any("kernel memory" in w for w in ans["Warnings"])
    assert any("Weight discarded" in w for w in ans["Warnings"]) is not weight_supported
    assert hc["BlkioWeight"] == (300 if weight_supported else 0)  # discarded, as dockerd stores it
    assert hc["KernelMemory"] == 16 << 20


def test_mount_records() -> None:
    made: list[str] = []

    def anonymous() -> str:
        made.append(f"anon{len(made)}")
        return made[-1]
    hc = {"Binds": ["vol:/v:ro", "/src:/b", "/src:/s:rshared,z"],
          "Mounts": [{"Type": "bind", "Source": "/src", "Target": "/mb", "ReadOnly": True},
                     {"Type": "volume", "Target": "/anon"}, {"Type": "tmpfs", "Target": "/t"}]}
    rec = {m["Destination"]: m for m in mountpoints.records(hc, lambda n: f"/vols/{n}", anonymous)}
    assert rec["/v"] == {"Type": "volume", "Name": "vol", "Source": "/vols/vol", "Destination": "/v",
                         "Driver": "local", "Mode": "ro", "RW": False, "Propagation": ""}
    assert (rec["/b"]["Type"], rec["/b"]["Propagation"], rec["/b"]["Mode"], rec["/b"]["RW"]) == \
        ("bind", "rprivate", "", True)
    assert (rec["/s"]["Propagation"], rec["/s"]["Mode"]) == ("rshared", "rshared,z")
    assert (rec["/mb"]["Propagation"], rec["/mb"]["RW"]) == ("rprivate", False)
    assert (rec["/anon"]["Name"], rec["/anon"]["Mode"]) == ("anon0", "z")
    assert rec["/t"]["Type"] == "tmpfs"
    # only the anonymous volume is bound from the records; the others come from the HostConfig at start
    assert mountpoints.anonymous(list(rec.values()), hc) == [("/anon", "/vols/anon0")]


def _container(cid: str, ipc_mode: str, running: bool = True) -> Container:
    c = Container(id=cid, name="/" + cid, created="", image_id="", path="true", args=[], config={},
                  host_config={"IpcMode": ipc_mode})
    c.state.running = running
    return c


def test_shm_paths(tmp_path) -> None:
    shareable, private, stopped = _container("a", "shareable"), _container("b", "private"), \
        _container("c", "shareable", running=False)
    joiner = _container("d", "container:a")
    known = {c.id: c for c in (shareable, private, stopped, joiner)}

    def lookup(ref: str) -> Container:
        if ref not in known:
            raise NotFound(f"No such container: {ref}")
        return known[ref]

    def cdir(cid: str) -> str:
        return str(tmp_path / cid)

    (tmp_path / "a" / "mounts" / "shm").mkdir(parents=True)  # stands in for the mounted tmpfs
    assert ipc.shm_path(private, cdir, lookup) is None
    assert ipc.shm_path(shareable, cdir, lookup) == str(tmp_path / "a" / "mounts" / "shm")
    assert ipc.shm_path(_container("h", "host"), cdir, lookup) == "/dev/shm"
    assert ipc.shm_path(joiner, cdir, lookup) == str(tmp_path / "a" / "mounts" / "shm")
    # a joiner of a joiner gets the first donor's /dev/shm (dockerd copies the donor's ShmPath)
    assert ipc.shm_path(_container("e", "container:d"), cdir, lookup) == str(tmp_path / "a" / "mounts" / "shm")
    with pytest.raises(HostSetupError, match="non-shareable IPC"):
        ipc.shm_path(_container("f", "container:b"), cdir, lookup)
    with pytest.raises(HostSetupError, match="is not running"):
        ipc.shm_path(_container("g", "container:c"), cdir, lookup)


def _translate(hc: dict[str, Any], config: dict[str, Any] | None = None, **spec: Any):
    run_spec = native.RunSpec(rootfs="/nonexistent", volume_dir=lambda n: f"/vols/{n}",
                              peer_pid=lambda ref, kind: 4242, **spec)
    return native.container_config("c" * 64, {"Cmd": ["true"], "Hostname": "abc", **(config or {})},
                                    {"ShmSize": 1 << 20, **hc}, run_spec)


def test_uts_modes() -> None:
    assert _translate({}).hostname == "abc" and _translate({}).creates("uts")
    host = _translate({"UTSMode": "host"})
    assert host.hostname is None and host.namespace("uts") is None
    assert _translate({"UTSMode": "container:x"}).creates("uts")  # no such UTS mode in dockerd 20.10: private
    with pytest.raises(HostSetupError, match="kernel.domainname"):
        _translate({"UTSMode": "host"}, {"Domainname": "example.com"})


def test_ipc_modes_and_shm() -> None:
    def shm(cfg) -> list:
        return [(m.type, m.source) for m in cfg.mounts if m.destination == "/dev/shm"]
    assert shm(_translate({"IpcMode": "private"})) == [("tmpfs", "shm")]
    assert shm(_translate({"IpcMode": "none"})) == []
    joined = _translate({"IpcMode": "container:x"}, shm_path="/donor/shm")
    assert shm(joined) == [("bind", "/donor/shm")] and joined.namespace("ipc").path == "/proc/4242/ns/ipc"
    with pytest.raises(HostSetupError, match="Invalid IPC mode: bogus"):
        _translate({"IpcMode": "bogus"})


def test_bind_propagation(tmp_path) -> None:
    cfg = _translate({"Binds": [f"{tmp_path}:/b", f"{tmp_path}:/p:private"],
                      "Mounts": [{"Type": "bind", "Source": str(tmp_path), "Target": "/m"}]})
    opts = {m.destination: m.options for m in cfg.mounts}
    assert "rprivate" in opts["/b"] and "rprivate" in opts["/m"] and "private" in opts["/p"]
    assert cfg.rootfs_propagation == "rslave"
    if propagation_of(str(tmp_path)) == "private":  # the usual case here: / is a private mount
        with pytest.raises(HostSetupError, match="not a shared mount"):
            _translate({"Binds": [f"{tmp_path}:/s:rshared"]})
        with pytest.raises(HostSetupError, match="not a shared or slave mount"):
            _translate({"Mounts": [{"Type": "bind", "Source": str(tmp_path), "Target": "/s",
                                    "BindOptions": {"Propagation": "rslave"}}]})


def propagation_of(path: str) -> str:
    m = mount_of(path)
    return "shared" if m.shared else "slave" if m.slave else "private"


def test_tmpfs_defaults() -> None:
    cfg = _translate({"Tmpfs": {"/t": "size=1m,exec"},
                      "Mounts": [{"Type": "tmpfs", "Target": "/m", "TmpfsOptions": {"Mode": 0o700}}]})
    opts = {m.destination: m.options for m in cfg.mounts}
    assert opts["/t"][:3] == ["nosuid", "nodev", "noexec"] and opts["/t"][-1] == "exec"  # the later wins
    assert "noexec" in opts["/m"] and "mode=700" in opts["/m"]


def test_discard_unsupported_keeps_supported(monkeypatch) -> None:
    monkeypatch.setattr(cgroups, "blkio_support", lambda: cgroups.BlkioSupport(False, False, True))
    hc = {"BlkioWeightDevice": [{"Path": "/dev/vda", "Weight": 200}], "OomKillDisable": True}
    warnings = cfgmod.discard_unsupported(hc)
    assert hc["BlkioWeightDevice"] == [] and len(warnings) == 2


@pytest.mark.parametrize("version,given,expected", [
    (2, None, "private"), (2, "", "private"), (2, "host", "host"),
    (1, None, "host"), (1, "", "host"), (1, "private", "private"),
])
def test_cgroupns_default_follows_cgroup_version(run, monkeypatch, version: int, given: str | None,  # noqa: F811
                                                 expected: str) -> None:
    """dockerd's default CgroupnsMode is private on cgroup v2 and host on v1; one given is kept."""
    monkeypatch.setattr(cgroups, "detect", lambda *a, **k: type("Driver", (), {"version": version})())
    hc = {} if given is None else {"CgroupnsMode": given}
    cid = run("container_create", body={"Image": "base", "HostConfig": hc})["Id"]
    assert run("container_inspect", cid)["HostConfig"]["CgroupnsMode"] == expected


@pytest.mark.parametrize("hc,default,wanted", [
    ({"Init": True}, False, True), ({"Init": False}, True, False), ({}, True, True), ({}, False, False),
    ({"Init": True, "PidMode": "host"}, False, False), ({"Init": True, "PidMode": "container:x"}, False, False),
])
def test_init_wanted(hc: dict[str, Any], default: bool, wanted: bool) -> None:
    assert native.wants_init(hc, default) is wanted


def test_init_in_front_of_the_command(tmp_path) -> None:
    fake = tmp_path / "tini"
    fake.write_bytes(b"")
    (tmp_path / "docker-init").symlink_to(fake)
    cfg = _translate({"Init": True}, init=native.InitOptions(path=str(tmp_path / "docker-init")))
    assert cfg.args == ["/sbin/docker-init", "--", "true"]
    bind = [m for m in cfg.mounts if m.destination == "/sbin/docker-init"]
    assert [(m.source, m.options) for m in bind] == [(str(fake), ["rbind", "ro"])]  # the symlink resolved
    assert _translate({}).args == ["true"]


def test_init_binary_missing(monkeypatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(HostSetupError, match='exec: "docker-init": executable file not found in \\$PATH'):
        _translate({"Init": True})
    with pytest.raises(HostSetupError, match="no such file"):
        _translate({"Init": True}, init=native.InitOptions(path="/nonexistent/tini"))
