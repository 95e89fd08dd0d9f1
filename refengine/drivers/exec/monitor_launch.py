"""The monitor's first stage: start the container through libcontainer, then become the lean monitor.

The daemon runs `python -I -S -c <boot> <root> refengine-monitor <id> <container dir> <fd>` in a new
session (monitor_client.launch); fd is the monitor's end of a SOCK_SEQPACKET socketpair. Over it:

    daemon -> monitor   a pickled LaunchSpec (the libcontainer config, stdio and log settings)
    monitor -> daemon   CREATED pid   the init waits (cgroup joined): the daemon runs its network hook
    daemon -> monitor   GO | ABORT message
    monitor -> daemon   STARTED {"pid", "monitor_pid"} | FAILED {"message", "code"}

The container's init is forked inline (not by the daemon's fork server, which dies with the daemon),
so the payload is *this* process's child (CLONE_PARENT from the intermediate). Once it runs, the
socketpair end, the payload's pidfd and the stdio fds go to monitor.main, which keeps serving the same
daemon connection and listens on <container dir>/monitor.sock for later ones. Two ways there:
- run_split (what the zygote's children do): a throwaway child starts the container and hands the fds
  over (SCM_RIGHTS); the monitor, a subreaper, inherits the init when that child exits and runs
  monitor.main in place. The start's memory writes stay in the throwaway child.
- run + reexec (a fresh interpreter, when there is no zygote): the fds survive an execve into
  monitor.main, which drops what the start loaded.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from typing import NoReturn

from ...libcontainer import syscalls as sc
from ...libcontainer.config import ConfigError, ContainerConfig
from ...libcontainer.container import Container
from ...libcontainer.process import StartError, close_fds_except
from . import monitor_proto as proto

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
_BOOT = "import sys;sys.path.insert(0,sys.argv[1]);from refengine.drivers.exec.{} import main;main(sys.argv[2:])"
READY = b"R"  # run_split: the monitor holds the handed-over fds (sent to the starter)


@dataclass
class LaunchSpec:
    config: ContainerConfig
    tty: bool = False
    open_stdin: bool = False
    log_path: str | None = None  # None: no json-file log (LogConfig type "none")
    log_max_size: int | None = None
    log_max_file: int = 1


def argv(cid: str, cdir: str, fd: int) -> list[str]:
    """The first stage's command line (the marker and the id are what tools look for)."""
    return [sys.executable, "-I", "-S", "-c", _BOOT.format("monitor_launch"), ROOT, proto.MARKER, cid, cdir, str(fd)]


def _json(kind: bytes, obj: dict) -> bytes:
    return kind + json.dumps(obj).encode()


def _oom_files(lc: Container) -> list[str]:
    """The files whose `oom_kill` (and on v1 `under_oom`) line says the kernel OOM-killed in the cgroup."""
    cg = lc.cgroup
    if cg is None:
        return []
    if "memory" in cg.paths:
        return [os.path.join(cg.paths["memory"], "memory.oom_control")]
    if "" in cg.paths:
        return [os.path.join(cg.paths[""], "memory.events")]
    return []


def _write_init_state(cdir: str, lc: Container, cfg: ContainerConfig) -> None:
    state = {**lc.init_state(), "cgroup_name": cfg.cgroup_name, "cgroup_parent": cfg.cgroup_parent,
             "seccomp": cfg.seccomp}
    tmp = os.path.join(cdir, proto.INIT_FILE + ".tmp")
    with open(tmp, "w") as fh:
        json.dump(state, fh)
    os.replace(tmp, os.path.join(cdir, proto.INIT_FILE))


def start(chan: socket.socket, cdir: str, spec: LaunchSpec) -> tuple[Container, object, dict[str, int]]:
    """Run the container; its handle, its Process and our ends of its stdio (stdin/out/err/console)."""
    # the payload must be our child, not the daemon fork server's: fork the init from here
    os.environ["REFENGINE_FORKSERVER"] = "inline"
    ours: dict[str, int] = {}
    theirs: list[int] = []
    stdin = stdout = stderr = subprocess.DEVNULL
    if spec.open_stdin and not spec.tty:
        r, w = os.pipe()
        stdin, ours["stdin"] = r, w
        theirs.append(r)
    if not spec.tty:
        for name in ("out", "err"):
            r, w = os.pipe()
            ours[name] = r
            theirs.append(w)
        stdout, stderr = theirs[-2], theirs[-1]

    def release(pid: int) -> None:
        chan.send(proto.CREATED + str(pid).encode())
        reply = chan.recv(proto.MAX_MESSAGE)
        if not reply.startswith(proto.GO):
            raise StartError(reply[1:].decode(errors="replace") or "the daemon went away during the start")

    lc = Container(spec.config)
    try:
        proc = lc.start(stdin, stdout, stderr, before_release=release)
    finally:
        for fd in theirs:
            os.close(fd)
    if spec.tty and proc.console is not None:
        ours["console"] = proc.console  # output, and stdin when the container has OpenStdin
    return lc, proc, ours


