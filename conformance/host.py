"""The host-side view of a local target: a container's processes, namespaces and cgroups as the kernel shows them.

Checks in isolation/, cgroups/ and network/ compare what a container sees from inside with what the
host sees. That needs the daemon on this machine and enough privilege to read other processes'
`/proc/<pid>/ns/*`; the `host` fixture skips (with that reason) otherwise. Commands run through
testinfra's local backend so failures carry the command, its exit status and its output.
"""

from __future__ import annotations

import os
import socket
import struct
from dataclasses import dataclass
from typing import Any

from .target import Target

NAMESPACES = ("cgroup", "ipc", "mnt", "net", "pid", "user", "uts")


SO_ACCEPTCON = 0x10000  # /proc/net/unix Flags: a listening socket (accepted ones carry the same path)


def parse_unix_listeners(text: str, paths: set[str]) -> set[int]:
    """Inodes of listening sockets bound to one of `paths`, from /proc/net/unix's text."""
    inodes: set[int] = set()
    for line in text.splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 8 and int(parts[3], 16) & SO_ACCEPTCON and parts[7] in paths:
            inodes.add(int(parts[6]))
    return inodes


def pids_holding(inodes: set[int]) -> list[int]:
    """PIDs with an fd on one of these socket inodes (other processes' fds need root to read)."""
    wanted = {f"socket:[{i}]" for i in inodes}
    found = []
    for entry in os.listdir("/proc") if wanted else []:
        if not entry.isdigit():
            continue
        try:
            fds = os.listdir(f"/proc/{entry}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{entry}/fd/{fd}") in wanted:
                    found.append(int(entry))
                    break
            except OSError:
                continue
    return sorted(found)


