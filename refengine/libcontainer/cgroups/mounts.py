"""Cgroup layout from the mount table: v1 (per-controller hierarchies), v2 (unified) or hybrid."""

from __future__ import annotations

from dataclasses import dataclass, field

from .fs import CgroupError

# Controllers the v1 driver manages (the list); others are joined only (no limits written).
V1_MANAGED = ("memory", "cpu", "cpuacct", "cpuset", "pids", "blkio", "devices", "freezer")
V1_KNOWN = V1_MANAGED + ("net_cls", "net_prio", "perf_event", "hugetlb", "rdma", "misc")


@dataclass(frozen=True)
class MountEntry:
    mountpoint: str
    root: str           # the path inside the filesystem that is mounted (cgroup namespaces make it != "/")
    fstype: str
    super_options: tuple[str, ...]


@dataclass
class CgroupLayout:
    mode: str                                        # "v1", "hybrid" or "v2"
    v1: dict[str, str] = field(default_factory=dict)  # controller (or "name=systemd") -> mountpoint
    unified: str | None = None                       # the cgroup2 mountpoint, if any

    @property
    def version(self) -> int:
        """The cgroup version that holds the controllers (hybrid counts as 1, as Docker reports it)."""
        return 2 if self.mode == "v2" else 1


def _unescape(s: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo
    out, i = [], 0
    while i < len(s):
        if s[i] == "\\" and len(s[i + 1:i + 4]) == 3 and s[i + 1:i + 4].isdigit():
            out.append(chr(int(s[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(s[i])
            i += 1
    return "".join(out)


def parse_mountinfo(text: str) -> list[MountEntry]:
    entries = []
    for line in text.splitlines():
        fields = line.split()
        if "-" not in fields:
            continue
        sep = fields.index("-")
        if sep < 6 or len(fields) < sep + 4:
            continue
        entries.append(MountEntry(mountpoint=_unescape(fields[4]), root=_unescape(fields[3]),
                                  fstype=fields[sep + 1], super_options=tuple(fields[sep + 3].split(","))))
    return entries


def layout_from_mounts(entries: list[MountEntry], cgroup_root: str = "/sys/fs/cgroup") -> CgroupLayout:
    v1: dict[str, str] = {}
    unified: str | None = None
    for e in entries:
        if e.fstype == "cgroup2":
            # the unified mount at the cgroup root wins over e.g. /sys/fs/cgroup/unified
            if unified is None or e.mountpoint == cgroup_root:
                unified = e.mountpoint
        elif e.fstype == "cgroup":
            for opt in e.super_options:
                if opt in V1_KNOWN or opt.startswith("name="):
                    # the first mount of a hierarchy wins (later ones are usually bind mounts)
                    v1.setdefault(opt, e.mountpoint)
    controllers = [k for k in v1 if not k.startswith("name=")]
    if unified == cgroup_root or (unified and not controllers):
        # a unified /sys/fs/cgroup is v2 even if a named v1 hierarchy is mounted somewhere for old tools
        return CgroupLayout(mode="v2", unified=unified)
    if v1:
        return CgroupLayout(mode="hybrid" if unified else "v1", v1=v1, unified=unified)
    raise CgroupError("no cgroup filesystem is mounted (neither cgroup v1 controllers nor cgroup2 in the mount table)")


def detect_layout(mountinfo: str = "/proc/self/mountinfo", cgroup_root: str = "/sys/fs/cgroup") -> CgroupLayout:
    with open(mountinfo) as fh:
        return layout_from_mounts(parse_mountinfo(fh.read()), cgroup_root)
