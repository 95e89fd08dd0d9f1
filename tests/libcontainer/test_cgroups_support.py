"""Shared helpers for the cgroups tests (no tests here): drivers under a unique parent, child processes.

Every driver made here uses a `refengine-test-<random>` parent and is torn down with everything
in it; every process is started here and killed by its PID at the end, even when a test fails.
"""

from __future__ import annotations

import json
import os
import secrets
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from refengine.libcontainer.cgroups import CgroupDriver, V1Driver, V2Driver, detect_layout

V2_SKIP_REASON = "this host is cgroup v1 (hybrid): /sys/fs/cgroup is not cgroup2"

# The child program: wait for a line on stdin (the parent puts us in the cgroup first), act,
# print one JSON line, then hold on stdin until killed. Actions are small and bounded.
CHILD = r'''
import json, os, stat, sys, time
spec = json.loads(sys.argv[1])
sys.stdin.readline()
act = spec["action"]
out = {}
if act == "fork":
    n, err = 0, None
    for _ in range(spec["tries"]):
        try:
            pid = os.fork()
        except OSError as e:
            err = e.errno
            break
        if pid == 0:
            time.sleep(120)
            os._exit(0)
        n += 1
    out = {"forked": n, "errno": err}
elif act == "alloc":
    keep = []
    for _ in range(spec["mib"]):
        keep.append(b"\x01" * (1 << 20))
    out = {"allocated": len(keep)}
elif act == "counter":
    fd = os.open(spec["file"], os.O_WRONLY | os.O_CREAT, 0o600)
    print(json.dumps({"started": True}), flush=True)
    n = 0
    while True:
        n += 1
        os.pwrite(fd, b"%20d" % n, 0)
        time.sleep(0.002)
elif act == "open":
    for p in spec["paths"]:
        try:
            os.close(os.open(p, os.O_RDONLY))
            out[p] = "ok"
        except OSError as e:
            out[p] = e.errno
    for p in spec.get("rw", []):
        try:
            os.close(os.open(p, os.O_RDWR))
            out[p + ":rw"] = "ok"
        except OSError as e:
            out[p + ":rw"] = e.errno
    if spec.get("mknod"):
        try:
            os.mknod(spec["mknod"], 0o600 | stat.S_IFCHR, os.makedev(1, 3))
            out["mknod"] = "ok"
        except OSError as e:
            out["mknod"] = e.errno
elif act == "work":
    end = time.monotonic() + spec.get("burn", 0)
    while time.monotonic() < end:
        pass
    if spec.get("write"):
        import mmap
        buf = mmap.mmap(-1, 1 << 20)          # page aligned, as O_DIRECT wants
        buf.write(b"\x02" * (1 << 20))
        fd = os.open(spec["write"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_DIRECT, 0o600)
        os.write(fd, buf)
        os.fsync(fd)
        os.close(fd)
    keep = [b"\x01" * (1 << 20) for _ in range(spec.get("mib", 0))]
    out = {"done": True}
print(json.dumps(out), flush=True)
sys.stdin.readline()
'''


def unique_parent() -> str:
    return f"refengine-test-{secrets.token_hex(4)}"


def require_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("cgroup tests need root")


def parent_dirs(driver: CgroupDriver) -> list[str]:
    if isinstance(driver, V1Driver):
        return [os.path.join(m, driver.parent) for m in sorted(set(driver.mounts.values()))]
    assert isinstance(driver, V2Driver)
    return [os.path.join(driver.mountpoint, driver.parent)]


def teardown_driver(driver: CgroupDriver) -> None:
    """Destroy every cgroup under the test parent (killing what is inside), then the parent itself."""
    errors = []
    for name in driver.list():
        try:
            driver.load(name).destroy()
        except Exception as e:   # keep going: the parent must still go
            errors.append(f"destroy {name}: {e}")
    try:
        driver.remove_parent()
    except Exception as e:
        errors.append(f"remove parent: {e}")
    left = [d for d in parent_dirs(driver) if os.path.exists(d)]
    assert not errors and not left, f"cleanup failed: {errors}; left behind: {left}"


def make_driver(kind: str) -> CgroupDriver:
    """kind: "v1" (the host's v1 hierarchies), "v2" (a unified host), "unified" (any cgroup2 mount)."""
    require_root()
    layout = detect_layout()
    if kind == "v1":
        if not layout.v1:
            pytest.skip("this host has no cgroup v1 controller hierarchies")
        return V1Driver(unique_parent(), mounts=layout.v1)
    if kind == "v2":
        if layout.mode != "v2":
            pytest.skip(V2_SKIP_REASON)
        return V2Driver(unique_parent(), mountpoint=layout.unified)
    if layout.unified is None:
        pytest.skip("no cgroup2 filesystem is mounted on this host")
    return V2Driver(unique_parent(), mountpoint=layout.unified)


@contextmanager
def driver_for(kind: str) -> Iterator[CgroupDriver]:
    d = make_driver(kind)
    try:
        yield d
    finally:
        teardown_driver(d)


class Procs:
    """Processes a test starts; all are killed by PID and reaped at the end."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []

    def child(self, **spec: object) -> subprocess.Popen:
        p = subprocess.Popen([sys.executable, "-I", "-S", "-c", CHILD, json.dumps(spec)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.procs.append(p)
        return p

    def sleeper(self) -> subprocess.Popen:
        p = subprocess.Popen(["sleep", "300"], stdin=subprocess.DEVNULL)
        self.procs.append(p)
        return p

    @staticmethod
    def release(p: subprocess.Popen) -> None:
        assert p.stdin is not None
        p.stdin.write("\n")
        p.stdin.flush()

    @staticmethod
    def result(p: subprocess.Popen, timeout: float = 20.0) -> dict:
        assert p.stdout is not None
        ready, _, _ = select.select([p.stdout], [], [], timeout)
        assert ready, f"child {p.pid} printed nothing within {timeout}s"
        line = p.stdout.readline()
        assert line, f"child {p.pid} exited (rc {p.poll()}) without a result"
        return json.loads(line)

    def cleanup(self) -> None:
        """SIGKILL every process still running (by PID), then reap them all within one deadline.

        A process in a frozen cgroup dies only once thawed: tear the cgroups down first (the test
        fixtures make the driver depend on this one so that its teardown runs before this).
        """
        for p in self.procs:
            if p.poll() is None:
                try:
                    p.kill()
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 10
        for p in self.procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            for f in (p.stdin, p.stdout):
                if f is not None:
                    try:
                        f.close()
                    except OSError:
                        pass


@contextmanager
def procs_ctx() -> Iterator[Procs]:
    ps = Procs()
    try:
        yield ps
    finally:
        ps.cleanup()


def in_cgroup(pid: int, path: str) -> bool:
    """Whether /proc/<pid>/cgroup shows ``path`` (on at least one hierarchy)."""
    with open(f"/proc/{pid}/cgroup") as fh:
        return any(line.rstrip("\n").split(":", 2)[2] == path for line in fh)


def read_file(d: str, f: str) -> str:
    with open(os.path.join(d, f)) as fh:
        return fh.read().strip()
