"""cgroup v2: one unified directory, <mount>/<parent>/<name>; devices through an eBPF program."""

from __future__ import annotations

import errno
import logging
import os
import signal
from collections.abc import Callable

from . import ebpf, fs
from .base import (
    DEFAULT_PARENT,
    FREEZE_TIMEOUT,
    KILL_FREEZE_TIMEOUT,
    CgroupDriver,
    kill_until_empty,
    signal_pids,
    thaw_and_wait,
    wait_until,
)
from .devices import DeviceRule, effective_rules
from .fs import CgroupError, CgroupExists, CgroupNotFound, check_name
from .mounts import detect_layout
from .oom import InotifyOOMNotifier, v2_oom_kills
from .resources import THROTTLE_FIELDS, Resources, blkio_to_io_weight, shares_to_weight, swap_to_v2
from .stats import CgroupStats, v2_blkio, v2_cpu, v2_memory, v2_pids

log = logging.getLogger(__name__)

WANTED_CONTROLLERS = ("cpu", "cpuset", "io", "memory", "pids")
DeviceFilter = Callable[[str, list[DeviceRule]], None]


def _num(v: int) -> str:
    return "max" if v == -1 else str(v)


class V2Driver(CgroupDriver):
    version = 2

    def __init__(self, parent: str = DEFAULT_PARENT, mountpoint: str | None = None,
                 device_filter: DeviceFilter | None = None) -> None:
        self.parent = check_name(parent, "parent cgroup name", nested=True)
        if mountpoint is None:
            mountpoint = detect_layout().unified
            if mountpoint is None:
                raise CgroupError("no cgroup2 filesystem is mounted")
        self.mountpoint = mountpoint
        # how device rules reach the kernel; the fake-tree unit tests pass a recorder
        self.device_filter: DeviceFilter = device_filter or ebpf.apply_device_rules

    # the two filesystem hooks the fake-tree unit tests override (the kernel populates real dirs)
    def _make_dir(self, path: str) -> None:
        os.mkdir(path, 0o755)

    def _remove_dir(self, path: str) -> None:
        fs.rmdir_tree(path)

    def _dir(self, name: str) -> str:
        return os.path.join(self.mountpoint, self.parent, name)

    def _ensure_parent(self) -> None:
        d = self.mountpoint
        for part in self.parent.split("/"):
            d = os.path.join(d, part)
            if not os.path.isdir(d):
                try:
                    self._make_dir(d)
                except FileExistsError:
                    pass
                except OSError as e:
                    raise CgroupError(f"cannot create parent cgroup {d}: {e.strerror}", e.errno) from None
            enable_controllers(d)

    def create(self, name: str, resources: Resources | None = None) -> V2Cgroup:
        check_name(name)
        d = self._dir(name)
        if os.path.isdir(d):
            raise CgroupExists(f"cgroup {self.parent}/{name} already exists")
        self._ensure_parent()
        try:
            self._make_dir(d)
        except OSError as e:
            raise CgroupError(f"cannot create cgroup {d}: {e.strerror}", e.errno) from None
        cg = V2Cgroup(name, "/" + self.parent + "/" + name, d, self)
        try:
            cg.apply(resources or Resources(), creating=True)
        except BaseException:
            cg.destroy()
            raise
        return cg

    def load(self, name: str) -> V2Cgroup:
        check_name(name)
        d = self._dir(name)
        if not os.path.isdir(d):
            raise CgroupNotFound(f"no cgroup {d}")
        return V2Cgroup(name, "/" + self.parent + "/" + name, d, self)

    def list(self) -> list[str]:
        d = os.path.join(self.mountpoint, self.parent)
        if not os.path.isdir(d):
            return []
        return sorted(e.name for e in os.scandir(d) if e.is_dir())

    def remove_parent(self) -> None:
        parts = self.parent.split("/")
        for i in range(len(parts), 0, -1):
            d = os.path.join(self.mountpoint, *parts[:i])
            if os.path.isdir(d):
                if any(e.is_dir() for e in os.scandir(d)):
                    raise CgroupError(f"cannot remove {d}: it still has child cgroups")
                self._remove_dir(d)


