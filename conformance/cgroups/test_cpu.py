"""CPU limits: CFS quota and period (CpuQuota/CpuPeriod, NanoCpus = --cpus), CpuShares, cpusets."""

from __future__ import annotations

import time

import pytest

from conformance.client import RECORD, ApiClient, error_message
from conformance.resources import Containers

from . import files
from .conftest import Cgroups

BUSY = "while :; do :; done"

# (HostConfig, quota, period) — what the CFS files must show for each way of limiting CPU time.
QUOTAS = [
    pytest.param({"NanoCpus": 500_000_000}, 50_000, None, id="cpus-0.5"),
    pytest.param({"NanoCpus": 1_500_000_000}, 150_000, None, id="cpus-1.5"),
    pytest.param({"CpuQuota": 25_000, "CpuPeriod": 50_000}, 25_000, 50_000, id="quota-25ms-per-50ms"),
    pytest.param({"CpuQuota": 20_000}, 20_000, None, id="quota-20ms-default-period"),
]


def _quota_expects(version: int, host_config: dict, quota: int, period: int | None) -> list[files.Expect]:
    what = ", ".join(f"HostConfig.{k}={v}" for k, v in host_config.items())
    return files.cpu_quota(version, quota, period, what)


@pytest.mark.req("cgroups.cpu.quota-applied")
@pytest.mark.parametrize("host_config,quota,period", QUOTAS)
def test_cpu_quota_host(cg: Cgroups, host_config: dict, quota: int, period: int | None) -> None:
    cid = cg.containers.run_long(HostConfig=host_config)
    pid = cg.pid(cid)
    for expect in _quota_expects(cg.version, host_config, quota, period):
        cg.assert_host(pid, expect)


@pytest.mark.req("cgroups.cpu.quota-visible-inside")
@pytest.mark.parametrize("host_config,quota,period", QUOTAS[::2])
def test_cpu_quota_inside(cg: Cgroups, host_config: dict, quota: int, period: int | None) -> None:
    view, expects = cg.run_inside(lambda v: _quota_expects(v, host_config, quota, period), HostConfig=host_config)
    cg.assert_inside(view, expects)


@pytest.mark.req("cgroups.cpu.unlimited-default")
def test_cpu_unlimited_by_default(cg: Cgroups) -> None:
    cid = cg.containers.run_long()
    pid = cg.pid(cid)
    for expect in files.cpu_quota(cg.version, None, None, "no CPU limit in HostConfig"):
        cg.assert_host(pid, expect)


@pytest.mark.req("cgroups.cpu.quota-enforced")
def test_cpu_quota_enforced(cg: Cgroups) -> None:
    """A busy loop limited to 0.2 CPU gets throttled and uses about 0.2 s of CPU per second."""
    cid = cg.containers.run(["sh", "-c", BUSY], HostConfig={"NanoCpus": 200_000_000})
    pid = cg.pid(cid)
    usage, throttled = files.cpu_usage(cg.version), files.cpu_throttled(cg.version)
    t0, u0 = time.monotonic(), files.cpu_usage_ns(usage, cg.host_raw(pid, usage))
    # Five CFS periods of 100 ms: the loop exhausts its 20 ms in each (throttled every time), and a window cut
    # across six periods still allows at most 0.12 s of CPU, 0.24 per second.
    time.sleep(0.5)
    t1, u1 = time.monotonic(), files.cpu_usage_ns(usage, cg.host_raw(pid, usage))
    share = (u1 - u0) / 1e9 / (t1 - t0)
    nr = cg.host_int(pid, throttled)
    assert nr > 0, (f"a busy loop under NanoCpus=0.2 CPU was never throttled (cpu.stat nr_throttled {nr}); "
                    "the CFS quota must stop it once it used 20 ms of each 100 ms period")
    assert share <= 0.35, (f"a busy loop under NanoCpus=0.2 CPU used {share:.2f} CPU-seconds per second; the CFS "
                           "quota allows at most 0.2 (0.35 with measuring slack)")


