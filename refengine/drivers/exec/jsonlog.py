"""The json-file log writer: one `{"log","stream","time"}` object per line, rotated by size.

It lives in the exec-driver layer because the per-container monitor writes the log, and the monitor
must stay small: only os, time and the C `_json` encoder are imported here (no json, datetime or
dataclasses). The engine's logs module re-exports it and owns reading.
"""

from __future__ import annotations

import _json
import os
import time

SPLIT_AT = 16 * 1024  # dockerd splits very long lines at 16 KiB too


def stamp(ns: int | None = None) -> str:
    """RFC 3339 UTC with nanoseconds, as dockerd writes `time`."""
    ns = time.time_ns() if ns is None else ns
    sec, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)) + f".{frac:09d}Z"


class JsonFileWriter:
    """Appends records; rotates `path` → `path.1` … when max_size is reached (max_file files kept).

    A partial line (no newline yet) waits for the rest; it becomes a record of its own, without a
    newline, at close or when it reaches 16 KiB."""

    def __init__(self, path: str, max_size: int | None = None, max_file: int = 1) -> None:
        self.path, self.max_size, self.max_file = path, max_size, max(1, max_file)
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        self.size = os.fstat(self.fd).st_size
        self.partial: dict[str, bytes] = {"stdout": b"", "stderr": b""}

    def write(self, stream: str, data: bytes) -> None:
        """Bytes from the container's stream: complete lines become records, the rest waits."""
        buf = self.partial[stream] + data
        *lines, rest = buf.split(b"\n")
        for line in lines:
            self._record(stream, line + b"\n")
        while len(rest) >= SPLIT_AT:
            self._record(stream, rest[:SPLIT_AT])
            rest = rest[SPLIT_AT:]
        self.partial[stream] = rest

    def flush_partial(self) -> None:
        for stream, rest in self.partial.items():
            if rest:
                self._record(stream, rest)
                self.partial[stream] = b""

    def _record(self, stream: str, text: bytes) -> None:
        line = ('{"log":' + _json.encode_basestring_ascii(text.decode("utf-8", errors="replace"))
                + ',"stream":"' + stream + '","time":"' + stamp() + '"}\n').encode()
        if self.max_size and self.size + len(line) > self.max_size and self.size > 0:
            self._rotate()
        os.write(self.fd, line)
        self.size += len(line)

    def _rotate(self) -> None:
        os.close(self.fd)
        for i in range(self.max_file - 1, 0, -1):  # with max_file 1 nothing is kept: truncate, as dockerd
            src = self.path if i == 1 else f"{self.path}.{i - 1}"
            if os.path.exists(src):
                os.replace(src, f"{self.path}.{i}")
        self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_TRUNC | os.O_CREAT | os.O_CLOEXEC, 0o640)
        self.size = 0

    def close(self) -> None:
        if self.fd < 0:
            return
        self.flush_partial()
        os.close(self.fd)
        self.fd = -1
