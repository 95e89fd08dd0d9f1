"""A pre-started helper process that the engine asks for children: the fork server of inits, the
container monitors' zygote. Spoken to over a SOCK_SEQPACKET socketpair, file descriptors passed with
SCM_RIGHTS, one JSON reply per request; started lazily, restarted once if it died."""

from __future__ import annotations

import array
import json
import socket
import subprocess
import threading


class HelperProcess:
    what = "helper process"
    cwd: str | None = None

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._popen: subprocess.Popen[bytes] | None = None

    def argv(self, fd: int) -> list[str]:
        """The helper's command line; `fd` is its end of the socket."""
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        return {}

    def _start(self) -> None:
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self._popen = subprocess.Popen(self.argv(theirs.fileno()), pass_fds=(theirs.fileno(),), env=self.env(),
                                           cwd=self.cwd, close_fds=True, stdin=subprocess.DEVNULL,
                                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        finally:
            theirs.close()
        self._sock = mine

    def request(self, msg: bytes, fds: list[int]) -> int:
        """Send a request with fds; the pid of the child it made. OSError if the helper refuses or is gone."""
        with self._lock:
            for attempt in (0, 1):
                if self._sock is None:
                    self._start()
                assert self._sock is not None
                try:
                    self._sock.sendmsg([msg], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])
                    self._sock.settimeout(30)
                    reply = self._sock.recv(4096)
                except OSError:
                    reply = b""
                if reply:
                    answer = json.loads(reply)
                    if "pid" in answer:
                        return int(answer["pid"])
                    raise OSError(f"{self.what}: {answer.get('error')}")
                self._stop()  # it died: start a new one and retry once
                if attempt:
                    raise OSError(f"the {self.what} does not answer")
        raise AssertionError("unreachable")

    def _stop(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._popen is not None:
            try:
                self._popen.wait(5)
            except subprocess.TimeoutExpired:
                self._popen.kill()
                self._popen.wait()
            self._popen = None

    def close(self) -> None:
        with self._lock:
            self._stop()

    @property
    def pid(self) -> int | None:
        return self._popen.pid if self._popen is not None else None
