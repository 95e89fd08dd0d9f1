"""The json-file log driver: one JSON object per line, rotation by size, and reading with Docker's options.

Lines are `{"log": "<text with its newline>", "stream": "stdout|stderr", "time": "<RFC 3339 nano>"}` as
dockerd writes them, so `docker logs` semantics (since, until, tail, timestamps, follow) map directly.
A partial line (no trailing newline) is a record of its own without the newline, as dockerd does.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass

STDOUT, STDERR = 1, 2
STREAMS = {"stdout": STDOUT, "stderr": STDERR}


def _stamp(t: dt.datetime | None = None) -> str:
    t = t or dt.datetime.now(dt.UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond:06d}000Z"


def parse_size(value: str | None) -> int | None:
    """`10m`, `1g`, `500k` or bytes → bytes (log-opt max-size)."""
    if not value:
        return None
    units = {"k": 1024, "m": 1024 ** 2, "g": 1024 ** 3}
    v = value.strip().lower().rstrip("b")
    if v and v[-1] in units:
        return int(float(v[:-1]) * units[v[-1]])
    return int(v)


def frame(stream: int, data: bytes) -> bytes:
    """The 8-byte header of the multiplexed stream format, then the payload."""
    return struct.pack(">BxxxI", stream, len(data)) + data


@dataclass
class Record:
    stream: str
    text: bytes
    time: str
    nanos: int


def _nanos(stamp: str) -> int:
    head, _, frac = stamp.rstrip("Z").partition(".")
    base = dt.datetime.fromisoformat(head).replace(tzinfo=dt.UTC)
    return int(base.timestamp()) * 1_000_000_000 + int((frac + "000000000")[:9])


class JsonFileWriter:
    """Appends records; rotates `path` → `path.1` … when max_size is reached (max_file files kept)."""

    def __init__(self, path: str, max_size: int | None = None, max_file: int = 1) -> None:
        self.path, self.max_size, self.max_file = path, max_size, max(1, max_file)
        self.fh = open(path, "ab", buffering=0)
        self.size = self.fh.tell()
        self.partial: dict[str, bytes] = {"stdout": b"", "stderr": b""}

    def write(self, stream: str, data: bytes) -> None:
        """Bytes from the container's stream: complete lines become records, the rest waits."""
        buf = self.partial[stream] + data
        *lines, rest = buf.split(b"\n")
        for line in lines:
            self._record(stream, line + b"\n")
        self.partial[stream] = rest
        if len(rest) >= 16 * 1024:  # dockerd splits very long lines at 16 KiB too
            self._record(stream, rest)
            self.partial[stream] = b""

    def flush_partial(self) -> None:
        for stream, rest in self.partial.items():
            if rest:
                self._record(stream, rest)
                self.partial[stream] = b""

    def _record(self, stream: str, text: bytes) -> None:
        line = json.dumps({"log": text.decode("utf-8", errors="replace"), "stream": stream, "time": _stamp()})
        data = line.encode() + b"\n"
        if self.max_size and self.size + len(data) > self.max_size and self.size > 0:
            self._rotate()
        self.fh.write(data)
        self.size += len(data)

    def _rotate(self) -> None:
        self.fh.close()
        if self.max_file > 1:
            for i in range(self.max_file - 1, 0, -1):
                src = self.path if i == 1 else f"{self.path}.{i - 1}"
                if os.path.exists(src):
                    os.replace(src, f"{self.path}.{i}")
            self.fh = open(self.path, "wb", buffering=0)
        else:
            self.fh = open(self.path, "wb", buffering=0)  # one file: truncate, as dockerd with max-file=1
        self.size = 0

    def close(self) -> None:
        self.flush_partial()
        self.fh.close()


def _files(path: str) -> list[str]:
    """Rotated files oldest first, then the live one."""
    rotated = []
    i = 1
    while os.path.exists(f"{path}.{i}"):
        rotated.append(f"{path}.{i}")
        i += 1
    return list(reversed(rotated)) + ([path] if os.path.exists(path) else [])


def _parse(line: bytes) -> Record | None:
    try:
        obj = json.loads(line)
        return Record(obj["stream"], obj["log"].encode(), obj["time"], _nanos(obj["time"]))
    except (ValueError, KeyError):
        return None  # a torn last line of a crashed writer


@dataclass
class ReadOptions:
    stdout: bool = True
    stderr: bool = True
    since: int | None = None  # nanoseconds
    until: int | None = None
    tail: int | None = None  # None: all
    timestamps: bool = False
    follow: bool = False
    tty: bool = False  # raw bytes, no frames


def _out(rec: Record, opts: ReadOptions) -> bytes:
    text = rec.text
    if opts.timestamps:
        text = rec.time.encode() + b" " + text
    return text if opts.tty else frame(STREAMS[rec.stream], text)


def _wanted(rec: Record, opts: ReadOptions) -> bool:
    if rec.stream == "stdout" and not opts.stdout or rec.stream == "stderr" and not opts.stderr:
        return False
    if opts.since is not None and rec.nanos < opts.since:
        return False
    return not (opts.until is not None and rec.nanos > opts.until)


async def read(path: str, opts: ReadOptions, finished: asyncio.Event | None = None) -> AsyncIterator[bytes]:
    """The log as the API sends it; with follow, new records until `finished` is set (the container ended)."""
    records: list[Record] = []
    for name in _files(path):
        with open(name, "rb") as fh:
            for line in fh:
                rec = _parse(line)
                if rec and _wanted(rec, opts):
                    records.append(rec)
    if opts.tail is not None:
        records = records[-opts.tail:] if opts.tail > 0 else []
    for rec in records:
        yield _out(rec, opts)
    if not opts.follow:
        return
    # Follow: poll the live file from where it ends now (rotation restarts at 0).
    offset = os.path.getsize(path) if os.path.exists(path) else 0
    ino = os.stat(path).st_ino if os.path.exists(path) else None
    pending = b""
    while True:
        done = finished is not None and finished.is_set()
        try:
            st = os.stat(path)
            if st.st_ino != ino or st.st_size < offset:
                ino, offset, pending = st.st_ino, 0, b""
            if st.st_size > offset:
                with open(path, "rb") as fh:
                    fh.seek(offset)
                    chunk = fh.read()
                offset += len(chunk)
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    rec = _parse(line)
                    if rec and _wanted(rec, opts):
                        yield _out(rec, opts)
                    elif rec and opts.until is not None and rec.nanos > opts.until:
                        return
        except FileNotFoundError:
            pass
        if done:
            return
        if opts.until is not None and dt.datetime.now(dt.UTC).timestamp() * 1e9 > opts.until:
            return
        await asyncio.sleep(0.05)
