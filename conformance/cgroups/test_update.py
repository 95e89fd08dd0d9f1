"""POST /containers/{id}/update on a running container changes its cgroup limits at once."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from conformance.client import RECORD

from . import files
from .conftest import Cgroups, MiB

Make = Callable[[int], list[files.Expect]]

# (create HostConfig, update body, expectations after the update)
UPDATES: list = [
    pytest.param({"Memory": 64 * MiB, "MemorySwap": -1}, {"Memory": 96 * MiB, "MemorySwap": -1},
                 lambda v: [files.memory_limit(v, 96 * MiB)], id="memory"),
    pytest.param({"NanoCpus": 500_000_000}, {"NanoCpus": 250_000_000},
                 lambda v: files.cpu_quota(v, 25_000, None, "update NanoCpus=250000000"), id="nano-cpus"),
    pytest.param({"CpuQuota": 50_000, "CpuPeriod": 100_000}, {"CpuQuota": 30_000, "CpuPeriod": 60_000},
                 lambda v: files.cpu_quota(v, 30_000, 60_000, "update CpuQuota=30000, CpuPeriod=60000"),
                 id="cpu-quota"),
    pytest.param({"PidsLimit": 50}, {"PidsLimit": 25}, lambda v: [files.pids_limit(v, 25)], id="pids"),
    pytest.param({"CpuShares": 512}, {"CpuShares": 1536}, lambda v: [files.cpu_shares(v, 1536)], id="cpu-shares"),
    pytest.param({"MemoryReservation": 16 * MiB}, {"MemoryReservation": 40 * MiB},
                 lambda v: [files.memory_reservation(v, 40 * MiB)], id="memory-reservation"),
]


@pytest.mark.req("cgroups.update.live-host")
@pytest.mark.parametrize("create,update,make", UPDATES)
def test_update_applies_live(cg: Cgroups, create: dict, update: dict, make: Make) -> None:
    cid = cg.containers.run_long(HostConfig=create)
    pid = cg.pid(cid)
    before = {e.file: cg.host_raw(pid, e) for e in make(cg.version)}
    assert not all(e.accepts(before[e.file]) for e in make(cg.version)), (
        f"the files already held the updated values before the update ({before}); the check proves nothing")
    cg.update(cid, update)
    for expect in make(cg.version):
        cg.assert_host(pid, expect, f"host side after POST /update {update} (before: {before[expect.file]!r})")
    assert cg.pid(cid) == pid, "the update restarted the container; limits must change in place"


@pytest.mark.req("cgroups.update.live-inside")
@pytest.mark.parametrize("create,update,make", [UPDATES[0], UPDATES[3]])
def test_update_visible_inside(cg: Cgroups, create: dict, update: dict, make: Make) -> None:
    cid = cg.containers.run_long(HostConfig=create)
    cg.update(cid, update)
    view, expects = cg.read_inside(cid, make)
    cg.assert_inside(view, expects)


@pytest.mark.req("cgroups.update.cpuset")
def test_update_cpuset(cg: Cgroups) -> None:
    if int(cg.api.get("/info", validate=RECORD).json().get("NCPU") or 1) < 2:
        pytest.skip("moving a container between CPUs needs at least 2 CPUs")
    cid = cg.containers.run_long(HostConfig={"CpusetCpus": "0"})
    pid = cg.pid(cid)
    cg.update(cid, {"CpusetCpus": "1"})
    cg.assert_host(pid, files.cpuset_cpus(cg.version, "1"), "host side after POST /update CpusetCpus='1'")
    allowed = cg.host.status(pid).get("Cpus_allowed_list", "")
    assert files.normalise_cpulist(allowed) == "1", (
        f"after updating CpusetCpus to '1' the running process may use CPUs {allowed!r}; it must be moved to CPU 1")
