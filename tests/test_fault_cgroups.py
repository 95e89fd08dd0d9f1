"""The cgroups checks can fail: a proxy in front of a real dockerd drops one limit, the checks on it fail.

Each fault plays a careless engine: it silently drops a resource field from POST /containers/create or
POST /containers/{id}/update (dockerd then applies no such limit), or invents the numbers of
GET /containers/{id}/stats. The named checks must then FAIL; the control run through the same proxy
without a fault must pass them all, so it is the fault, not the proxy, that the checks catch.
Nothing here touches a cgroup file: only dockerd changes them, the checks only read.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest

from .faultproxy import Fault, FaultProxy, Response

CG = "conformance/cgroups/"
# The cgroups checks use neither plugin; not loading them saves seconds per suite run on a busy machine.
LEAN = ("-p", "no:hypothesispytest", "-p", "no:benchmark")


def _drop_create(*keys: str) -> Callable[[dict], None]:
    def mutate(body: dict) -> None:
        host_config = body.get("HostConfig") or {}
        for key in keys:
            host_config.pop(key, None)
    return mutate


def _drop_update(*keys: str) -> Callable[[dict], None]:
    def mutate(body: dict) -> None:
        for key in keys:
            body.pop(key, None)
    return mutate


def _drop_rare(body: dict) -> None:
    """The less common fields: swap, the OOM killer switch, device rules; the cgroup namespace forced to host's."""
    _drop_create("MemorySwap", "OomKillDisable", "DeviceCgroupRules")(body)
    body.setdefault("HostConfig", {})["CgroupnsMode"] = "host"


def _invent_stats(r: Response) -> None:
    data = r.json()
    if isinstance(data, dict) and "memory_stats" in data:
        data["memory_stats"]["usage"] = int(data["memory_stats"].get("usage") or 0) + 64 * 1024 * 1024
        data["memory_stats"]["limit"] = int(data["memory_stats"].get("limit") or 0) * 2
        data["pids_stats"]["current"] = int(data["pids_stats"].get("current") or 0) + 1
        data["cpu_stats"]["cpu_usage"]["total_usage"] = int(data["cpu_stats"]["cpu_usage"]["total_usage"]) // 2
        r.set_json(data)


def _hide_oom(r: Response) -> None:
    data = r.json()
    if isinstance(data, dict) and isinstance(data.get("State"), dict):
        data["State"]["OOMKilled"] = False
        r.set_json(data)


# (fault, checks that must fail)
FAULTS: list[tuple[Fault, list[str]]] = [
    (Fault.on_create("create drops HostConfig.Memory", _drop_create("Memory")),
     [CG + "test_memory.py::test_memory_limit_host[32MiB]",
      CG + "test_memory.py::test_oom_killed",
      CG + "test_memory.py::test_oom_killed_state"]),
    (Fault("inspect never shows OOMKilled", "GET", r"/containers/[^/]+/json", _hide_oom),
     [CG + "test_memory.py::test_oom_killed_state"]),
    (Fault.on_create("create drops HostConfig.NanoCpus", _drop_create("NanoCpus")),
     [CG + "test_cpu.py::test_cpu_quota_host[cpus-0.5]",
      CG + "test_cpu.py::test_cpu_quota_enforced"]),
    (Fault.on_create("create drops HostConfig.CpuQuota", _drop_create("CpuQuota")),
     [CG + "test_cpu.py::test_cpu_quota_host[quota-25ms-per-50ms]",
      CG + "test_cpu.py::test_cpu_quota_inside[quota-25ms-per-50ms]"]),
    (Fault.on_create("create drops HostConfig.PidsLimit", _drop_create("PidsLimit")),
     [CG + "test_pids.py::test_pids_limit_host[50]",
      CG + "test_pids.py::test_fork_loop_contained"]),
    (Fault.on_create("create drops HostConfig.CpusetCpus", _drop_create("CpusetCpus")),
     [CG + "test_cpu.py::test_cpuset_cpus_host[1]",
      CG + "test_cpu.py::test_cpuset_cpus_inside[1]"]),
    (Fault.on_create("create drops MemorySwap, OomKillDisable, DeviceCgroupRules, CgroupnsMode", _drop_rare),
     [CG + "test_memory.py::test_memory_swap[no-swap]",
      CG + "test_memory.py::test_oom_kill_disable",
      CG + "test_devices.py::test_device_cgroup_rule_listed",
      CG + "test_hierarchy.py::test_cgroupns_private_root"]),
    (Fault.on_update("update drops its limits", _drop_update(
        "Memory", "MemorySwap", "NanoCpus", "CpuQuota", "CpuPeriod", "PidsLimit", "CpusetCpus")),
     [CG + "test_update.py::test_update_applies_live[memory]",
      CG + "test_update.py::test_update_applies_live[pids]",
      CG + "test_update.py::test_update_cpuset"]),
    (Fault.ignored("pause does nothing", "POST", r"/containers/[^/]+/pause"),
     [CG + "test_freezer.py::test_pause_freezes_cgroup",
      CG + "test_freezer.py::test_paused_process_does_not_run"]),
    (Fault("stats invents its numbers", "GET", r"/containers/[^/]+/stats", _invent_stats),
     [CG + "test_stats.py::test_stats_memory_limit",
      CG + "test_stats.py::test_stats_pids_current",
      CG + "test_stats.py::test_stats_cpu_usage"]),
]


@pytest.fixture
def proxy_path(tmp_path) -> str:
    return os.path.join(str(tmp_path), "proxy.sock")


def test_control_run_through_proxy_passes(dockerd_socket: str, proxy_path: str, suite) -> None:
    """Without a fault, every check used below passes through the proxy."""
    selection = sorted({check for _, checks in FAULTS for check in checks})
    with FaultProxy(proxy_path, dockerd_socket) as url:
        run = suite(url, selection, "-n", "2", *LEAN)
    for check in selection:
        outcome = run.outcome(check.split("/")[-1])
        assert outcome == "passed", f"{check} ended {outcome!r} through a clean proxy:\n{run.output[-3000:]}"


@pytest.mark.parametrize("fault,checks", FAULTS, ids=[f.name for f, _ in FAULTS])
def test_fault_is_caught(dockerd_socket: str, proxy_path: str, suite, fault: Fault, checks: list[str]) -> None:
    with FaultProxy(proxy_path, dockerd_socket, fault) as url:
        run = suite(url, checks, *LEAN)
    assert fault.hits > 0, f"the fault {fault.name!r} never matched a request: the selection does not exercise it"
    for check in checks:
        outcome = run.outcome(check.split("/")[-1])
        assert outcome == "failed", f"with fault {fault.name!r}, {check} ended {outcome!r}, expected 'failed'"
    assert run.returncode != 0, "a run with a failed check must exit non-zero"
