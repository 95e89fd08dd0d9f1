"""The daemon's side of the per-container monitor: launch one, reconnect to one, read its exit file.

`launch` (blocking: run it in a thread) starts the monitor in its own session, hands it the
LaunchSpec, runs the daemon's hook while the container's init waits, and returns a MonitorLink
once the payload runs. `connect` finds the monitor of a container that kept running across a
daemon restart. A MonitorLink carries output and the exit to callbacks on the event loop and
takes stdin, resize and signals; `MonitoredProcess` is the payload as libcontainer's Container
sees it (Container.adopt), with signals routed through the monitor (it holds the pidfd).
"""

from __future__ import annotations

import asyncio
import json
import os
import pickle
import select
import signal
import socket
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import monitor_proto as proto
from .monitor_launch import LaunchSpec, argv
from .monitor_zygote import Zygote

START_TIMEOUT = 60.0  # for each message of the start conversation (the init itself allows 30 s)

__all__ = ["ExitRecord", "LaunchSpec", "MonitorLink", "MonitoredProcess", "StartFailed", "connect", "launch",
           "read_exit", "read_init_state", "reap_child", "shutdown_zygote"]


class StartFailed(Exception):
    def __init__(self, message: str, exit_code: int = 128) -> None:
        super().__init__(message)
        self.message, self.exit_code = message, exit_code


@dataclass
class ExitRecord:
    code: int
    oom: bool = False
    finished_at: str = ""


@dataclass
class Callbacks:
    """What the link reports, on the event loop."""

    output: Callable[[int, bytes], None]  # stream (1 stdout, 2 stderr), data
    output_eof: Callable[[], None]
    exited: Callable[[ExitRecord], None]
    lost: Callable[[], None]  # the connection ended without an exit: the monitor died


class MonitoredProcess:
    """The payload, seen from the daemon: not our child, so its status comes from the monitor."""

    console = None
    stdin = stdout = stderr = None

    def __init__(self, pid: int, link: MonitorLink | None) -> None:
        self.pid, self.link = pid, link
        self.returncode: int | None = None
        self.warnings: list[str] = []
        self._done = threading.Event()

    def __repr__(self) -> str:
        return f"<MonitoredProcess pid={self.pid} returncode={self.returncode}>"

    def set_exit(self, code: int) -> None:
        self.returncode = code
        self._done.set()

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if not self._done.wait(timeout):
            raise TimeoutError(f"process {self.pid} still running after {timeout}s")
        assert self.returncode is not None
        return self.returncode

    def signal(self, sig: int) -> None:
        if self.returncode is None and self.link is not None:
            self.link.send_threadsafe(proto.SIGNAL + str(int(sig)).encode())

    kill = signal

    def close(self) -> None:
        return None


