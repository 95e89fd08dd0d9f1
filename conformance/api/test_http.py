"""HTTP-level behaviour of the API server, spoken on raw sockets: connections, framing, methods, headers.

requests hides keep-alive, pipelining, chunked uploads and malformed input, so most checks here
write the bytes themselves (Target.connect, streams.build_request) and read the answers with a
small reader that keeps what follows one response for the next.
"""

from __future__ import annotations

import json
import socket
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pytest

from conformance.client import ApiClient, error_message
from conformance.resources import RUN_LABEL, Containers, Names, Volumes
from conformance.streams import build_request, hijack
from conformance.target import Target


@dataclass
class Reply:
    version: str
    status: int
    headers: dict[str, str] = field(default_factory=dict)  # lower-case names
    body: bytes = b""

    def json(self) -> Any:
        return json.loads(self.body)


class Conn:
    """One raw connection; reads responses one at a time, keeping any bytes that follow."""

    def __init__(self, target: Target, timeout: float = 10.0) -> None:
        self.sock = target.connect(timeout)
        self.buf = b""
        self.eof = False

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self, deadline: float) -> None:
        self.sock.settimeout(max(0.05, deadline - time.monotonic()))
        chunk = self.sock.recv(65536)
        if not chunk:
            self.eof = True
            raise ConnectionError(f"the daemon closed the connection; unread bytes {self.buf[:200]!r}")
        self.buf += chunk

    def _take(self, size: int, deadline: float) -> bytes:
        while len(self.buf) < size:
            self._fill(deadline)
        out, self.buf = self.buf[:size], self.buf[size:]
        return out

    def _line(self, deadline: float) -> bytes:
        while b"\r\n" not in self.buf:
            self._fill(deadline)
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def reply(self, head_request: bool = False, timeout: float = 10.0) -> Reply:
        """The next response; `head_request` when it answers HEAD (a head and no body)."""
        deadline = time.monotonic() + timeout
        while b"\r\n\r\n" not in self.buf:
            self._fill(deadline)
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        version, status = lines[0].split(" ", 2)[:2]
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        reply = Reply(version, int(status), headers)
        if head_request or reply.status < 200 or reply.status in (204, 304):
            return reply
        if headers.get("transfer-encoding", "").lower() == "chunked":
            while True:
                size = int(self._line(deadline).split(b";")[0], 16)
                if size == 0:
                    self._line(deadline)  # the blank line after the last chunk (no trailers expected)
                    return reply
                reply.body += self._take(size, deadline)
                self._take(2, deadline)
        if "content-length" in headers:
            reply.body = self._take(int(headers["content-length"]), deadline)
            return reply
        try:
            while True:
                self._fill(deadline)
        except ConnectionError:
            reply.body, self.buf = self.buf, b""
        return reply

    def closed_by_peer(self, timeout: float = 3.0) -> bool:
        """True when the daemon closes the connection (with nothing more sent) within `timeout`."""
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                self._fill(deadline)
        except ConnectionError:
            return True
        except TimeoutError:
            return False
        return False

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def _ask(target: Target, raw: bytes, head_request: bool = False, timeout: float = 10.0) -> Reply:
    conn = Conn(target, timeout)
    try:
        conn.send(raw)
        return conn.reply(head_request, timeout)
    finally:
        conn.close()


def _prefix(api: ApiClient) -> str:
    return f"/v{api.version}" if api.version else ""


