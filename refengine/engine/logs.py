"""The json-file log driver: one JSON object per line, rotation by size, and reading with Docker's options.

The writer (JsonFileWriter) lives in drivers/exec/jsonlog.py: the per-container monitor writes the log.

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
from collections import deque
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from ..drivers.exec.jsonlog import JsonFileWriter as JsonFileWriter  # re-exported: the engine's name for it

STDOUT, STDERR = 1, 2
STREAMS = {"stdout": STDOUT, "stderr": STDERR}


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
    attrs: dict[str, str] | None = None  # the json-file "attrs" (log-opt labels/env), when the writer kept any


def _nanos(stamp: str) -> int:
    head, _, frac = stamp.rstrip("Z").partition(".")
    base = dt.datetime.fromisoformat(head).replace(tzinfo=dt.UTC)
    return int(base.timestamp()) * 1_000_000_000 + int((frac + "000000000")[:9])


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
        return Record(obj["stream"], obj["log"].encode(), obj["time"], _nanos(obj["time"]), obj.get("attrs"))
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
    details: bool = False  # each line after its attributes and a space, as dockerd's `logs --details`


def _out(rec: Record, opts: ReadOptions) -> bytes:
    text = rec.text
    if opts.details:  # dockerd: "k=v,k2=v2 " before the line; just the space when there are none
        text = ",".join(f"{k}={v}" for k, v in sorted((rec.attrs or {}).items())).encode() + b" " + text
    if opts.timestamps:
        text = rec.time.encode() + b" " + text
    return text if opts.tty else frame(STREAMS[rec.stream], text)


def _wanted(rec: Record, opts: ReadOptions) -> bool:
    if rec.stream == "stdout" and not opts.stdout or rec.stream == "stderr" and not opts.stderr:
        return False
    if opts.since is not None and rec.nanos < opts.since:
        return False
    return not (opts.until is not None and rec.nanos > opts.until)


def open_files(path: str) -> list[BinaryIO]:
    """The log's files, opened now: a reader holds them as dockerd does, so a client that removes the
    container before it reads the body (docker-py's run(stream=True, remove=True)) still gets its logs."""
    names = _files(path)
    if path not in names and os.path.isdir(os.path.dirname(path)):
        # just started: the writer (it opens with O_APPEND|O_CREAT) may not have made the file yet; made
        # here, this reader holds the very file the writer then appends to
        os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o640))
        names.append(path)
    return [open(name, "rb") for name in names]


CHUNK = 64 * 1024  # bytes of API output per piece: memory stays bounded, other requests get a turn


async def read(path: str, opts: ReadOptions, finished: asyncio.Event | None = None,
               opened: list[BinaryIO] | None = None) -> AsyncIterator[bytes]:
    """The log as the API sends it; with follow, new records until `finished` is set (the container ended).
    `opened`: the files from open_files, when they had to be opened before the response started.
    Streamed in CHUNK-sized pieces as the files are read (a log can be far larger than memory); with
    `tail`, only the last records are kept while the files are read."""
    files = opened if opened is not None else open_files(path)
    live: BinaryIO | None = None  # the live file stays open for follow, as dockerd's reader holds it

    def wanted() -> Iterator[Record]:
        nonlocal live
        for fh in files:
            complete = 0  # bytes up to the last whole line: a line being written is read again by follow
            # what the file holds now: a reader slower than a busy writer must still come to an end
            # (dockerd's reader stops there too); follow carries on from `complete`
            limit = os.fstat(fh.fileno()).st_size
            for line in fh:
                if not line.endswith(b"\n") or complete + len(line) > limit:
                    break
                complete += len(line)
                rec = _parse(line)
                if rec and _wanted(rec, opts):
                    yield rec
            if fh.name == path and opts.follow:
                fh.seek(complete)
                live = fh
            else:
                fh.close()

    try:
        records: Iterable[Record] = wanted()
        if opts.tail is not None:
            records = deque(records, maxlen=max(opts.tail, 0))
        pending: list[bytes] = []
        size = 0
        for rec in records:
            pending.append(_out(rec, opts))
            size += len(pending[-1])
            if size >= CHUNK:
                yield b"".join(pending)
                pending, size = [], 0
                await asyncio.sleep(0)
        if pending:
            yield b"".join(pending)
        if opts.follow:
            async for data in _follow(path, live, opts, finished):
                yield data
    finally:
        for fh in files:
            fh.close()


async def _follow(path: str, live: BinaryIO | None, opts: ReadOptions,
                  finished: asyncio.Event | None) -> AsyncIterator[bytes]:
    """New records from the open live file; on rotation the old file is drained, then the new one read
    from its start. A removed container's file is read to its end through the open handle."""
    pending = b""
    try:
        while True:
            done = finished is not None and finished.is_set()  # before the read: the last read sees all
            if live is None:
                try:
                    live = open(path, "rb")
                except FileNotFoundError:
                    pass
            if live is not None:
                if os.fstat(live.fileno()).st_size < live.tell():  # truncated in place (max-file 1)
                    live.seek(0)
                    pending = b""
                chunk = live.read()
                rotated = _rotated(path, live)
                if rotated:
                    chunk += live.read()  # the writer has moved on: this file is final
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    rec = _parse(line)
                    if rec and _wanted(rec, opts):
                        yield _out(rec, opts)
                    elif rec and opts.until is not None and rec.nanos > opts.until:
                        return
                if rotated:
                    live.close()
                    live, pending = None, b""
                    continue
            if done:
                return
            if opts.until is not None and dt.datetime.now(dt.UTC).timestamp() * 1e9 > opts.until:
                return
            await asyncio.sleep(0.05)
    finally:
        if live is not None:
            live.close()


def _rotated(path: str, live: BinaryIO) -> bool:
    """Whether `path` now names another file than `live` (rotated); a removed path is not a rotation."""
    try:
        return os.stat(path).st_ino != os.fstat(live.fileno()).st_ino
    except FileNotFoundError:
        return False
