"""Stats records and readers for v1 and v2, plus the shape Docker's /containers/{id}/stats uses.

Units follow Docker: bytes, nanoseconds. v1 readers follow runc's choices (cpuacct.stat ticks ->
ns for user/system, blkio files tried in runc's order); v2 readers follow containerd/moby.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from . import fs

UINT64_MAX = 2**64 - 1
V1_UNLIMITED = 0x7FFFFFFFFFFFF000   # memory.limit_in_bytes reads this (PAGE_COUNTER_MAX * 4096) when unset
_NS = 1_000_000_000


@dataclass
class MemoryStats:
    usage: int = 0
    max_usage: int = 0            # v1 memory.max_usage_in_bytes; v2 memory.peak where the kernel has it
    limit: int | None = None      # None = unlimited
    failcnt: int = 0              # v1 memory.failcnt; v2 memory.events "max"
    swap_usage: int | None = None  # v1 memsw usage - usage; v2 memory.swap.current
    oom_kills: int = 0
    stats: dict[str, int] = field(default_factory=dict)   # memory.stat as is


@dataclass
class CpuStats:
    total: int = 0                # ns
    percpu: list[int] = field(default_factory=list)        # ns; v1 only (v2 has no per-CPU figure)
    user: int = 0                 # ns
    system: int = 0               # ns
    periods: int = 0
    throttled_periods: int = 0
    throttled_time: int = 0       # ns


@dataclass
class PidsStats:
    current: int = 0
    limit: int | None = None      # None = unlimited


@dataclass
class BlkioEntry:
    major: int
    minor: int
    op: str
    value: int


@dataclass
class BlkioStats:
    io_service_bytes: list[BlkioEntry] = field(default_factory=list)
    io_serviced: list[BlkioEntry] = field(default_factory=list)


@dataclass
class CgroupStats:
    version: int
    memory: MemoryStats
    cpu: CpuStats
    pids: PidsStats
    blkio: BlkioStats
    read_at: float = field(default_factory=time.time)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_docker(self, machine_memory: int | None = None, system_cpu_usage: int | None = None,
                  online_cpus: int | None = None) -> dict[str, Any]:
        """memory_stats, cpu_stats, pids_stats and blkio_stats as dockerd's stats JSON has them.

        Zero fields Docker marks omitempty are left out; an unlimited (or above machine memory)
        limit reads as machine memory, as dockerd reports it; an unlimited pids limit reads as
        UINT64_MAX (what runc hands dockerd for ``max``).
        """
        m = self.memory
        limit = UINT64_MAX if m.limit is None else m.limit
        if machine_memory and limit > machine_memory:
            limit = machine_memory
        mem: dict[str, Any] = {}
        if m.usage:
            mem["usage"] = m.usage
        if self.version == 1 and m.max_usage:
            mem["max_usage"] = m.max_usage
        if m.stats:
            mem["stats"] = dict(m.stats)
        if self.version == 1 and m.failcnt:
            mem["failcnt"] = m.failcnt
        mem["limit"] = limit
        usage: dict[str, Any] = {"total_usage": self.cpu.total}
        if self.version == 1 and self.cpu.percpu:
            usage["percpu_usage"] = list(self.cpu.percpu)
        usage["usage_in_kernelmode"] = self.cpu.system
        usage["usage_in_usermode"] = self.cpu.user
        cpu: dict[str, Any] = {"cpu_usage": usage}
        if system_cpu_usage:
            cpu["system_cpu_usage"] = system_cpu_usage
        if online_cpus:
            cpu["online_cpus"] = online_cpus
        cpu["throttling_data"] = {"periods": self.cpu.periods, "throttled_periods": self.cpu.throttled_periods,
                                  "throttled_time": self.cpu.throttled_time}
        pids: dict[str, Any] = {}
        if self.pids.current:
            pids["current"] = self.pids.current
        pids["limit"] = UINT64_MAX if self.pids.limit is None else self.pids.limit

        def entries(lst: list[BlkioEntry]) -> list[dict[str, Any]] | None:
            return [asdict(e) for e in lst] or None   # Go's nil slice -> null

        blkio = {"io_service_bytes_recursive": entries(self.blkio.io_service_bytes),
                 "io_serviced_recursive": entries(self.blkio.io_serviced) if self.version == 1 else None,
                 "io_queue_service_recursive": None, "io_service_time_recursive": None,
                 "io_wait_time_recursive": None, "io_merged_recursive": None, "io_time_recursive": None,
                 "sectors_recursive": None}
        return {"memory_stats": mem, "cpu_stats": cpu, "pids_stats": pids, "blkio_stats": blkio}


def system_cpu_usage(proc_stat: str = "/proc/stat") -> int:
    """Host CPU time in ns as dockerd computes it: the first 7 fields of /proc/stat's cpu line."""
    with open(proc_stat) as fh:
        for line in fh:
            parts = line.split()
            if parts and parts[0] == "cpu":
                ticks = sum(int(x) for x in parts[1:8])
                return ticks * _NS // os.sysconf("SC_CLK_TCK")
    raise RuntimeError(f"no cpu line in {proc_stat}")


def online_cpus() -> int:
    return os.sysconf("SC_NPROCESSORS_ONLN")


# --- v1 ---

def _v1_limit(v: int | None) -> int | None:
    return None if v is None or v >= V1_UNLIMITED else v


