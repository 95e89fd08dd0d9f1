"""The per-container monitor process (what containerd-shim / conmon are to dockerd / podman).

One per running container, in its own session, so a daemon restart (SIGTERM or SIGKILL) leaves the
container running. monitor_launch.py starts the container through libcontainer (PID 1 is this
process's child) and hands `main` below the fds it keeps: the payload's pidfd, the stdio pipes or
the pty master, the listening socket in the container directory. From the zygote `main` runs in the
forked process itself (its pages shared with the zygote); without one, after a re-exec into a bare
interpreter. The loop itself uses only os, select, _socket, _signal, fcntl, time and _json.

The loop: container output → json-file log + every connected daemon; daemon messages → stdin, resize,
signals; the payload's exit → the exit file in the container directory (read by a daemon that was
down meanwhile), EXITED to connected daemons, then exit. Protocol in monitor_proto.py.
"""

from __future__ import annotations

import _signal
import _socket
import fcntl
import os
import select
import sys
import time

from . import monitor_proto as proto
from .jsonlog import JsonFileWriter, stamp

DRAIN_SECONDS = 2.0  # after PID 1 exits, how long to wait for its pipes to close (a leftover may hold them)
BACKLOG_LIMIT = 1 << 20  # per daemon connection: beyond this, stop reading the container (backpressure)
TIOCSWINSZ = 0x5414


class Client:
    """One connected daemon: messages that did not fit in the socket wait here."""

    def __init__(self, sock: _socket.socket) -> None:
        self.sock = sock
        self.backlog: list[bytes] = []
        self.size = 0


