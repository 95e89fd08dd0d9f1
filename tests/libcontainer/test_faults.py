"""Fault injection: each fault switches its property off (and only with REFENGINE_ALLOW_FAULTS=1)."""

from __future__ import annotations

import os
import subprocess

import pytest

from refengine.libcontainer import (
    FAULTS,
    ExecConfig,
    FaultsRefused,
    IDMap,
    NamespaceSpec,
    Rlimit,
    active_faults,
    cgroups,
)
from refengine.libcontainer.config import default_namespaces

try:
    from .conftest import mounts_under, ns_inode
except ImportError:  # tests/libcontainer is not a package
    from conftest import mounts_under, ns_inode


def test_faults_refused_without_allow(lc, monkeypatch) -> None:
    monkeypatch.setenv("REFENGINE_FAULTS", "no-pidns")
    monkeypatch.delenv("REFENGINE_ALLOW_FAULTS", raising=False)
    with pytest.raises(FaultsRefused, match="REFENGINE_ALLOW_FAULTS"):
        lc.make(["true"]).start()


def test_unknown_fault_refused() -> None:
    with pytest.raises(FaultsRefused, match="no-such-fault"):
        active_faults({"REFENGINE_FAULTS": "no-pidns,no-such-fault", "REFENGINE_ALLOW_FAULTS": "1"})


def test_active_faults_parsing() -> None:
    assert active_faults({}) == frozenset()
    assert active_faults({"REFENGINE_FAULTS": " no-pidns , no-seccomp ", "REFENGINE_ALLOW_FAULTS": "1"}) == \
        {"no-pidns", "no-seccomp"}
    required = {"no-pidns", "no-utsns", "no-ipcns", "no-netns", "no-mountns", "no-masked-paths", "no-readonly-paths",
                "no-seccomp", "no-caps-drop", "no-nnp", "no-memory-limit", "no-pids-limit", "no-cpu-limit"}
    assert required <= set(FAULTS)


@pytest.mark.parametrize("fault,kind", [("no-pidns", "pid"), ("no-utsns", "uts"), ("no-ipcns", "ipc"),
                                        ("no-netns", "net"), ("no-mountns", "mnt")])
def test_namespace_faults(lc, fault_env, fault: str, kind: str) -> None:
    c = lc.start(["sleep", "60"], hostname="faulty")
    assert ns_inode(c.pid, kind) != ns_inode("self", kind), "control"
    c.destroy()
    fault_env(fault)
    c = lc.start(["sleep", "60"], hostname="faulty")
    assert ns_inode(c.pid, kind) == ns_inode("self", kind), f"{fault}: the container is in the host's {kind} ns"
    others = {"pid", "uts", "ipc", "net", "mnt"} - {kind}
    for other in others:
        assert ns_inode(c.pid, other) != ns_inode("self", other), f"{fault} must not touch {other}"


def test_no_pidns_payload_not_pid1(lc, fault_env) -> None:
    fault_env("no-pidns")
    rc, out = lc.run("echo $$")
    assert out.strip() != "1"


def test_no_utsns_keeps_host_hostname(lc, fault_env) -> None:
    import socket

    fault_env("no-utsns")
    rc, out = lc.run("hostname", hostname="faulty")
    assert out.strip() == socket.gethostname()


def test_no_mountns_mounts_show_on_host_and_are_cleaned(lc, fault_env, rootfs) -> None:
    fault_env("no-mountns")
    c = lc.start(["sh", "-c", "echo $$; cat /proc/self/mountinfo | wc -l; sleep 60"])
    assert c.process.stdout.readline().strip() == b"1", "chroot keeps the other namespaces"
    assert mounts_under(rootfs), "without a mount namespace the container's mounts are the host's"
    p = c.exec(ExecConfig(["cat", "/etc/group"]), stdout=subprocess.PIPE)
    assert b"probe" in p.stdout.read(), "exec lands in the container's root (a chroot) too"
    p.wait(10)
    p.close()
    c.destroy()
    assert not mounts_under(rootfs), "destroy unmounts what it left under the rootfs"


def test_no_cgroupns(lc, fault_env) -> None:
    ns = default_namespaces() + [NamespaceSpec("cgroup")]
    fault_env("no-cgroupns")
    c = lc.start(["sleep", "60"], namespaces=ns, cgroup=True)
    assert ns_inode(c.pid, "cgroup") == ns_inode("self", "cgroup")