def enable_controllers(d: str) -> None:
    """Enable the controllers we use in ``d``'s subtree_control (``d`` is always one of our own parents)."""
    available = fs.read_str(d, "cgroup.controllers").split()
    enabled = fs.read_str(d, "cgroup.subtree_control").split()
    for c in WANTED_CONTROLLERS:
        if c in available and c not in enabled:
            try:
                fs.write(d, "cgroup.subtree_control", "+" + c)
            except CgroupError as e:
                # a missing controller turns into a clear error when a limit needs it
                log.warning("cannot enable the %s controller in %s: %s", c, d, e)


class V2Cgroup:
    def __init__(self, name: str, path: str, dirpath: str, driver: V2Driver) -> None:
        self.name = name
        self.path = path
        self.dir = dirpath
        self.paths = {"": dirpath}
        self._driver = driver

    def __repr__(self) -> str:
        return f"V2Cgroup({self.dir!r})"

    def exists(self) -> bool:
        return os.path.isdir(self.dir)

    def controllers(self) -> list[str]:
        return fs.read_str(self.dir, "cgroup.controllers").split()

    def _need(self, ctrl: str, what: str, have: list[str]) -> None:
        if ctrl not in have:
            raise CgroupError(f"cgroup v2 controller {ctrl} is not available in {self.dir} "
                              f"(cgroup.controllers: {' '.join(have) or 'none'}); cannot set {what}")

    def add(self, pid: int) -> None:
        fs.write(self.dir, "cgroup.procs", pid)

    def pids(self) -> list[int]:
        return sorted(fs.read_pids(self.dir))

    def _all_pids(self) -> list[int]:
        out: set[int] = set()
        for root, _dirs, _files in os.walk(self.dir):
            out.update(fs.read_pids(root))
        return sorted(out)

    def update(self, r: Resources) -> None:
        self.apply(r, creating=False)

    def apply(self, r: Resources, creating: bool = False) -> None:
        have = self.controllers()
        self._set_memory(r, have)
        self._set_cpu(r, have)
        if r.cpuset_cpus is not None:
            self._need("cpuset", "cpuset_cpus", have)
            fs.write(self.dir, "cpuset.cpus", r.cpuset_cpus)
        if r.cpuset_mems is not None:
            self._need("cpuset", "cpuset_mems", have)
            fs.write(self.dir, "cpuset.mems", r.cpuset_mems)
        if r.pids_limit is not None:
            self._need("pids", "pids_limit", have)
            fs.write(self.dir, "pids.max", "max" if r.pids_limit <= 0 else r.pids_limit)
        if r.blkio_weight:
            self._need("io", "blkio_weight", have)
            if os.path.exists(os.path.join(self.dir, "io.bfq.weight")):
                fs.write(self.dir, "io.bfq.weight", r.blkio_weight)   # BFQ: same 1..1000 range (as runc)
            else:
                fs.write(self.dir, "io.weight", blkio_to_io_weight(r.blkio_weight))
        if r.blkio_throttle:
            self._need("io", "blkio throttling", have)
            for t in r.blkio_throttle:  # one line per device and key; "max" lifts a limit
                key = next(v2 for v1, v2 in THROTTLE_FIELDS.values() if v1 == t.kind)
                fs.write(self.dir, "io.max", f"{t.major}:{t.minor} {key}={t.rate or 'max'}")
        if r.devices is not None or creating:
            self._driver.device_filter(self.dir, effective_rules(r.devices))

    def _set_memory(self, r: Resources, have: list[str]) -> None:
        mem = r.memory or None
        if r.oom_kill_disable:
            log.warning("oom_kill_disable is not supported by cgroup v2; ignored (as runc does)")
        if mem is None and not r.memory_swap and r.memory_reservation is None:
            return
        self._need("memory", "memory limits", have)
        swap_file = os.path.join(self.dir, "memory.swap.max")
        if r.memory_swap or mem == -1:
            basis = mem
            if basis is None:   # swap alone on update: relative to the memory limit in force
                cur = fs.read_int(self.dir, "memory.max")
                basis = -1 if cur is None else cur
            try:
                swap = swap_to_v2(r.memory_swap, basis)
            except ValueError as e:
                raise CgroupError(str(e)) from None
            if swap is not None:
                if os.path.exists(swap_file):
                    fs.write(self.dir, "memory.swap.max", _num(swap))
                elif r.memory_swap:
                    raise CgroupError(f"swap limit is not supported here: no memory.swap.max in {self.dir}")
        if mem is not None:
            try:
                fs.write(self.dir, "memory.max", _num(mem))
            except CgroupError as e:
                if e.errno == errno.EBUSY:
                    raise CgroupError(f"{e}: the cgroup uses more memory than the new limit", e.errno) from None
                raise
        if r.memory_reservation is not None:
            fs.write(self.dir, "memory.low", _num(r.memory_reservation))

    def _set_cpu(self, r: Resources, have: list[str]) -> None:
        if r.cpu_shares:
            self._need("cpu", "cpu_shares", have)
            fs.write(self.dir, "cpu.weight", shares_to_weight(r.cpu_shares))
        if r.cpu_quota or r.cpu_period:
            self._need("cpu", "cpu quota/period", have)
            # cpu.max holds both; keep the half that is not being changed
            cur_q, cur_p = (fs.read_str(self.dir, "cpu.max").split() + ["100000"])[:2]
            quota = cur_q if not r.cpu_quota else _num(r.cpu_quota)
            period = cur_p if not r.cpu_period else str(r.cpu_period)
            fs.write(self.dir, "cpu.max", f"{quota} {period}")

    # --- freezer (cgroup.freeze, kernel >= 5.2) ---
    def _events(self) -> dict[str, int]:
        return fs.read_keyed(self.dir, "cgroup.events")

    def _write_freeze(self, value: str) -> None:
        if os.path.isdir(self.dir) and not os.path.exists(os.path.join(self.dir, "cgroup.freeze")):
            raise CgroupError(f"cgroup v2 freezer is not supported here: no cgroup.freeze in {self.dir}")
        fs.write(self.dir, "cgroup.freeze", value)  # a cgroup that is gone: ENOENT

    def freeze(self, timeout: float = FREEZE_TIMEOUT) -> None:
        self._write_freeze("1")
        try:
            wait_until(lambda: self._events().get("frozen", 0) == 1, timeout, f"{self.dir} to freeze")
        except CgroupError:
            fs.write(self.dir, "cgroup.freeze", "0")   # never leave it half frozen
            raise

    def thaw(self) -> None:
        thaw_and_wait(lambda: self._write_freeze("0"), lambda: self._events().get("frozen", 0) == 0,
                      f"{self.dir} to thaw")

    def _freeze_requested(self) -> bool:
        p = os.path.join(self.dir, "cgroup.freeze")
        return os.path.exists(p) and fs.read_str(self.dir, "cgroup.freeze") == "1"

    def frozen(self) -> bool:
        """Frozen = freezing requested and reached (as runc reports it; requested only = FREEZING)."""
        return self._freeze_requested() and self._events().get("frozen", 0) == 1

    def kill_all(self, sig: int = signal.SIGKILL) -> None:
        if not self._all_pids():
            return
        if sig == signal.SIGKILL and os.path.exists(os.path.join(self.dir, "cgroup.kill")):
            fs.write(self.dir, "cgroup.kill", "1")   # kernel >= 5.14: atomic, includes sub-cgroups
            if self._freeze_requested():
                self.thaw()    # as on v1: a killed paused container does not stay paused
            return
        was_frozen = self._freeze_requested()
        froze = False
        if not was_frozen:
            try:
                self.freeze(KILL_FREEZE_TIMEOUT)
                froze = True
            except CgroupError:
                pass
        signal_pids(self._all_pids(), sig)
        if froze or (was_frozen and sig == signal.SIGKILL):
            self.thaw()

    def destroy(self) -> None:
        if self.exists():
            kill_until_empty(self._all_pids, self.kill_all, self.dir)
            self._driver._remove_dir(self.dir)

    # --- stats / OOM ---
    def stats(self) -> CgroupStats:
        return CgroupStats(version=2, memory=v2_memory(self.dir), cpu=v2_cpu(self.dir),
                           pids=v2_pids(self.dir), blkio=v2_blkio(self.dir))

    def oom_kill_count(self) -> int:
        return v2_oom_kills(self.dir)

    def oom_killed(self) -> bool:
        if not os.path.exists(os.path.join(self.dir, "memory.events")):
            return False
        return v2_oom_kills(self.dir) > 0

    def oom_notifier(self) -> InotifyOOMNotifier:
        if not os.path.exists(os.path.join(self.dir, "memory.events")):
            raise CgroupError(f"cgroup v2 memory controller is not enabled for {self.dir}: no memory.events")
        return InotifyOOMNotifier(self.dir)
