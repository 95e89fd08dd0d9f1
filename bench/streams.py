"""Streams: `logs` throughput of a container that wrote a lot, and attach round-trip latency."""

from __future__ import annotations

import datetime as dt
import re
import struct
import time
from dataclasses import dataclass, field

from conformance.streams import hijack

from .client import Api
from .report import HIGHER, INFO, LOWER, Figures
from .stats import summarize
from .targets import Session

SECTION = "streams"
READ = 1 << 20
LINE = 1024  # bytes per log line, newline included


@dataclass
class FrameCounter:
    """Counts payload bytes of a multiplexed stream fed in arbitrary pieces (frame headers may straddle)."""

    payload: dict[int, int] = field(default_factory=dict)
    frames: int = 0
    _header: bytes = b""
    _left: int = 0  # payload bytes of the current frame still to come
    _stream: int = 0

    def feed(self, data: bytes) -> None:
        pos, n = 0, len(data)
        while pos < n:
            if self._left:
                take = min(self._left, n - pos)
                self.payload[self._stream] = self.payload.get(self._stream, 0) + take
                self._left -= take
                pos += take
                continue
            need = 8 - len(self._header)
            self._header += data[pos:pos + need]
            pos += min(need, n - pos)
            if len(self._header) == 8:
                stream, _z1, _z2, _z3, size = struct.unpack(">BBBBI", self._header)
                if stream > 3 or (_z1, _z2, _z3) != (0, 0, 0):
                    raise ValueError(f"not a multiplexed stream: frame header {self._header!r}")
                self._header, self._left, self._stream = b"", size, stream
                self.frames += 1
                self.payload.setdefault(stream, 0)

    @property
    def complete(self) -> bool:
        return not self._header and not self._left

    @property
    def total(self) -> int:
        return sum(self.payload.values())


def writer_command(size: int, line: int = LINE) -> list[str]:
    """A shell command writing exactly `size` bytes of `line`-byte lines to stdout."""
    return ["sh", "-c", f"yes {'x' * (line - 1)} | head -c {size}"]


def declare(size_mb: float, attach_rounds: int) -> Figures:
    return Figures(SECTION, [
        ("streams.logs_read", f"GET /logs of {size_mb:g} MB written ({LINE} B lines)", "MB/s", HIGHER),
        ("streams.logs_ingest", f"  container writing {size_mb:g} MB to the log driver", "MB/s", HIGHER),
        ("streams.attach_rtt", f"attach round trip stdin→cat→stdout, median of {attach_rounds}", "ms", LOWER),
        ("streams.logs_frames", "  frames in the logs stream", "frames", INFO),
    ])


TIME_RE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)$")


def parse_time(text: str) -> float | None:
    """Seconds since the epoch of an RFC 3339 time with nanoseconds (as /containers/{id}/json gives)."""
    m = TIME_RE.match(text or "")
    if not m or text.startswith("0001-"):
        return None
    zone = "+00:00" if m.group(3) == "Z" else m.group(3)
    return dt.datetime.fromisoformat(m.group(1) + zone).timestamp() + float("0" + (m.group(2) or ".0"))


def logs_throughput(session: Session, figs: Figures, size: int) -> None:
    api = Api(session.target, timeout=600)
    try:
        cid = session.create(api, writer_command(size))
        session.start(api, cid)
        code = session.wait(api, cid)
        if code != 0:
            raise RuntimeError(f"the writer exited {code}")
        state = session.inspect(api, cid)["State"]
        started, finished = parse_time(state.get("StartedAt", "")), parse_time(state.get("FinishedAt", ""))
        if started and finished and finished > started:
            figs["streams.logs_ingest"].set(size / 1e6 / (finished - started),
                                            note="from the container's StartedAt to FinishedAt")
        counter = FrameCounter()
        t0 = time.perf_counter()
        resp = api.stream("GET", f"/containers/{cid}/logs", params={"stdout": 1, "stderr": 1})
        try:
            if resp.status != 200:
                raise RuntimeError(f"GET /containers/{{id}}/logs answered {resp.status} {resp.read(300)!r}")
            while chunk := resp.read1(READ):
                counter.feed(chunk)
        finally:
            resp.close()
        seconds = time.perf_counter() - t0
        note = f"{counter.total:,} payload bytes in {seconds:.2f} s"
        if counter.total != size or not counter.complete:
            note += f" — expected {size:,} bytes{'' if counter.complete else ', stream ended inside a frame'}"
        figs["streams.logs_read"].set(counter.total / 1e6 / seconds, samples=1, note=note)
        figs["streams.logs_frames"].set(counter.frames)
        session.remove(api, cid)
    finally:
        api.close()


def attach_latency(session: Session, figs: Figures, rounds: int, warmup: int = 3) -> None:
    """Hijacked attach to a running `cat`: write a line to stdin, time until it comes back on stdout."""
    api = Api(session.target)
    conn = None
    try:
        cid = session.create(api, ["cat"], OpenStdin=True, StdinOnce=False, AttachStdin=True,
                             AttachStdout=True, AttachStderr=True, Tty=False)
        conn = hijack(session.target, "POST", f"/containers/{cid}/attach?stream=1&stdin=1&stdout=1&stderr=1")
        if conn.response.status not in (101, 200):
            raise RuntimeError(f"attach answered {conn.response.status} {conn.response.body[:200]!r}")
        session.start(api, cid)
        buf = conn.pending
        conn.pending = b""
        samples: list[float] = []
        conn.sock.settimeout(10)
        for i in range(warmup + rounds):
            line = f"bench-line-{i:06d}\n".encode()
            t0 = time.perf_counter()
            conn.send(line)
            while (at := buf.find(line)) < 0:
                chunk = conn.sock.recv(65536)
                if not chunk:
                    raise RuntimeError("the attach stream closed before the line came back")
                buf += chunk
            elapsed = time.perf_counter() - t0
            buf = buf[at + len(line):]
            if i >= warmup:
                samples.append(elapsed)
        figs["streams.attach_rtt"].set_summary(summarize(samples), 1000, note=f"after {warmup} warm-up lines")
        conn.close_write()
        session.remove(api, cid, force=True)
    finally:
        if conn is not None:
            conn.close()
        api.close()
