"""Which cgroup interface file carries a container limit, and what it must read, on cgroup v1 and v2.

Every function takes the cgroup version (1 or 2; from `capabilities.cgroup_version` for host-side
reads, from what is mounted at /sys/fs/cgroup for in-container reads) and the HostConfig value,
and returns an `Expect`: the controller hierarchy (v1), the file name, and the value the kernel
must show once the daemon has applied the limit. `None` means the version has no such file
(e.g. OomKillDisable on v2): the caller skips with `unsupported_reason`.

Values are compared in a canonical form (`canonical`), so that "no limit" is the same whether v1
shows 9223372036854771712 or -1 and v2 shows "max", and "0-1" equals "0,1" for cpusets.

Conversions follow the OCI runtime (runc) for v2 hosts:
  - cpu.max = "<quota|max> <period>"
  - cpu.weight = 1 + ((shares - 2) * 9999) // 262142 (runc <= 1.2); runc 1.3 switched to a
    quadratic fit in log2(shares) that maps 1024 to 100; both are accepted.
  - memory.swap.max = MemorySwap - Memory (swap only; v1's memsw counts memory + swap)
  - io.bfq.weight = BlkioWeight as is; io.weight = 1 + (BlkioWeight - 10) * 9999 // 990
"""

from __future__ import annotations

import math
from dataclasses import dataclass

UNLIMITED = "max"
# v1 reports "no limit" as the largest page-aligned signed 64-bit number; anything this large is unlimited.
V1_UNLIMITED_FLOOR = 1 << 62
DEFAULT_CFS_PERIOD = 100_000  # µs, the kernel's and Docker's default CFS period
DEFAULT_SHARES = 1024

# statfs f_type of what is mounted at /sys/fs/cgroup (busybox `stat -f -c %t` prints it in hex)
CGROUP2_MAGIC = "63677270"
TMPFS_MAGIC = "1021994"
CGROUP1_MAGIC = "27e0eb"

MEMORY_FILES = {"memory.limit_in_bytes", "memory.memsw.limit_in_bytes", "memory.soft_limit_in_bytes",
                "memory.kmem.limit_in_bytes", "memory.max", "memory.swap.max", "memory.low", "memory.high"}
CPUSET_FILES = {"cpuset.cpus", "cpuset.mems", "cpuset.cpus.effective", "cpuset.mems.effective",
                "cpuset.effective_cpus", "cpuset.effective_mems"}


@dataclass(frozen=True)
class Expect:
    """One cgroup file and the value it must hold for a given limit."""

    what: str  # the limit, for messages: "HostConfig.Memory=33554432"
    version: int
    controller: str  # the v1 hierarchy carrying the file ("memory", "cpu" ...); informational on v2
    file: str
    value: str  # canonical expected value
    alternatives: tuple[str, ...] = ()  # other accepted canonical values
    key: str | None = None  # for "key value" files (memory.oom_control, cpu.stat): the line to read
    subkey: str | None = None  # for "key a=1 b=2" lines (v2 io.max): the field of that line

    def accepts(self, raw: str) -> bool:
        return self.read(raw) in (self.value, *self.alternatives)

    def read(self, raw: str) -> str:
        """The canonical value of this file's raw content."""
        return canonical(self.file, raw, self.key, self.subkey)

    def inside_path(self) -> str:
        """Where the file is inside a container that sees its own cgroup at /sys/fs/cgroup."""
        if self.version == 2:
            return f"/sys/fs/cgroup/{self.file}"
        return f"/sys/fs/cgroup/{self.controller}/{self.file}"

    def wanted(self) -> str:
        alts = "".join(f" or {a!r}" for a in self.alternatives)
        return f"{self.value!r}{alts}"

    def explain(self, raw: str, where: str) -> str:
        """An assertion message: what the file says, what it must say, and why."""
        return (f"{where}: cgroup v{self.version} file {self.file} reads {raw.strip()!r} "
                f"(canonical {self.read(raw)!r}); with {self.what} it must read {self.wanted()}")


