"""Parent side of the init protocol: spawn the init, answer its handshake, watch the payload.

The engine may be threaded (asyncio, thread pools): it never forks Python. It spawns a fresh
interpreter with subprocess (fork+exec in C, vfork where possible) that does all namespace work, and
talks to it over a SOCK_SEQPACKET socketpair (see init.py for the messages). The payload is created
with CLONE_PARENT, so it is *our* child although the intermediate process forked it: we get its exit
status with waitid(P_PIDFD) and signal it through a pidfd (no PID-reuse races).

Reaping: the payload is PID 1 of its PID namespace, as in Docker without --init; orphans inside the
container are reparented to it and it must reap them (a shell does; `sleep` does not). When it exits,
the kernel kills the rest of the namespace. We reap only our children: the payload and exec'd
processes (both CLONE_PARENT children of ours). The intermediate process exits right after forking
and is reaped by subprocess.
"""

from __future__ import annotations

import array
import atexit
import fcntl
import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable
from typing import IO, Any

from . import syscalls
from .helper import HelperProcess
from .init import EXIT_FAILED, dumps

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_BOOT = "import sys;sys.path.insert(0,sys.argv[1]);from refengine.libcontainer.init import main;main(int(sys.argv[2]))"
START_TIMEOUT = 30.0

# Every payload/exec'd process we started and have not reaped. Waiting for one reaps any other that
# exited meanwhile: when a PID namespace's init dies, the kernel holds it (unwaitable) until every
# other process of that namespace is reaped, and those are our children too (exec'd ones, or another
# container's joined to this PID namespace).
_live: weakref.WeakSet[Process] = weakref.WeakSet()


