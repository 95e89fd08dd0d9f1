"""The pids controller: HostConfig.PidsLimit sets pids.max, and forking beyond it fails inside the container only."""

from __future__ import annotations

import pytest

from . import files
from .conftest import Cgroups, poll_value

LIMIT = 8
# An inner shell forks sleepers until fork fails (busybox sh then exits); the outer shell (PID 1) counts
# the processes with builtins only, then execs into a sleeper: nothing more needs to fork. The inner
# shell's complaint goes to stdout (2>&1), so it is logged before `inner=`: stdout and stderr are separate
# pipes and a daemon may log the stderr line after the later stdout ones (dockerd did once).
FORK_LOOP = ('sh -c "for i in ' + " ".join(str(i) for i in range(20)) + '; do sleep 60 & done" 2>&1; '
             'echo inner=$?; set -- /proc/[0-9]*; echo procs=$#; exec sleep 3600')


@pytest.mark.req("cgroups.pids.limit-applied")
@pytest.mark.parametrize("limit", [50, 200])
def test_pids_limit_host(cg: Cgroups, limit: int) -> None:
    cid = cg.containers.run_long(HostConfig={"PidsLimit": limit})
    cg.assert_host(cg.pid(cid), files.pids_limit(cg.version, limit))


@pytest.mark.req("cgroups.pids.limit-visible-inside")
def test_pids_limit_inside(cg: Cgroups) -> None:
    view, expects = cg.run_inside(lambda v: [files.pids_limit(v, 42)], HostConfig={"PidsLimit": 42})
    cg.assert_inside(view, expects)


@pytest.mark.req("cgroups.pids.unlimited")
@pytest.mark.deviation("docker", cgroup_driver="systemd", reason=(
    "with the systemd cgroup driver (dockerd's default on cgroup v2) a container's scope gets systemd's "
    "DefaultTasksMax (15% of the kernel's thread limit), so pids.max is a number, not max, when no PidsLimit "
    "is set (seen on a Debian 12 VM: 4643)"))
@pytest.mark.parametrize("limit", [None, 0, -1], ids=["unset", "zero", "minus-one"])
def test_pids_unlimited(cg: Cgroups, limit: int | None) -> None:
    host_config = {} if limit is None else {"PidsLimit": limit}
    cid = cg.containers.run_long(HostConfig=host_config)
    cg.assert_host(cg.pid(cid), files.pids_limit(cg.version, limit))


@pytest.mark.req("cgroups.pids.fork-contained")
def test_fork_loop_contained(cg: Cgroups) -> None:
    cid = cg.containers.run(["sh", "-c", FORK_LOOP],
                            HostConfig={"PidsLimit": LIMIT})
    ok, out = poll_value(lambda: cg.containers.output(cid), lambda o: "procs=" in o, timeout=15)
    assert ok, f"the fork loop under PidsLimit={LIMIT} did not report within 15 s: {out!r}"
    procs = int(out.split("procs=")[1].split()[0])
    assert procs <= LIMIT, (f"{procs} processes run in a container with PidsLimit={LIMIT}; the pids controller "
                            f"must refuse fork beyond {LIMIT} (output {out!r})")
    assert "can't fork" in out or "Resource temporarily unavailable" in out, (
        f"the loop forking 20 sleepers under PidsLimit={LIMIT} never saw fork fail: {out!r}")
    pid = cg.pid(cid)
    refused = cg.host_int(pid, files.pids_events_max(cg.version))
    assert refused > 0, f"host side: pids.events counts {refused} refused forks; the loop hit the limit"
    resp = cg.api.post(f"/containers/{cid}/kill")
    assert resp.status_code == 204, f"killing the container at its pids limit answered {resp.status_code}"
    code = cg.containers.wait(cid, timeout=15)
    assert code == 137, f"the container at its pids limit exited {code} after SIGKILL; expected 137"
