"""cgroup v1: one directory per controller hierarchy, /sys/fs/cgroup/<ctrl>/<parent>/<name>."""

from __future__ import annotations

import errno
import os
import signal
import time

from . import fs
from .base import (
    DEFAULT_PARENT,
    FREEZE_TIMEOUT,
    KILL_FREEZE_TIMEOUT,
    CgroupDriver,
    kill_until_empty,
    signal_pids,
    thaw_and_wait,
)
from .devices import (
    DeviceState,
    effective_rules,
    parse_v1_list,
    reduce_rules,
    v1_list,
    v1_update_writes,
    v1_writes,
)
from .fs import CgroupError, CgroupExists, CgroupNotFound, check_name
from .mounts import V1_KNOWN, detect_layout
from .oom import EventfdOOMNotifier, v1_oom_kills, v1_under_oom
from .resources import Resources
from .stats import CgroupStats, v1_blkio, v1_cpu, v1_memory, v1_pids

JOINED = V1_KNOWN + ("name=systemd",)   # hierarchies a container joins (runc joins these too)
UNIFIED = ""  # the key of a hybrid host's cgroup2 mount in V1Driver.mounts (its /proc/<pid>/cgroup name)


class V1Driver(CgroupDriver):
    version = 1

    def __init__(self, parent: str = DEFAULT_PARENT, mounts: dict[str, str] | None = None,
                 unified: str | None = None) -> None:
        self.parent = check_name(parent, "parent cgroup name", nested=True)
        if mounts is None:
            mounts = detect_layout().v1
        # controller -> mountpoint, only hierarchies we join (cpu,cpuacct co-mounted share one)
        self.mounts = {c: m for c, m in mounts.items() if c in JOINED}
        if not self.mounts:
            raise CgroupError("no cgroup v1 controller hierarchy is mounted")
        if unified:
            # hybrid host: the controller-less cgroup2 tree is joined too (its "0::" line in
            # /proc/<pid>/cgroup then names the container, as with runc); nothing is written there
            self.mounts[UNIFIED] = unified

    def _mountpoints(self) -> list[str]:
        return sorted(set(self.mounts.values()))

    def _paths(self, name: str) -> dict[str, str]:
        return {c: os.path.join(m, self.parent, name) for c, m in self.mounts.items()}

    def _ensure_parent(self) -> None:
        parts = self.parent.split("/")
        for mnt in self._mountpoints():
            d = mnt
            for part in parts:
                parent_dir, d = d, os.path.join(d, part)
                try:
                    os.mkdir(d, 0o755)
                except FileExistsError:
                    pass
                except OSError as e:
                    raise CgroupError(f"cannot create parent cgroup {d}: {e.strerror}", e.errno) from None
                if mnt == self.mounts.get("cpuset"):
                    _copy_cpuset(d, parent_dir)

    def create(self, name: str, resources: Resources | None = None) -> V1Cgroup:
        check_name(name)
        paths = self._paths(name)
        if any(os.path.isdir(p) for p in paths.values()):
            raise CgroupExists(f"cgroup {self.parent}/{name} already exists")
        self._ensure_parent()
        cg = V1Cgroup(name, "/" + self.parent + "/" + name, paths)
        try:
            for d in cg.dirs():
                try:
                    os.mkdir(d, 0o755)
                except OSError as e:
                    raise CgroupError(f"cannot create cgroup {d}: {e.strerror}", e.errno) from None
            if "cpuset" in paths:
                # a v1 cpuset child starts empty and takes no tasks until cpus and mems are set
                _copy_cpuset(paths["cpuset"], os.path.dirname(paths["cpuset"]))
            cg.apply(resources or Resources(), creating=True)
        except BaseException:
            cg.destroy()
            raise
        return cg

    def load(self, name: str) -> V1Cgroup:
        check_name(name)
        paths = self._paths(name)
        if not any(os.path.isdir(p) for p in paths.values()):
            raise CgroupNotFound(f"no cgroup {self.parent}/{name} in any v1 hierarchy")
        return V1Cgroup(name, "/" + self.parent + "/" + name, paths)

    def list(self) -> list[str]:
        names: set[str] = set()
        for mnt in self._mountpoints():
            d = os.path.join(mnt, self.parent)
            if os.path.isdir(d):
                names.update(e.name for e in os.scandir(d) if e.is_dir())
        return sorted(names)

    def remove_parent(self) -> None:
        parts = self.parent.split("/")
        for mnt in self._mountpoints():
            for i in range(len(parts), 0, -1):
                fs.rmdir(os.path.join(mnt, *parts[:i]))