def canonical(file: str, raw: str, key: str | None = None, subkey: str | None = None) -> str:
    text = raw.strip()
    if key is not None:
        for line in text.splitlines():
            k, _, v = line.partition(" ")
            if k != key:
                continue
            if subkey is None:
                return v.strip()
            fields = dict(f.partition("=")[::2] for f in v.split())
            return fields.get(subkey, f"<no {subkey} in {key}>")
        return f"<no {key} line>"
    if file in MEMORY_FILES or file == "pids.max":
        if text == "max" or text == "-1":
            return UNLIMITED
        try:
            return UNLIMITED if int(text) >= V1_UNLIMITED_FLOOR else str(int(text))
        except ValueError:
            return text
    if file == "cpu.cfs_quota_us":
        return UNLIMITED if text == "-1" else text
    if file in ("io.weight", "io.bfq.weight"):
        first = text.splitlines()[0] if text else ""
        return first.split()[-1] if first.startswith("default") else first
    if file in CPUSET_FILES:
        return normalise_cpulist(text)
    return text


def normalise_cpulist(text: str) -> str:
    """A kernel list format ("0-2,5") as a plain sorted comma list ("0,1,2,5")."""
    ids: set[int] = set()
    for part in text.replace("\n", ",").split(","):
        part = part.strip()
        if not part:
            continue
        lo, _, hi = part.partition("-")
        try:
            ids.update(range(int(lo), int(hi or lo) + 1))
        except ValueError:
            return text
    return ",".join(str(i) for i in sorted(ids))


def unsupported_reason(version: int, what: str) -> str:
    return f"cgroup v{version} has no interface file for {what}"


def _mem_value(value: int | None) -> str:
    return UNLIMITED if value is None or value <= 0 else str(value)


# ---------------------------------------------------------------- memory


def memory_limit(version: int, memory: int | None) -> Expect:
    what = f"HostConfig.Memory={memory}"
    if version == 2:
        return Expect(what, 2, "memory", "memory.max", _mem_value(memory))
    return Expect(what, 1, "memory", "memory.limit_in_bytes", _mem_value(memory))


def swap_limit(version: int, memory: int, memory_swap: int) -> Expect:
    """MemorySwap is memory + swap (Docker's and v1's memsw meaning); -1 is unlimited swap."""
    what = f"HostConfig.Memory={memory}, MemorySwap={memory_swap}"
    if version == 2:
        value = UNLIMITED if memory_swap < 0 else str(memory_swap - memory)
        return Expect(what, 2, "memory", "memory.swap.max", value)
    return Expect(what, 1, "memory", "memory.memsw.limit_in_bytes", _mem_value(memory_swap))


def memory_reservation(version: int, reservation: int) -> Expect:
    what = f"HostConfig.MemoryReservation={reservation}"
    if version == 2:
        return Expect(what, 2, "memory", "memory.low", _mem_value(reservation))
    return Expect(what, 1, "memory", "memory.soft_limit_in_bytes", _mem_value(reservation))


def kernel_memory(version: int, kernel_memory: int) -> Expect | None:
    """KernelMemory is deprecated and ignored by current runtimes: the kmem limit must stay unlimited."""
    if version == 2:
        return None
    return Expect(f"HostConfig.KernelMemory={kernel_memory} (deprecated, ignored)", 1, "memory",
                  "memory.kmem.limit_in_bytes", UNLIMITED)


def oom_kill_disable(version: int, disabled: bool) -> Expect | None:
    if version == 2:
        return None
    return Expect(f"HostConfig.OomKillDisable={disabled}", 1, "memory", "memory.oom_control",
                  "1" if disabled else "0", key="oom_kill_disable")


def under_oom(version: int) -> Expect | None:
    if version == 2:
        return None
    return Expect("a task stalled at the limit with the OOM killer disabled", 1, "memory", "memory.oom_control",
                  "1", key="under_oom")


