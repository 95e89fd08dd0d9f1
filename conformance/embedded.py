"""The embedded default target: with no daemon named, the suite starts refengined for the run.

It runs on a socket and state directory in a fresh temporary directory and is stopped (by PID) and
removed at the end, so `tox -e conformance` alone measures the reference engine.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from .target import Target, parse_target


class EmbeddedError(RuntimeError):
    """refengined could not be started; the message carries the end of its log."""


class EmbeddedDaemon:
    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="conformance-refengine-")
        self.socket = os.path.join(self.dir, "refengine.sock")
        self.log_path = os.path.join(self.dir, "refengined.log")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def start(self, timeout: float = 30) -> Target:
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "refengine.daemon.main", "-H", self.url,
                                          "--data-root", os.path.join(self.dir, "state"),
                                          "--stop-containers-on-exit"],  # leave no container behind
                                         stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        target = parse_target(self.url)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            if os.path.exists(self.socket) and self._ping(target):
                return target
            time.sleep(0.1)
        self.stop()
        raise EmbeddedError(f"refengined did not come up within {timeout:.0f} s: {self._log_tail()}")

    @staticmethod
    def _ping(target: Target) -> bool:
        try:
            sock = target.connect(2)
        except OSError:
            return False
        try:
            sock.sendall(b"GET /_ping HTTP/1.1\r\nHost: refengine\r\nConnection: close\r\n\r\n")
            return sock.recv(64).startswith(b"HTTP/1.1 200")
        except OSError:
            return False
        finally:
            sock.close()

    def _log_tail(self) -> str:
        try:
            with open(self.log_path, "rb") as fh:
                return fh.read()[-2000:].decode(errors="replace") or "(no output)"
        except OSError:
            return "(no log)"

    # longer than refengined's own shutdown may take (5 s stops side by side, up to 30 s for their exits
    # to settle, then the network): killed earlier, it would leave a container's mount and cgroup behind
    STOP_TIMEOUT = 60.0

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(self.STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                # what it had not torn down is still there: keep its log and state to see why, and say so
                sys.stderr.write(f"conformance: the embedded refengined did not stop within {self.STOP_TIMEOUT:.0f} s "
                                 f"and was killed; its state and log are kept in {self.dir}\n{self._log_tail()}\n")
                return
        shutil.rmtree(self.dir, ignore_errors=True)
