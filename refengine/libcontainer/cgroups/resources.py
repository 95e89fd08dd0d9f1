"""The Resources record (the contract with the core helper), v1->v2 conversions, and Docker HostConfig mapping."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, fields
from typing import Any

from .devices import ALLOW_ALL, DeviceRule

# Docker's HostConfig field -> the v1 blkio.throttle file and the v2 io.max key it sets
THROTTLE_FIELDS = {
    "BlkioDeviceReadBps": ("read_bps", "rbps"), "BlkioDeviceWriteBps": ("write_bps", "wbps"),
    "BlkioDeviceReadIOps": ("read_iops", "riops"), "BlkioDeviceWriteIOps": ("write_iops", "wiops"),
}


@dataclass
class Throttle:
    """One block-device limit: kind is read_bps, write_bps, read_iops or write_iops; rate 0 = no limit."""

    kind: str
    major: int
    minor: int
    rate: int


@dataclass
class Resources:
    """All optional; None = not set (left as it is). Docker's units and conventions: 0 also means
    "not set" for memory, memory_swap, cpu_shares, cpu_quota, cpu_period and blkio_weight."""

    memory: int | None = None              # bytes (memory.limit_in_bytes / memory.max); -1 unlimited
    memory_swap: int | None = None         # memory+swap bytes, Docker semantics (-1 unlimited)
    memory_reservation: int | None = None  # soft limit (v1 memory.soft_limit_in_bytes / v2 memory.low)
    oom_kill_disable: bool | None = None   # v1 only (v2 has no such knob; ignored there, as runc does)
    cpu_shares: int | None = None          # v1 shares; v2 converts to cpu.weight
    cpu_quota: int | None = None           # us per period; -1 unlimited
    cpu_period: int | None = None          # us
    cpuset_cpus: str | None = None
    cpuset_mems: str | None = None
    pids_limit: int | None = None          # <=0 unlimited
    blkio_weight: int | None = None        # 10..1000 (v2: converted to io.weight 1..10000)
    blkio_throttle: list[Throttle] | None = None  # per-device bps/iops limits (v1 blkio.throttle.*, v2 io.max)
    devices: list[DeviceRule] | None = None  # configured rules; the default allow list is always added

    def is_empty(self) -> bool:
        return all(getattr(self, f.name) is None for f in fields(self))


def shares_to_weight(shares: int) -> int:
    """cgroup v1 cpu.shares (2..262144) -> v2 cpu.weight (1..10000): the OCI/runc formula.

    Shares outside the v1 range are clamped first, as the v1 kernel would (so the weight stays valid).
    """
    if shares == 0:
        return 0
    shares = min(max(shares, 2), 262144)
    return 1 + ((shares - 2) * 9999) // 262142


def blkio_to_io_weight(weight: int) -> int:
    """v1 blkio.weight (10..1000) -> v2 io.weight (1..10000): runc's ConvertBlkIOToIOWeightValue."""
    if weight == 0:
        return 0
    return 1 + (weight - 10) * 9999 // 990


def swap_to_v2(memory_swap: int | None, memory: int | None) -> int | None:
    """Docker's memory+swap -> v2 memory.swap.max (swap only); None = leave alone, -1 = max.

    As runc's ConvertMemorySwapToCgroupV2Value: unlimited memory with unset swap means unlimited swap.
    """
    if memory == -1 and not memory_swap:
        return -1
    if memory_swap in (None, 0):
        return None
    if memory_swap == -1:
        return -1
    if memory in (None, 0, -1):
        raise ValueError("unable to set swap limit without memory limit")
    if memory_swap < memory:
        raise ValueError("memory+swap limit should be >= memory limit")
    return memory_swap - memory


