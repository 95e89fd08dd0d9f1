"""API request rate: GET requests per second from 1 and from N client processes over keep-alive HTTP/1.1.

A Python client saturates near 5–6k req/s (BASELINES.md), so every client is a separate process
(multiprocessing, fork) running a minimal hand-written request loop on one raw keep-alive connection:
pre-encoded request bytes, a response parser that only finds the status, the length or the chunks.
All clients start at the same instant and run for a fixed duration; the rate is the sum of each
client's completed requests over its own elapsed time. For a local daemon, the CPU time its process
spent per request (utime+stime from /proc) is recorded too: on a shared machine it varies much less
than the rate does.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from conformance.target import Target

from .client import Api, parallel
from .memory import listener_pid
from .report import HIGHER, INFO, LOWER, Figures
from .targets import NotMeasured, Session

SECTION = "api"
RECV = 262144
STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


class RawConnection:
    """One keep-alive connection and a response reader that understands just enough HTTP/1.1."""

    def __init__(self, target: Target, timeout: float = 30.0) -> None:
        self.target = target
        self.timeout = timeout
        self.sock = target.connect(timeout)
        self.buf = bytearray()

    def _fill(self) -> None:
        chunk = self.sock.recv(RECV)
        if not chunk:
            raise ConnectionError("the daemon closed the connection")
        self.buf += chunk

    def roundtrip(self, request: bytes) -> int:
        """Send one request, read its whole response; the status code."""
        self.sock.sendall(request)
        return self.read_response()

    def read_response(self) -> int:
        buf = self.buf
        while (end := buf.find(b"\r\n\r\n")) < 0:
            self._fill()
        head = bytes(buf[:end]).lower()
        status = int(head[9:12])
        pos = end + 4
        close = b"\r\nconnection: close" in head
        cl = head.find(b"\r\ncontent-length:")
        if cl >= 0:
            eol = head.find(b"\r\n", cl + 2)
            size = int(head[cl + 17:eol if eol >= 0 else len(head)])
            while len(buf) < pos + size:
                self._fill()
            pos += size
        elif b"\r\ntransfer-encoding: chunked" in head:
            while True:
                while (eol := buf.find(b"\r\n", pos)) < 0:
                    self._fill()
                size = int(bytes(buf[pos:eol]).split(b";")[0], 16)
                pos = eol + 2 + size + 2  # data and its CRLF (a last chunk has no trailers here)
                while len(buf) < pos:
                    self._fill()
                if size == 0:
                    break
        elif status not in (204, 304) and status >= 200:
            raise ConnectionError("a close-delimited response cannot be used for a keep-alive rate")
        del buf[:pos]
        if close:
            self.reconnect()
        return status

    def reconnect(self) -> None:
        self.close()
        self.sock = self.target.connect(self.timeout)
        self.buf = bytearray()

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def cpu_seconds(pid: int) -> float | None:
    """utime+stime of a process, or None if it cannot be read."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def request_bytes(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: docker\r\nUser-Agent: bench\r\n\r\n".encode()