def peercred_pid(path: str) -> int | None:
    """SO_PEERCRED of a connection to the unix socket at `path`: the process that called listen() on it."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        try:
            sock.connect(path)
            pid, _uid, _gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
        except OSError:
            return None
    return pid or None


def socket_daemon_pid(path: str) -> int | None:
    """The PID of the daemon serving the unix socket at `path`, None if it can't be known.

    SO_PEERCRED names the process that called listen(): the daemon itself, or, where the socket is
    activated (systemd's docker.socket, as on Debian), the service manager (PID 1), which hands the
    listening socket on to the daemon it starts. The daemon is then the other process that holds that
    listening socket (finding it needs root: other processes' /proc/<pid>/fd).
    """
    pid = peercred_pid(path)
    if not pid:
        return None
    try:
        with open("/proc/net/unix") as fh:
            inodes = parse_unix_listeners(fh.read(), {path, os.path.realpath(path)})
    except (OSError, ValueError):
        inodes = set()
    others = sorted(set(pids_holding(inodes)) - {pid})
    return others[0] if len(others) == 1 else pid


def peer_pid(target: Target) -> int | None:
    """The PID of the daemon serving the target's unix socket (socket_daemon_pid), None for TCP targets."""
    if target.scheme != "unix" or not target.path:
        return None
    return socket_daemon_pid(target.path)


class HostUnavailable(Exception):
    """Why host-side facts cannot be read for this target (the skip reason)."""


@dataclass(frozen=True)
class CgroupMount:
    """Where one cgroup hierarchy is mounted and which controllers it carries ("" for the v2 unified one)."""

    path: str
    controllers: frozenset[str]
    version: int


def _mounts() -> list[CgroupMount]:
    found = []
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            left, _, right = line.partition(" - ")
            fstype, _source, options = (right.split() + ["", "", ""])[:3]
            mountpoint = left.split()[4]
            if fstype == "cgroup2":
                found.append(CgroupMount(mountpoint, frozenset(), 2))
            elif fstype == "cgroup":
                # super options hold the controllers (and name=systemd), after mount flags
                ctrls = {o for o in options.split(",")
                         if o not in ("rw", "ro", "nosuid", "nodev", "noexec", "relatime", "clone_children")}
                found.append(CgroupMount(mountpoint, frozenset(ctrls), 1))
    return found


class Host:
    """Reads /proc and /sys/fs/cgroup on this machine; runs host commands through testinfra."""

    def __init__(self) -> None:
        import testinfra  # imported here: only local targets need it
        self.ti: Any = testinfra.get_host("local://")
        self._mounts = _mounts()

    # --- cgroup layout -------------------------------------------------------------------------
    @property
    def cgroup_version(self) -> int:
        """2 when /sys/fs/cgroup is the unified hierarchy, else 1 (a hybrid host counts as 1)."""
        return 2 if any(m.version == 2 and m.path == "/sys/fs/cgroup" for m in self._mounts) else 1

    def cgroup_paths(self, pid: int) -> dict[str, str]:
        """/proc/<pid>/cgroup as {controller: path}; the v2 entry is keyed ""."""
        paths: dict[str, str] = {}
        for line in self.read(f"/proc/{pid}/cgroup").splitlines():
            _hid, ctrls, path = line.split(":", 2)
            for ctrl in (ctrls.split(",") if ctrls else [""]):
                paths[ctrl] = path
        return paths

    def cgroup_dir(self, pid: int, controller: str) -> str:
        """The host directory of `pid`'s cgroup for `controller` ("" or any name on a v2 host)."""
        paths = self.cgroup_paths(pid)
        if self.cgroup_version == 2:
            mount = next(m for m in self._mounts if m.version == 2 and m.path == "/sys/fs/cgroup")
            return os.path.join(mount.path, paths[""].lstrip("/"))
        for m in self._mounts:
            if m.version == 1 and controller in m.controllers:
                return os.path.join(m.path, paths[controller].lstrip("/"))
        raise HostUnavailable(f"no cgroup v1 hierarchy carries the {controller!r} controller on this host")

    def cgroup_file(self, pid: int, controller: str, name: str) -> str:
        """Contents of one cgroup interface file of `pid`'s cgroup, stripped."""
        return self.read(os.path.join(self.cgroup_dir(pid, controller), name)).strip()

    # --- processes and namespaces --------------------------------------------------------------
    def ns(self, pid: int | str, kind: str) -> str:
        """The namespace identity, e.g. 'pid:[4026531836]', of /proc/<pid>/ns/<kind>."""
        return os.readlink(f"/proc/{pid}/ns/{kind}")

    def status(self, pid: int) -> dict[str, str]:
        """/proc/<pid>/status as a dict (CapEff, NoNewPrivs, Seccomp, Uid ...)."""
        out = {}
        for line in self.read(f"/proc/{pid}/status").splitlines():
            key, _, value = line.partition(":")
            out[key] = value.strip()
        return out

    def children(self, pid: int) -> list[int]:
        """Direct children of a host PID (first thread's list)."""
        try:
            return [int(p) for p in self.read(f"/proc/{pid}/task/{pid}/children").split()]
        except FileNotFoundError:
            return []

    def read(self, path: str) -> str:
        with open(path) as fh:
            return fh.read()

    def run(self, *cmd: str) -> Any:
        """A host command (testinfra CommandResult: .rc, .stdout, .stderr)."""
        return self.ti.run(" ".join(_quote(c) for c in cmd))


def _quote(arg: str) -> str:
    import shlex
    return shlex.quote(arg)


def open_host(target_is_local: bool, daemon_pid_visible: bool) -> Host:
    """A Host, or HostUnavailable saying why host-side facts can't be read for this target."""
    if not target_is_local:
        raise HostUnavailable("the target daemon is remote: host-side facts (/proc, cgroup files) are not readable here")
    if os.geteuid() != 0:
        raise HostUnavailable("reading another process's /proc/<pid>/ns and cgroup files needs root")
    if not daemon_pid_visible:
        raise HostUnavailable("the target's container processes are not visible in this host's /proc "
                              "(the daemon runs in another PID namespace or machine)")
    return Host()
