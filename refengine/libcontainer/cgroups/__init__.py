"""refengine's cgroups layer: one interface, a v1 and a v2 implementation, detection at start-up.

    driver = detect()                     # V1Driver on v1 and hybrid hosts, V2Driver on unified ones
    cg = driver.create(container_id, Resources(memory=64 << 20, pids_limit=100))
    cg.add(pid)                           # before the container process is released
    cg.stats(); cg.oom_killed(); cg.freeze(); cg.thaw(); cg.update(Resources(...))
    cg.destroy()                          # kills what is left, removes the directories

Only cgroups under our own parent (default "refengine") are ever created, changed or removed.
"""

from __future__ import annotations

from .base import DEFAULT_PARENT, CgroupDriver, CgroupHandle
from .devices import ALLOW_ALL, DENY_ALL, DOCKER_DEFAULT_ALLOWED, DeviceRule, effective_rules
from .fs import CgroupError, CgroupExists, CgroupNotFound
from .mounts import CgroupLayout, detect_layout
from .oom import OOMNotifier
from .resources import Resources, blkio_to_io_weight, resources_from_host_config, shares_to_weight, swap_to_v2
from .stats import (
    BlkioEntry,
    BlkioStats,
    CgroupStats,
    CpuStats,
    MemoryStats,
    PidsStats,
    online_cpus,
    system_cpu_usage,
)
from .support import BlkioSupport, blkio_support
from .v1 import V1Cgroup, V1Driver
from .v2 import V2Cgroup, V2Driver


def detect(parent: str = DEFAULT_PARENT, mountinfo: str = "/proc/self/mountinfo") -> V1Driver | V2Driver:
    """The driver for this host, from the mount table: v2 if /sys/fs/cgroup is cgroup2, else v1.

    A hybrid host (v1 controllers plus a cgroup2 mount holding no controllers of interest)
    gets the v1 driver, as Docker and runc do.
    """
    layout = detect_layout(mountinfo)
    if layout.mode == "v2":
        return V2Driver(parent, mountpoint=layout.unified)
    return V1Driver(parent, mounts=layout.v1, unified=layout.unified if layout.mode == "hybrid" else None)


__all__ = [
    "ALLOW_ALL", "DENY_ALL", "DEFAULT_PARENT", "DOCKER_DEFAULT_ALLOWED",
    "BlkioEntry", "BlkioStats", "BlkioSupport", "blkio_support", "CgroupDriver", "CgroupError", "CgroupExists", "CgroupHandle", "CgroupLayout",
    "CgroupNotFound", "CgroupStats", "CpuStats", "DeviceRule", "MemoryStats", "OOMNotifier", "PidsStats",
    "Resources", "V1Cgroup", "V1Driver", "V2Cgroup", "V2Driver",
    "blkio_to_io_weight", "detect", "detect_layout", "effective_rules", "online_cpus",
    "resources_from_host_config", "shares_to_weight", "swap_to_v2", "system_cpu_usage",
]
