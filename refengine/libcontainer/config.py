"""The container config record: what to run, in which namespaces, on which rootfs, with which limits.

Parent side only (dataclasses are too heavy for the init): process.py turns a ContainerConfig into
a plain dict and sends it to the init as JSON. Defaults follow Docker (moby oci/defaults.go).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from . import cgroups

NAMESPACE_KINDS = ("user", "mnt", "pid", "net", "ipc", "uts", "cgroup")
_ALIASES = {"mount": "mnt", "network": "net"}

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# moby oci/defaults.go
DOCKER_MASKED_PATHS = (
    "/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
    "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap",
)
DOCKER_READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")

# rlimit names accepted as "nofile" or "RLIMIT_NOFILE" (resource module numbers, Linux)
RLIMITS = {
    "cpu": 0, "fsize": 1, "data": 2, "stack": 3, "core": 4, "rss": 5, "nproc": 6, "nofile": 7, "memlock": 8,
    "as": 9, "locks": 10, "sigpending": 11, "msgqueue": 12, "nice": 13, "rtprio": 14, "rttime": 15,
}
RLIM_INFINITY = -1  # as Docker's JSON and Python's resource.RLIM_INFINITY
# The sysctls a namespace makes per-container (the rest of /proc/sys is host-wide).
IPC_SYSCTLS = ("kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall", "kernel.shmmax",
               "kernel.shmmni", "kernel.shm_rmid_forced")


def sysctl_namespace(key: str) -> str | None:
    """The namespace kind whose own copy of sysctl `key` a container can set, or None (host-wide)."""
    if key in IPC_SYSCTLS or key.startswith("fs.mqueue."):
        return "ipc"
    if key.startswith("net."):
        return "net"
    if key in ("kernel.hostname", "kernel.domainname"):
        return "uts"
    return None


class ConfigError(ValueError):
    """The config cannot be run as given (a client error, reported before anything is created)."""


class HostSetupError(ConfigError):
    """The config is well-formed but this host or another container cannot provide what it asks
    (a shared bind on a private mount, a donor that is not running): dockerd calls these server
    errors (500), not client errors."""


@dataclass
class NamespaceSpec:
    """One namespace the container gets: `path` None = a new one; a path = join it (e.g. another
    container's /proc/<pid>/ns/net). A kind absent from ContainerConfig.namespaces = the host's."""

    type: str
    path: str | None = None

    def __post_init__(self) -> None:
        self.type = _ALIASES.get(self.type, self.type)
        if self.type not in NAMESPACE_KINDS:
            raise ConfigError(f"unknown namespace type {self.type!r} (known: {', '.join(NAMESPACE_KINDS)})")


@dataclass
class Mount:
    """A mount inside the container. type 'bind' needs source; options as in mount(8)/OCI:
    ro, nosuid, nodev, noexec, rbind, rprivate|rslave|rshared..., and data such as size=64m."""

    destination: str
    type: str = "bind"
    source: str | None = None
    options: list[str] = field(default_factory=list)


@dataclass
class IDMap:
    container_id: int
    host_id: int
    size: int


@dataclass
class Rlimit:
    type: str                 # "nofile" or "RLIMIT_NOFILE"
    soft: int
    hard: int

    @property
    def number(self) -> int:
        name = self.type.lower().removeprefix("rlimit_")
        if name not in RLIMITS:
            raise ConfigError(f"unknown rlimit {self.type!r}")
        return RLIMITS[name]


@dataclass
class Device:
    """A device node created in the container's /dev (Docker --device, or every host device when privileged)."""

    path: str                 # in the container, e.g. /dev/xnull
    type: str                 # 'c' or 'b' (or 'p' for a fifo)
    major: int
    minor: int
    file_mode: int = 0o666
    uid: int = 0
    gid: int = 0


def default_namespaces() -> list[NamespaceSpec]:
    """Docker's on a cgroup v1 host: private mnt, pid, net, ipc, uts; host user and cgroup namespaces."""
    return [NamespaceSpec(k) for k in ("mnt", "pid", "net", "ipc", "uts")]


def default_mounts(shm_size: int | None = 64 << 20, ipc_none: bool = False) -> list[Mount]:
    """moby's default mounts (oci/defaults.go), /dev/shm sized as --shm-size (64 MiB default)."""
    mounts = [
        Mount("/proc", "proc", "proc", ["nosuid", "noexec", "nodev"]),
        Mount("/dev", "tmpfs", "tmpfs", ["nosuid", "strictatime", "mode=755", "size=65536k"]),
        Mount("/dev/pts", "devpts", "devpts", ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620",
                                               "gid=5"]),
        Mount("/sys", "sysfs", "sysfs", ["nosuid", "noexec", "nodev", "ro"]),
        Mount("/sys/fs/cgroup", "cgroup", "cgroup", ["ro", "nosuid", "noexec", "nodev"]),
        Mount("/dev/mqueue", "mqueue", "mqueue", ["nosuid", "noexec", "nodev"]),
    ]
    if not ipc_none:
        size = f"size={shm_size // 1024}k" if shm_size else "size=65536k"
        mounts.append(Mount("/dev/shm", "tmpfs", "shm", ["nosuid", "noexec", "nodev", "mode=1777", size]))
    return mounts


