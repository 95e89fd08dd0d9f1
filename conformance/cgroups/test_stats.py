"""GET /containers/{id}/stats?stream=false reports what the container's cgroup files say."""

from __future__ import annotations

import os
from typing import Any

import pytest

from . import files
from .conftest import Cgroups, MiB, poll, poll_value

MEMORY = 64 * MiB
TASKS = {1: "tasks", 2: "cgroup.threads"}  # the file listing every task (thread) of a cgroup
# Three processes that sit still: PID 1 and two sleepers.
THREE = "sleep 3600 & sleep 3600 & wait"
# A little steady CPU use, capped so the shared machine does not notice.
SPIN = "while :; do :; done"
# Burn a bounded amount of CPU (a fraction of a second), then sleep without using any.
BURN_THEN_SLEEP = "i=0; while [ $i -lt 40000 ]; do i=$((i+1)); done; echo spun; exec sleep 3600"


def _get(stats: dict[str, Any], *keys: str) -> Any:
    value: Any = stats
    for key in keys:
        if not isinstance(value, dict) or key not in value:
            pytest.fail(f"the stats body has no {'.'.join(keys)} (stopped at {key!r}): {str(stats)[:600]}",
                        pytrace=False)
        value = value[key]
    return value


@pytest.mark.req("cgroups.stats.memory-usage")
def test_stats_memory_usage(cg: Cgroups) -> None:
    cid = cg.containers.run(["sh", "-c", THREE], HostConfig={"Memory": MEMORY})
    pid = cg.pid(cid)
    usage = files.memory_usage(cg.version)
    before = cg.host_int(pid, usage)
    reported = _get(cg.stats(cid), "memory_stats", "usage")
    after = cg.host_int(pid, usage)
    low, high = min(before, after), max(before, after)
    tolerance = max(MiB, high // 10)
    assert isinstance(reported, int) and low - tolerance <= reported <= high + tolerance, (
        f"stats memory_stats.usage is {reported!r}; the cgroup's {usage.file} read {before} before and {after} "
        f"after the request: the usage must come from the cgroup (within {tolerance} bytes)")


@pytest.mark.req("cgroups.stats.memory-limit")
def test_stats_memory_limit(cg: Cgroups) -> None:
    cid = cg.containers.run_long(HostConfig={"Memory": MEMORY})
    limit = _get(cg.stats(cid), "memory_stats", "limit")
    assert limit == MEMORY, f"stats memory_stats.limit is {limit!r}; the container's limit is HostConfig.Memory={MEMORY}"


@pytest.mark.req("cgroups.stats.pids-current")
def test_stats_pids_current(cg: Cgroups) -> None:
    cid = cg.containers.run(["sh", "-c", THREE], HostConfig={"PidsLimit": 64})
    pid = cg.pid(cid)
    tasks = files.pids_current(cg.version)
    assert poll(lambda: cg.host_int(pid, tasks) == 3, timeout=10), (
        f"the container never reached its 3 processes: pids.current reads {cg.host_int(pid, tasks)}")
    stats = cg.stats(cid)
    current = _get(stats, "pids_stats", "current")
    counted = cg.host_int(pid, tasks)
    listed = len(cg.host.read(os.path.join(cg.host_dir(pid, "pids"), TASKS[cg.version])).split())
    assert current == counted == listed == 3, (
        f"stats pids_stats.current is {current!r}; the cgroup's pids.current is {counted} and its "
        f"{TASKS[cg.version]} file lists {listed} tasks (PID 1 and two sleepers): they must agree")
    limit = _get(stats, "pids_stats", "limit")
    assert limit == 64, f"stats pids_stats.limit is {limit!r}; HostConfig.PidsLimit is 64"


@pytest.mark.req("cgroups.stats.cpu-usage")
def test_stats_cpu_usage(cg: Cgroups) -> None:
    """A container that burned some CPU and now sleeps: stats must report the cgroup's (steady) CPU time."""
    cid = cg.containers.run(["sh", "-c", BURN_THEN_SLEEP])
    ok, out = poll_value(lambda: cg.containers.output(cid), lambda o: "spun" in o, timeout=20)
    assert ok, f"the container did not finish its CPU burn within 20 s: {out!r}"
    pid = cg.pid(cid)
    usage = files.cpu_usage(cg.version)
    before = files.cpu_usage_ns(usage, cg.host_raw(pid, usage))
    reported = _get(cg.stats(cid), "cpu_stats", "cpu_usage", "total_usage")
    after = files.cpu_usage_ns(usage, cg.host_raw(pid, usage))
    slack = 1000 if cg.version == 2 else 0  # v2 counts in µs: allow the rounding
    assert before > 10_000_000, f"the burn used only {before} ns of CPU; the check needs a clearly non-zero count"
    assert before - slack <= reported <= after + slack, (
        f"stats cpu_stats.cpu_usage.total_usage is {reported} ns; the cgroup's CPU counter ({usage.file}) read "
        f"{before} before and {after} after the request: it must be read from the cgroup, in nanoseconds")


@pytest.mark.req("cgroups.stats.cpu-usage-grows")
def test_stats_cpu_usage_grows(cg: Cgroups) -> None:
    cid = cg.containers.run(["sh", "-c", SPIN], HostConfig={"NanoCpus": 100_000_000})
    first = _get(cg.stats(cid), "cpu_stats", "cpu_usage", "total_usage")
    grew, second = poll_value(lambda: _get(cg.stats(cid), "cpu_stats", "cpu_usage", "total_usage"),
                              lambda v: isinstance(v, int) and isinstance(first, int) and v > first,
                              timeout=5, interval=0.2)
    assert grew, (f"total_usage went from {first} to {second} ns in 5 s while the container kept spinning "
                  "(about 0.1 CPU); it must grow")
