"""A small Engine API client for the CLI: JSON calls, streams, and hijacked attach/exec."""

from __future__ import annotations

import json
import socket
import struct
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlencode

from .transport import Connection, Host, TLSOptions

API_VERSION = "1.41"


class ApiError(Exception):
    """The daemon refused: its status and message, for a one-line CLI error."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Client:
    def __init__(self, host: Host, tls: TLSOptions | None = None, timeout: float | None = 60) -> None:
        self.host, self.tls, self.timeout = host, tls, timeout
        self.conn = Connection(host, tls, timeout)

    def _path(self, path: str, params: dict[str, Any] | None) -> str:
        query = {k: (json.dumps(v) if isinstance(v, (dict, list)) else v) for k, v in (params or {}).items()
                 if v is not None}
        for k, v in query.items():
            if isinstance(v, bool):
                query[k] = "1" if v else "0"
        return f"/v{API_VERSION}{path}" + (("?" + urlencode(query)) if query else "")

    def request(self, method: str, path: str, params: dict[str, Any] | None = None, body: Any = None,
                data: bytes | None = None, headers: dict[str, str] | None = None, stream: bool = False) -> Any:
        hdrs = dict(headers or {})
        payload = data
        if body is not None:
            payload = json.dumps(body).encode()
            hdrs["Content-Type"] = "application/json"
        try:
            self.conn.request(method, self._path(path, params), body=payload, headers=hdrs)
            resp = self.conn.getresponse()
        except (ConnectionError, FileNotFoundError, OSError) as exc:
            self.conn.close()
            raise ApiError(0, f"Cannot connect to the daemon at {self._where()}: {exc.strerror or exc}. "
                              f"Is refengined running?") from None
        if resp.status >= 400:
            raw = resp.read()
            try:
                message = json.loads(raw).get("message", raw.decode(errors="replace"))
            except (ValueError, AttributeError):
                message = raw.decode(errors="replace").strip()
            raise ApiError(resp.status, message)
        if stream:
            return resp
        raw = resp.read()
        if resp.getheader("Content-Type", "").startswith("application/json") and raw:
            return json.loads(raw)
        return raw

    def _where(self) -> str:
        h = self.host
        return {"unix": f"unix://{h.path}", "tcp": f"tcp://{h.host}:{h.port}", "fd": f"fd://{h.fd}"}[h.scheme]

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params)

    def post(self, path: str, body: Any = None, **params: Any) -> Any:
        return self.request("POST", path, params, body=body)

    def delete(self, path: str, **params: Any) -> Any:
        return self.request("DELETE", path, params)

    def json_stream(self, method: str, path: str, params: dict[str, Any] | None = None,
                    data: bytes | None = None, headers: dict[str, str] | None = None) -> Iterator[dict[str, Any]]:
        resp = self.request(method, path, params, data=data, headers=headers, stream=True)
        decoder, buf = json.JSONDecoder(), ""
        while True:
            chunk = resp.read1(65536) if hasattr(resp, "read1") else resp.read(65536)
            if not chunk:
                break
            buf += chunk.decode()
            while buf.strip():
                buf = buf.lstrip()
                try:
                    obj, end = decoder.raw_decode(buf)
                except ValueError:
                    break
                buf = buf[end:]
                yield obj

    def raw_stream(self, path: str, params: dict[str, Any]) -> Iterator[bytes]:
        resp = self.request("GET", path, params, stream=True)
        while True:
            chunk = resp.read1(65536) if hasattr(resp, "read1") else resp.read(65536)
            if not chunk:
                return
            yield chunk

    def hijack(self, path: str, params: dict[str, Any] | None = None, body: Any = None) -> socket.socket:
        """POST with `Upgrade: tcp`; after 101 the socket carries the container's streams."""
        sock = self.host.connect(self.tls, None)
        payload = json.dumps(body).encode() if body is not None else b""
        head = (f"POST {self._path(path, params)} HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\n"
                f"Upgrade: tcp\r\nContent-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n")
        sock.sendall(head.encode() + payload)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(1)
            if not chunk:
                raise ApiError(0, "the daemon closed the connection during the upgrade")
            data += chunk
        status = int(data.split(b" ", 2)[1])
        if status >= 400:
            rest = sock.recv(65536)
            try:
                message = json.loads(rest.split(b"\r\n\r\n")[-1] or rest).get("message", "")
            except ValueError:
                message = rest.decode(errors="replace")
            sock.close()
            raise ApiError(status, message)
        return sock


def demux_frames(buf: bytes) -> tuple[list[tuple[int, bytes]], bytes]:
    """Complete 8-byte-header frames in `buf` and the unparsed rest."""
    out, pos = [], 0
    while len(buf) - pos >= 8:
        stream, size = struct.unpack(">BxxxI", buf[pos:pos + 8])
        if len(buf) - pos - 8 < size:
            break
        out.append((stream, buf[pos + 8:pos + 8 + size]))
        pos += 8 + size
    return out, buf[pos:]


def quote_ref(ref: str) -> str:
    return quote(ref, safe=":/@")
