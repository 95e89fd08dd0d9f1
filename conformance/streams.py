"""Raw-socket access: hijacked attach/exec streams, stream framing, hand-written requests.

requests cannot hold a connection after `101 UPGRADED` nor send a malformed request line,
so these speak HTTP/1.1 on a plain socket from Target.connect().
"""

from __future__ import annotations

import json
import socket
import struct
import time
from dataclasses import dataclass, field

from .target import Target

STDIN, STDOUT, STDERR, SYSTEMERR = 0, 1, 2, 3


@dataclass
class Frame:
    stream: int
    data: bytes


class FramingError(AssertionError):
    pass


def parse_frames(buf: bytes, strict: bool = True) -> tuple[list[Frame], bytes]:
    """Split multiplexed-stream bytes into frames; returns (frames, incomplete tail).

    A frame is 1 byte stream id, 3 zero bytes, a big-endian uint32 length, then the payload.
    """
    frames: list[Frame] = []
    pos = 0
    while len(buf) - pos >= 8:
        stream, z1, z2, z3, size = struct.unpack(">BBBBI", buf[pos:pos + 8])
        if strict and (stream > SYSTEMERR or (z1, z2, z3) != (0, 0, 0)):
            raise FramingError(f"bad stream frame header {buf[pos:pos + 8]!r} at offset {pos}: expected "
                               "stream id 0-3 followed by three zero bytes")
        if len(buf) - pos - 8 < size:
            break
        frames.append(Frame(stream, buf[pos + 8:pos + 8 + size]))
        pos += 8 + size
    return frames, buf[pos:]


def demux(buf: bytes) -> dict[int, bytes]:
    """All of a complete multiplexed body joined per stream; a trailing partial frame is an error."""
    frames, tail = parse_frames(buf)
    if tail:
        raise FramingError(f"multiplexed stream ends inside a frame: {len(tail)} stray bytes {tail[:16]!r}")
    out: dict[int, bytes] = {}
    for fr in frames:
        out[fr.stream] = out.get(fr.stream, b"") + fr.data
    return out


@dataclass
class RawResponse:
    status: int
    reason: str
    headers: dict[str, str]
    body: bytes = b""
    sock: socket.socket | None = field(default=None, repr=False)

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def json(self) -> object:
        return json.loads(self.body)


def _read_head(sock: socket.socket) -> tuple[bytes, bytes]:
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"connection closed before the response head was complete: {buf[:200]!r}")
        buf += chunk
        if len(buf) > 1 << 20:
            raise ConnectionError("response head larger than 1 MiB")
    head, rest = buf.split(b"\r\n\r\n", 1)
    return head, rest


def _parse_head(head: bytes) -> tuple[int, str, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/"):
        raise ConnectionError(f"not an HTTP status line: {lines[0]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    return int(parts[1]), parts[2] if len(parts) > 2 else "", headers


def _read_body(sock: socket.socket, headers: dict[str, str], rest: bytes, deadline: float) -> bytes:
    if headers.get("transfer-encoding", "").lower() == "chunked":
        data = rest
        out = b""
        while True:
            while b"\r\n" not in data:
                data += _recv(sock, deadline)
            line, data = data.split(b"\r\n", 1)
            size = int(line.split(b";")[0], 16)
            if size == 0:
                return out
            while len(data) < size + 2:
                data += _recv(sock, deadline)
            out += data[:size]
            data = data[size + 2:]
    if "content-length" in headers:
        size = int(headers["content-length"])
        data = rest
        while len(data) < size:
            data += _recv(sock, deadline)
        return data[:size]
    data = rest
    while True:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            return data
        if not chunk:
            return data
        data += chunk


def _recv(sock: socket.socket, deadline: float) -> bytes:
    sock.settimeout(max(0.1, deadline - time.monotonic()))
    chunk = sock.recv(65536)
    if not chunk:
        raise ConnectionError("connection closed in the middle of the response body")
    return chunk


def raw_request(target: Target, raw: bytes, timeout: float = 30.0) -> RawResponse:
    """Send bytes exactly as given and read one response (closed afterwards)."""
    sock = target.connect(timeout)
    try:
        sock.sendall(raw)
        head, rest = _read_head(sock)
        status, reason, headers = _parse_head(head)
        body = _read_body(sock, headers, rest, time.monotonic() + timeout)
        return RawResponse(status, reason, headers, body)
    finally:
        sock.close()


def build_request(method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> bytes:
    hdrs = {"Host": "docker", "User-Agent": "conformance-harness"}
    hdrs.update(headers or {})
    if body is not None:
        hdrs.setdefault("Content-Type", "application/json")
        hdrs["Content-Length"] = str(len(body))
    head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items()) + "\r\n"
    return head.encode("latin-1") + (body or b"")


@dataclass
class Hijacked:
    """An upgraded (or raw-stream) connection: the response head, then the stream's bytes."""

    response: RawResponse
    sock: socket.socket
    pending: bytes = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def close_write(self) -> None:
        """Half-close stdin, as the docker CLI does when its input ends."""
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def read_all(self, timeout: float = 30.0) -> bytes:
        """Everything until the daemon closes the stream (or the timeout passes)."""
        return self._read(None, timeout)

    def read_all_timed(self, timeout: float = 30.0) -> tuple[bytes, float]:
        """read_all, and how long the daemon kept the stream open (checks that a stream ends)."""
        started = time.monotonic()
        data = self._read(None, timeout)
        return data, time.monotonic() - started

    def read_until(self, needle: bytes, timeout: float = 15.0) -> bytes:
        """Bytes read until `needle` appears (raw view; framing is left in place)."""
        return self._read(needle, timeout)

    def _read(self, needle: bytes | None, timeout: float) -> bytes:
        data, self.pending = self.pending, b""
        deadline = time.monotonic() + timeout
        while (needle is None or needle not in data) and time.monotonic() < deadline:
            self.sock.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            data += chunk
        return data

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def hijack(target: Target, method: str, path: str, body: object | None = None, upgrade: bool = True,
           timeout: float = 30.0) -> Hijacked:
    """Open attach/exec-start the way the docker CLI does: `Upgrade: tcp`, `Connection: Upgrade`."""
    payload = json.dumps(body).encode() if body is not None else None
    headers = {"Connection": "Upgrade", "Upgrade": "tcp"} if upgrade else {}
    if payload is None:
        headers["Content-Length"] = "0"
    sock = target.connect(timeout)
    try:
        sock.sendall(build_request(method, path, payload, headers))
        head, rest = _read_head(sock)
        status, reason, hdrs = _parse_head(head)
    except BaseException:
        sock.close()
        raise
    resp = RawResponse(status, reason, hdrs, sock=sock)
    if status >= 300 and status != 101:
        try:
            resp.body = _read_body(sock, hdrs, rest, time.monotonic() + timeout)
        finally:
            sock.close()
    return Hijacked(resp, sock, rest if status < 300 or status == 101 else b"")
