"""The per-container monitor as the zygote makes it (monitor_launch.run_split): a forked child of the
zygote that never execs, so what an exec would have given for free is checked here: the marker and
the container id in its command line (tools find monitors by them), the daemon as its parent, only its
own fds (nothing of the zygote's), the container's init as its child, and no starter or zombie left."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest

from refengine.drivers.exec import monitor_proto as proto
from refengine.drivers.exec.monitor import children as _children

from .daemons import refengined_with_probe

docker = pytest.importorskip("docker")
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="refengined runs containers as root")


@pytest.fixture(scope="module")
def daemon() -> Iterator[tuple[object, str, int]]:
    with refengined_with_probe("monitor") as d:
        yield d.client, d.image, d.pid


def _cmdline(pid: int) -> list[str]:
    with open(f"/proc/{pid}/cmdline", "rb") as fh:
        return [w.decode() for w in fh.read().split(b"\0") if w]


def _marked(args: list[str]) -> str | None:
    """The id after the marker (as bench/memory.py and ps users find monitors)."""
    return args[args.index(proto.MARKER) + 1] if proto.MARKER in args[:-1] else None


def _monitor_of(daemon_pid: int, cid: str) -> int:
    found = [p for p in _children(daemon_pid) if _marked(_cmdline(p)) == cid]
    assert len(found) == 1, (f"expected one child of the daemon with `{proto.MARKER} {cid[:12]}` as its command "
                             f"line; children: {[(p, _cmdline(p)[:2]) for p in _children(daemon_pid)]}")
    return found[0]


def test_monitor_process_shape(daemon) -> None:
    cl, image, daemon_pid = daemon
    c = cl.containers.run(image, ["sleep", "60"], detach=True, network_mode="none")
    try:
        monitor = _monitor_of(daemon_pid, c.id)
        init = c.attrs["State"]["Pid"] or cl.containers.get(c.id).attrs["State"]["Pid"]
        assert _children(monitor) == [init], (
            f"the monitor's children are {_children(monitor)}; expected only the container's init {init} "
            "(the starter that forked it must be gone, the init reparented to the monitor)")
        fds = {int(fd): os.readlink(f"/proc/{monitor}/fd/{fd}") for fd in os.listdir(f"/proc/{monitor}/fd")}
        kinds = sorted(t.split(":")[0] if ":" in t else ("container file" if c.id in t else t) for t in fds.values())
        # 0/1 /dev/null, 2 monitor.log, the daemon channel and the listener, epoll, the init's pidfd,
        # the container dir, stdout/stderr pipes, the json-file log
        assert kinds == sorted(["/dev/null", "/dev/null", "container file", "socket", "anon_inode",
                                "anon_inode", "container file", "socket", "pipe", "pipe", "container file"]), (
            f"the monitor holds fds it should not (a zygote's would show here): {fds}")
    finally:
        c.remove(force=True)


def test_no_zombie_after_exit(daemon) -> None:
    cl, image, daemon_pid = daemon
    c = cl.containers.run(image, ["true"], detach=True, network_mode="none")
    try:
        assert c.wait(timeout=30)["StatusCode"] == 0
    finally:
        c.remove(force=True)
    zombies = []
    for p in _children(daemon_pid):
        with open(f"/proc/{p}/stat") as fh:
            if fh.read().rsplit(")", 1)[1].split()[0] == "Z":
                zombies.append((p, _cmdline(p)))
    assert not zombies, f"the daemon has unreaped children after a container exited: {zombies}"


def _settled(check, tries: int = 30):  # type: ignore[no-untyped-def]
    """`check()` until it returns something falsy (then None), or its last (truthy) answer."""
    for _ in range(tries):
        found = check()
        if not found:
            return None
        time.sleep(0.1)
    return found


def test_orphans_in_the_host_pid_namespace_do_not_stay_zombies(daemon) -> None:
    """The monitor is a child subreaper while the starter hands the init over, and a container in the
    host's PID namespace that orphans a process at once (before the hand-over ends) makes it the
    monitor's child: the monitor must reap it (it waited on the init alone, so it stayed a zombie)."""
    cl, image, daemon_pid = daemon
    c = cl.containers.run(image, ["sh", "-c", "(sleep 0.3 &); exec sleep 60"], detach=True, pid_mode="host",
                          network_mode="none")
    try:
        monitor = _monitor_of(daemon_pid, c.id)
        init = cl.containers.get(c.id).attrs["State"]["Pid"]
        extra = _settled(lambda: [p for p in _children(monitor) if p != init], tries=10)
        assert extra is None, f"the monitor of a --pid=host container has children besides its init: {extra}"
    finally:
        c.remove(force=True)


def test_failed_start_leaves_no_process(daemon) -> None:
    cl, image, daemon_pid = daemon
    before = set(_children(daemon_pid))
    c = cl.containers.create(image, ["/no/such/binary"], network_mode="none")
    try:
        with pytest.raises(docker.errors.APIError):
            c.start()
        left = _settled(lambda: sorted(set(_children(daemon_pid)) - before))
        assert left is None, f"a failed start left processes under the daemon: {[(p, _cmdline(p)) for p in left]}"
    finally:
        c.remove(force=True)