def _monitor_args(cdir: str, chan: socket.socket, lc: Container, proc: object, ours: dict[str, int],
                  spec: LaunchSpec) -> tuple[dict[str, int], list[str]]:
    """What monitor.main needs: the fds it keeps, by name ("pid" is the payload's pid, not an fd), and
    its other options. Binds the container directory's monitor.sock."""
    dirfd = proto.open_dir(cdir)
    path = proto.socket_address(dirfd)
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    listener.bind(path)
    os.chmod(path, 0o600)
    listener.listen(8)
    keep = {"pid": proc.pid, "pidfd": proc.pidfd, "dirfd": dirfd, "listen": listener.detach(),  # type: ignore[attr-defined]
            "client": chan.fileno(), **ours}
    args = [f"cdir={cdir}"]
    if spec.log_path:
        args += [f"log={spec.log_path}", f"max_size={spec.log_max_size or 0}", f"max_file={spec.log_max_file}"]
    args += [f"oom={p}" for p in _oom_files(lc)]
    return keep, args


def _options(keep: dict[str, int], args: list[str]) -> list[str]:
    return [f"{k}={v}" for k, v in keep.items()] + args


def reexec(cid: str, cdir: str, chan: socket.socket, lc: Container, proc: object, ours: dict[str, int],
           spec: LaunchSpec) -> NoReturn:
    """Become monitor.main in a fresh interpreter, keeping the fds it needs (and nothing else: close_fds
    semantics of exec do not apply, so every other fd we hold was opened O_CLOEXEC)."""
    keep, args = _monitor_args(cdir, chan, lc, proc, ours, spec)
    for key, fd in keep.items():
        if key != "pid":
            os.set_inheritable(fd, True)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-I", "-S", "-c", _BOOT.format("monitor"), ROOT,
                              proto.MARKER, cid, *_options(keep, args)])


def hand_over(to_monitor: socket.socket, cdir: str, chan: socket.socket, lc: Container, proc: object,
              ours: dict[str, int], spec: LaunchSpec) -> None:
    """The starter's end (run_split): send the monitor its fds (SCM_RIGHTS) and options. The daemon's
    channel is not sent: the monitor holds the same fd already."""
    keep, args = _monitor_args(cdir, chan, lc, proc, ours, spec)
    names = [k for k in keep if k not in ("pid", "client")]
    socket.send_fds(to_monitor, [json.dumps({"pid": keep["pid"], "fds": names, "args": args}).encode()],
                    [keep[k] for k in names])


def main(argv: list[str]) -> None:
    """argv: the marker, the container id, its directory, the channel fd."""
    run(argv[1], argv[2], int(argv[3]))


def run(cid: str, cdir: str, fd: int, to_monitor: socket.socket | None = None) -> NoReturn:
    """Start the container of `cdir` as the daemon asks over `fd`, then become the monitor (re-exec)
    or, as run_split's starter, hand the container over to the monitor (our parent) and exit."""
    chan = socket.socket(fileno=fd)
    os.set_inheritable(fd, False)
    try:
        data = chan.recv(1 << 22)
        if not data:
            os._exit(1)
        spec: LaunchSpec = pickle.loads(data)  # from the daemon that exec'd us, over a private socketpair
        lc, proc, ours = start(chan, cdir, spec)
    except (StartError, ConfigError) as exc:
        _fail(chan, str(exc), getattr(exc, "exit_code", 128))
    except BaseException as exc:  # noqa: BLE001 - whatever it is, the daemon must hear it
        _fail(chan, f"container monitor: {type(exc).__name__}: {exc}", 128)
    try:
        _write_init_state(cdir, lc, spec.config)
        if to_monitor is None:
            chan.send(_json(proto.STARTED, {"pid": proc.pid, "monitor_pid": os.getpid()}))  # type: ignore[attr-defined]
            reexec(cid, cdir, chan, lc, proc, ours, spec)
        hand_over(to_monitor, cdir, chan, lc, proc, ours, spec)
        # STARTED only once the monitor has taken the container (a failed hand-over is still a FAILED
        # start); the monitor speaks on the channel only once we are gone
        if to_monitor.recv(16) != READY:
            raise StartError("the container monitor did not take the container over")
        chan.send(_json(proto.STARTED, {"pid": proc.pid, "monitor_pid": os.getppid()}))  # type: ignore[attr-defined]
        os._exit(0)
    except BaseException as exc:  # noqa: BLE001 - a running container nobody monitors must not stay
        lc.destroy()
        _fail(chan, f"container monitor: {type(exc).__name__}: {exc}", 128)


