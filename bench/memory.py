"""Memory: the daemon's RSS idle and with N running containers, and the per-container monitor process.

The daemon is the process listening on the target's socket: /proc/net/unix (or /proc/net/tcp for
loopback TCP) gives the listening socket's inode, /proc/*/fd finds who holds it; SO_PEERCRED is the
fallback. For dockerd, containerd's RSS is added (the containerd it started, else the one its
--containerd flag names); for refengine, its helper processes (the fork server or the monitor zygote,
started with the first container) are added when they run, looked up again at each measurement; the output says which
processes a figure includes. The monitor of a container is the process whose command line carries
`refengine-monitor` and the container's id (refengine), else the parent of its init process (State.Pid):
containerd-shim-runc-v2 for dockerd, conmon for podman; its RSS and PSS come from /proc/<pid>/smaps_rollup.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from dataclasses import dataclass, field

from conformance.host import parse_unix_listeners, peercred_pid, pids_holding
from conformance.target import Target

from .client import Api
from .report import INFO, LOWER, Figures
from .stats import median
from .targets import NotMeasured, Session

SECTION = "memory"
MIB = 1024 * 1024
CONTAINERD_SOCKET = "/run/containerd/containerd.sock"
MONITOR_MARKER = "refengine-monitor"  # in a refengine monitor's argv, followed by the container id


# -- /proc readers (pure parsers take the text) ------------------------------------------------------

def parse_tcp_listeners(text: str, port: int) -> set[int]:
    """Inodes of sockets listening (state 0A) on `port`, from /proc/net/tcp or tcp6's text."""
    inodes: set[int] = set()
    for line in text.splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 10 and parts[3] == "0A" and int(parts[1].rsplit(":", 1)[1], 16) == port:
            inodes.add(int(parts[9]))
    return inodes


def parse_kv_kb(text: str) -> dict[str, int]:
    """`Name:   123 kB` lines (/proc/<pid>/status, smaps_rollup) as {name: kB}."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        name, sep, rest = line.partition(":")
        fields = rest.split()
        if sep and len(fields) == 2 and fields[1] == "kB" and fields[0].isdigit():
            out[name.strip()] = int(fields[0])
    return out


def _read(path: str) -> str:
    with open(path) as fh:
        return fh.read()


def status_field(pid: int, name: str) -> str | None:
    try:
        for line in _read(f"/proc/{pid}/status").splitlines():
            if line.startswith(name + ":"):
                return line.split(":", 1)[1].strip()
    except OSError:
        return None
    return None


def comm(pid: int) -> str:
    try:
        return _read(f"/proc/{pid}/comm").strip()
    except OSError:
        return "?"


def cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return [a.decode(errors="replace") for a in fh.read().split(b"\0") if a]
    except OSError:
        return []


def rss_bytes(pid: int) -> int:
    try:
        return parse_kv_kb(_read(f"/proc/{pid}/status"))["VmRSS"] * 1024
    except (OSError, KeyError) as exc:
        raise NotMeasured(f"cannot read the RSS of pid {pid}: {exc}") from None


def rss_pss_bytes(pid: int) -> tuple[int, int]:
    try:
        kv = parse_kv_kb(_read(f"/proc/{pid}/smaps_rollup"))
        return kv["Rss"] * 1024, kv["Pss"] * 1024
    except (OSError, KeyError) as exc:
        raise NotMeasured(f"cannot read /proc/{pid}/smaps_rollup: {exc}") from None


def children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and status_field(int(entry), "PPid") == str(pid):
            out.append(int(entry))
    return out


def marked_id(args: list[str], marker: str = MONITOR_MARKER) -> str | None:
    """The container id that follows the marker in a monitor's argv, or None."""
    if marker in args[:-1]:
        return args[args.index(marker) + 1]
    return None


