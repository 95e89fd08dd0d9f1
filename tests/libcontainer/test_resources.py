"""The payload in its cgroup (through the cgroups layer), with limits that hold; cgroup namespace."""

from __future__ import annotations

import os

import pytest

from refengine.libcontainer import NamespaceSpec, cgroups
from refengine.libcontainer.config import default_namespaces


def read(cg, controller: str, name: str) -> str:
    path = cg.paths.get(controller) or cg.paths.get("")
    with open(os.path.join(path, name)) as fh:
        return fh.read().strip()


def test_payload_in_its_cgroup_before_it_runs(lc) -> None:
    rc, out = lc.run("cat /proc/self/cgroup", cgroup=True)
    c = lc.made[-1]
    assert rc == 0
    assert any(line.endswith("/" + c.config.cgroup_name) for line in out.splitlines())


def test_limits_applied(lc) -> None:
    res = cgroups.Resources(memory=64 << 20, pids_limit=50, cpu_quota=50000, cpu_period=100000)
    c = lc.start(["sleep", "60"], cgroup=True, resources=res)
    if c.cgroup.paths.get("memory"):
        assert read(c.cgroup, "memory", "memory.limit_in_bytes") == str(64 << 20)
        assert read(c.cgroup, "pids", "pids.max") == "50"
        assert read(c.cgroup, "cpu", "cpu.cfs_quota_us") == "50000"
    else:
        assert read(c.cgroup, "", "memory.max") == str(64 << 20)
        assert read(c.cgroup, "", "pids.max") == "50"
    assert c.cgroup.pids() == [c.pid]


def test_pids_limit_holds(lc) -> None:
    rc, out = lc.run("for i in 1 2 3 4 5 6 7 8 9 10; do sleep 5 & done 2>&1; echo done", cgroup=True,
                     resources=cgroups.Resources(pids_limit=5))
    assert "can't fork" in out or "Resource temporarily unavailable" in out, out


def test_memory_limit_holds(lc) -> None:
    """A tmpfs file counts against the memory cgroup: writing past the limit gets the writer OOM-killed."""
    rc, out = lc.run("dd if=/dev/zero of=/dev/shm/fill bs=1M count=48 2>&1; echo rc=$?", cgroup=True,
                     resources=cgroups.Resources(memory=16 << 20, memory_swap=16 << 20))
    c = lc.made[-1]
    assert "rc=0" not in out or rc != 0
    assert rc == 137 or "Killed" in out or "rc=137" in out, out
    assert c.exit_code is not None


def test_cgroup_namespace(lc) -> None:
    ns = default_namespaces() + [NamespaceSpec("cgroup")]
    rc, out = lc.run("cat /proc/self/cgroup", cgroup=True, namespaces=ns)
    paths = {line.split(":", 2)[2] for line in out.splitlines()}
    c = lc.made[-1]
    own = [line for line in out.splitlines() if c.config.cgroup_name in line]
    assert not own and "/" in paths, f"private cgroup namespace: the container's cgroup is its root ({out})"


def test_update_and_stats(lc) -> None:
    c = lc.start(["sleep", "60"], cgroup=True, resources=cgroups.Resources(pids_limit=20))
    c.cgroup.update(cgroups.Resources(pids_limit=30))
    st = c.cgroup.stats()
    assert st.pids.current >= 1 and st.pids.limit == 30


@pytest.mark.parametrize("n", [3])
def test_concurrent_containers_distinct_cgroups(lc, n: int) -> None:
    cs = [lc.start(["sleep", "60"], cgroup=True) for _ in range(n)]
    assert len({c.cgroup.path for c in cs}) == n
    for c in cs:
        assert c.cgroup.pids() == [c.pid]


@pytest.mark.parametrize("private", [False, True], ids=["host-cgroupns", "private-cgroupns"])
def test_own_cgroup_at_sys_fs_cgroup(lc, private: bool) -> None:
    """Docker's /sys/fs/cgroup: the container reads its own limits there, read-only, in either cgroupns mode."""
    ns = default_namespaces() + ([NamespaceSpec("cgroup")] if private else [])
    res = cgroups.Resources(memory=48 << 20, pids_limit=33)
    rc, out = lc.run("stat -f -c %t /sys/fs/cgroup; cat /sys/fs/cgroup/pids/pids.max; "
                     "cat /sys/fs/cgroup/memory/memory.limit_in_bytes; head -1 /sys/fs/cgroup/pids/cgroup.procs; "
                     "touch /sys/fs/cgroup/x 2>&1; echo 1 > /sys/fs/cgroup/pids/pids.max 2>&1",
                     cgroup=True, resources=res, namespaces=ns)
    lines = out.splitlines()
    if lines[0] == "63677270":
        pytest.skip("cgroup v2 host: covered by the unified branch")
    assert lines[0] == "1021994", "a tmpfs holding one directory per hierarchy"
    assert lines[1:4] == ["33", str(48 << 20), "1"], "its own cgroup (PID 1 in it, PIDs as it sees them)"
    assert out.count("Read-only file system") == 2