class Monitor:
    def __init__(self, opts: dict[str, str], oom_files: list[str]) -> None:
        self.pid = int(opts["pid"])
        self.pidfd = int(opts["pidfd"])
        self.cdir = opts["cdir"]
        self.dirfd = int(opts["dirfd"])
        self.oom_files = oom_files
        self.ep = select.epoll()
        self.masks: dict[int, int] = {}
        self.clients: dict[int, Client] = {}
        self.listen = _socket.socket(fileno=int(opts["listen"]))
        self.listen.setblocking(False)
        self.outputs: dict[int, str] = {}  # fd -> log stream name
        for key, stream in (("out", "stdout"), ("err", "stderr"), ("console", "stdout")):
            if opts.get(key):
                self.outputs[int(opts[key])] = stream
        self.console = int(opts["console"]) if opts.get("console") else -1
        self.stdin = int(opts["stdin"]) if opts.get("stdin") else self.console
        self.stdin_buf = bytearray()
        self.stdin_closing = False
        self.writer = JsonFileWriter(opts["log"], int(opts.get("max_size") or 0) or None,
                                     int(opts.get("max_file") or 1)) if opts.get("log") else None
        self.reading = True  # False while a daemon connection is too far behind
        self.code: int | None = None
        self.drain_until = 0.0
        self.retry_reap_at = 0.0
        self.adopted: dict[int, int] = {}  # pidfd -> pid of children besides the payload (see _adopt)
        for fd in (*self.outputs, self.stdin):
            if fd >= 0:
                os.set_blocking(fd, False)

    # -- epoll bookkeeping

    def _set(self, fd: int, mask: int) -> None:
        old = self.masks.get(fd)
        if mask == old or (not mask and old is None):
            return
        if not mask:
            self.ep.unregister(fd)
            del self.masks[fd]
        elif old is None:
            self.ep.register(fd, mask)
            self.masks[fd] = mask
        else:
            self.ep.modify(fd, mask)
            self.masks[fd] = mask

    def _update(self, fd: int) -> None:
        mask = 0
        if fd in self.outputs and self.reading:
            mask |= select.EPOLLIN
        if fd == self.stdin and self.stdin_buf:
            mask |= select.EPOLLOUT
        if fd >= 0:
            self._set(fd, mask)

    # -- the loop

    def run(self) -> None:
        self._set(self.listen.fileno(), select.EPOLLIN)
        self._set(self.pidfd, select.EPOLLIN)
        self._adopt()
        for fd in self.outputs:
            self._update(fd)
        while True:
            if self.code is not None and (not self.outputs or time.monotonic() >= self.drain_until):
                self._finish()
                return
            for fd, events in self.ep.poll(self._timeout()):
                try:
                    self._dispatch(fd, events)
                except Exception as e:  # noqa: BLE001 - a bug here must not end the container's monitoring
                    print(f"refengine-monitor: handling fd {fd}: {type(e).__name__}: {e}", file=sys.stderr)
            if self.retry_reap_at and time.monotonic() >= self.retry_reap_at:
                self.retry_reap_at = 0.0
                self._reap()

    def _timeout(self) -> float:
        deadlines = [d for d in (self.drain_until if self.code is not None else 0.0, self.retry_reap_at) if d]
        if not deadlines:
            return -1
        return max(0.0, min(deadlines) - time.monotonic())

    def _dispatch(self, fd: int, events: int) -> None:
        if fd == self.listen.fileno():
            self._accept()
        elif fd == self.pidfd:
            self._reap()
        elif fd in self.adopted:
            self._reap_adopted(fd)
        elif fd in self.clients:
            client = self.clients[fd]
            if events & select.EPOLLOUT:
                self._flush(client)
            if events & (select.EPOLLIN | select.EPOLLHUP | select.EPOLLERR) and fd in self.clients:
                self._from_daemon(client)
        else:
            if fd == self.stdin and events & (select.EPOLLOUT | select.EPOLLERR):
                self._write_stdin()  # EPOLLERR: the reader is gone, the write fails and stops watching
            if events & (select.EPOLLIN | select.EPOLLHUP | select.EPOLLERR) and fd in self.outputs:
                self._read_output(fd)

    # -- daemons

    def _accept(self) -> None:
        try:
            fd, _addr = self.listen._accept()  # the C socket type: accept() is the Python wrapper's
        except OSError:
            return
        sock = _socket.socket(fileno=fd)
        self._add_client(sock)
        self._send(self.clients[sock.fileno()], proto.HELLO + f'{{"pid":{self.pid}}}'.encode())

    def _add_client(self, sock: _socket.socket) -> None:
        sock.setblocking(False)
        self.clients[sock.fileno()] = Client(sock)
        self._set(sock.fileno(), select.EPOLLIN)

    def _drop(self, client: Client) -> None:
        fd = client.sock.fileno()
        self._set(fd, 0)
        self.clients.pop(fd, None)
        client.sock.close()
        self._backpressure()

    def _send(self, client: Client, msg: bytes) -> None:
        if client.backlog:
            client.backlog.append(msg)
            client.size += len(msg)
            return
        try:
            client.sock.send(msg)
        except BlockingIOError:
            client.backlog.append(msg)
            client.size += len(msg)
            self._set(client.sock.fileno(), select.EPOLLIN | select.EPOLLOUT)
        except OSError:
            self._drop(client)

    def _flush(self, client: Client) -> None:
        while client.backlog:
            try:
                client.sock.send(client.backlog[0])
            except BlockingIOError:
                break
            except OSError:
                self._drop(client)
                return
            client.size -= len(client.backlog.pop(0))
        if not client.backlog:
            self._set(client.sock.fileno(), select.EPOLLIN)
        self._backpressure()

    def _broadcast(self, msg: bytes) -> None:
        for client in list(self.clients.values()):
            self._send(client, msg)
        self._backpressure()

    def _backpressure(self) -> None:
        reading = all(c.size < BACKLOG_LIMIT for c in self.clients.values())
        if reading != self.reading:
            self.reading = reading
            for fd in self.outputs:
                self._update(fd)

    def _from_daemon(self, client: Client) -> None:
        while True:
            try:
                msg = client.sock.recv(proto.MAX_MESSAGE)
            except BlockingIOError:
                return
            except OSError:
                msg = b""
            if not msg:
                self._drop(client)
                return
            self._handle(msg[:1], msg[1:])

    def _handle(self, kind: bytes, payload: bytes) -> None:
        if kind == proto.STDIN and self.stdin >= 0 and not self.stdin_closing:
            self.stdin_buf += payload
            self._write_stdin()
        elif kind == proto.CLOSE_STDIN:
            self.stdin_closing = True
            self._write_stdin()
        elif kind == proto.RESIZE and self.console >= 0:
            rows, cols = (int(x) for x in payload.split())
            size = b"".join(v.to_bytes(2, sys.byteorder) for v in (rows, cols, 0, 0))
            try:
                fcntl.ioctl(self.console, TIOCSWINSZ, size)
            except OSError:
                pass
        elif kind == proto.SIGNAL and self.code is None:
            try:
                _signal.pidfd_send_signal(self.pidfd, int(payload))
            except OSError:  # it exited meanwhile: the pidfd tells us soon
                pass

    # -- the container's stdio

    def _write_stdin(self) -> None:
        fd = self.stdin
        if fd < 0:
            self.stdin_buf.clear()
            return
        while self.stdin_buf:
            try:
                n = os.write(fd, self.stdin_buf[:proto.CHUNK])
            except BlockingIOError:
                break
            except OSError:  # nobody reads stdin any more
                self.stdin_buf.clear()
                break
            del self.stdin_buf[:n]
        self._update(fd)
        if self.stdin_closing and not self.stdin_buf and fd != self.console:
            # a pty has no "close stdin" of its own: its master is also the output
            self._set(fd, 0)
            os.close(fd)
            self.stdin = -1

    def _read_output(self, fd: int) -> None:
        try:
            data = os.read(fd, proto.CHUNK)
        except BlockingIOError:
            return
        except OSError:  # EIO: the pty's last slave closed
            data = b""
        stream = self.outputs[fd]
        if not data:
            self._close_output(fd)
            return
        if self.writer is not None:
            try:
                self.writer.write(stream, data)
            except OSError as e:  # a full disk must not take the container's output to attached clients
                print(f"refengine-monitor: writing the log: {e}", file=sys.stderr)
        self._broadcast((proto.STDOUT if stream == "stdout" else proto.STDERR) + data)

    def _close_output(self, fd: int) -> None:
        self.outputs.pop(fd)
        if fd == self.console:
            self._update(fd)  # the console fd may still take stdin
        else:
            self._set(fd, 0)
            os.close(fd)
        if not self.outputs:
            self._broadcast(proto.OUTPUT_EOF)

    # -- exit

    def _adopt(self) -> None:
        """Our children besides the payload: orphans of a container in the host's PID namespace that
        reached us while we were a subreaper (monitor_launch.run_split's hand-over, a few ms). None come
        later; these are reaped as they exit instead of staying zombies for the container's life."""
        for pid in set(children(os.getpid())) - {self.pid}:
            try:
                fd = os.pidfd_open(pid)
            except OSError:  # reaped meanwhile by nobody else than us: cannot be; gone is gone
                continue
            self.adopted[fd] = pid
            self._set(fd, select.EPOLLIN)

    def _reap_adopted(self, fd: int) -> None:
        try:
            if os.waitid(os.P_PIDFD, fd, os.WEXITED | os.WNOHANG) is None:
                return  # not reapable yet: the pidfd stays readable and we come back
        except ChildProcessError:
            pass
        self._set(fd, 0)
        os.close(fd)
        del self.adopted[fd]

    def _reap(self) -> None:
        try:
            res = os.waitid(os.P_PIDFD, self.pidfd, os.WEXITED | os.WNOHANG)
        except ChildProcessError:
            res, self.code = None, 255
        if res is None and self.code is None:
            # readable but not reapable yet (the PID namespace is still being torn down): look again soon
            self._set(self.pidfd, 0)
            self.retry_reap_at = time.monotonic() + 0.05
            return
        if res is not None:
            self.code = res.si_status if res.si_code == os.CLD_EXITED else 128 + res.si_status
        self._set(self.pidfd, 0)
        self.drain_until = time.monotonic() + DRAIN_SECONDS
        self.reading = True
        for fd in self.outputs:
            self._update(fd)

    def _oom(self) -> bool:
        for path in self.oom_files:
            try:
                with open(path, "rb") as fh:
                    for line in fh.read().splitlines():
                        key, _, value = line.partition(b" ")
                        if key in (b"oom_kill", b"under_oom") and value.strip() not in (b"", b"0"):
                            return True
            except OSError:
                continue
        return False

    def _finish(self) -> None:
        if self.writer is not None:
            try:
                self.writer.close()
            except OSError:
                pass
        oom = self._oom()
        record = f'{{"code":{self.code},"oom":{"true" if oom else "false"},"finished_at":"{stamp()}"}}'.encode()
        tmp = f"/proc/self/fd/{self.dirfd}/{proto.EXIT_FILE}.tmp"
        with open(tmp, "wb") as fh:
            fh.write(record)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, f"/proc/self/fd/{self.dirfd}/{proto.EXIT_FILE}")
        try:
            os.unlink(proto.socket_address(self.dirfd))
        except OSError:
            pass
        if self.outputs:
            self._broadcast(proto.OUTPUT_EOF)
        self._broadcast(proto.EXITED + record)
        deadline = time.monotonic() + DRAIN_SECONDS
        for client in list(self.clients.values()):  # hand over what is queued, then hang up
            client.sock.setblocking(True)
            client.sock.settimeout(max(0.1, deadline - time.monotonic()))
            try:
                for msg in client.backlog:
                    client.sock.send(msg)
            except OSError:
                pass
            client.sock.close()


def parse_args(argv: list[str]) -> tuple[dict[str, str], list[str]]:
    """`key=value` arguments (after the marker and the container id); `oom=` may repeat."""
    opts: dict[str, str] = {}
    oom: list[str] = []
    for arg in argv:
        key, _, value = arg.partition("=")
        if key == "oom":
            oom.append(value)
        else:
            opts[key] = value
    return opts, oom


def children(pid: int) -> list[int]:
    """The children of every thread of `pid` (the kernel lists them per thread that forked them)."""
    kids: list[int] = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return kids
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as fh:
                kids += [int(p) for p in fh.read().split()]
        except OSError:  # a thread that ended meanwhile
            pass
    return sorted(kids)


def main(argv: list[str]) -> None:
    """argv: the marker, the container id, then `key=value` options (see monitor_launch._monitor_args)."""
    opts, oom = parse_args(argv[2:])
    monitor = Monitor(opts, oom)
    if opts.get("client"):  # the daemon that started us: already connected
        monitor._add_client(_socket.socket(fileno=int(opts["client"])))
    monitor.run()
    os._exit(0)
