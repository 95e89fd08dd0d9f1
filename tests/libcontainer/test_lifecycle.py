"""Process lifecycle: wait, signals to PID 1, stop (SIGKILL of the whole cgroup), pause, reaping, cleanup."""

from __future__ import annotations

import os
import select
import signal
import time

import pytest

try:
    from .conftest import children_of
except ImportError:  # tests/libcontainer is not a package
    from conftest import children_of


def test_payload_is_our_child(lc) -> None:
    """CLONE_PARENT: the intermediate process exited; the payload's parent is us."""
    c = lc.start(["sleep", "60"])
    assert c.pid in children_of(os.getpid())
    with open(f"/proc/{c.pid}/stat") as fh:
        assert int(fh.read().rpartition(")")[2].split()[1]) == os.getpid()


def test_wait_timeout_then_exit(lc) -> None:
    c = lc.start(["sleep", "0.5"])
    with pytest.raises(TimeoutError):
        c.wait(0.05)
    assert c.status() == "running"
    assert c.wait(10) == 0
    assert c.status() == "stopped" and c.exit_code == 0


def test_pidfd_readable_on_exit(lc) -> None:
    c = lc.start(["sleep", "0.2"])
    r, _, _ = select.select([c.process], [], [], 10)
    assert r, "the pidfd becomes readable when the payload exits (event-loop friendly)"
    assert c.wait(1) == 0


def test_pid1_ignores_unhandled_term(lc) -> None:
    c = lc.start(["sleep", "60"])
    c.signal(signal.SIGTERM)
    with pytest.raises(TimeoutError):
        c.wait(0.5)
    c.signal(signal.SIGKILL)
    assert c.wait(10) == 137


def test_pid1_handled_signal(lc) -> None:
    c = lc.start(["sh", "-c", "trap 'exit 42' USR1; echo ready; while :; do sleep 0.05; done"])
    assert c.process.stdout.readline() == b"ready\n"
    c.signal(signal.SIGUSR1)
    assert c.wait(10) == 42


def test_stop_escalates_to_sigkill_of_the_cgroup(lc) -> None:
    c = lc.start(["sh", "-c", "sleep 60 & sleep 60 & wait"], cgroup=True)
    time.sleep(0.2)
    assert len(c.cgroup.pids()) == 3
    t0 = time.monotonic()
    assert c.stop(timeout=0.5) == 137
    assert time.monotonic() - t0 < 5
    assert c.cgroup.pids() == []


def test_stop_graceful(lc) -> None:
    c = lc.start(["sh", "-c", "trap 'exit 0' TERM; echo ready; while :; do sleep 0.05; done"])
    assert c.process.stdout.readline() == b"ready\n"
    assert c.stop(timeout=10) == 0


def test_signal_all_processes(lc) -> None:
    c = lc.start(["sh", "-c", "sleep 60; echo child-died-$?"], cgroup=True)
    time.sleep(0.2)
    c.signal(signal.SIGTERM, all_processes=True)  # sh (PID 1) ignores it, its sleep child dies
    assert c.process.stdout.read().endswith(b"child-died-143\n")
    assert c.wait(10) == 0


def test_pause_resume(lc) -> None:
    c = lc.start(["sh", "-c", "while :; do echo x; sleep 0.05; done"], cgroup=True)
    c.pause()
    assert c.cgroup.frozen()
    c.resume()
    assert c.process.stdout.readline() == b"x\n"
    c.destroy()
    assert c.status() == "stopped"


def test_destroy_paused_container(lc) -> None:
    c = lc.start(["sleep", "60"], cgroup=True)
    c.pause()
    c.destroy()
    assert c.exit_code == 137


def test_orphans_are_reaped_by_pid1_shell(lc) -> None:
    """PID 1 is the payload (Docker without --init): a shell reaps the orphans reparented to it."""
    rc, out = lc.run("(sleep 0.1 &) ; sleep 0.5; ps -o stat,comm | grep -c '^Z' || true")
    assert out.strip() == "0"


def test_orphans_left_as_zombies_without_a_reaping_init(lc) -> None:
    """...and a PID 1 that does not wait() leaves them as zombies, as in Docker without --init."""
    c = lc.start(["sh", "-c", "(sleep 0.1 &); exec sleep 60"])
    time.sleep(0.6)
    inside = [p for p in children_of(c.pid)]
    states = []
    for pid in inside:
        with open(f"/proc/{pid}/stat") as fh:
            states.append(fh.read().rpartition(")")[2].split()[0])
    assert "Z" in states
    c.destroy()


def test_destroy_cleans_everything(lc, cgroup_parent) -> None:
    from refengine.libcontainer import cgroups

    c = lc.start(["sh", "-c", "sleep 60 & sleep 60"], cgroup=True)
    name = c.config.cgroup_name
    pid = c.pid
    c.destroy()
    c.destroy()  # idempotent
    assert name not in cgroups.detect(cgroup_parent).list()
    assert not os.path.exists(f"/proc/{pid}")
    assert c.status() == "stopped" and c.exit_code == 137


def test_failed_start_leaves_no_cgroup(lc, cgroup_parent) -> None:
    from refengine.libcontainer import StartError, cgroups

    c = lc.make(["nope"], cgroup=True)
    with pytest.raises(StartError):
        c.start()
    assert c.config.cgroup_name not in cgroups.detect(cgroup_parent).list()


def test_before_release_hook_sees_the_waiting_child(lc) -> None:
    """The hook runs with the payload's pid before it continues: the place for the veth handshake."""
    seen: dict[str, object] = {}

    def hook(pid: int) -> None:
        seen["pid"] = pid
        seen["net"] = os.stat(f"/proc/{pid}/ns/net").st_ino
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            seen["cmdline"] = fh.read()

    c = lc.make(["sleep", "60"])
    c.start(before_release=hook)
    assert seen["pid"] == c.pid
    assert seen["net"] == os.stat(f"/proc/{c.pid}/ns/net").st_ino
    assert b"refengine.libcontainer" in seen["cmdline"], "still the init when the hook runs"


def test_failing_hook_kills_the_child(lc) -> None:
    def hook(pid: int) -> None:
        raise RuntimeError("veth setup failed")

    c = lc.make(["sleep", "60"], cgroup=True)
    with pytest.raises(RuntimeError, match="veth"):
        c.start(before_release=hook)
    assert c.status() in ("created", "stopped")


def test_oom_score_adj(lc) -> None:
    rc, out = lc.run(["cat", "/proc/self/oom_score_adj"], oom_score_adj=500)
    assert out.strip() == "500"