def _copy_cpuset(d: str, parent_dir: str) -> None:
    for f in ("cpuset.cpus", "cpuset.mems"):
        if fs.read_str(d, f) == "":
            value = fs.read_str(parent_dir, f)
            if value == "":
                raise CgroupError(f"cannot initialise {d}/{f}: {parent_dir}/{f} is empty too")
            fs.write(d, f, value)


class V1Cgroup:
    def __init__(self, name: str, path: str, paths: dict[str, str]) -> None:
        self.name = name
        self.path = path
        self.paths = paths

    def __repr__(self) -> str:
        return f"V1Cgroup({self.path!r})"

    def dirs(self) -> list[str]:
        return sorted(set(self.paths.values()))

    def _dir(self, ctrl: str) -> str | None:
        return self.paths.get(ctrl)

    def _need(self, ctrl: str, what: str) -> str:
        d = self.paths.get(ctrl)
        if d is None:
            raise CgroupError(f"cgroup v1 controller {ctrl} is not mounted; cannot set {what}")
        return d

    def exists(self) -> bool:
        return any(os.path.isdir(d) for d in self.dirs())

    def add(self, pid: int) -> None:
        for d in self.dirs():
            fs.write(d, "cgroup.procs", pid)

    def pids(self) -> list[int]:
        out: set[int] = set()
        for d in self.dirs():
            out.update(fs.read_pids(d))
        return sorted(out)

    def _all_pids(self) -> list[int]:
        """Tasks here and in any child cgroups (a nested engine or systemd inside the container)."""
        out: set[int] = set()
        for d in self.dirs():
            for root, _dirs, _files in os.walk(d):
                out.update(fs.read_pids(root))
        return sorted(out)

    def update(self, r: Resources) -> None:
        self.apply(r, creating=False)

    def apply(self, r: Resources, creating: bool = False) -> None:
        self._set_memory(r)
        self._set_cpu(r)
        if r.cpuset_cpus is not None:
            fs.write(self._need("cpuset", "cpuset_cpus"), "cpuset.cpus", r.cpuset_cpus)
        if r.cpuset_mems is not None:
            fs.write(self._need("cpuset", "cpuset_mems"), "cpuset.mems", r.cpuset_mems)
        if r.pids_limit is not None:
            fs.write(self._need("pids", "pids_limit"), "pids.max", "max" if r.pids_limit <= 0 else r.pids_limit)
        if r.blkio_weight:
            d = self._need("blkio", "blkio_weight")
            # CFQ's blkio.weight is gone from current kernels; BFQ's file takes the same 1..1000 range
            for f in ("blkio.weight", "blkio.bfq.weight"):
                if os.path.exists(os.path.join(d, f)):
                    fs.write(d, f, r.blkio_weight)
                    break
            else:
                raise CgroupError(f"blkio weight is not supported here: neither blkio.weight nor blkio.bfq.weight in {d}")
        for t in r.blkio_throttle or []:
            fs.write(self._need("blkio", "blkio throttling"), f"blkio.throttle.{t.kind}_device",
                     f"{t.major}:{t.minor} {t.rate}")
        if r.devices is not None or creating:
            d = self._dir("devices")
            if d is None:
                if r.devices is not None:
                    self._need("devices", "device rules")
            else:
                self._set_devices(d, reduce_rules(effective_rules(r.devices)), creating)

    def _set_devices(self, d: str, target: DeviceState, creating: bool) -> None:
        """On create: ``deny a`` (or ``allow a``) then the exceptions. On update of a running
        container: only the difference (see devices.v1_update_writes), checked against devices.list,
        with the full rewrite as the fallback."""
        want = set(v1_list(target))
        if not creating:
            current = parse_v1_list(fs.read(d, "devices.list").splitlines())
            for f, line in v1_update_writes(current, target):
                fs.write(d, f, line)
            if set(fs.read(d, "devices.list").splitlines()) == want:
                return
        for f, line in v1_writes(target):
            fs.write(d, f, line)
        got = set(fs.read(d, "devices.list").splitlines())
        if got != want:
            raise CgroupError(f"devices.list in {d} reads {sorted(got)} after writing the rules; expected {sorted(want)}")

    def _set_memory(self, r: Resources) -> None:
        mem = r.memory or None
        swap = r.memory_swap or None
        if mem is None and swap is None and r.memory_reservation is None and r.oom_kill_disable is None:
            return
        d = self._need("memory", "memory limits")
        has_swap = os.path.exists(os.path.join(d, "memory.memsw.limit_in_bytes"))
        if mem == -1 and swap is None and has_swap:
            swap = -1   # unlimited memory with swap unset: unlimited swap too (as runc)
        if swap is not None and not has_swap:
            raise CgroupError("swap limit is not supported by this kernel (no memory.memsw.limit_in_bytes; "
                              "it needs swapaccount=1)")
        try:
            if mem is not None and swap is not None:
                cur = fs.read_int(d, "memory.limit_in_bytes") or 0
                # the kernel requires memory <= memory+swap at every step
                if mem == -1 or cur < mem:
                    fs.write(d, "memory.memsw.limit_in_bytes", swap)
                    fs.write(d, "memory.limit_in_bytes", mem)
                else:
                    fs.write(d, "memory.limit_in_bytes", mem)
                    fs.write(d, "memory.memsw.limit_in_bytes", swap)
            elif mem is not None:
                fs.write(d, "memory.limit_in_bytes", mem)
            elif swap is not None:
                fs.write(d, "memory.memsw.limit_in_bytes", swap)
        except CgroupError as e:
            if e.errno == errno.EINVAL and has_swap:
                raise CgroupError(f"{e}: the memory limit must not exceed the memory+swap limit "
                                  f"({fs.read_str(d, 'memory.memsw.limit_in_bytes')})", e.errno) from None
            if e.errno == errno.EBUSY:
                raise CgroupError(f"{e}: the cgroup uses more memory than the new limit and the kernel "
                                  "could not reclaim it", e.errno) from None
            raise
        if r.memory_reservation is not None:
            fs.write(d, "memory.soft_limit_in_bytes", r.memory_reservation)
        if r.oom_kill_disable is not None:
            fs.write(d, "memory.oom_control", "1" if r.oom_kill_disable else "0")

    def _set_cpu(self, r: Resources) -> None:
        if r.cpu_shares:
            d = self._need("cpu", "cpu_shares")
            fs.write(d, "cpu.shares", r.cpu_shares)
            got = fs.read_int(d, "cpu.shares")
            if got != r.cpu_shares:   # the kernel clamps to 2..262144 silently; say so, as runc does
                bound = "maximum" if r.cpu_shares > (got or 0) else "minimum"
                raise CgroupError(f"the {bound} allowed cpu-shares is {got}")
        if not r.cpu_period and not r.cpu_quota:
            return
        d = self._need("cpu", "cpu quota/period")
        retry_period = False
        if r.cpu_period:
            try:
                fs.write(d, "cpu.cfs_period_us", r.cpu_period)
            except CgroupError as e:
                # a shorter period can be refused until the quota is lowered: retry after it (runc does too)
                if e.errno != errno.EINVAL or not r.cpu_quota:
                    raise
                retry_period = True
        if r.cpu_quota:
            fs.write(d, "cpu.cfs_quota_us", r.cpu_quota)
            if retry_period:
                fs.write(d, "cpu.cfs_period_us", r.cpu_period)

    # --- freezer ---
    def _freezer_state(self) -> str:
        return fs.read_str(self._need("freezer", "freeze"), "freezer.state")

    def freeze(self, timeout: float = FREEZE_TIMEOUT) -> None:
        d = self._need("freezer", "freeze")
        deadline = time.monotonic() + timeout
        tries = 0
        while True:
            fs.write(d, "freezer.state", "FROZEN")
            state = fs.read_str(d, "freezer.state")
            if state == "FROZEN":
                return
            if state != "FREEZING":
                raise CgroupError(f"unexpected freezer state {state!r} in {d} while freezing")
            if time.monotonic() > deadline:
                fs.write(d, "freezer.state", "THAWED")   # never leave it half frozen
                raise CgroupError(f"cannot freeze {d}: still FREEZING after {timeout:g}s", errno.ETIMEDOUT)
            tries += 1
            if tries % 50 == 0:
                # new tasks (fork, cgroup.procs writes) can keep it FREEZING; a brief thaw helps (as runc)
                fs.write(d, "freezer.state", "THAWED")
                time.sleep(0.01)
            else:
                time.sleep(min(0.0001 * tries, 0.01))

    def thaw(self) -> None:
        d = self._need("freezer", "thaw")
        thaw_and_wait(lambda: fs.write(d, "freezer.state", "THAWED"),
                      lambda: fs.read_str(d, "freezer.state") == "THAWED", f"{d} to thaw")

    def frozen(self) -> bool:
        if self._dir("freezer") is None:
            return False
        return self._freezer_state() == "FROZEN"

    def kill_all(self, sig: int = signal.SIGKILL) -> None:
        """Signal every process; frozen meanwhile so that nothing forks past us (runc's way)."""
        if not self._all_pids():
            return
        can_freeze = self._dir("freezer") is not None and os.path.isdir(self.paths["freezer"])
        was_frozen = can_freeze and self.frozen()
        froze = False
        if can_freeze and not was_frozen:
            try:
                self.freeze(KILL_FREEZE_TIMEOUT)
                froze = True
            except CgroupError:
                pass   # e.g. a task in D state: signal anyway (kill_until_empty repeats for late forks)
        signal_pids(self._all_pids(), sig)
        # frozen tasks die only once thawed; a paused container stays paused for other signals
        if froze or (was_frozen and sig == signal.SIGKILL):
            self.thaw()

    def destroy(self) -> None:
        """Kill what is left, wait for the tasks to leave, rmdir every hierarchy's directory."""
        if self.exists():
            kill_until_empty(self._all_pids, self.kill_all, self.path)
        errors = []
        for d in self.dirs():
            try:
                fs.rmdir_tree(d)
            except CgroupError as e:
                errors.append(str(e))
        if errors:
            raise CgroupError("; ".join(errors))

    # --- stats / OOM ---
    def stats(self) -> CgroupStats:
        return CgroupStats(version=1, memory=v1_memory(self._dir("memory")),
                           cpu=v1_cpu(self._dir("cpu"), self._dir("cpuacct")),
                           pids=v1_pids(self._dir("pids")), blkio=v1_blkio(self._dir("blkio")))

    def oom_kill_count(self) -> int:
        return v1_oom_kills(self._need("memory", "OOM detection"))

    def oom_killed(self) -> bool:
        d = self._dir("memory")
        if d is None or not os.path.isdir(d):
            return False
        return v1_oom_kills(d) > 0 or v1_under_oom(d)

    def oom_notifier(self) -> EventfdOOMNotifier:
        return EventfdOOMNotifier(self._need("memory", "OOM notification"))
