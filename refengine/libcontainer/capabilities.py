"""Capability names and numbers, Docker's default set and its add/drop rules, and applying a set.

The parent resolves names into one 64-bit mask (`resolve`); the init only applies masks (`apply_*`),
so it needs no name table and no parsing after pivot_root.
"""

from __future__ import annotations

from . import syscalls

# capabilities(7), linux/capability.h: bit number -> name (without the CAP_ prefix)
NAMES = (
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID",
    "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW",
    "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT",
    "SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD",
    "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG",
    "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE",
)
NUMBERS = {name: i for i, name in enumerate(NAMES)}

# moby oci/caps DefaultCapabilities()
DOCKER_DEFAULT = (
    "CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "NET_RAW", "SETGID", "SETUID", "SETFCAP",
    "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT", "KILL", "AUDIT_WRITE",
)


class CapabilityError(ValueError):
    pass


def normalize(name: str) -> str:
    """'cap_sys_admin', 'CAP_SYS_ADMIN', 'sys_admin' -> 'SYS_ADMIN'; 'all' -> 'ALL'."""
    n = name.strip().upper()
    if n.startswith("CAP_"):
        n = n[4:]
    if n != "ALL" and n not in NUMBERS:
        raise CapabilityError(f"unknown capability: {name!r}")
    return n


def last_cap() -> int:
    try:
        with open("/proc/sys/kernel/cap_last_cap") as fh:
            return min(int(fh.read()), len(NAMES) - 1)
    except OSError:
        return len(NAMES) - 1


_bounding: int | None = None


def bounding_set() -> int:
    """This process's capability bounding set (what any container we start can have at most).
    Read once: a process's bounding set only ever shrinks, and the engine never shrinks its own."""
    global _bounding
    if _bounding is None:
        _bounding = _read_bounding()
    return _bounding


def _read_bounding() -> int:
    mask = 0
    for cap in range(last_cap() + 1):
        try:
            if syscalls.prctl(syscalls.PR_CAPBSET_READ, cap) == 1:
                mask |= 1 << cap
        except OSError:
            break
    return mask


def to_mask(names: list[str] | tuple[str, ...] | set[str] | frozenset[str]) -> int:
    mask = 0
    for n in names:
        mask |= 1 << NUMBERS[normalize(n)]
    return mask


def to_names(mask: int) -> list[str]:
    return [NAMES[i] if i < len(NAMES) else f"CAP_{i}" for i in range(64) if mask >> i & 1]


def resolve(add: list[str] | None = None, drop: list[str] | None = None, privileged: bool = False,
            base: list[str] | tuple[str, ...] | None = None, available: int | None = None) -> int:
    """Docker's TweakCapabilities as a mask: privileged = everything we hold; ALL in add = everything but
    the drops; ALL in drop = only the adds; else base (Docker's default set) minus drops plus adds.

    `available` is our own bounding set: a capability outside it cannot be granted (capset would fail
    with EPERM), so asking for one explicitly is an error; privileged quietly gets what there is.
    """
    if available is None:
        available = bounding_set()
    adds = {normalize(c) for c in add or []}
    drops = {normalize(c) for c in drop or []}
    if privileged:
        return available
    if "ALL" in adds:
        mask = available & ~to_mask(drops - {"ALL"})
    elif "ALL" in drops:
        mask = to_mask(adds)
    else:
        mask = (to_mask(base if base is not None else DOCKER_DEFAULT) & ~to_mask(drops)) | to_mask(adds)
    missing = mask & ~available
    if missing:
        raise CapabilityError(f"capabilities not in the engine's own bounding set cannot be granted: "
                              f"{', '.join('CAP_' + n for n in to_names(missing))}")
    return mask


# -- applied by the init (masks only)


def drop_bounding(keep: int, last: int) -> None:
    """Drop every capability not in `keep` from the bounding set (needs CAP_SETPCAP, so do it first)."""
    for cap in range(last + 1):
        if not keep >> cap & 1:
            try:
                syscalls.prctl(syscalls.PR_CAPBSET_DROP, cap)
            except OSError as e:
                if e.errno != 22:  # EINVAL: the kernel does not know this one
                    raise


def apply_sets(mask: int) -> None:
    """Effective = permitted = mask, inheritable and ambient empty (as Docker since CVE-2022-24769).

    For a non-root user the kernel clears permitted/effective at execve anyway (no file caps, no
    ambient), which is Docker's behaviour too.
    """
    try:
        syscalls.prctl(syscalls.PR_CAP_AMBIENT, syscalls.PR_CAP_AMBIENT_CLEAR_ALL)
    except OSError:
        pass
    syscalls.capset(mask, mask, 0)


def current_effective(pid: int | str = "self") -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("CapEff:"):
                return int(line.split()[1], 16)
    return 0


def has_cap(name: str) -> bool:
    return bool(current_effective() >> NUMBERS[normalize(name)] & 1)


__all__ = ["DOCKER_DEFAULT", "NAMES", "NUMBERS", "CapabilityError", "apply_sets", "bounding_set",
           "current_effective", "drop_bounding", "has_cap", "last_cap", "normalize", "resolve", "to_mask",
           "to_names"]