def _device_rules_for_path(host_path: str, perms: str) -> list[DeviceRule]:
    try:
        st = os.stat(host_path)
    except OSError as e:
        raise ValueError(f'error gathering device information while adding custom device "{host_path}": '
                         f"{e.strerror.lower()}") from None
    if stat.S_ISDIR(st.st_mode):
        out: list[DeviceRule] = []
        for root, _dirs, files in os.walk(host_path):
            for f in sorted(files):
                try:
                    out += _device_rules_for_path(os.path.join(root, f), perms)
                except ValueError:
                    continue
        return out
    if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
        t = "c" if stat.S_ISCHR(st.st_mode) else "b"
        return [DeviceRule(allow=True, type=t, major=os.major(st.st_rdev), minor=os.minor(st.st_rdev),
                           access=perms)]
    raise ValueError(f'error gathering device information while adding custom device "{host_path}": not a device node')


def _throttles(key: str, entries: Any) -> list[Throttle]:
    """HostConfig.BlkioDevice* entries ({"Path": "/dev/sda", "Rate": n}) as Throttles, the device
    numbers taken from the host's node (as dockerd's getBlkioThrottleDevices)."""
    out = []
    for e in entries or []:
        path = e.get("Path") or ""
        try:
            st = os.stat(path)
        except OSError as exc:
            raise ValueError(f"error gathering device information for {path!r}: {exc.strerror.lower()}") from None
        if not stat.S_ISBLK(st.st_mode):
            raise ValueError(f"{path} is not a block device")
        out.append(Throttle(THROTTLE_FIELDS[key][0], os.major(st.st_rdev), os.minor(st.st_rdev),
                            int(e.get("Rate") or 0)))
    return out


def resources_from_host_config(hc: dict[str, Any]) -> Resources:
    """Map a Docker HostConfig to Resources with dockerd's conventions.

    - Memory set and MemorySwap 0: swap defaults to 2 x Memory (dockerd's adaptContainerSettings).
    - NanoCpus: period 100000 us, quota = NanoCpus * period / 1e9.
    - PidsLimit 0 or -1: unlimited; absent: unset.
    - Privileged: allow all devices; otherwise Devices (host nodes, stat'ed here) + DeviceCgroupRules.
    """
    r = Resources()
    mem = hc.get("Memory") or 0
    if mem > 0:
        r.memory = mem
    swap = hc.get("MemorySwap") or 0
    if swap > 0 or swap == -1:
        r.memory_swap = swap
    elif mem > 0:
        r.memory_swap = 2 * mem
    if (hc.get("MemoryReservation") or 0) > 0:
        r.memory_reservation = hc["MemoryReservation"]
    if hc.get("OomKillDisable") is not None:
        r.oom_kill_disable = bool(hc["OomKillDisable"])
    if (hc.get("CpuShares") or 0) > 0:
        r.cpu_shares = hc["CpuShares"]
    nano = hc.get("NanoCpus") or 0
    if nano > 0:
        r.cpu_period = 100000
        r.cpu_quota = nano * 100000 // 1_000_000_000
    if hc.get("CpuQuota"):
        r.cpu_quota = hc["CpuQuota"]
    if hc.get("CpuPeriod"):
        r.cpu_period = hc["CpuPeriod"]
    if hc.get("CpusetCpus"):
        r.cpuset_cpus = hc["CpusetCpus"]
    if hc.get("CpusetMems"):
        r.cpuset_mems = hc["CpusetMems"]
    if hc.get("PidsLimit") is not None:
        r.pids_limit = hc["PidsLimit"]
    if (hc.get("BlkioWeight") or 0) > 0:
        r.blkio_weight = hc["BlkioWeight"]
    throttles = [t for key in THROTTLE_FIELDS for t in _throttles(key, hc.get(key))]
    if throttles:
        r.blkio_throttle = throttles
    if hc.get("Privileged"):
        r.devices = [ALLOW_ALL]
    else:
        rules: list[DeviceRule] = []
        for d in hc.get("Devices") or []:
            rules += _device_rules_for_path(d["PathOnHost"], d.get("CgroupPermissions") or "rwm")
        for text in hc.get("DeviceCgroupRules") or []:
            rules.append(DeviceRule.parse(text))
        r.devices = rules
    return r