@dataclass
class MonitorLink:
    sock: socket.socket
    pid: int  # the payload's
    monitor: int | None = None  # the monitor's pid when we launched it: our child, we reap it
    _loop: asyncio.AbstractEventLoop | None = None
    _out: asyncio.Queue[bytes | None] | None = None
    _writer: asyncio.Task[None] | None = None
    _cb: Callbacks | None = None
    exit: ExitRecord | None = None
    closed: bool = False

    def start(self, loop: asyncio.AbstractEventLoop, cb: Callbacks) -> None:
        """Begin delivering messages to `cb` (on `loop`) and sending what we queue."""
        self._loop, self._cb = loop, cb
        self._out = asyncio.Queue()
        self.sock.setblocking(False)
        self._writer = loop.create_task(self._write())
        loop.add_reader(self.sock.fileno(), self._readable)
        self._readable()  # whatever arrived meanwhile

    def send_threadsafe(self, msg: bytes) -> None:
        """Queue a message for the monitor; callable from any thread."""
        if self._loop is None or self._out is None or self.closed:
            return
        try:
            self._loop.call_soon_threadsafe(self._out.put_nowait, msg)
        except RuntimeError:  # the loop is closed (daemon shutdown)
            pass

    def send(self, msg: bytes) -> None:
        if self._out is not None and not self.closed:
            self._out.put_nowait(msg)

    def write_stdin(self, data: bytes) -> None:
        for i in range(0, len(data), proto.CHUNK):
            self.send(proto.STDIN + data[i:i + proto.CHUNK])

    def close_stdin(self) -> None:
        self.send(proto.CLOSE_STDIN)

    def resize(self, rows: int, cols: int) -> None:
        self.send(proto.RESIZE + f"{int(rows)} {int(cols)}".encode())

    async def _write(self) -> None:
        assert self._loop is not None and self._out is not None
        while (msg := await self._out.get()) is not None:
            try:
                await self._loop.sock_sendall(self.sock, msg)
            except OSError:
                return  # the monitor is gone; the reader sees the end

    def _readable(self) -> None:
        while not self.closed:
            try:
                msg = self.sock.recv(proto.MAX_MESSAGE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                msg = b""
            if not msg:
                self._ended()
                return
            self._handle(msg)

    def _handle(self, msg: bytes) -> None:
        assert self._cb is not None
        kind, payload = msg[:1], msg[1:]
        if kind == proto.STDOUT:
            self._cb.output(1, payload)
        elif kind == proto.STDERR:
            self._cb.output(2, payload)
        elif kind == proto.OUTPUT_EOF:
            self._cb.output_eof()
        elif kind == proto.EXITED:
            self.exit = _exit_record(json.loads(payload))
            self._cb.exited(self.exit)

    def _ended(self) -> None:
        was_exit = self.exit is not None
        self.close()
        if not was_exit and self._cb is not None:
            self._cb.lost()

    def close(self) -> None:
        """Stop talking to the monitor (it keeps running if the container does)."""
        if self.closed:
            return
        self.closed = True
        if self._loop is not None:
            try:
                self._loop.remove_reader(self.sock.fileno())
            except (ValueError, OSError, RuntimeError):
                pass
        if self._out is not None:
            self._out.put_nowait(None)
        self.sock.close()

    async def reap(self, timeout: float = 10.0) -> None:
        """Wait for the monitor we launched to exit (it does right after EXITED)."""
        if self.monitor is not None:
            await asyncio.to_thread(reap_child, self.monitor, timeout)


def reap_child(pid: int, timeout: float | None) -> bool:
    """Wait for our child `pid` to exit and reap it; False if it still runs after `timeout`."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        fd = -1
    try:
        if fd >= 0:
            poller = select.poll()
            poller.register(fd, select.POLLIN)
            if not poller.poll(None if timeout is None else int(timeout * 1000)):
                return False
        os.waitpid(pid, 0)
    except ChildProcessError:  # reaped already
        pass
    finally:
        if fd >= 0:
            os.close(fd)
    return True


_zygote = Zygote()


def shutdown_zygote() -> None:
    """Daemon exit: let the monitor zygote go (the monitors it made keep running)."""
    _zygote.close()


def _exit_record(obj: dict[str, Any]) -> ExitRecord:
    return ExitRecord(int(obj.get("code", 255)), bool(obj.get("oom")), str(obj.get("finished_at") or ""))


def _remove_stale(cdir: str) -> None:
    for name in (proto.EXIT_FILE, proto.INIT_FILE, proto.SOCKET):
        try:
            os.unlink(os.path.join(cdir, name))
        except FileNotFoundError:
            pass


def launch(cdir: str, cid: str, spec: LaunchSpec, before_release: Callable[[int], None] | None = None,
           timeout: float = START_TIMEOUT) -> MonitorLink:
    """Start the container under a new monitor; blocking. StartFailed with Docker's exit code."""
    _remove_stale(cdir)
    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with open(os.path.join(cdir, proto.LOG_FILE), "ab") as log:
        try:
            pid = _zygote.launch(cid, cdir, theirs.fileno(), log.fileno())
        except OSError:  # no zygote: a fresh interpreter does the same, only slower
            env = {k: v for k, v in os.environ.items() if k.startswith("REFENGINE_")}  # faults and switches
            pid = subprocess.Popen(argv(cid, cdir, theirs.fileno()), pass_fds=(theirs.fileno(),), env=env,
                                   cwd="/", stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
                                   start_new_session=True, close_fds=True).pid
        finally:
            theirs.close()
    try:
        mine.settimeout(timeout)
        mine.send(pickle.dumps(spec))
        while True:
            msg = mine.recv(proto.MAX_MESSAGE)
            kind, payload = msg[:1], msg[1:]
            if kind == proto.CREATED:
                try:
                    if before_release is not None:
                        before_release(int(payload))
                    mine.send(proto.GO)
                except Exception as exc:  # the hook's failure is the start's failure, with its message
                    mine.send(proto.ABORT + (str(exc) or type(exc).__name__).encode())
            elif kind == proto.STARTED:
                info = json.loads(payload)
                return MonitorLink(mine, int(info["pid"]), pid)
            elif kind == proto.FAILED:
                info = json.loads(payload)
                raise StartFailed(str(info.get("message")), int(info.get("code") or 128))
            elif not msg:
                raise StartFailed(f"the container monitor exited during the start (see {proto.LOG_FILE})")
    except BaseException as exc:
        mine.close()
        if not isinstance(exc, StartFailed):
            os.kill(pid, signal.SIGKILL)  # our child, not yet reaped: the pid is still its own
        if not reap_child(pid, timeout):
            os.kill(pid, signal.SIGKILL)
            reap_child(pid, None)
        if isinstance(exc, TimeoutError):
            raise StartFailed(f"the container monitor did not answer within {timeout:.0f}s") from None
        raise


def connect(cdir: str, timeout: float = 5.0) -> MonitorLink | None:
    """The running monitor of this container directory, or None if there is none (any more)."""
    dirfd = proto.open_dir(cdir)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        sock.settimeout(timeout)
        sock.connect(proto.socket_address(dirfd))
        hello = sock.recv(proto.MAX_MESSAGE)
    except OSError:
        sock.close()
        return None
    finally:
        os.close(dirfd)
    if not hello.startswith(proto.HELLO):
        sock.close()
        return None
    return MonitorLink(sock, int(json.loads(hello[1:])["pid"]))


def read_exit(cdir: str) -> ExitRecord | None:
    try:
        with open(os.path.join(cdir, proto.EXIT_FILE)) as fh:
            return _exit_record(json.load(fh))
    except (OSError, ValueError):
        return None


def read_init_state(cdir: str) -> dict[str, Any] | None:
    """What monitor_launch saved for Container.adopt (init dict, faults, cgroup, seccomp profile)."""
    try:
        with open(os.path.join(cdir, proto.INIT_FILE)) as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None
