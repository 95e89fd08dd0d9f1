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
    time.sleep(0.5)  # a line written just before the freeze may still be on its way into the log
    first = _ticks(cg, ticking)
    time.sleep(0.6)
    later = _ticks(cg, ticking)
    assert later == first, (f"a paused container kept running: its log grew from {first} to {later} lines in 0.6 s "
                            "(it writes one every 50 ms); frozen tasks must not be scheduled")


@pytest.mark.req("cgroups.freezer.unpause-resumes")
def test_unpause_resumes(cg: Cgroups, ticking: str) -> None:
    pid = cg.pid(ticking)
    _pause(cg, ticking)
    time.sleep(0.3)
    frozen_at = _ticks(cg, ticking)
    _unpause(cg, ticking)
    grew = poll(lambda: _ticks(cg, ticking) > frozen_at + 2, timeout=10)
    assert grew, f"after POST /unpause the container's log stayed at {_ticks(cg, ticking)} lines for 10 s; it must run again"
    state = cg.containers.inspect(ticking)["State"]
    assert state["Paused"] is False and state["Status"] == "running", (
        f"after unpause State.Paused is {state['Paused']!r} and Status {state['Status']!r}; expected false, 'running'")
    cg.assert_host(pid, files.freezer(cg.version, False), "host side after POST /unpause")