def _client(target: Target, request: bytes, pipe: Connection) -> None:
    """A client process: connect and warm up, say ready, wait for the start time, loop until the stop time."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and terminates us
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the parent's handler (inherited through fork)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)  # blocked by the parent around the fork
    try:
        conn = RawConnection(target)
        conn.roundtrip(request)
        pipe.send(("ready", None))
        start_at, stop_at = pipe.recv()
        while time.monotonic() < start_at:
            time.sleep(min(0.01, max(0.0, start_at - time.monotonic())))
        count = errors = bad = 0
        now = time.monotonic()
        while now < stop_at:
            status = conn.roundtrip(request)
            if status == 200:
                count += 1
            else:
                errors, bad = errors + 1, status
            now = time.monotonic()
        conn.close()
        pipe.send(("done", (count, errors, now - start_at, bad)))
    except Exception as exc:  # reported to the parent as the figure's reason
        pipe.send(("error", f"{type(exc).__name__}: {exc}"))


@dataclass(frozen=True)
class Rate:
    per_second: float
    requests: int
    errors: int
    clients: int
    seconds: float
    error_status: int | None = None  # a non-200 status seen
    cpu_per_request: float | None = None  # the daemon's CPU seconds per request, when its pid is known


def measure_rate(target: Target, path: str, clients: int, duration: float, pid: int | None = None) -> Rate:
    """Requests per second of `GET path` from `clients` processes for `duration` seconds (and the CPU
    time process `pid` spent meanwhile, per request)."""
    ctx = mp.get_context("fork")
    cpu0 = cpu1 = None
    request = request_bytes(path)
    procs: list[Any] = []
    pipes: list[Connection] = []
    try:
        for _ in range(clients):
            parent_end, child_end = ctx.Pipe()
            proc = ctx.Process(target=_client, args=(target, request, child_end), daemon=True)
            # A Ctrl-C landing inside fork() would run the parent's handler in an at-fork hook that
            # swallows the KeyboardInterrupt: keep it pending until the fork is done.
            mask = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
            try:
                proc.start()
            finally:
                signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            child_end.close()
            procs.append(proc)
            pipes.append(parent_end)
        for pipe in pipes:
            _expect(pipe, "ready", 30)
        start_at = time.monotonic() + 0.1
        for pipe in pipes:
            pipe.send((start_at, start_at + duration))
        cpu0 = cpu_seconds(pid) if pid else None  # includes the 0.1 s before the start: the daemon idles then
        results = [_expect(pipe, "done", duration + 60) for pipe in pipes]
        cpu1 = cpu_seconds(pid) if pid else None
    finally:
        for proc in procs:
            proc.join(2)  # a client that reported exits by itself
            if proc.is_alive():
                proc.terminate()
                proc.join(5)
        for pipe in pipes:
            pipe.close()
    rate = sum(c / max(s, 1e-9) for c, _e, s, _b in results)
    total = sum(r[0] + r[1] for r in results)
    cpu = (cpu1 - cpu0) / total if cpu0 is not None and cpu1 is not None and total else None
    return Rate(per_second=rate, requests=sum(r[0] for r in results), errors=sum(r[1] for r in results),
                clients=clients, seconds=max(r[2] for r in results),
                error_status=next((r[3] for r in results if r[3]), None), cpu_per_request=cpu)


def _expect(pipe: Connection, what: str, timeout: float) -> Any:
    if not pipe.poll(timeout):
        raise TimeoutError(f"a client process did not report {what!r} within {timeout:.0f} s")
    kind, payload = pipe.recv()
    if kind == "error":
        raise RuntimeError(f"client process failed: {payload}")
    if kind != what:
        raise RuntimeError(f"client process said {kind!r}, expected {what!r}")
    return payload


ENDPOINTS = ("ping", "list_empty", "inspect", "list_many")


def declare(clients: tuple[int, ...], many: int) -> Figures:
    labels = {"ping": "GET /_ping", "list_empty": "GET /containers/json?all=1, none of ours",
              "inspect": "GET /containers/{id}/json", "list_many": f"GET /containers/json?all=1, +{many} of ours"}
    specs = []
    for ep in ENDPOINTS:
        for n in clients:
            specs.append((f"api.{ep}.c{n}", f"{labels[ep]}, {n} client{'s' if n > 1 else ''}", "req/s", HIGHER))
    for n in clients:
        specs.append((f"api.ping_cpu.c{n}", f"  daemon CPU per GET /_ping, {n} client{'s' if n > 1 else ''}", "µs",
                       LOWER))
    specs.append(("api.create_many", f"  (setup) create {many} containers, 4 at a time", "s", INFO))
    return Figures(SECTION, specs)


def _listed(api: Api) -> str:
    """How many containers the daemon lists (context for the list figures), as text."""
    resp = api.get("/containers/json", params={"all": 1})
    return f"{len(resp.json())} containers listed" if resp.status == 200 else f"listing answered {resp.status}"


def _measure(target: Target, figs: Figures, ep: str, path: str, clients: tuple[int, ...], duration: float,
             note: str = "", pid: int | None = None) -> None:
    for n in clients:
        r = measure_rate(target, path, n, duration, pid)
        if not r.requests:
            raise NotMeasured(f"GET {path} answered {r.error_status} (no request succeeded)")
        extra = f"{r.requests} requests in {r.seconds:.2f} s" + (f", {r.errors} non-200" if r.errors else "")
        if r.cpu_per_request is not None:
            extra += f"; daemon CPU {r.cpu_per_request * 1e6:.0f} µs per request"
        figs[f"api.{ep}.c{n}"].set(r.per_second, samples=r.requests, note="; ".join(x for x in (note, extra) if x))
        if ep == "ping":
            cpu = figs[f"api.ping_cpu.c{n}"]
            if r.cpu_per_request is None:
                cpu.skip("the daemon's process is not visible here (not local, or another PID namespace)")
            else:
                cpu.set(r.cpu_per_request * 1e6, samples=r.requests,
                        note=f"utime+stime of pid {pid} over the {r.seconds:.1f} s run, per request")


def _daemon_pid(target: Target) -> int | None:
    try:
        return listener_pid(target)[0]
    except NotMeasured:
        return None


def measure(session: Session, figs: Figures, clients: tuple[int, ...], duration: float, many: int) -> None:
    """All API rates; creates `many` stopped containers for the list and inspect figures, removes them after."""
    target = session.target
    _measure(target, figs, "ping", "/_ping", clients, duration, pid=_daemon_pid(target))
    _measure(target, figs, "list_empty", "/containers/json?all=1", clients, duration,
             note=f"{_listed(session.api)} (the daemon's, none of ours)")
    t0 = time.perf_counter()
    cids = parallel(target, lambda api, _i: session.create(api, ["true"]), range(many), workers=4)
    figs["api.create_many"].set(time.perf_counter() - t0, samples=many)
    try:
        _measure(target, figs, "inspect", f"/containers/{cids[0]}/json", clients, duration)
        _measure(target, figs, "list_many", "/containers/json?all=1", clients, duration,
                 note=_listed(session.api))
    finally:
        session.remove_all(cids)

