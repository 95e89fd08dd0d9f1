"""UNIT TESTS of the v2 driver's file-writing logic against a fake directory tree.

This is not a test of kernel behaviour: a temporary directory laid out like a cgroup2 mount stands
in for cgroupfs, and FakeV2Tree plays the kernel's part only as far as the driver relies on it
(subtree_control +/-, cgroup.procs, cgroup.freeze -> cgroup.events, cgroup.kill, interface files
appearing per enabled controller, basic value validation). It checks which files the v2 code
writes, with what values and in what order, so that the v2 implementation is exercised on this
cgroup v1 host. The kernel-level v2 checks are in test_cgroups_kernel.py (v2 runs, skipped here)
and test_cgroups_v2_unified_mount.py (controller-independent parts, run here).
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import signal
from pathlib import Path

import pytest

from refengine.libcontainer.cgroups import (
    CgroupError,
    CgroupNotFound,
    DeviceRule,
    Resources,
    V2Driver,
    blkio_to_io_weight,
    effective_rules,
    fs,
    shares_to_weight,
)
from refengine.libcontainer.cgroups import v2 as v2mod
from refengine.libcontainer.cgroups.devices import reduce_rules
from refengine.libcontainer.cgroups.ebpf import compile_rules, run_program

MiB = 1 << 20

CORE = {"cgroup.subtree_control": "", "cgroup.procs": "", "cgroup.events": "populated 0\nfrozen 0\n",
        "cgroup.freeze": "0", "cgroup.kill": "", "cgroup.type": "domain"}
PER_CONTROLLER = {
    "memory": {"memory.max": "max", "memory.swap.max": "max", "memory.low": "0", "memory.current": "0",
               "memory.peak": "0", "memory.stat": "anon 0\nfile 0\n", "memory.swap.current": "0",
               "memory.events": "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n"},
    "cpu": {"cpu.max": "max 100000", "cpu.weight": "100",
            "cpu.stat": "usage_usec 0\nuser_usec 0\nsystem_usec 0\nnr_periods 0\nnr_throttled 0\nthrottled_usec 0\n"},
    "cpuset": {"cpuset.cpus": "", "cpuset.mems": "", "cpuset.cpus.effective": "0-1"},
    "io": {"io.weight": "default 100", "io.stat": ""},
    "pids": {"pids.max": "max", "pids.current": "0"},
}


class FakeV2Tree:
    """A tmp dir shaped like a cgroup2 mount; ``write`` replaces fs.write and does what the kernel would."""

    def __init__(self, root: Path, controllers: str = "cpuset cpu io memory hugetlb pids", bfq: bool = False,
                 kill: bool = True) -> None:
        self.root = root
        self.bfq = bfq
        self.kill = kill
        self.writes: list[tuple[str, str, str]] = []    # (dir relative to the mount, file, value)
        root.mkdir()
        (root / "cgroup.controllers").write_text(controllers + "\n")
        (root / "cgroup.subtree_control").write_text(controllers + "\n")   # the root delegates all (systemd does)
        (root / "cgroup.procs").write_text("")

    def populate(self, d: Path) -> None:
        enabled = (d.parent / "cgroup.subtree_control").read_text().split()
        files = {"cgroup.controllers": " ".join(enabled), **CORE}
        if not self.kill:
            del files["cgroup.kill"]
        for c in enabled:
            files.update(PER_CONTROLLER.get(c, {}))
        if self.bfq and "io" in enabled:
            files["io.bfq.weight"] = "default 100"
        for name, text in files.items():
            (d / name).write_text(text)

    def rel(self, dirpath: str) -> str:
        return os.path.relpath(dirpath, self.root)

    def write(self, dirpath: str, filename: str, value: str | int) -> None:
        value = str(value)
        path = Path(dirpath) / filename
        self.writes.append((self.rel(dirpath), filename, value))
        if not path.exists():   # cgroupfs has no O_CREAT
            raise CgroupError(f"cgroup: cannot open {path} for writing: No such file or directory", errno.ENOENT)

        def einval() -> CgroupError:
            return CgroupError(f"cgroup: writing {value!r} to {path}: Invalid argument", errno.EINVAL)

        if filename == "cgroup.subtree_control":
            have = set((Path(dirpath) / "cgroup.controllers").read_text().split())
            cur = set(path.read_text().split())
            for tok in value.split():
                if tok[1:] not in have:
                    raise einval()
                (cur.add if tok[0] == "+" else cur.discard)(tok[1:])
            path.write_text(" ".join(sorted(cur)))
        elif filename == "cgroup.procs":
            path.write_text(path.read_text() + value + "\n")
            self._events(dirpath, populated=1)
        elif filename == "cgroup.freeze":
            path.write_text(value)
            self._events(dirpath, frozen=int(value))
        elif filename == "cgroup.kill":
            (Path(dirpath) / "cgroup.procs").write_text("")
            self._events(dirpath, populated=0)
        elif filename == "cpu.weight":
            if not 1 <= int(value) <= 10000:
                raise einval()
            path.write_text(value)
        elif filename == "cpu.max":
            q, p = value.split()
            if not (q == "max" or int(q) > 0) or int(p) <= 0:
                raise einval()
            path.write_text(value)
        elif filename in ("memory.max", "memory.swap.max", "memory.low", "pids.max"):
            if not (value == "max" or int(value) >= 0):
                raise einval()
            path.write_text(value)
        else:
            path.write_text(value)

    def _events(self, dirpath: str, **kv: int) -> None:
        p = Path(dirpath) / "cgroup.events"
        cur = dict(line.split() for line in p.read_text().splitlines())
        cur.update({k: str(v) for k, v in kv.items()})
        p.write_text("".join(f"{k} {v}\n" for k, v in cur.items()))

    def wrote(self, rel: str) -> list[tuple[str, str]]:
        return [(f, v) for d, f, v in self.writes if d == rel]


class FakeV2Driver(V2Driver):
    def __init__(self, tree: FakeV2Tree, parent: str = "refengine-test", **kw) -> None:
        self.tree = tree
        self.filters: list[tuple[str, list[DeviceRule]]] = []
        super().__init__(parent, mountpoint=str(tree.root),
                         device_filter=lambda d, rules: self.filters.append((d, rules)), **kw)

    def _make_dir(self, path: str) -> None:
        os.mkdir(path)
        self.tree.populate(Path(path))

    def _remove_dir(self, path: str) -> None:
        shutil.rmtree(path)


@pytest.fixture
def tree(tmp_path, monkeypatch):
    t = FakeV2Tree(tmp_path / "cgroup")
    monkeypatch.setattr(fs, "write", t.write)
    return t


@pytest.fixture
def signals(monkeypatch):
    sent: list[tuple[list[int], int]] = []
    monkeypatch.setattr(v2mod, "signal_pids", lambda pids, sig: sent.append((list(pids), sig)))
    return sent


def read(tree: FakeV2Tree, rel: str, f: str) -> str:
    return (tree.root / rel / f).read_text().strip()


def test_create_writes_every_limit(tree):
    drv = FakeV2Driver(tree)
    r = Resources(memory=64 * MiB, memory_swap=96 * MiB, memory_reservation=32 * MiB, cpu_shares=512,
                  cpu_quota=50000, cpu_period=100000, cpuset_cpus="0", cpuset_mems="0", pids_limit=50,
                  blkio_weight=300)
    cg = drv.create("c1", r)
    c = "refengine-test/c1"
    assert read(tree, c, "memory.max") == str(64 * MiB)
    assert read(tree, c, "memory.swap.max") == str(32 * MiB)      # Docker's memory+swap minus memory
    assert read(tree, c, "memory.low") == str(32 * MiB)
    assert read(tree, c, "cpu.weight") == str(shares_to_weight(512)) == "20"
    assert read(tree, c, "cpu.max") == "50000 100000"
    assert read(tree, c, "cpuset.cpus") == "0" and read(tree, c, "cpuset.mems") == "0"
    assert read(tree, c, "pids.max") == "50"
    assert read(tree, c, "io.weight") == str(blkio_to_io_weight(300))
    # controllers were enabled in our own parent only; the mount root was never written
    assert read(tree, "refengine-test", "cgroup.subtree_control") == "cpu cpuset io memory pids"
    assert tree.wrote(".") == []
    assert [f for f, _ in tree.wrote("refengine-test")] == ["cgroup.subtree_control"] * 5
    # device rules: Docker's defaults handed to the eBPF filter, once
    assert drv.filters == [(str(tree.root / c), effective_rules(None))]
    assert cg.path == "/refengine-test/c1" and cg.paths == {"": str(tree.root / c)}


def test_device_rules_reach_the_filter_and_compile(tree):
    drv = FakeV2Driver(tree)
    cg = drv.create("d")
    cg.update(Resources(devices=[DeviceRule.parse("b 8:0 rw")]))
    assert len(drv.filters) == 2
    rules = drv.filters[-1][1]
    prog = compile_rules(rules)
    state = reduce_rules(rules)
    assert run_program(prog, 1, 2 | 4, 8, 0) == 1 == int(state.permits("b", 8, 0, "rw"))
    assert run_program(prog, 1, 2, 8, 1) == 0
    cg.update(Resources(pids_limit=5))          # no devices in the update: the filter is left alone
    assert len(drv.filters) == 2


def test_bfq_weight_is_written_unconverted(tmp_path, monkeypatch):
    t = FakeV2Tree(tmp_path / "cgroup", bfq=True)
    monkeypatch.setattr(fs, "write", t.write)
    FakeV2Driver(t).create("b", Resources(blkio_weight=300))
    assert read(t, "refengine-test/b", "io.bfq.weight") == "300"
    assert read(t, "refengine-test/b", "io.weight") == "default 100"     # untouched


def test_cpu_max_keeps_the_half_not_updated(tree):
    cg = FakeV2Driver(tree).create("cpu", Resources(cpu_quota=50000, cpu_period=100000))
    c = "refengine-test/cpu"
    cg.update(Resources(cpu_period=200000))
    assert read(tree, c, "cpu.max") == "50000 200000"
    cg.update(Resources(cpu_quota=25000))
    assert read(tree, c, "cpu.max") == "25000 200000"
    cg.update(Resources(cpu_quota=-1))
    assert read(tree, c, "cpu.max") == "max 200000"
    cg.update(Resources(cpu_shares=2))
    assert read(tree, c, "cpu.weight") == "1"
    cg.update(Resources(cpu_shares=262144))
    assert read(tree, c, "cpu.weight") == "10000"


def test_memory_and_swap_semantics(tree):
    cg = FakeV2Driver(tree).create("mem")
    c = "refengine-test/mem"
    cg.update(Resources(memory=64 * MiB, memory_swap=64 * MiB))
    assert (read(tree, c, "memory.max"), read(tree, c, "memory.swap.max")) == (str(64 * MiB), "0")
    cg.update(Resources(memory_swap=96 * MiB))          # swap alone: relative to the memory.max in force
    assert read(tree, c, "memory.swap.max") == str(32 * MiB)
    cg.update(Resources(memory=128 * MiB, memory_swap=-1))
    assert (read(tree, c, "memory.max"), read(tree, c, "memory.swap.max")) == (str(128 * MiB), "max")
    cg.update(Resources(memory_swap=200 * MiB))
    cg.update(Resources(memory=-1))                      # unlimited memory, swap unset: swap unlimited too
    assert (read(tree, c, "memory.max"), read(tree, c, "memory.swap.max")) == ("max", "max")
    with pytest.raises(CgroupError, match="without memory limit"):
        cg.update(Resources(memory_swap=96 * MiB))       # memory.max is "max" now
    with pytest.raises(CgroupError, match=">= memory limit"):
        cg.update(Resources(memory=64 * MiB, memory_swap=32 * MiB))
    cg.update(Resources(memory_reservation=16 * MiB, pids_limit=0))
    assert read(tree, c, "memory.low") == str(16 * MiB) and read(tree, c, "pids.max") == "max"
    cg.update(Resources(pids_limit=-1))
    assert read(tree, c, "pids.max") == "max"


def test_oom_kill_disable_is_ignored_with_a_warning(tree, caplog):
    cg = FakeV2Driver(tree).create("o")
    before = len(tree.writes)
    with caplog.at_level(logging.WARNING):
        cg.update(Resources(oom_kill_disable=True))
    assert len(tree.writes) == before
    assert "oom_kill_disable is not supported by cgroup v2" in caplog.text


def test_missing_controller_is_a_clear_error_and_leaves_nothing(tmp_path, monkeypatch):
    t = FakeV2Tree(tmp_path / "cgroup", controllers="cpu pids")
    monkeypatch.setattr(fs, "write", t.write)
    drv = FakeV2Driver(t)
    with pytest.raises(CgroupError, match=r"controller memory is not available .*cgroup.controllers: cpu pids"):
        drv.create("m", Resources(memory=64 * MiB))
    assert drv.list() == []
    drv.create("p", Resources(pids_limit=3))               # what is available still works
    assert read(t, "refengine-test/p", "pids.max") == "3"


def test_freeze_and_thaw_write_cgroup_freeze(tree):
    cg = FakeV2Driver(tree).create("f")
    cg.freeze()
    assert read(tree, "refengine-test/f", "cgroup.freeze") == "1" and cg.frozen()
    cg.thaw()
    assert read(tree, "refengine-test/f", "cgroup.freeze") == "0" and not cg.frozen()


@pytest.mark.parametrize("when", ["before-the-write", "after-the-write"])
def test_thaw_of_a_cgroup_removed_meanwhile(tree, monkeypatch, when: str):
    """A frozen task dies of SIGKILL on v2 and its owner may remove the cgroup before thaw writes
    cgroup.freeze or reads cgroup.events back: thawed, not an error (kernel twin in test_cgroups_kernel.py)."""
    cg = FakeV2Driver(tree).create("gone")
    cg.freeze()

    def write_then_remove(dirpath: str, filename: str, value: str | int) -> None:
        thawing = (filename, str(value)) == ("cgroup.freeze", "0")
        if thawing and when == "before-the-write":
            shutil.rmtree(dirpath)
        tree.write(dirpath, filename, value)
        if thawing and when == "after-the-write":
            shutil.rmtree(dirpath)

    monkeypatch.setattr(fs, "write", write_then_remove)
    cg.thaw()
    assert not os.path.exists(cg.dir)


def test_kill_all_paths(tree, signals):
    cg = FakeV2Driver(tree).create("k")
    cg.kill_all()                               # nothing inside: nothing written, nothing sent
    assert tree.wrote("refengine-test/k") == [] and signals == []
    cg.add(4242)                                # a made-up PID: the fake never signals anything
    assert cg.pids() == [4242]
    cg.kill_all(signal.SIGTERM)                 # freeze, signal each, thaw
    assert signals == [([4242], signal.SIGTERM)]
    assert [f for f, _ in tree.wrote("refengine-test/k")][-2:] == ["cgroup.freeze", "cgroup.freeze"]
    cg.kill_all()                               # SIGKILL: one write to cgroup.kill, no per-PID signals
    assert tree.wrote("refengine-test/k")[-1] == ("cgroup.kill", "1") and len(signals) == 1
    assert cg.pids() == []


def test_kill_all_without_cgroup_kill(tmp_path, monkeypatch, signals):
    t = FakeV2Tree(tmp_path / "cgroup", kill=False)   # kernels before 5.14
    monkeypatch.setattr(fs, "write", t.write)
    cg = FakeV2Driver(t).create("k")
    cg.add(4242)
    cg.kill_all()
    assert signals == [([4242], signal.SIGKILL)]
    assert [v for f, v in t.wrote("refengine-test/k") if f == "cgroup.freeze"] == ["1", "0"]


def test_destroy_list_load_and_remove_parent(tree, signals):
    drv = FakeV2Driver(tree)
    cg = drv.create("x")
    drv.create("y")
    assert drv.list() == ["x", "y"]
    assert drv.load("x").dir == cg.dir
    cg.add(4242)
    cg.destroy()                                # cgroup.kill empties it, then the directory goes
    assert ("cgroup.kill", "1") in tree.wrote("refengine-test/x")
    assert not os.path.exists(cg.dir) and drv.list() == ["y"]
    with pytest.raises(CgroupNotFound):
        drv.load("x")
    with pytest.raises(CgroupError, match="still has child cgroups"):
        drv.remove_parent()
    drv.load("y").destroy()
    drv.remove_parent()
    assert not (tree.root / "refengine-test").exists() and tree.root.exists()


def test_nested_parent_enables_each_level(tree):
    drv = FakeV2Driver(tree, parent="outer/inner")
    drv.create("c", Resources(memory=64 * MiB))
    assert read(tree, "outer", "cgroup.subtree_control") == "cpu cpuset io memory pids"
    assert read(tree, "outer/inner", "cgroup.subtree_control") == "cpu cpuset io memory pids"
    assert read(tree, "outer/inner/c", "memory.max") == str(64 * MiB)
    drv.load("c").destroy()
    drv.remove_parent()
    assert not (tree.root / "outer").exists()


def test_stats_read_from_v2_files(tree):
    cg = FakeV2Driver(tree).create("s", Resources(pids_limit=64))
    d = tree.root / "refengine-test/s"
    (d / "memory.current").write_text("20971520\n")
    (d / "memory.peak").write_text("31457280\n")
    (d / "memory.stat").write_text("anon 16777216\nfile 4194304\npgfault 1000\n")
    (d / "memory.events").write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n")
    (d / "cpu.stat").write_text("usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n"
                                "nr_periods 10\nnr_throttled 4\nthrottled_usec 700\n")
    (d / "pids.current").write_text("3\n")
    (d / "io.stat").write_text("8:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n")
    s = cg.stats()
    assert s.version == 2
    assert (s.memory.usage, s.memory.max_usage, s.memory.limit, s.memory.failcnt, s.memory.oom_kills) == \
        (20971520, 31457280, None, 3, 1)
    assert s.memory.stats == {"anon": 16777216, "file": 4194304, "pgfault": 1000}
    assert (s.cpu.total, s.cpu.user, s.cpu.system, s.cpu.percpu) == (1_500_000, 1_000_000, 500_000, [])
    assert (s.cpu.periods, s.cpu.throttled_periods, s.cpu.throttled_time) == (10, 4, 700_000)
    assert (s.pids.current, s.pids.limit) == (3, 64)
    assert [(e.op, e.value) for e in s.blkio.io_service_bytes] == [("read", 4096), ("write", 8192)]
    doc = s.to_docker(machine_memory=8 << 30, system_cpu_usage=123, online_cpus=2)
    assert doc["memory_stats"] == {"usage": 20971520, "stats": s.memory.stats, "limit": 8 << 30}
    assert doc["cpu_stats"]["cpu_usage"] == {"total_usage": 1_500_000, "usage_in_kernelmode": 500_000,
                                             "usage_in_usermode": 1_000_000}
    assert doc["blkio_stats"]["io_service_bytes_recursive"] == [
        {"major": 8, "minor": 0, "op": "read", "value": 4096}, {"major": 8, "minor": 0, "op": "write", "value": 8192}]
    assert doc["blkio_stats"]["io_serviced_recursive"] is None
    assert cg.oom_killed()


def test_oom_notifier_sees_memory_events_change(tree):
    cg = FakeV2Driver(tree).create("n")
    events = tree.root / "refengine-test/n/memory.events"
    assert not cg.oom_killed()
    with cg.oom_notifier() as n:
        assert not n.wait(timeout=0.05)
        events.write_text("low 0\nhigh 0\nmax 1\noom 1\noom_kill 0\n")     # an OOM without a kill
        assert not n.wait(timeout=0.2)
        events.write_text("low 0\nhigh 0\nmax 2\noom 2\noom_kill 1\n")
        assert n.wait(timeout=2)
    assert cg.oom_killed()