@dataclass
class ContainerConfig:
    rootfs: str
    args: list[str]
    id: str = ""                                  # names the cgroup when cgroup_name is not given
    env: list[str] = field(default_factory=lambda: ["PATH=" + DEFAULT_PATH])
    cwd: str = "/"
    user: str = ""                                # "uid[:gid]" or "name[:group]"; "" = root
    additional_groups: list[str] = field(default_factory=list)
    hostname: str | None = None
    domainname: str | None = None
    namespaces: list[NamespaceSpec] = field(default_factory=default_namespaces)
    uid_mappings: list[IDMap] = field(default_factory=list)   # with a new user namespace
    gid_mappings: list[IDMap] = field(default_factory=list)
    mounts: list[Mount] = field(default_factory=default_mounts)
    devices: list[Device] = field(default_factory=list)      # besides the default nodes
    # cgroups: the parent creates <cgroup_parent>/<cgroup_name> and puts the payload in it before release
    cgroup_name: str | None = None                # None = no cgroup of our own
    cgroup_parent: str = cgroups.DEFAULT_PARENT
    resources: cgroups.Resources | None = None
    # security
    privileged: bool = False
    capabilities: list[str] | None = None         # the base set; None = Docker's default
    cap_add: list[str] = field(default_factory=list)
    cap_drop: list[str] = field(default_factory=list)
    seccomp: str | dict[str, Any] | None = "default"  # "default", "unconfined"/None, or a Docker-format profile
    no_new_privileges: bool = False
    masked_paths: list[str] | None = None         # None = Docker's list (none when privileged)
    readonly_paths: list[str] | None = None
    readonly_rootfs: bool = False
    rootfs_propagation: str = "rslave"            # applied to / in the new mount namespace first (as runc)
    rlimits: list[Rlimit] = field(default_factory=list)
    sysctl: dict[str, str] = field(default_factory=dict)
    oom_score_adj: int | None = None
    tty: bool = False

    def namespace(self, kind: str) -> NamespaceSpec | None:
        kind = _ALIASES.get(kind, kind)
        return next((n for n in self.namespaces if n.type == kind), None)

    def creates(self, kind: str) -> bool:
        ns = self.namespace(kind)
        return ns is not None and ns.path is None

    def validate(self) -> None:
        if not self.args:
            raise ConfigError("no command given (args is empty)")
        seen: set[str] = set()
        for ns in self.namespaces:
            if ns.type in seen:
                raise ConfigError(f"namespace {ns.type!r} given twice")
            seen.add(ns.type)
        if (self.uid_mappings or self.gid_mappings) and not self.creates("user"):
            raise ConfigError("uid/gid mappings need a new user namespace")
        if self.creates("user") and not (self.uid_mappings and self.gid_mappings):
            raise ConfigError("a new user namespace needs uid and gid mappings")
        if (self.hostname or self.domainname) and not self.creates("uts"):
            raise ConfigError("unable to set the hostname without a private UTS namespace")
        if not self.cwd.startswith("/"):
            raise ConfigError(f"the working directory {self.cwd!r} is not an absolute path")
        for m in self.mounts:
            if not m.destination.startswith("/"):
                raise ConfigError(f"mount destination {m.destination!r} is not an absolute path")
            if m.type == "bind" and not m.source:
                raise ConfigError(f"bind mount on {m.destination} has no source")
        for r in self.rlimits:
            r.number  # noqa: B018 - validates the name
            if r.hard != RLIM_INFINITY and (r.soft == RLIM_INFINITY or r.soft > r.hard):
                raise ConfigError(f"rlimit {r.type}: the soft limit {r.soft} is above the hard limit {r.hard} "
                                  "(setrlimit refuses it: EINVAL)")
        for env in self.env:
            if "=" not in env:
                raise ConfigError(f"environment entry {env!r} is not NAME=value")
        for key in self.sysctl:
            self._check_sysctl(key)

    def _check_sysctl(self, key: str) -> None:
        """Only sysctls of a namespace the container has of its own can be set (the kernel keeps the
        others host-wide); runc's rule and words."""
        kind = sysctl_namespace(key)
        if kind is None:
            raise HostSetupError(f'sysctl "{key}" is not in a separate kernel namespace')
        if self.namespace(kind) is None:
            raise HostSetupError(f'sysctl "{key}" is not allowed in the host\'s {kind} namespace')


@dataclass
class ExecConfig:
    """A process started inside a running container (docker exec): joins all its namespaces."""

    args: list[str]
    env: list[str] | None = None                  # None = the container's env
    cwd: str | None = None                        # None = the container's cwd
    user: str | None = None                       # None = the container's user
    additional_groups: list[str] | None = None
    tty: bool = False
    privileged: bool = False                      # docker exec --privileged: every capability, no seccomp