def monitors_by_marker() -> dict[str, int]:
    """Container id (as in the argv, possibly shortened) → pid of its refengine monitor."""
    found: dict[str, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (cid := marked_id(cmdline(int(entry)))):
            found.setdefault(cid, int(entry))
    return found


def monitor_of(cid: str, marked: dict[str, int]) -> int | None:
    for key, pid in marked.items():
        if key and (cid.startswith(key) or key.startswith(cid)):
            return pid
    return None


def is_refengine(name: str) -> bool:
    return "refengine" in name


def refengine_helpers(pid: int) -> dict[int, str]:
    """The daemon's own helper processes (fork server, monitor zygote): children whose command line names a
    refengine module, except monitors (measured per container) and containers' inits."""
    out = {}
    for kid in children(pid):
        args = cmdline(kid)
        text = " ".join(args)
        if "refengine" not in text or MONITOR_MARKER in args:
            continue
        out[kid] = f"{helper_name(text)} (child of the daemon)"
    return out


def helper_name(text: str) -> str:
    """A short name for a refengine helper from its command line: the module its boot code imports
    (`... from refengine.libcontainer.forkserver import serve ...` → forkserver)."""
    m = re.search(r"from refengine\.([\w.]+) import", text) or re.search(r"-m refengine\.([\w.]+)", text)
    return m.group(1).rsplit(".", 1)[-1] if m else "helper"


def listener_pid(target: Target) -> tuple[int, str]:
    """The PID of the process listening on the target's socket, and how it was found."""
    if target.scheme == "unix":
        assert target.path
        paths = {target.path, os.path.realpath(target.path)}
        try:
            inodes = parse_unix_listeners(_read("/proc/net/unix"), paths)
        except OSError:
            inodes = set()
        how = "/proc/net/unix + /proc/*/fd"
    else:
        assert target.port
        inodes = set()
        for name in ("/proc/net/tcp", "/proc/net/tcp6"):
            try:
                inodes |= parse_tcp_listeners(_read(name), target.port)
            except OSError:
                pass
        how = "/proc/net/tcp + /proc/*/fd"
    pids = pids_holding(inodes) if inodes else []
    if pids:
        roots = [p for p in pids if int(status_field(p, "PPid") or 0) not in pids]
        return (roots or pids)[0], how
    if target.scheme == "unix" and target.path and (pid := peercred_pid(target.path)):
        return pid, "SO_PEERCRED"
    raise NotMeasured(f"no process found listening on {target.url} (another PID or network namespace?)")


def _flag(args: list[str], name: str) -> str | None:
    for i, a in enumerate(args):
        if a == name and i + 1 < len(args):
            return args[i + 1]
        if a.startswith(name + "="):
            return a.split("=", 1)[1]
    return None


# -- the daemon and its companions -------------------------------------------------------------------

@dataclass
class Daemon:
    """The processes whose RSS is "the daemon's": the listener plus companions (containerd for dockerd)."""

    pid: int
    name: str
    how: str
    companions: dict[int, str] = field(default_factory=dict)  # pid -> what it is
    notes: list[str] = field(default_factory=list)
    dynamic: bool = False  # companions are looked up again at each measurement (refengine's helpers)
    idle_pids: list[int] = field(default_factory=list)  # the processes the idle figure counted

    def refresh(self) -> None:
        if self.dynamic:
            self.companions = refengine_helpers(self.pid)

    @property
    def pids(self) -> list[int]:
        return [self.pid, *self.companions]

    def describe(self) -> str:
        parts = [f"{self.name} (pid {self.pid})"] + [f"{what} (pid {p})" for p, what in self.companions.items()]
        if self.dynamic:
            parts.append("its helper processes as they start (each figure's note names them)")
        return " + ".join(parts)

    def as_dict(self) -> dict[str, object]:
        return {"pid": self.pid, "name": self.name, "found_by": self.how, "cmdline": cmdline(self.pid)[:8],
                "companions": {str(p): w for p, w in self.companions.items()}, "rss_includes": self.describe(),
                "notes": self.notes}


def process_name(pid: int) -> str:
    """comm, or for an interpreter the module or script it runs (refengined is `python -m refengine...`)."""
    name = comm(pid)
    if name.startswith("python"):
        args = cmdline(pid)
        if "-m" in args[:-1]:
            return args[args.index("-m") + 1]
        script = next((a for a in args[1:] if not a.startswith("-")), None)
        if script:
            return os.path.basename(script)
    return name


def find_daemon(target: Target) -> Daemon:
    pid, how = listener_pid(target)
    daemon = Daemon(pid=pid, name=process_name(pid), how=how)
    if is_refengine(daemon.name):
        daemon.dynamic = True
        daemon.refresh()
    elif daemon.name == "dockerd":
        kids = [k for k in children(pid) if comm(k) == "containerd"]
        if kids:
            daemon.companions[kids[0]] = "containerd (started by dockerd)"
        else:
            path = _flag(cmdline(pid), "--containerd") or CONTAINERD_SOCKET
            try:
                cpid, _ = listener_pid(Target(url=f"unix://{path}", scheme="unix", path=path))
                daemon.companions[cpid] = f"containerd (system, at {path}; shared with its other clients)"
            except NotMeasured:
                daemon.notes.append(f"dockerd's containerd was not found (no child, nothing on {path})")
    return daemon


def daemon_rss(daemon: Daemon) -> tuple[int, str]:
    """Total RSS in bytes, and its parts as text (the daemon's helpers as they run now)."""
    daemon.refresh()
    parts = [(_label(daemon, p), rss_bytes(p)) for p in daemon.pids]
    text = " + ".join(f"{n} {b / MIB:.1f}" for n, b in parts) + " MiB"
    if daemon.dynamic and not daemon.companions:
        text += " (no helper process running yet: refengine starts them with the first container)"
    return sum(b for _, b in parts), text


def _label(daemon: Daemon, pid: int) -> str:
    what = daemon.companions.get(pid, "")
    return what.split(" (")[0] if daemon.dynamic and what else process_name(pid)


def running_containers(api: Api) -> str:
    """How many containers run on the daemon (context for the RSS figures), as text."""
    try:
        resp = api.get("/containers/json")
        return f"{len(resp.json())} running containers" if resp.status == 200 else "running containers unknown"
    except (OSError, ValueError):
        return "running containers unknown"


# -- the figures ----------------------------------------------------------------------------------------

def declare(many: int) -> Figures:
    return Figures(SECTION, [
        ("memory.daemon_idle", "daemon RSS, idle (none of ours)", "MiB", LOWER),
        ("memory.daemon_busy", f"daemon RSS, {many} of ours running", "MiB", LOWER),
        ("memory.daemon_per_container", "  daemon growth per running container", "MiB", LOWER),
        ("memory.daemon_end", "daemon RSS at the end (ours removed, helpers up)", "MiB", LOWER),
        ("memory.monitor_rss", "monitor process per container, RSS (median)", "MiB", LOWER),
        ("memory.monitor_pss", "monitor process per container, PSS (median)", "MiB", LOWER),
        ("memory.monitor_pss_total", f"  all {many} monitors, PSS sum", "MiB", INFO),
    ])


def measure_idle(session: Session, daemon: Daemon, figs: Figures) -> int:
    total, parts = daemon_rss(daemon)
    daemon.idle_pids = list(daemon.pids)
    others = running_containers(session.api)
    figs["memory.daemon_idle"].set(total / MIB, note=f"{parts}; {others} on the daemon (none of ours)")
    return total


def measure_busy(session: Session, daemon: Daemon, figs: Figures, cids: list[str], idle: int | None) -> None:
    total, parts = daemon_rss(daemon)
    running = running_containers(session.api)
    figs["memory.daemon_busy"].set(total / MIB, note=f"{parts}; {running} on the daemon")
    if idle is not None and cids:
        # Growth of the processes the idle figure counted: a helper started once (a zygote, a fork
        # server) is not a per-container cost; it is in the busy and end figures.
        started = [p for p in daemon.pids if p not in daemon.idle_pids]
        once = sum(rss_bytes(p) for p in started)
        note = (f"without {' + '.join(_label(daemon, p) for p in started)} ({once / MIB:.1f} MiB), started once "
                "since the idle figure" if started else "")
        figs["memory.daemon_per_container"].set((total - once - idle) / MIB / len(cids), samples=len(cids),
                                                note=note)
    else:
        figs["memory.daemon_per_container"].skip("no idle figure to compare with")
    monitors: Counter[int] = Counter()
    inside_daemon = 0
    marked = monitors_by_marker()
    for cid in cids:
        by_marker = monitor_of(cid, marked)
        if by_marker is not None:
            monitors[by_marker] += 1
            continue
        pid = int(session.inspect(session.api, cid)["State"].get("Pid") or 0)
        ppid = int(status_field(pid, "PPid") or 0) if pid else 0
        if not ppid:
            continue
        if ppid in daemon.pids:
            inside_daemon += 1
        else:
            monitors[ppid] += 1
    if not monitors:
        reason = ("the containers' init processes are children of the daemon itself (no separate monitor)"
                  if inside_daemon else "the containers' init processes were not found")
        for key in ("memory.monitor_rss", "memory.monitor_pss", "memory.monitor_pss_total"):
            figs[key].skip(reason)
        return
    names = Counter(MONITOR_MARKER if marked_id(cmdline(p)) else comm(p) for p in monitors)
    rss, pss = zip(*(rss_pss_bytes(p) for p in monitors), strict=True)
    shared = sum(1 for n in monitors.values() if n > 1)
    note = (f"{len(monitors)} monitor processes ({', '.join(f'{n} ×{c}' for n, c in names.items())}) "
            f"for {len(cids)} containers" + (f"; {shared} serve more than one" if shared else ""))
    figs["memory.monitor_rss"].set(median(rss) / MIB, samples=len(rss), note=note)
    figs["memory.monitor_pss"].set(median(pss) / MIB, samples=len(pss), note=note)
    figs["memory.monitor_pss_total"].set(sum(pss) / MIB, samples=len(pss))


def measure_end(session: Session, daemon: Daemon, figs: Figures) -> None:
    """After the target's measurements: the same daemon idle again, with whatever helpers it started."""
    total, parts = daemon_rss(daemon)
    figs["memory.daemon_end"].set(total / MIB, note=f"{parts}; {running_containers(session.api)} on the daemon")
