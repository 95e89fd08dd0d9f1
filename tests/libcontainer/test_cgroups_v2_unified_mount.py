"""The v2 driver on the real kernel, for what needs no controller: the host's cgroup2 mount.

On this hybrid host /sys/fs/cgroup/unified is a cgroup2 hierarchy with no resource controllers
of interest, but cgroup.procs, cgroup.freeze, cgroup.events, cgroup.kill and eBPF device programs
are core cgroup2 features that work there. So the v2 driver's freezer, kill, destroy/load and the
BPF_PROG_TYPE_CGROUP_DEVICE filter are verified on the kernel here; the limit files are not (see
test_cgroups_kernel.py's v2 runs and the fake-tree unit tests in test_cgroups_v2_fake.py).
On a v2 host these tests run against /sys/fs/cgroup itself.
"""

from __future__ import annotations

import errno
import os
import signal
import time

import pytest

from refengine.libcontainer.cgroups import ALLOW_ALL, CgroupError, DeviceRule, Resources, V2Driver, ebpf

try:
    from .test_cgroups_support import driver_for, in_cgroup, procs_ctx, read_file
except ImportError:   # tests/libcontainer is not a package
    from test_cgroups_support import driver_for, in_cgroup, procs_ctx, read_file


@pytest.fixture
def procs():
    with procs_ctx() as ps:
        yield ps


@pytest.fixture
def udriver(procs):
    # depends on procs so that its teardown (destroy: kill, thaw, rmdir) runs before procs reaps by PID
    with driver_for("unified") as d:
        yield d


def test_device_filter_enforced_by_kernel(udriver, procs, tmp_path):
    if not os.path.exists("/dev/loop0"):
        pytest.skip("needs /dev/loop0 as a block device outside the default list")
    cg = udriver.create("dev")
    assert len(ebpf.attached_program_ids(cg.dir)) == 1
    p = procs.child(action="open", paths=["/dev/null", "/dev/zero", "/dev/urandom", "/dev/loop0"],
                    mknod=str(tmp_path / "node"))
    cg.add(p.pid)
    assert in_cgroup(p.pid, cg.path)
    procs.release(p)
    out = procs.result(p)
    assert out == {"/dev/null": "ok", "/dev/zero": "ok", "/dev/urandom": "ok", "/dev/loop0": errno.EPERM,
                   "mknod": "ok"}, out

    # update: the new program is attached and the old one detached, never a moment without one
    before = ebpf.attached_program_ids(cg.dir)
    cg.update(Resources(devices=[DeviceRule.parse("b 7:0 r")]))
    after = ebpf.attached_program_ids(cg.dir)
    assert len(after) == 1 and after != before
    p2 = procs.child(action="open", paths=["/dev/loop0"])
    cg.add(p2.pid)
    procs.release(p2)
    assert procs.result(p2) == {"/dev/loop0": "ok"}


def test_device_filter_access_bits(udriver, procs):
    """A read-only rule allows O_RDONLY but not O_RDWR; allow-all (privileged) allows both."""
    if not os.path.exists("/dev/loop0"):
        pytest.skip("needs /dev/loop0")
    cg = udriver.create("ro", Resources(devices=[DeviceRule.parse("b 7:0 r")]))
    p = procs.child(action="open", paths=["/dev/loop0"], rw=["/dev/loop0", "/dev/null"])
    cg.add(p.pid)
    procs.release(p)
    assert procs.result(p) == {"/dev/loop0": "ok", "/dev/loop0:rw": errno.EPERM, "/dev/null:rw": "ok"}
    cg2 = udriver.create("priv", Resources(devices=[ALLOW_ALL]))
    p2 = procs.child(action="open", paths=["/dev/loop0"], rw=["/dev/loop0"])
    cg2.add(p2.pid)
    procs.release(p2)
    assert procs.result(p2) == {"/dev/loop0": "ok", "/dev/loop0:rw": "ok"}


def test_freeze_thaw_counter(udriver, procs, tmp_path):
    counter = tmp_path / "counter"
    cg = udriver.create("frz")
    p = procs.child(action="counter", file=str(counter))
    cg.add(p.pid)
    procs.release(p)
    assert procs.result(p) == {"started": True}

    def value() -> int:
        t = counter.read_text().strip()
        return int(t) if t else 0

    end = time.monotonic() + 5
    while value() < 5 and time.monotonic() < end:
        time.sleep(0.01)
    cg.freeze()
    assert cg.frozen() and read_file(cg.dir, "cgroup.freeze") == "1"
    a = value()
    time.sleep(0.3)
    assert value() == a, "the counter moved while frozen"
    cg.thaw()
    assert not cg.frozen()
    end = time.monotonic() + 5
    while value() <= a + 5 and time.monotonic() < end:
        time.sleep(0.01)
    assert value() > a + 5, "the counter did not resume"


def test_kill_all_and_destroy(udriver, procs):
    cg = udriver.create("kill")
    ps = [procs.sleeper() for _ in range(3)]
    for p in ps:
        cg.add(p.pid)
    assert cg.pids() == sorted(p.pid for p in ps)
    cg.kill_all(signal.SIGTERM)              # freeze, signal each, thaw
    assert [p.wait(timeout=10) for p in ps] == [-signal.SIGTERM] * 3
    more = [procs.sleeper() for _ in range(2)]
    for p in more:
        cg.add(p.pid)
    cg.freeze()
    cg.kill_all()                            # cgroup.kill, on a frozen cgroup too
    assert [p.wait(timeout=10) for p in more] == [-signal.SIGKILL] * 2
    assert not cg.frozen()
    last = procs.sleeper()
    cg.add(last.pid)
    cg.destroy()
    assert last.wait(timeout=10) == -signal.SIGKILL
    assert not os.path.exists(cg.dir) and udriver.list() == []


def test_load_after_restart(udriver, procs):
    cg = udriver.create("keep")
    p = procs.sleeper()
    cg.add(p.pid)
    again = V2Driver(udriver.parent, mountpoint=udriver.mountpoint)
    loaded = again.load("keep")
    assert loaded.pids() == [p.pid] and loaded.dir == cg.dir
    # device rules can be replaced on a loaded cgroup (the attached program is found with BPF_PROG_QUERY)
    loaded.update(Resources(devices=[]))
    assert len(ebpf.attached_program_ids(cg.dir)) == 1


def test_missing_controller_is_a_clear_error(udriver):
    if "memory" in read_file(udriver.mountpoint, "cgroup.controllers").split():
        pytest.skip("this cgroup2 mount has the memory controller")
    with pytest.raises(CgroupError, match="controller memory is not available"):
        udriver.create("mem", Resources(memory=64 << 20))
    assert udriver.list() == []
