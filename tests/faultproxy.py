"""A small HTTP proxy between the harness and a real daemon that corrupts one thing on purpose.

It listens on a unix socket, forwards every request to the upstream daemon's unix socket, and
lets one Fault rewrite the status, a header or the JSON body of matching responses. Hijacked
(101) and streamed responses pass through untouched unless the fault matches them.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import socket
import socketserver
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler

HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "upgrade"}


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def set_header(self, name: str, value: str | None) -> None:
        self.headers = [(k, v) for k, v in self.headers if k.lower() != name.lower()]
        if value is not None:
            self.headers.append((name, value))

    def json(self) -> object:
        return json.loads(self.body)

    def set_json(self, obj: object) -> None:
        self.body = json.dumps(obj).encode()


@dataclass
class Fault:
    """Rewrite matching requests and/or their responses; a request matches on method and `path` (regex search).

    `rewrite` changes the response; `rewrite_request` changes a JSON request body before it is
    forwarded (e.g. to make every container privileged, the way a careless engine would).
    """

    name: str
    method: str
    path: str
    rewrite: Callable[[Response], None] | None = None
    rewrite_request: Callable[[dict], None] | None = None
    swallow: int | None = None  # answer this status without forwarding: an engine that ignores the request
    hits: int = field(default=0)

    @classmethod
    def on_create(cls, name: str, mutate: Callable[[dict], None]) -> Fault:
        """A careless engine: every POST /containers/create body is changed by `mutate` before dockerd sees it."""
        return cls(name, "POST", r"/containers/create(\?|$)", rewrite_request=mutate)

    @classmethod
    def on_update(cls, name: str, mutate: Callable[[dict], None]) -> Fault:
        """Every POST /containers/{id}/update body is changed by `mutate` (e.g. a limit silently dropped)."""
        return cls(name, "POST", r"/containers/[^/]+/update(\?|$)", rewrite_request=mutate)

    @classmethod
    def ignored(cls, name: str, method: str, path: str, status: int = 204) -> Fault:
        """The request is answered `status` and never reaches dockerd (e.g. a pause that does nothing)."""
        return cls(name, method, path, swallow=status)

    def matches(self, method: str, path: str) -> bool:
        return method == self.method and re.search(self.path, path) is not None


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float = 300) -> None:
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.unix_path)


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while chunk := src.recv(65536):
            dst.sendall(chunk)
        dst.shutdown(socket.SHUT_WR)
    except OSError:
        pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - keep the test output quiet
        pass

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _forward(self) -> None:
        body = self._body()
        fault = self.server.fault if self.server.fault and self.server.fault.matches(self.command, self.path) else None
        if fault and fault.rewrite_request and body:
            payload = json.loads(body)
            fault.rewrite_request(payload)
            body = json.dumps(payload).encode()
            fault.hits += 1
        if fault and fault.swallow is not None:
            fault.hits += 1
            self.send_response(fault.swallow)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        upstream = _UnixHTTPConnection(self.server.upstream)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("transfer-encoding", "content-length")}
        if body or self.command in ("POST", "PUT"):
            headers["Content-Length"] = str(len(body))
        upstream.request(self.command, self.path, body=body or None, headers=headers)
        resp = upstream.getresponse()
        if resp.status == 101:
            self._splice(upstream, resp)
            return
        if fault and not fault.rewrite:
            fault = None  # a request-only fault: the response passes through as it is
        streaming = resp.getheader("Content-Length") is None and fault is None
        if streaming:
            self.send_response(resp.status, resp.reason)
            for k, v in resp.getheaders():
                if k.lower() not in HOP:
                    self.send_header(k, v)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            while chunk := resp.read1(65536):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            upstream.close()
            return
        out = Response(resp.status, [(k, v) for k, v in resp.getheaders() if k.lower() not in HOP], resp.read())
        upstream.close()
        if fault and fault.rewrite:
            fault.rewrite(out)
            fault.hits += 1
        self.send_response(out.status)
        for k, v in out.headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(out.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(out.body)

    def _splice(self, upstream: _UnixHTTPConnection, resp: http.client.HTTPResponse) -> None:
        self.send_response(101, resp.reason)
        for k, v in resp.getheaders():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.flush()
        up = upstream.sock
        assert up is not None
        # Bytes the upstream sent right after its head sit in the response's buffer.
        pending = resp.fp.peek() if resp.fp else b""
        if pending:
            self.connection.sendall(resp.fp.read(len(pending)))
        t = threading.Thread(target=_pipe, args=(self.connection, up), daemon=True)
        t.start()
        _pipe(up, self.connection)
        t.join(timeout=5)
        self.close_connection = True

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _forward


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, path: str, upstream: str, fault: Fault | None) -> None:
        self.upstream = upstream
        self.fault = fault
        super().__init__(path, _Handler)


class FaultProxy:
    """Run the proxy in a background thread: `with FaultProxy(sock, upstream, fault) as url: ...`."""

    def __init__(self, path: str, upstream: str, fault: Fault | None = None) -> None:
        self.path, self.upstream, self.fault = path, upstream, fault
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> str:
        if os.path.exists(self.path):
            os.unlink(self.path)
        self._server = _Server(self.path, self.upstream, self.fault)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return f"unix://{self.path}"

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()
        if os.path.exists(self.path):
            os.unlink(self.path)