def test_no_userns(lc, fault_env) -> None:
    ns = default_namespaces() + [NamespaceSpec("user")]
    maps = [IDMap(0, 300000, 65536)]
    fault_env("no-userns")
    c = lc.start(["sleep", "60"], namespaces=ns, uid_mappings=maps, gid_mappings=maps)
    assert ns_inode(c.pid, "user") == ns_inode("self", "user")


def _status(lc, **kw) -> dict[str, str]:
    rc, out = lc.run(["cat", "/proc/self/status"], **kw)
    return {k.strip(): v.strip() for k, sep, v in (line.partition(":") for line in out.splitlines()) if sep}


def test_no_masked_paths(lc, fault_env) -> None:
    fault_env("no-masked-paths")
    rc, out = lc.run("cat /proc/self/mountinfo")
    assert " /proc/keys " not in out and " /sys/firmware " not in out
    assert " /proc/sys " in out, "read-only paths are another fault"


def test_no_readonly_paths(lc, fault_env) -> None:
    fault_env("no-readonly-paths")
    rc, out = lc.run(": >> /proc/sys/net/ipv4/ip_forward && echo writable")
    assert out.strip() == "writable"


def test_no_readonly_rootfs(lc, fault_env) -> None:
    fault_env("no-readonly-rootfs")
    rc, out = lc.run("touch /x && echo writable", readonly_rootfs=True)
    assert out.strip() == "writable"


def test_no_seccomp(lc, fault_env) -> None:
    fault_env("no-seccomp")
    assert _status(lc)["Seccomp"] == "0"


def test_no_caps_drop(lc, fault_env) -> None:
    from refengine.libcontainer import capabilities

    fault_env("no-caps-drop")
    assert int(_status(lc, cap_drop=["ALL"])["CapEff"], 16) == capabilities.bounding_set()


def test_no_nnp(lc, fault_env) -> None:
    fault_env("no-nnp")
    assert _status(lc, no_new_privileges=True)["NoNewPrivs"] == "0"


def test_no_user(lc, fault_env) -> None:
    fault_env("no-user")
    rc, out = lc.run("id -u", user="probe")
    assert out.strip() == "0"


def test_no_rlimits(lc, fault_env) -> None:
    fault_env("no-rlimits")
    rc, out = lc.run("ulimit -n", rlimits=[Rlimit("nofile", 77, 77)])
    assert out.strip() != "77"


def _cg_file(c, controller: str, v1: str, v2: str) -> str:
    path = c.cgroup.paths.get(controller)
    name = v1
    if path is None:
        path, name = c.cgroup.paths[""], v2
    with open(os.path.join(path, name)) as fh:
        return fh.read().strip()


@pytest.mark.parametrize("fault,controller,v1,v2,limited", [
    ("no-memory-limit", "memory", "memory.limit_in_bytes", "memory.max", str(64 << 20)),
    ("no-pids-limit", "pids", "pids.max", "pids.max", "20"),
    ("no-cpu-limit", "cpu", "cpu.cfs_quota_us", "cpu.max", "50000"),
])
def test_cgroup_limit_faults(lc, fault_env, fault: str, controller: str, v1: str, v2: str, limited: str) -> None:
    res = cgroups.Resources(memory=64 << 20, pids_limit=20, cpu_quota=50000, cpu_period=100000)
    c = lc.start(["sleep", "60"], cgroup=True, resources=res)
    assert _cg_file(c, controller, v1, v2).split()[0] == limited, "control"
    c.destroy()
    fault_env(fault)
    c = lc.start(["sleep", "60"], cgroup=True, resources=res)
    assert _cg_file(c, controller, v1, v2).split()[0] != limited, f"{fault}: the limit was applied"
    others = {"memory", "pids", "cpu"} - {controller}
    if c.cgroup.paths.get("memory"):
        for other in others:
            f = {"memory": "memory.limit_in_bytes", "pids": "pids.max", "cpu": "cpu.cfs_quota_us"}[other]
            assert _cg_file(c, other, f, f) != "max", f"{fault} must leave the {other} limit alone"


def test_no_devices_cgroup(lc, fault_env) -> None:
    fault_env("no-devices-cgroup")
    c = lc.start(["sleep", "60"], cgroup=True, resources=cgroups.Resources())
    path = c.cgroup.paths.get("devices")
    if path is None:
        pytest.skip("v2: device control is an eBPF program")
    with open(os.path.join(path, "devices.list")) as fh:
        assert fh.read().strip() == "a *:* rwm"