def run_split(cid: str, cdir: str, fd: int) -> NoReturn:
    """In a zygote's child, the monitor to be: a throwaway child (the starter) starts the container and
    hands it over; this process then runs monitor.main without an exec. The start's work (config,
    libcontainer, pickle) dirties the starter's copy of the zygote's pages, so the monitor stays mostly
    shared with the zygote (its PSS: bench/README.md).

    The starter sends STARTED only after our READY (we hold the fds and are ready to run the loop), and
    exits 0 after it; anything else ends the start as FAILED, and then nothing of it may run on."""
    me = os.getpid()
    sc.prctl(sc.PR_SET_CHILD_SUBREAPER, 1)  # the init the starter forks is our child once the starter exits
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    starter = os.fork()
    if starter == 0:
        try:
            # the daemon kills the monitor when a start times out: the start must end with it
            sc.prctl(sc.PR_SET_PDEATHSIG, signal.SIGKILL)
            if os.getppid() == me:
                ours.close()
                run(cid, cdir, fd, theirs)
        finally:
            os._exit(1)
    theirs.close()
    keep: dict[str, int] = {}
    args: list[str] = []
    try:
        msg, fds, _flags, _addr = socket.recv_fds(ours, 1 << 16, 16)
        if msg:
            handed = json.loads(msg)
            keep = {"pid": handed["pid"], **dict(zip(handed["fds"], fds, strict=True)), "client": fd}
            args = handed["args"]
            # what the zygote held is not ours to keep (an exec would have closed it)
            close_fds_except({0, 1, 2, ours.fileno(), *(v for k, v in keep.items() if k != "pid")})
            with contextlib.suppress(OSError, ValueError, IndexError):  # cosmetic: no reason to fail the start
                _retitle([proto.MARKER, cid])
            ours.send(READY)
    except Exception:  # noqa: BLE001 - no READY: the starter sees EOF, destroys the container, says FAILED
        keep = {}
    ours.close()
    _pid, status = os.waitpid(starter, 0)  # gone: the init is ours now, and the channel is ours to speak on
    if not keep or os.waitstatus_to_exitcode(status) != 0:
        if "pidfd" in keep:  # it failed after the hand-over: whatever runs of the container must not stay
            with contextlib.suppress(OSError):
                signal.pidfd_send_signal(keep["pidfd"], signal.SIGKILL)
        os._exit(1)
    sc.prctl(sc.PR_SET_CHILD_SUBREAPER, 0)  # later orphans (a container in the host's PID namespace) are not ours
    from . import monitor
    monitor.main([proto.MARKER, cid, *_options(keep, args)])
    os._exit(0)


def _retitle(words: list[str]) -> None:
    """Put `words` in /proc/self/cmdline (tools find monitors by the marker and the id): written over
    the zygote's own argv area, as setproctitle does. The zygote's command line is longer than the
    marker and an id; if the area were too small, the title is left as it is."""
    import ctypes
    with open("/proc/self/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    start, end = int(fields[45]), int(fields[46])  # arg_start, arg_end (proc(5) fields 48 and 49)
    title = "\0".join(words).encode()
    if start <= 0 or end - start < len(title) + 1:
        return
    ctypes.memmove(start, title.ljust(end - start, b"\0"), end - start)


def _fail(chan: socket.socket, message: str, code: int) -> NoReturn:
    try:
        chan.send(_json(proto.FAILED, {"message": message, "code": code}))
    finally:
        os._exit(1)