def _chunked(body: bytes, pieces: int = 3) -> bytes:
    step = max(1, len(body) // pieces)
    out = b""
    for i in range(0, len(body), step):
        part = body[i:i + step]
        out += f"{len(part):x}\r\n".encode() + part + b"\r\n"
    return out + b"0\r\n\r\n"


# ---------------------------------------------------------------- connections


@pytest.mark.req("api.http.keep-alive")
def test_keep_alive(api: ApiClient, target: Target) -> None:
    conn = Conn(target)
    try:
        conn.send(build_request("GET", "/_ping"))
        first = conn.reply()
        conn.send(build_request("GET", f"{_prefix(api)}/version"))
        second = conn.reply()
    except (ConnectionError, TimeoutError) as exc:
        pytest.fail(f"a second request on a kept-alive connection got no answer: {exc}")
    finally:
        conn.close()
    assert (first.status, first.body) == (200, b"OK"), f"first request: {first.status} {first.body[:100]!r}"
    assert second.status == 200 and "ApiVersion" in second.json(), (
        f"second request on the same connection: {second.status} {second.body[:100]!r}")


@pytest.mark.req("api.http.pipelining")
def test_pipelining(api: ApiClient, target: Target) -> None:
    conn = Conn(target)
    try:
        conn.send(build_request("GET", "/_ping") + build_request("GET", f"{_prefix(api)}/version"))
        first, second = conn.reply(), conn.reply()
    except (ConnectionError, TimeoutError) as exc:
        pytest.fail(f"two pipelined requests were not both answered: {exc}")
    finally:
        conn.close()
    assert (first.status, first.body) == (200, b"OK"), f"first pipelined answer: {first.status} {first.body[:100]!r}"
    assert second.status == 200 and "ApiVersion" in second.json(), (
        f"second pipelined answer: {second.status} {second.body[:100]!r}")


@pytest.mark.req("api.http.http10")
def test_http10(target: Target) -> None:
    conn = Conn(target)
    try:
        conn.send(b"GET /_ping HTTP/1.0\r\n\r\n")
        reply = conn.reply()
        closed = conn.closed_by_peer()
    finally:
        conn.close()
    assert reply.version.startswith("HTTP/1."), f"status line version is {reply.version!r}"
    assert (reply.status, reply.body) == (200, b"OK"), f"HTTP/1.0 GET /_ping: {reply.status} {reply.body[:100]!r}"
    assert closed, "the daemon kept an HTTP/1.0 connection (without keep-alive) open after the response"


@pytest.mark.req("api.http.connection-close")
def test_connection_close(target: Target) -> None:
    conn = Conn(target)
    try:
        conn.send(build_request("GET", "/_ping", headers={"Connection": "close"}))
        reply = conn.reply()
        closed = conn.closed_by_peer()
    finally:
        conn.close()
    assert reply.status == 200, f"GET /_ping with Connection: close answered {reply.status}"
    assert closed, "the daemon kept the connection open after answering a Connection: close request"


# ---------------------------------------------------------------- malformed requests


@pytest.mark.req("api.http.malformed-request")
@pytest.mark.parametrize("raw", [
    pytest.param(b"GARBAGE\r\n\r\n", id="one-word"),
    pytest.param(b"GET /_ping\r\nHost: docker\r\n\r\n", id="no-version"),
    pytest.param(b"GET /_ping HTTP/1.1 extra\r\nHost: docker\r\n\r\n", id="extra-field"),
    pytest.param(b"GET /_ping HTTP/1.1\r\nHost: docker\r\nno colon here\r\n\r\n", id="bad-header"),
])
def test_malformed_request(target: Target, raw: bytes) -> None:
    try:
        reply = _ask(target, raw, timeout=5)
    except (ConnectionError, TimeoutError) as exc:
        pytest.fail(f"the daemon sent no response to the malformed request {raw!r}: {exc}")
    assert reply.status == 400, f"malformed request {raw!r} answered {reply.status}; expected 400"


@pytest.mark.req("api.http.host-required")
def test_host_required(target: Target) -> None:
    reply = _ask(target, b"GET /_ping HTTP/1.1\r\nConnection: close\r\n\r\n", timeout=5)
    assert reply.status == 400, f"an HTTP/1.1 request without Host answered {reply.status}; expected 400"


@pytest.mark.req("api.http.unsupported-version")
def test_unsupported_version(target: Target) -> None:
    reply = _ask(target, b"GET /_ping HTTP/9.9\r\nHost: docker\r\n\r\n", timeout=5)
    assert reply.status in (505, 400), f"an HTTP/9.9 request answered {reply.status}; expected 505 (or 400)"


@pytest.mark.req("api.http.head-no-body")
@pytest.mark.parametrize("path", ["/version", "/containers/json", "/info"])
def test_head_no_body(api: ApiClient, target: Target, path: str) -> None:
    conn = Conn(target)
    try:
        conn.send(build_request("HEAD", f"{_prefix(api)}{path}", headers={"Connection": "close"}))
        reply = conn.reply(head_request=True)
        conn.closed_by_peer()
        extra = conn.buf
    finally:
        conn.close()
    assert reply.status in (200, 404, 405), f"HEAD {path} answered {reply.status}; expected 200, 404 or 405"
    assert extra == b"", f"HEAD {path} ({reply.status}) was answered with body bytes {extra[:100]!r}"


# ---------------------------------------------------------------- bodies


@pytest.mark.req("api.http.chunked-request")
@pytest.mark.parametrize("what", ["container", "volume"])
def test_chunked_request(api: ApiClient, target: Target, containers: Containers, volumes: Volumes, names: Names,
                         what: str) -> None:
    if what == "container":
        path, body = "/containers/create", containers.config(["true"])
    else:
        path, body = "/volumes/create", {"Name": names("chunked"), "Labels": {RUN_LABEL: names.run_id}}
    head = (f"POST {_prefix(api)}{path} HTTP/1.1\r\nHost: docker\r\nContent-Type: application/json\r\n"
            "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n").encode()
    reply = _ask(target, head + _chunked(json.dumps(body).encode()))
    if 200 <= reply.status < 300:
        if what == "container":
            containers.adopt(reply.json()["Id"])
        else:
            volumes.adopt(reply.json()["Name"])
    assert reply.status == 201, f"POST {path} with a chunked body answered {reply.status} {reply.body[:200]!r}"


@pytest.mark.req("api.http.short-body")
def test_short_body(api: ApiClient, target: Target) -> None:
    conn = Conn(target)
    try:
        head = build_request("POST", f"{_prefix(api)}/volumes/create",
                             headers={"Content-Type": "application/json", "Content-Length": "500"})
        conn.send(head + b'{"Name": "conformance-never-')
        conn.sock.shutdown(socket.SHUT_WR)
        reply = conn.reply(timeout=10)
    except (ConnectionError, TimeoutError) as exc:
        pytest.fail(f"a body cut short by the client's half-close got no answer: {exc}")
    finally:
        conn.close()
    assert reply.status == 400, f"a body shorter than its Content-Length answered {reply.status}; expected 400"
    assert reply.headers.get("content-type", "").startswith("application/json"), (
        f"the 400 has Content-Type {reply.headers.get('content-type')!r}")


@pytest.mark.req("api.http.content-length-framing")
def test_content_length_framing(api: ApiClient, target: Target, volumes: Volumes, names: Names) -> None:
    name = names("framed")
    body = json.dumps({"Name": name, "Labels": {RUN_LABEL: names.run_id}}).encode()
    conn = Conn(target)
    try:
        conn.send(build_request("POST", f"{_prefix(api)}/volumes/create", body) + build_request("GET", "/_ping"))
        first = conn.reply()
        if 200 <= first.status < 300:
            volumes.adopt(name)
        second = conn.reply()
    except (ConnectionError, TimeoutError) as exc:
        pytest.fail(f"a request following a POST body on the same connection got no answer: {exc}")
    finally:
        conn.close()
    assert first.status == 201, f"POST /volumes/create answered {first.status} {first.body[:200]!r}"
    assert (second.status, second.body) == (200, b"OK"), (
        f"GET /_ping after the POST body answered {second.status} {second.body[:100]!r}; expected 200 OK")


@pytest.mark.req("api.http.expect-continue")
def test_expect_continue(api: ApiClient, target: Target, volumes: Volumes, names: Names) -> None:
    name = names("expect")
    body = json.dumps({"Name": name, "Labels": {RUN_LABEL: names.run_id}}).encode()
    head = build_request("POST", f"{_prefix(api)}/volumes/create", body, headers={"Expect": "100-continue"})
    conn = Conn(target)
    try:
        conn.send(head[:-len(body)])
        interim = conn.reply(timeout=5)
        final = None
        if interim.status == 100:
            conn.send(body)
            final = conn.reply()
            if 200 <= final.status < 300:
                volumes.adopt(name)
    except (ConnectionError, TimeoutError) as exc:
        pytest.fail(f"no 100 Continue (nor any answer) to a request with Expect: 100-continue: {exc}")
    finally:
        conn.close()
    assert interim.status == 100, f"Expect: 100-continue was answered {interim.status}; expected 100 Continue"
    assert final is not None and final.status == 201, (
        f"after 100 Continue and the body, POST /volumes/create answered {final and final.status}; expected 201")


# ---------------------------------------------------------------- methods and paths


@pytest.mark.req("api.http.unknown-method")
@pytest.mark.parametrize("method,path", [("BREW", "/version"), ("PUT", "/version"), ("DELETE", "/_ping"),
                                         ("PATCH", "/containers/json")])
def test_unknown_method(api: ApiClient, method: str, path: str) -> None:
    resp = api.request(method, path)
    assert resp.status_code in (404, 405), f"{method} {path} answered {resp.status_code}; expected 404 or 405"
    assert error_message(resp), f"{method} {path}: the {resp.status_code} body {resp.text[:200]!r} is not {{'message': ...}}"


@pytest.mark.req("api.http.long-path")
def test_long_path(api: ApiClient, target: Target) -> None:
    path = f"{_prefix(api)}/containers/{'a' * 65536}/json"
    try:
        reply = _ask(target, build_request("GET", path, headers={"Connection": "close"}), timeout=15)
    except (ConnectionError, TimeoutError) as exc:
        pytest.fail(f"a 64 KiB path got no answer: {exc}")
    assert 400 <= reply.status < 500, f"a 64 KiB path answered {reply.status}; expected a 4xx"


# ---------------------------------------------------------------- headers


HEADER_CASES = [
    pytest.param("GET", "/version", {}, id="version-200"),
    pytest.param("GET", "/containers/json", {"params": {"limit": 1}}, id="containers-200"),
    pytest.param("GET", "/events", {"params": {"since": "1", "until": "2"}}, id="events-200"),
    pytest.param("GET", "/containers/conformance-no-such-container/json", {}, id="missing-404"),
    pytest.param("POST", "/volumes/create", {"data": "{not json", "headers": {"Content-Type": "application/json"}},
                 id="bad-json-400"),
]


@pytest.mark.req("api.http.api-version-header")
@pytest.mark.parametrize("method,path,kw", HEADER_CASES)
def test_api_version_header(api: ApiClient, method: str, path: str, kw: dict[str, Any]) -> None:
    expected = api.get("/version").json()["ApiVersion"]
    resp = api.request(method, path, **kw)
    assert resp.headers.get("Api-Version") == expected, (
        f"{method} {path} ({resp.status_code}) has Api-Version {resp.headers.get('Api-Version')!r}; expected {expected!r}")


@pytest.mark.req("api.http.server-header")
@pytest.mark.parametrize("method,path,kw", HEADER_CASES)
def test_server_header(api: ApiClient, method: str, path: str, kw: dict[str, Any]) -> None:
    resp = api.request(method, path, **kw)
    assert resp.headers.get("Server", "").strip(), f"{method} {path} ({resp.status_code}) has no Server header"


# ---------------------------------------------------------------- concurrency


@pytest.mark.req("api.http.concurrent-requests")
def test_concurrent_requests(api: ApiClient, target: Target) -> None:
    version_path = f"{_prefix(api)}/version"

    def one(i: int) -> tuple[int, bytes]:
        path = "/_ping" if i % 2 else version_path
        reply = _ask(target, build_request("GET", path, headers={"Connection": "close"}), timeout=20)
        return reply.status, reply.body

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(one, range(16)))
    for i, (status, body) in enumerate(results):
        assert status == 200, f"concurrent request {i} answered {status} {body[:100]!r}"
        if i % 2:
            assert body == b"OK", f"concurrent GET /_ping {i} answered {body[:100]!r}"
        else:
            assert "ApiVersion" in json.loads(body), f"concurrent GET /version {i} answered {body[:100]!r}"


@pytest.mark.req("api.http.blocking-request-isolated")
def test_blocking_request_isolated(api: ApiClient, target: Target, containers: Containers, names: Names) -> None:
    cid = containers.run_long()
    quiet = urllib.parse.quote(json.dumps({"label": [f"{RUN_LABEL}={names('never')}"]}))
    events = hijack(target, "GET", f"{_prefix(api)}/events?filters={quiet}", upgrade=False, timeout=10)
    waiter = Conn(target)
    try:
        waiter.send(build_request("POST", f"{_prefix(api)}/containers/{cid}/wait", b""))
        started = time.monotonic()
        resp = api.get("/_ping", timeout=10)
        took = time.monotonic() - started
    finally:
        events.close()
        waiter.close()
    assert events.response.status == 200, f"the event stream answered {events.response.status}"
    assert resp.status_code == 200, f"GET /_ping beside an open event stream and wait answered {resp.status_code}"
    assert took < 5, f"GET /_ping took {took:.1f} s while an event stream and a wait were open"