def memory_usage(version: int) -> Expect:
    """The usage counter (value is not an expectation: compare with a tolerance)."""
    if version == 2:
        return Expect("memory usage", 2, "memory", "memory.current", "")
    return Expect("memory usage", 1, "memory", "memory.usage_in_bytes", "")


# ---------------------------------------------------------------- cpu


def quota_from_nano_cpus(nano_cpus: int, period: int = DEFAULT_CFS_PERIOD) -> int:
    """Docker's --cpus: NanoCpus (1e9 per CPU) as a CFS quota over the default period."""
    return nano_cpus * period // 1_000_000_000


def cpu_quota(version: int, quota: int | None, period: int | None, what: str = "") -> list[Expect]:
    """The CFS bandwidth files for a quota (None or -1: unlimited) and period (None: the default)."""
    period = period or DEFAULT_CFS_PERIOD
    quota_s = UNLIMITED if quota is None or quota < 0 else str(quota)
    what = what or f"HostConfig.CpuQuota={quota}, CpuPeriod={period}"
    if version == 2:
        return [Expect(what, 2, "cpu", "cpu.max", f"{quota_s} {period}")]
    return [Expect(what, 1, "cpu", "cpu.cfs_quota_us", quota_s),
            Expect(what, 1, "cpu", "cpu.cfs_period_us", str(period))]


def shares_to_weight_linear(shares: int) -> int:
    """runc's (and crun's) classic conversion of v1 cpu.shares [2, 262144] to v2 cpu.weight [1, 10000]."""
    return 1 + ((shares - 2) * 9999) // 262142


def shares_to_weight_quadratic(shares: int) -> int:
    """runc >= 1.3's conversion: a quadratic in log2(shares) through (2, 1), (1024, 100), (262144, 10000)."""
    if shares <= 2:
        return 1
    if shares >= 262144:
        return 10000
    log = math.log2(shares)
    return math.ceil(10 ** ((log * log + 125 * log) / 612.0 - 7.0 / 34.0))


def cpu_shares(version: int, shares: int | None) -> Expect:
    """CpuShares 0/unset leaves the kernel default: 1024 shares (v1), weight 100 (v2)."""
    what = f"HostConfig.CpuShares={shares}" + ("" if shares else " (unset: the kernel default)")
    if version == 2:
        if not shares:
            return Expect(what, 2, "cpu", "cpu.weight", "100")
        linear, quadratic = shares_to_weight_linear(shares), shares_to_weight_quadratic(shares)
        alts = (str(quadratic),) if quadratic != linear else ()
        return Expect(what, 2, "cpu", "cpu.weight", str(linear), alts)
    return Expect(what, 1, "cpu", "cpu.shares", str(shares or DEFAULT_SHARES))


def cpu_usage(version: int) -> Expect:
    """Total CPU time of the cgroup; `cpu_usage_ns` turns the raw file into nanoseconds."""
    if version == 2:
        return Expect("cpu usage", 2, "cpu", "cpu.stat", "", key="usage_usec")
    return Expect("cpu usage", 1, "cpuacct", "cpuacct.usage", "")


def cpu_usage_ns(expect: Expect, raw: str) -> int:
    value = int(expect.read(raw))
    return value * 1000 if expect.version == 2 else value


def cpu_throttled(version: int) -> Expect:
    """How many CFS periods the cgroup was throttled in (same file and key on v1 and v2)."""
    return Expect("cpu throttling", version, "cpu", "cpu.stat", "", key="nr_throttled")


def cpuset_cpus(version: int, cpus: str) -> Expect:
    what = f"HostConfig.CpusetCpus={cpus!r}"
    if version == 2:
        return Expect(what, 2, "cpuset", "cpuset.cpus.effective", normalise_cpulist(cpus))
    return Expect(what, 1, "cpuset", "cpuset.cpus", normalise_cpulist(cpus))


