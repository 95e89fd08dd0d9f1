"""Pure functions: the init dict (faults applied), resources faults, rlimit clamping, the wire format."""

from __future__ import annotations

import os
import resource

import pytest

from refengine.libcontainer import ContainerConfig, Mount, NamespaceSpec, Rlimit, cgroups
from refengine.libcontainer import init as lcinit
from refengine.libcontainer.config import DOCKER_MASKED_PATHS, ConfigError
from refengine.libcontainer.container import build_init, clamp_rlimits, effective_resources

ALL = (1 << 41) - 1


def cfg(**kw) -> ContainerConfig:
    return ContainerConfig("/tmp/rootfs", ["true"], **kw)


def test_build_init_defaults() -> None:
    init, notes = build_init(cfg(), available_caps=ALL)
    assert init["unshare"] and init["mntns"] == "new" and not init["userns"] and not init["join"]
    assert init["masked_paths"] == list(DOCKER_MASKED_PATHS)
    assert init["seccomp"] and not init["nnp"] and init["dev"]
    assert [d["path"] for d in init["devices"]] == ["/dev/null", "/dev/zero", "/dev/full", "/dev/random",
                                                     "/dev/urandom", "/dev/tty"]
    assert notes == []


def test_build_init_privileged() -> None:
    init, _ = build_init(cfg(privileged=True), available_caps=ALL)
    assert init["caps"] == ALL and init["seccomp"] is None
    assert init["masked_paths"] == [] and init["readonly_paths"] == []
    assert len(init["devices"]) >= 6


def test_build_init_joins_in_order() -> None:
    ns = [NamespaceSpec("mnt", "/proc/1/ns/mnt"), NamespaceSpec("net", "/x/net"), NamespaceSpec("user", "/x/user"),
          NamespaceSpec("pid")]
    init, _ = build_init(cfg(namespaces=ns), available_caps=ALL)
    assert [k for k, _ in init["join"]] == ["user", "net", "mnt"]
    assert init["mntns"] == "join"


@pytest.mark.parametrize("fault,key,value", [
    ("no-masked-paths", "masked_paths", []), ("no-readonly-paths", "readonly_paths", []),
    ("no-seccomp", "seccomp", None), ("no-caps-drop", "caps", ALL), ("no-nnp", "nnp", False),
    ("no-user", "user", ""), ("no-rlimits", "rlimits", []), ("no-readonly-rootfs", "readonly_rootfs", False),
    ("no-mountns", "mntns", "host"),
])
def test_faults_in_init(fault: str, key: str, value: object) -> None:
    c = cfg(no_new_privileges=True, user="probe", rlimits=[Rlimit("nofile", 10, 10)], readonly_rootfs=True)
    init, _ = build_init(c, frozenset({fault}), available_caps=ALL)
    assert init[key] == value


def test_namespace_fault_only_drops_new_namespaces() -> None:
    ns = [NamespaceSpec("mnt"), NamespaceSpec("pid", "/proc/1/ns/pid"), NamespaceSpec("net")]
    init, _ = build_init(cfg(namespaces=ns), frozenset({"no-pidns", "no-netns"}), available_caps=ALL)
    assert init["join"] == [["pid", "/proc/1/ns/pid"]], "a joined namespace is not the fault's business"
    assert init["unshare"] == 0x00020000  # mnt only


def test_effective_resources() -> None:
    r = cgroups.Resources(memory=1 << 30, memory_swap=2 << 30, pids_limit=10, cpu_quota=1000, cpu_period=10000,
                          cpu_shares=512, cpuset_cpus="0")
    assert effective_resources(r, frozenset()) is r
    out = effective_resources(r, frozenset({"no-memory-limit", "no-cpu-limit"}))
    assert out.memory is None and out.memory_swap is None and out.cpu_quota is None and out.cpu_shares is None
    assert out.pids_limit == 10 and out.cpuset_cpus == "0" and r.memory == 1 << 30
    assert effective_resources(r, frozenset({"no-pids-limit"})).pids_limit is None
    assert effective_resources(None, frozenset({"no-devices-cgroup"})).devices == [cgroups.ALLOW_ALL]


def test_clamp_rlimits() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    out, notes = clamp_rlimits([(resource.RLIMIT_NOFILE, 10, 20, "nofile")])
    assert out == [[resource.RLIMIT_NOFILE, 10, 20]] and notes == []
    if hard == resource.RLIM_INFINITY:
        pytest.skip("unlimited hard limit here")
    out, notes = clamp_rlimits([(resource.RLIMIT_NOFILE, -1, -1, "nofile")])
    from refengine.libcontainer import capabilities

    if capabilities.has_cap("SYS_RESOURCE"):
        assert notes == []
    else:
        assert out == [[resource.RLIMIT_NOFILE, hard, hard]] and "CAP_SYS_RESOURCE" in notes[0]


def test_config_validation() -> None:
    with pytest.raises(ConfigError, match="absolute"):
        cfg(cwd="relative").validate()
    with pytest.raises(ConfigError, match="no source"):
        cfg(mounts=[Mount("/x", "bind")]).validate()
    with pytest.raises(ConfigError, match="unknown namespace"):
        NamespaceSpec("time")
    with pytest.raises(ConfigError, match="unknown rlimit"):
        cfg(rlimits=[Rlimit("nope", 1, 1)]).validate()
    for soft, hard in ((10, 5), (-1, 5)):  # soft above hard: setrlimit's EINVAL, never quietly lowered
        with pytest.raises(ConfigError, match="soft limit .* is above the hard limit"):
            cfg(rlimits=[Rlimit("nofile", soft, hard)]).validate()
    cfg(rlimits=[Rlimit("nofile", 5, -1), Rlimit("core", -1, -1)]).validate()


def test_sysctls_only_of_own_namespaces() -> None:
    from refengine.libcontainer.config import HostSetupError
    cfg(sysctl={"net.ipv4.ip_forward": "1", "kernel.shmmax": "1", "fs.mqueue.msg_max": "5"}).validate()
    with pytest.raises(HostSetupError, match='sysctl "kernel.panic" is not in a separate kernel namespace'):
        cfg(sysctl={"kernel.panic": "1"}).validate()
    host_net = [n for n in cfg().namespaces if n.type != "net"]
    with pytest.raises(HostSetupError, match="not allowed in the host's net namespace"):
        cfg(sysctl={"net.ipv4.ip_forward": "1"}, namespaces=host_net).validate()
    assert NamespaceSpec("network").type == "net" and NamespaceSpec("mount").type == "mnt"


def test_wire_format_roundtrip() -> None:
    msg = {"type": "error", "message": 'exec: "ü\\n": x', "code": 127, "flag": True, "none": None}
    assert lcinit.loads(lcinit.dumps(msg)) == msg
    import json

    assert json.loads(lcinit.dumps(msg)) == msg


def test_lookup(tmp_path) -> None:
    exe = tmp_path / "tool"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    plain = tmp_path / "plain"
    plain.write_text("")
    assert lcinit.lookup("tool", [f"PATH=/nonexistent:{tmp_path}"]) == f"{tmp_path}/tool"
    with pytest.raises(lcinit.InitError) as ei:
        lcinit.lookup("plain", [f"PATH={tmp_path}"])
    assert ei.value.code == 127
    with pytest.raises(lcinit.InitError) as ei:
        lcinit.lookup(str(plain), [])
    assert ei.value.code == 126 and "permission denied" in ei.value.message
    with pytest.raises(lcinit.InitError) as ei:
        lcinit.lookup(str(tmp_path), [])
    assert ei.value.code == 126
    assert os.path.isdir(tmp_path)
