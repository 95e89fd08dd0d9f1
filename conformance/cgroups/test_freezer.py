"""Pause and unpause go through the freezer: the cgroup is frozen, the process stops, unpause resumes it."""

from __future__ import annotations

import time

import pytest

from . import files
from .conftest import Cgroups, poll

# One log line every 50 ms: the log is the counter that must stop while the container is frozen.
TICKER = "while :; do echo tick; sleep 0.05; done"


def _ticks(cg: Cgroups, cid: str) -> int:
    return cg.containers.output(cid).count("tick")


def _quiet_count(cg: Cgroups, cid: str, quiet: float, timeout: float = 5) -> tuple[bool, int, list[tuple[float, int]]]:
    """Read the tick count every 0.1 s until it has stayed the same for `quiet` seconds.

    Lines the process wrote just before the freeze may still be on their way into the log; they arrive first,
    then the count stays put. Returns (whether it stayed put within `timeout`, the last count, the readings as
    (seconds, count)).
    """
    start = time.monotonic()
    readings: list[tuple[float, int]] = []
    seen_at, last = start, -1
    while True:
        now, count = time.monotonic(), _ticks(cg, cid)
        readings.append((round(now - start, 2), count))
        if count != last:
            seen_at, last = now, count
        elif now - seen_at >= quiet:
            return True, count, readings
        if now - start > timeout:
            return False, count, readings
        time.sleep(0.1)


def _pause(cg: Cgroups, cid: str) -> None:
    resp = cg.api.post(f"/containers/{cid}/pause")
    assert resp.status_code == 204, f"POST /containers/{{id}}/pause answered {resp.status_code} {resp.text[:200]!r}"


def _unpause(cg: Cgroups, cid: str) -> None:
    resp = cg.api.post(f"/containers/{cid}/unpause")
    assert resp.status_code == 204, f"POST /containers/{{id}}/unpause answered {resp.status_code} {resp.text[:200]!r}"


@pytest.fixture
def ticking(cg: Cgroups) -> str:
    cid = cg.containers.run(["sh", "-c", TICKER])
    assert poll(lambda: _ticks(cg, cid) > 2, timeout=10), "the ticking container wrote no log lines in 10 s"
    return cid


@pytest.mark.req("cgroups.freezer.paused-frozen")
def test_pause_freezes_cgroup(cg: Cgroups, ticking: str) -> None:
    pid = cg.pid(ticking)
    _pause(cg, ticking)
    cg.assert_host(pid, files.freezer(cg.version, True), "host side after POST /pause")


@pytest.mark.req("cgroups.freezer.paused-stops-process")
def test_paused_process_does_not_run(cg: Cgroups, ticking: str) -> None:
    _pause(cg, ticking)
    state = cg.containers.inspect(ticking)["State"]
    assert state["Paused"] is True and state["Status"] == "paused", (
        f"after POST /pause State.Paused is {state['Paused']!r} and Status {state['Status']!r}; expected true, 'paused'")
    # 0.4 s is eight ticks of a running ticker; a frozen one adds none once the lines in flight are in.
    quiet, _, readings = _quiet_count(cg, ticking, quiet=0.4)
    assert quiet, (f"a paused container kept running: its log (one line every 50 ms) never stopped growing for "
                   f"0.4 s in the 5 s after POST /pause, (seconds, lines): {readings}; frozen tasks must not be "
                   "scheduled")


@pytest.mark.req("cgroups.freezer.unpause-resumes")
def test_unpause_resumes(cg: Cgroups, ticking: str) -> None:
    pid = cg.pid(ticking)
    _pause(cg, ticking)
    _, frozen_at, _ = _quiet_count(cg, ticking, quiet=0.2)  # the lines in flight at the freeze are in
    _unpause(cg, ticking)
    grew = poll(lambda: _ticks(cg, ticking) > frozen_at + 2, timeout=10)
    assert grew, f"after POST /unpause the container's log stayed at {_ticks(cg, ticking)} lines for 10 s; it must run again"
    state = cg.containers.inspect(ticking)["State"]
    assert state["Paused"] is False and state["Status"] == "running", (
        f"after unpause State.Paused is {state['Paused']!r} and Status {state['Status']!r}; expected false, 'running'")
    cg.assert_host(pid, files.freezer(cg.version, False), "host side after POST /unpause")