def cpuset_mems(version: int, mems: str) -> Expect:
    what = f"HostConfig.CpusetMems={mems!r}"
    if version == 2:
        return Expect(what, 2, "cpuset", "cpuset.mems.effective", normalise_cpulist(mems))
    return Expect(what, 1, "cpuset", "cpuset.mems", normalise_cpulist(mems))


# ---------------------------------------------------------------- pids, blkio, freezer, devices


def pids_limit(version: int, limit: int | None) -> Expect:
    """PidsLimit > 0 is the limit; 0, -1 and unset mean no limit."""
    value = str(limit) if limit and limit > 0 else UNLIMITED
    return Expect(f"HostConfig.PidsLimit={limit}", version, "pids", "pids.max", value)


def pids_current(version: int) -> Expect:
    return Expect("pids count", version, "pids", "pids.current", "")


def pids_events_max(version: int) -> Expect:
    """How often a fork was refused at pids.max ("max N" in pids.events, v1 and v2)."""
    return Expect("forks refused at the limit", version, "pids", "pids.events", "", key="max")


def blkio_weight(version: int, weight: int) -> list[Expect]:
    """Candidates in the order a runtime tries them; the first file that exists is the one that counts."""
    what = f"HostConfig.BlkioWeight={weight}"
    if version == 2:
        return [Expect(what, 2, "io", "io.bfq.weight", str(weight)),
                Expect(what, 2, "io", "io.weight", str(1 + (weight - 10) * 9999 // 990))]
    return [Expect(what, 1, "blkio", "blkio.weight", str(weight)),
            Expect(what, 1, "blkio", "blkio.bfq.weight", str(weight))]


# HostConfig field -> (v1 blkio.throttle file, v2 io.max field)
THROTTLES = {
    "BlkioDeviceReadBps": ("blkio.throttle.read_bps_device", "rbps"),
    "BlkioDeviceWriteBps": ("blkio.throttle.write_bps_device", "wbps"),
    "BlkioDeviceReadIOps": ("blkio.throttle.read_iops_device", "riops"),
    "BlkioDeviceWriteIOps": ("blkio.throttle.write_iops_device", "wiops"),
}


def blkio_throttle(version: int, field: str, device: str, rate: int) -> Expect:
    """A per-device throttle (device as "major:minor"): v1 one file per kind, v2 one io.max line per device."""
    v1_file, v2_key = THROTTLES[field]
    what = f"HostConfig.{field}=[{{{device}, Rate {rate}}}]"
    if version == 2:
        return Expect(what, 2, "io", "io.max", str(rate), key=device, subkey=v2_key)
    return Expect(what, 1, "blkio", v1_file, str(rate), key=device)


def freezer(version: int, paused: bool) -> Expect:
    what = "a paused container" if paused else "a running (unpaused) container"
    if version == 2:
        return Expect(what, 2, "freezer", "cgroup.freeze", "1" if paused else "0")
    return Expect(what, 1, "freezer", "freezer.state", "FROZEN" if paused else "THAWED")


def devices_list(version: int) -> Expect | None:
    """v1's device allow-list; v2 enforces device rules with an eBPF program and has no file."""
    if version == 2:
        return None
    return Expect("device rules", 1, "devices", "devices.list", "")


def device_rule_line(rule: str) -> str:
    """A DeviceCgroupRules entry as devices.list prints it (access letters in r, w, m order)."""
    kind, numbers, access = rule.split()
    return f"{kind} {numbers} {''.join(c for c in 'rwm' if c in access)}"


def v1_controllers() -> tuple[str, ...]:
    """The v1 hierarchies a container must have its own cgroup in."""
    return ("memory", "cpu", "cpuacct", "cpuset", "pids", "freezer", "devices", "blkio")


def layout_from_magic(magic: str) -> int | None:
    """The cgroup version a container sees from the statfs type of its /sys/fs/cgroup."""
    magic = magic.strip().lower().removeprefix("0x")
    if magic == CGROUP2_MAGIC:
        return 2
    if magic in (TMPFS_MAGIC, CGROUP1_MAGIC):
        return 1
    return None
