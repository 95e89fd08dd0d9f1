"""The container's own cgroup: created for it in every hierarchy, visible to it at /sys/fs/cgroup, gone after."""

from __future__ import annotations

import os

import pytest

from . import files
from .conftest import Cgroups, poll


@pytest.mark.req("cgroups.hierarchy.own-cgroup")
def test_own_cgroup(cg: Cgroups) -> None:
    cid = cg.containers.run_long()
    pid = cg.pid(cid)
    paths = cg.host.cgroup_paths(pid)
    problems = []
    for controller in files.v1_controllers() if cg.version == 1 else ("",):
        path = paths.get(controller, "")
        directory = cg.host_dir(pid, controller)
        procs = cg.host.read(os.path.join(directory, "cgroup.procs")).split()
        if cid not in path or str(pid) not in procs:
            problems.append(f"{controller or 'unified'}: cgroup {path!r}, its cgroup.procs {procs}")
    assert not problems, (
        f"host side: the container's PID 1 ({pid}) is not in a cgroup of its own named by its ID {cid[:12]} in "
        f"every hierarchy: {'; '.join(problems)}")


@pytest.mark.req("cgroups.hierarchy.removed-after-rm")
def test_cgroup_removed_after_rm(cg: Cgroups) -> None:
    cid = cg.containers.run_long()
    pid = cg.pid(cid)
    controllers = files.v1_controllers() if cg.version == 1 else ("",)
    dirs = [cg.host_dir(pid, c) for c in controllers]
    assert all(os.path.isdir(d) for d in dirs), f"host side: not every cgroup directory {dirs} exists while running"
    resp = cg.api.delete(f"/containers/{cid}", params={"force": 1})
    assert resp.status_code == 204, f"DELETE /containers/{{id}}?force=1 answered {resp.status_code}"
    left = poll(lambda: not any(os.path.exists(d) for d in dirs), timeout=10)
    assert left, (f"host side: 10 s after the container was removed its cgroups {[d for d in dirs if os.path.exists(d)]} "
                  "still exist; the daemon must remove a container's cgroups with it")


@pytest.mark.req("cgroups.hierarchy.removed-after-exit")
def test_cgroup_removed_after_exit(cg: Cgroups) -> None:
    cid = cg.containers.run_long()
    pid = cg.pid(cid)
    directory = cg.host_dir(pid, "memory")
    resp = cg.api.post(f"/containers/{cid}/kill")
    assert resp.status_code == 204, f"POST /containers/{{id}}/kill answered {resp.status_code}"
    cg.containers.wait(cid, timeout=15)
    gone = poll(lambda: not os.path.exists(directory), timeout=10)
    assert gone, (f"host side: the exited (not removed) container's cgroup {directory} still exists after 10 s; "
                  "the runtime deletes a container's cgroup when its last process exits")


@pytest.mark.req("cgroups.visibility.own-cgroup-inside")
def test_inside_sees_own_cgroup(cg: Cgroups) -> None:
    """The cgroup mounted inside is the container's own: its cgroup.procs holds the container's PID 1."""
    cid = cg.containers.run_long()

    def make(v: int) -> list[files.Expect]:
        return [files.Expect("the container's own cgroup", v, "memory", "cgroup.procs", "")]
    view, expects = cg.read_inside(cid, make)
    procs = view.raw(expects[0]).split()
    assert "1" in procs, (
        f"inside the container {expects[0].inside_path()} lists PIDs {procs}; the cgroup mounted at /sys/fs/cgroup "
        "must be the container's own, holding its PID 1 (and not the host's root cgroup)")


@pytest.mark.req("cgroups.visibility.read-only")
def test_cgroup_mounts_read_only(cg: Cgroups) -> None:
    res = cg.containers.run_output(["cat", "/proc/self/mountinfo"], timeout=30)
    cgroup_mounts = []
    for line in res.stdout.splitlines():
        left, _, right = line.partition(" - ")
        fields = left.split()
        if len(fields) > 5 and right.split()[:1] in (["cgroup"], ["cgroup2"]):
            cgroup_mounts.append((fields[4], fields[5]))
    assert cgroup_mounts, f"inside the container no cgroup filesystem is mounted ({res.describe()})"
    writable = [m for m in cgroup_mounts if "ro" not in m[1].split(",")]
    assert not writable, (f"inside an unprivileged container the cgroup mounts {writable} are writable; they must be "
                          "read-only so the container cannot change its own limits")


@pytest.mark.req("cgroups.visibility.cgroupns-private")
def test_cgroupns_private_root(cg: Cgroups) -> None:
    res = cg.containers.run_output(["cat", "/proc/self/cgroup"], timeout=30, HostConfig={"CgroupnsMode": "private"})
    paths = [line.split(":", 2)[2] for line in res.stdout.splitlines() if line.count(":") >= 2]
    assert res.exit_code == 0 and paths and all(p == "/" for p in paths), (
        f"with CgroupnsMode 'private' /proc/self/cgroup inside shows paths {paths} ({res.describe()}); in its own "
        "cgroup namespace the container's cgroup must be the root '/'")


@pytest.mark.req("cgroups.visibility.cgroupns-default")
def test_cgroupns_default_mode(cg: Cgroups) -> None:
    """Docker's default: the host's cgroup namespace on v1, a private one on v2 (daemon default-cgroupns-mode)."""
    res = cg.containers.run_output(["cat", "/proc/self/cgroup"], timeout=30)
    mode = cg.containers.inspect(res.cid)["HostConfig"].get("CgroupnsMode")
    want = "host" if cg.version == 1 else "private"
    assert mode == want, (f"a container created without CgroupnsMode shows HostConfig.CgroupnsMode {mode!r}; on cgroup "
                          f"v{cg.version} Docker's default is {want!r}")
    paths = [line.split(":", 2)[2] for line in res.stdout.splitlines() if line.count(":") >= 2]
    if want == "host":
        ok = bool(paths) and all(res.cid in p for p in paths)
    else:
        ok = bool(paths) and all(p == "/" for p in paths)
    assert res.exit_code == 0 and ok, (
        f"with CgroupnsMode {want!r} /proc/self/cgroup inside shows paths {paths} ({res.describe()}); expected "
        + ("the container's own cgroup paths on the host, named by its ID" if want == "host" else "the root '/'"))