def v1_memory(d: str | None) -> MemoryStats:
    if d is None:
        return MemoryStats()
    usage = fs.read_int_or(d, "memory.usage_in_bytes")
    ms = MemoryStats(usage=usage, max_usage=fs.read_int_or(d, "memory.max_usage_in_bytes"),
                     limit=_v1_limit(fs.read_int(d, "memory.limit_in_bytes")),
                     failcnt=fs.read_int_or(d, "memory.failcnt"), stats=fs.read_keyed(d, "memory.stat"))
    if os.path.exists(os.path.join(d, "memory.memsw.usage_in_bytes")):
        ms.swap_usage = max(0, fs.read_int_or(d, "memory.memsw.usage_in_bytes") - usage)
    ms.oom_kills = fs.read_keyed(d, "memory.oom_control").get("oom_kill", 0)
    return ms


def v1_cpu(cpu_dir: str | None, cpuacct_dir: str | None) -> CpuStats:
    cs = CpuStats()
    if cpuacct_dir is not None:
        cs.total = fs.read_int_or(cpuacct_dir, "cpuacct.usage")
        cs.percpu = [int(x) for x in fs.read(cpuacct_dir, "cpuacct.usage_percpu").split()]
        st = fs.read_keyed(cpuacct_dir, "cpuacct.stat")   # USER_HZ ticks, as runc reads them
        hz = os.sysconf("SC_CLK_TCK")
        cs.user = st.get("user", 0) * _NS // hz
        cs.system = st.get("system", 0) * _NS // hz
    if cpu_dir is not None:
        st = fs.read_keyed(cpu_dir, "cpu.stat")
        cs.periods = st.get("nr_periods", 0)
        cs.throttled_periods = st.get("nr_throttled", 0)
        cs.throttled_time = st.get("throttled_time", 0)
    return cs


def v1_pids(d: str | None) -> PidsStats:
    if d is None:
        return PidsStats()
    return PidsStats(current=fs.read_int_or(d, "pids.current"), limit=fs.read_int(d, "pids.max"))


def parse_blkio_v1(text: str) -> list[BlkioEntry]:
    out = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3 and ":" in parts[0]:
            ma, mi = parts[0].split(":")
            out.append(BlkioEntry(int(ma), int(mi), parts[1], int(parts[2])))
    return out


# runc's order: BFQ, CFQ, throttle (recursive), throttle; the first group with data wins
_BLKIO_GROUPS = (
    ("blkio.bfq.io_service_bytes_recursive", "blkio.bfq.io_serviced_recursive"),
    ("blkio.io_service_bytes_recursive", "blkio.io_serviced_recursive"),
    ("blkio.throttle.io_service_bytes_recursive", "blkio.throttle.io_serviced_recursive"),
    ("blkio.throttle.io_service_bytes", "blkio.throttle.io_serviced"),
)


def v1_blkio(d: str | None) -> BlkioStats:
    if d is None:
        return BlkioStats()
    for bytes_file, ios_file in _BLKIO_GROUPS:
        if not os.path.exists(os.path.join(d, bytes_file)):
            continue
        b = parse_blkio_v1(fs.read(d, bytes_file))
        if not b:
            continue
        ios = parse_blkio_v1(fs.read(d, ios_file)) if os.path.exists(os.path.join(d, ios_file)) else []
        return BlkioStats(io_service_bytes=b, io_serviced=ios)
    return BlkioStats()


# --- v2 ---

def v2_memory(d: str) -> MemoryStats:
    if not os.path.exists(os.path.join(d, "memory.current")):
        return MemoryStats()
    events = fs.read_keyed(d, "memory.events")
    ms = MemoryStats(usage=fs.read_int_or(d, "memory.current"), max_usage=fs.read_int_or(d, "memory.peak"),
                     limit=fs.read_int(d, "memory.max"), failcnt=events.get("max", 0),
                     oom_kills=events.get("oom_kill", 0), stats=fs.read_keyed(d, "memory.stat"))
    if os.path.exists(os.path.join(d, "memory.swap.current")):
        ms.swap_usage = fs.read_int_or(d, "memory.swap.current")
    return ms


def v2_cpu(d: str) -> CpuStats:
    st = fs.read_keyed(d, "cpu.stat") if os.path.exists(os.path.join(d, "cpu.stat")) else {}
    return CpuStats(total=st.get("usage_usec", 0) * 1000, user=st.get("user_usec", 0) * 1000,
                    system=st.get("system_usec", 0) * 1000, periods=st.get("nr_periods", 0),
                    throttled_periods=st.get("nr_throttled", 0), throttled_time=st.get("throttled_usec", 0) * 1000)


def v2_pids(d: str) -> PidsStats:
    if not os.path.exists(os.path.join(d, "pids.current")):
        return PidsStats()
    return PidsStats(current=fs.read_int_or(d, "pids.current"), limit=fs.read_int(d, "pids.max"))


def parse_io_stat(text: str) -> BlkioStats:
    """io.stat: ``8:0 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=0 dios=0`` -> Docker's read/write entries."""
    out = BlkioStats()
    for line in text.splitlines():
        parts = line.split()
        if not parts or ":" not in parts[0]:
            continue
        ma, mi = (int(x) for x in parts[0].split(":"))
        kv = dict(p.split("=", 1) for p in parts[1:] if "=" in p)
        out.io_service_bytes += [BlkioEntry(ma, mi, "read", int(kv.get("rbytes", 0))),
                                 BlkioEntry(ma, mi, "write", int(kv.get("wbytes", 0)))]
        out.io_serviced += [BlkioEntry(ma, mi, "read", int(kv.get("rios", 0))),
                            BlkioEntry(ma, mi, "write", int(kv.get("wios", 0)))]
    return out


def v2_blkio(d: str) -> BlkioStats:
    if not os.path.exists(os.path.join(d, "io.stat")):
        return BlkioStats()
    return parse_io_stat(fs.read(d, "io.stat"))