class StartError(RuntimeError):
    """The container process could not be started; exit_code as dockerd records it (127 not found,
    126 cannot execute, 128 anything else)."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.message, self.exit_code = message, exit_code


def init_argv(fd: int) -> list[str]:
    # -I: no user site, no env vars, no cwd on sys.path; -S: no site import (~ms each)
    return [sys.executable, "-I", "-S", "-c", _BOOT, _ROOT, str(fd)]


def exit_code_of(res: Any) -> int:
    """A waitid result as a shell/Docker exit code: the status, or 128+signal."""
    if res.si_code == os.CLD_EXITED:
        return res.si_status
    return 128 + res.si_status


class Process:
    """A running container process (the payload or an exec'd one), our child."""

    def __init__(self, pid: int, pidfd: int, console: int | None = None, stdin: IO[bytes] | None = None,
                 stdout: IO[bytes] | None = None, stderr: IO[bytes] | None = None,
                 warnings: list[str] | None = None) -> None:
        self.pid, self.pidfd, self.console = pid, pidfd, console
        self.stdin, self.stdout, self.stderr = stdin, stdout, stderr
        self.warnings = warnings or []
        self.returncode: int | None = None
        self.exited_at: float | None = None
        self._lock = threading.Lock()
        _live.add(self)

    def __repr__(self) -> str:
        return f"<Process pid={self.pid} returncode={self.returncode}>"

    def poll(self) -> int | None:
        return self._reap(block=False)

    def _reap(self, block: bool) -> int | None:
        with self._lock:
            if self.returncode is not None:
                return self.returncode
            if self.pidfd < 0:
                return self.returncode
            try:
                res = os.waitid(os.P_PIDFD, self.pidfd, os.WEXITED | (0 if block else os.WNOHANG))
            except ChildProcessError:  # reaped by someone else: the status is lost
                self.returncode = -1
                _live.discard(self)
                return self.returncode
            if res is None:
                return None
            self.returncode = exit_code_of(res)
            self.exited_at = time.time()
            _live.discard(self)
            return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        """Exit code (128+signal if killed); TimeoutError if still running after `timeout` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            rc = self._reap(block=False)
            if rc is not None:
                return rc
            others = {p.pidfd: p for p in list(_live) if p is not self and p.returncode is None and p.pidfd >= 0}
            poller = select.poll()
            poller.register(self.pidfd, select.POLLIN)
            for fd in others:
                poller.register(fd, select.POLLIN)
            ms = -1 if deadline is None else max(0, int((deadline - time.monotonic()) * 1000))
            # a bounded slice: a process started meanwhile joins the next round
            events = poller.poll(min(ms, 1000) if ms >= 0 else 1000)
            for fd, _ev in events:
                if fd in others:
                    others[fd].poll()
            if deadline is not None and time.monotonic() >= deadline and self._reap(block=False) is None:
                raise TimeoutError(f"process {self.pid} still running after {timeout}s")

    def fileno(self) -> int:
        """The pidfd: readable once the process exited (for select/poll or an event loop's add_reader)."""
        return self.pidfd

    def signal(self, sig: int = signal.SIGTERM) -> None:
        if self.returncode is not None:
            return
        try:
            signal.pidfd_send_signal(self.pidfd, sig)
        except ProcessLookupError:
            pass

    kill = signal

    def resize(self, rows: int, cols: int) -> None:
        if self.console is None:
            raise ValueError("the process has no terminal")
        fcntl.ioctl(self.console, syscalls.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def close(self) -> None:
        """Close our ends (pipes, console); the pidfd too once the process is reaped (a running
        process keeps it, so it can still be waited for)."""
        running = self.poll() is None
        for f in (self.stdin, self.stdout, self.stderr):
            if f is not None:
                f.close()
        self.stdin = self.stdout = self.stderr = None
        if self.console is not None:
            try:
                os.close(self.console)
            except OSError:
                pass
            self.console = None
        if not running and self.pidfd >= 0:
            os.close(self.pidfd)
            self.pidfd = -1
            _live.discard(self)


def _recv(sock: socket.socket) -> tuple[dict[str, Any] | None, list[int]]:
    try:
        data, anc, _flags, _addr = sock.recvmsg(1 << 16, socket.CMSG_SPACE(4 * 4))
    except ConnectionResetError:  # the init exited with our last message unread: same as EOF
        return None, []
    fds: list[int] = []
    for level, kind, payload in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            arr = array.array("i")
            arr.frombytes(payload[: len(payload) - len(payload) % arr.itemsize])
            fds.extend(arr)
    if not data:
        return None, fds
    return json.loads(data), fds


class _Stdio:
    """Turns Popen-style stdio specs (None = inherit, DEVNULL, PIPE, STDOUT for stderr, an fd, a file)
    into fds for the child, and file objects for us (PIPE)."""

    def __init__(self, stdin: Any, stdout: Any, stderr: Any) -> None:
        self.child: list[int] = []
        self.ours: list[IO[bytes] | None] = [None, None, None]
        self._close: list[int] = []
        for i, spec in enumerate((stdin, stdout, stderr)):
            if spec is None:
                fd = i
                try:
                    os.fstat(fd)
                except OSError:  # we have no such fd to hand down: the child gets /dev/null
                    fd = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
                    self._close.append(fd)
            elif spec == subprocess.DEVNULL:
                fd = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
                self._close.append(fd)
            elif spec == subprocess.PIPE:
                r, w = os.pipe()
                fd, mine = (r, w) if i == 0 else (w, r)
                self.ours[i] = open(mine, "wb" if i == 0 else "rb")  # noqa: SIM115 - handed to the caller
                self._close.append(fd)
            elif spec == subprocess.STDOUT and i == 2:
                fd = self.child[1]
            elif isinstance(spec, int):
                fd = spec
            else:
                fd = spec.fileno()
            self.child.append(fd)

    def close_child_ends(self) -> None:
        for fd in self._close:
            os.close(fd)
        self._close = []

    def close_all(self) -> None:
        self.close_child_ends()
        for f in self.ours:
            if f is not None:
                f.close()


class _Intermediate:
    """The init's first process: a Popen (fresh exec) or a fork server child (our child by CLONE_PARENT)."""

    def __init__(self, pid: int, popen: subprocess.Popen | None = None) -> None:
        self.pid, self.popen, self.rc = pid, popen, None

    def wait(self) -> int:
        if self.rc is None:
            if self.popen is not None:
                self.rc = self.popen.wait()
            else:
                self.rc = os.waitstatus_to_exitcode(os.waitpid(self.pid, 0)[1])
        return self.rc

    def kill(self) -> None:
        if self.rc is None:
            try:
                os.kill(self.pid, signal.SIGKILL)  # our unreaped child: the pid cannot have been reused
            except ProcessLookupError:
                pass


class ForkServer(HelperProcess):
    """The engine's handle on its fork server (see forkserver.py): started lazily, restarted if it died."""

    what = "fork server"

    def __init__(self) -> None:
        super().__init__()
        self._atexit = False

    def argv(self, fd: int) -> list[str]:
        return [sys.executable, "-I", "-S", "-c", _BOOT.replace("init import main;main", "forkserver import serve;serve"),
                _ROOT, str(fd)]

    def _start(self) -> None:
        super()._start()
        if not self._atexit:
            atexit.register(self.close)
            self._atexit = True

    def launch(self, fds: list[int]) -> int:
        """Clone an init with fds (stdin, stdout, stderr, channel); its pid (our child)."""
        return self.request(b"spawn", fds)


_forkserver = ForkServer()


def forkserver_enabled() -> bool:
    return os.environ.get("REFENGINE_FORKSERVER", "1") != "0"


def shutdown_forkserver() -> None:
    _forkserver.close()


def close_fds_except(keep: set[int]) -> None:
    """Close every fd of this process but `keep` (what a fork that will not exec must do by hand)."""
    for name in os.listdir("/proc/self/fd"):
        if int(name) not in keep:
            try:
                os.close(int(name))
            except OSError:  # the listing's own fd, already closed
                pass


def _fork_inline(fds: list[int]) -> int:
    """Fork the init from this process (REFENGINE_FORKSERVER=inline): only for a single-threaded
    process that has the init imported already, such as a container monitor; no exec, no server."""
    from . import forkserver, init
    pid = os.fork()
    if pid == 0:
        # keep only what the fork server would have passed: an inherited copy of the parent's end of the
        # channel would keep the init waiting forever (no EOF) if its monitor died during the start
        close_fds_except({0, 1, 2, *fds})
        init.prepare_process()
        forkserver._child(None, fds)  # never returns
    return pid


def _launch(csock: socket.socket, stdio: _Stdio, use_forkserver: bool) -> _Intermediate:
    if os.environ.get("REFENGINE_FORKSERVER") == "inline":
        return _Intermediate(_fork_inline([*stdio.child, csock.fileno()]))
    if use_forkserver:
        return _Intermediate(_forkserver.launch([*stdio.child, csock.fileno()]))
    popen = subprocess.Popen(init_argv(csock.fileno()), pass_fds=(csock.fileno(),), env={}, close_fds=True,
                             stdin=stdio.child[0], stdout=stdio.child[1], stderr=stdio.child[2])
    return _Intermediate(popen.pid, popen)


def spawn(init_cfg: dict[str, Any], *, stdin: Any = None, stdout: Any = None, stderr: Any = None,
          userns_maps: Callable[[int], None] | None = None, before_release: Callable[[int], None] | None = None,
          timeout: float = START_TIMEOUT, warnings: list[str] | None = None,
          use_forkserver: bool | None = None, while_starting: Callable[[], None] | None = None,
          go_info: Callable[[], dict[str, Any]] | None = None) -> Process:
    """Start the init with `init_cfg` (container.build_init's dict) and return the payload once it exec'd.

    userns_maps(pid of the intermediate process) writes the uid/gid maps; before_release(payload pid)
    runs before the payload may run (cgroup add, network setup; the init prepares its rootfs meanwhile,
    go_info() adds to the message that lets it); while_starting() runs as soon as the init
    has its config, in parallel with its namespace work (the place to create the cgroup). Raises
    StartError with Docker's exit code.
    """
    if use_forkserver is None:
        use_forkserver = forkserver_enabled()
    tty = bool(init_cfg.get("tty"))
    if tty:
        stdin = stdout = stderr = subprocess.DEVNULL  # the payload's stdio is the pty slave
    stdio = _Stdio(stdin, stdout, stderr)
    psock, csock = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        mid = _launch(csock, stdio, use_forkserver)
    except BaseException:
        psock.close()
        stdio.close_all()
        raise
    finally:
        csock.close()
    stdio.close_child_ends()
    pid: int | None = None
    pidfd: int | None = None
    console: int | None = None
    exec_seen = False
    error: tuple[str, int] | None = None
    try:
        psock.settimeout(timeout)
        psock.send(json.dumps(init_cfg).encode())
        if while_starting is not None:
            while_starting()
        while True:
            msg, fds = _recv(psock)
            if msg is None:
                break
            kind = msg.get("type")
            if kind == "userns":
                if userns_maps is not None:
                    userns_maps(mid.pid)
                psock.send(dumps({"type": "userns-ok"}))
            elif kind == "pid":
                pid = int(msg["pid"])
                pidfd = os.pidfd_open(pid)
                mid.wait()
                # "go": the payload-to-be builds its rootfs while we do the slow part (see init.stage2)
                psock.send(json.dumps({"type": "go", **(go_info() if go_info else {})}).encode())
                if before_release is not None:
                    try:
                        before_release(pid)
                    except Exception:
                        # the init builds its rootfs meanwhile; if that failed first (a bad mount), the hook
                        # met a process already gone: the init's own error is the one to report
                        own = _init_error(psock)
                        if own is not None:
                            raise StartError(*own) from None
                        raise
                try:
                    psock.send(dumps({"type": "run"}))
                except OSError:
                    pass  # it failed meanwhile: its error message is waiting for us
            elif kind == "console" and fds:
                console = fds.pop(0)
            elif kind == "exec":
                exec_seen = True
            elif kind == "error":
                error = (str(msg.get("message")), int(msg.get("code") or EXIT_FAILED))
            for fd in fds:
                os.close(fd)
    except BaseException as exc:
        _abort(mid, pidfd, console, stdio)
        psock.close()
        if isinstance(exc, TimeoutError):
            raise StartError(f"the container init did not answer within {timeout}s") from None
        raise
    psock.close()
    rc = mid.wait()
    if pidfd is None:
        stdio.close_all()
        raise StartError(*(error or (f"the container init exited with status {rc} before starting the process",
                                     EXIT_FAILED)))
    if error is not None or not exec_seen:
        proc = Process(pid or 0, pidfd)
        status = proc.wait()
        proc.close()
        if console is not None:
            os.close(console)
        stdio.close_all()
        raise StartError(*(error or (f"the container init exited with status {status} before exec", EXIT_FAILED)))
    return Process(pid or 0, pidfd, console, *stdio.ours, warnings=warnings)


def _init_error(psock: socket.socket, wait: float = 0.5) -> tuple[str, int] | None:
    """The error the init sent, or sends within `wait` seconds; None if it sends none."""
    deadline = time.monotonic() + wait
    while (left := deadline - time.monotonic()) > 0:
        psock.settimeout(left)
        try:
            msg, fds = _recv(psock)
        except OSError:  # the timeout included
            return None
        for fd in fds:
            os.close(fd)
        if msg is None:
            return None
        if msg.get("type") == "error":
            return str(msg.get("message")), int(msg.get("code") or EXIT_FAILED)
    return None


def _abort(mid: _Intermediate, pidfd: int | None, console: int | None, stdio: _Stdio) -> None:
    """Kill what we started (the intermediate and the payload, both by handle), reap, close."""
    mid.kill()
    mid.wait()
    if pidfd is not None:
        proc = Process(0, pidfd)
        proc.signal(signal.SIGKILL)
        proc.wait()
        proc.close()
    if console is not None:
        os.close(console)
    stdio.close_all()