@pytest.mark.req("cgroups.cpu.shares-applied")
@pytest.mark.parametrize("shares", [512, 2048])
def test_cpu_shares(cg: Cgroups, shares: int) -> None:
    cid = cg.containers.run_long(HostConfig={"CpuShares": shares})
    cg.assert_host(cg.pid(cid), files.cpu_shares(cg.version, shares))


@pytest.mark.req("cgroups.cpu.shares-default")
def test_cpu_shares_default(cg: Cgroups) -> None:
    cid = cg.containers.run_long()
    cg.assert_host(cg.pid(cid), files.cpu_shares(cg.version, None), "host side, no CpuShares")


def _ncpu(api: ApiClient) -> int:
    return int(api.get("/info", validate=RECORD).json().get("NCPU") or 1)


@pytest.mark.req("cgroups.cpuset.cpus-applied")
@pytest.mark.parametrize("cpus", ["0", "1"])
def test_cpuset_cpus_host(cg: Cgroups, cpus: str) -> None:
    if int(cpus) >= _ncpu(cg.api):
        pytest.skip(f"the target has fewer than {int(cpus) + 1} CPUs (NCPU in /info)")
    cid = cg.containers.run_long(HostConfig={"CpusetCpus": cpus})
    pid = cg.pid(cid)
    cg.assert_host(pid, files.cpuset_cpus(cg.version, cpus))
    allowed = cg.host.status(pid).get("Cpus_allowed_list", "")
    assert files.normalise_cpulist(allowed) == cpus, (
        f"host side: the container's process may run on CPUs {allowed!r} (/proc/<pid>/status Cpus_allowed_list); "
        f"with CpusetCpus={cpus!r} the kernel must confine it to {cpus!r}")


@pytest.mark.req("cgroups.cpuset.cpus-visible-inside")
@pytest.mark.parametrize("cpus", ["0", "1"])
def test_cpuset_cpus_inside(cg: Cgroups, cpus: str) -> None:
    if int(cpus) >= _ncpu(cg.api):
        pytest.skip(f"the target has fewer than {int(cpus) + 1} CPUs (NCPU in /info)")
    res = cg.containers.run_output(["grep", "Cpus_allowed_list", "/proc/self/status"], timeout=30,
                                   HostConfig={"CpusetCpus": cpus})
    allowed = res.stdout.partition(":")[2].strip()
    assert res.exit_code == 0 and files.normalise_cpulist(allowed) == cpus, (
        f"inside a container with CpusetCpus={cpus!r}, /proc/self/status shows Cpus_allowed_list {allowed!r} "
        f"({res.describe()}); the kernel must confine it to CPU {cpus}")


@pytest.mark.req("cgroups.cpuset.mems-applied")
def test_cpuset_mems(cg: Cgroups) -> None:
    cid = cg.containers.run_long(HostConfig={"CpusetMems": "0"})
    pid = cg.pid(cid)
    cg.assert_host(pid, files.cpuset_mems(cg.version, "0"))
    allowed = cg.host.status(pid).get("Mems_allowed_list", "")
    assert files.normalise_cpulist(allowed) == "0", (
        f"host side: the container's Mems_allowed_list is {allowed!r}; with CpusetMems='0' it must be '0'")


@pytest.mark.req("cgroups.cpuset.unavailable-refused")
def test_cpuset_unavailable_refused(api: ApiClient, containers: Containers) -> None:
    """CPU 99 does not exist here: the daemon must refuse, not start an unconstrained container."""
    ncpu = _ncpu(api)
    if ncpu > 99:
        pytest.skip(f"the target has {ncpu} CPUs; CPU 99 exists")
    resp = api.post("/containers/create", containers.config(["true"], HostConfig={"CpusetCpus": "99"}))
    if resp.status_code == 201:
        cid = containers.adopt(resp.json()["Id"])
        resp = api.post(f"/containers/{cid}/start")
        where = "start"
    else:
        where = "create"
    assert resp.status_code >= 400, (
        f"a container with CpusetCpus='99' on a {ncpu}-CPU target was created and started; the daemon must "
        "refuse CPUs that do not exist")
    msg = error_message(resp) or ""
    assert "99" in msg or "cpu" in msg.lower(), f"the {where} error {msg!r} does not say which CPUs were refused"
