"""The daemon's HTTP layer on a real unix socket: keep-alive, streaming, hijack, version prefixes, errors."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import stat
from collections.abc import AsyncIterator, Iterator

import pytest

from refengine.daemon.http import HijackResponse, RawStream, Request, Response, StreamResponse, json_response
from refengine.daemon.router import Router
from refengine.daemon.server import ListenConfig, Server, ServerConfigError


def _router() -> Router:
    router = Router()

    async def echo_json(request: Request) -> Response:
        return json_response({"got": await request.json(), "path": request.path, "version": request.api_version})

    async def image(request: Request) -> Response:
        return json_response({"name": request.params["name"]})

    async def stream(request: Request) -> StreamResponse:
        async def gen() -> AsyncIterator[bytes]:
            for i in range(3):
                yield json.dumps({"n": i}).encode() + b"\n"
        return StreamResponse(gen())

    async def hijack(request: Request) -> HijackResponse:
        async def run(raw: RawStream) -> None:
            data = await raw.read()
            await raw.write(b"echo:" + data)
        return HijackResponse(run)

    async def boom(request: Request) -> Response:
        raise RuntimeError("a bug")

    async def small_body(request: Request) -> Response:
        return json_response({"size": len(await request.body(limit=10))})

    async def small_stream(request: Request) -> Response:
        return json_response({"size": sum([len(c) async for c in request.chunks(limit=10)])})

    router.add("POST", "/echo", echo_json)
    router.add("GET", "/images/{name:.*}/json", image)
    router.add("GET", "/stream", stream)
    router.add("POST", "/hijack", hijack)
    router.add("GET", "/boom", boom)
    router.add("POST", "/small-body", small_body)
    router.add("POST", "/small-stream", small_stream)
    return router


@pytest.fixture
def daemon(tmp_path) -> Iterator[str]:
    """A server on its own event loop thread; yields the socket path."""
    import threading
    path = str(tmp_path / "d.sock")
    loop = asyncio.new_event_loop()
    server = Server(_router(), ListenConfig(unix_socket=path))
    ready = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(server.start())
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(10)
    yield path
    asyncio.run_coroutine_threadsafe(server.stop(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()


def _talk(path: str, raw: bytes, until: bytes | None = None, timeout: float = 5) -> bytes:
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(timeout)
    s.connect(path)
    s.sendall(raw)
    data = b""
    try:
        while until is None or until not in data:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    except TimeoutError:
        pass
    s.close()
    return data


def test_socket_mode_is_0660(daemon: str) -> None:
    assert stat.S_IMODE(os.stat(daemon).st_mode) == 0o660


def test_keep_alive_two_requests_one_connection(daemon: str) -> None:
    body = b'{"a": 1}'
    req = (b"POST /v1.41/echo HTTP/1.1\r\nHost: d\r\nContent-Type: application/json\r\nContent-Length: "
           + str(len(body)).encode() + b"\r\n\r\n" + body)
    out = _talk(daemon, req + req, until=b'"version": "1.41"}\n' * 1 + b"HTTP/1.1", timeout=2)
    assert out.count(b"HTTP/1.1 200 OK") == 2, out
    assert b'"path": "/echo"' in out and b"Api-Version: 1.41" in out


def test_version_prefix_rules(daemon: str) -> None:
    old = _talk(daemon, b"GET /v1.12/images/x/json HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n")
    assert old.startswith(b"HTTP/1.1 400") and b"too old" in old
    new = _talk(daemon, b"GET /v1.99/images/x/json HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n")
    assert new.startswith(b"HTTP/1.1 400") and b"too new" in new


def test_rest_of_path_names(daemon: str) -> None:
    out = _talk(daemon, b"GET /images/localhost:5000/a/b:t/json HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n")
    assert b'{"name": "localhost:5000/a/b:t"}' in out


def test_unknown_path_and_bug_are_json(daemon: str) -> None:
    out = _talk(daemon, b"GET /nope HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 404") and b'{"message": "page not found"}' in out
    out = _talk(daemon, b"GET /boom HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 500") and b"a bug" in out and b"Traceback" not in out


def test_bad_json_is_400(daemon: str) -> None:
    out = _talk(daemon, b"POST /echo HTTP/1.1\r\nHost: d\r\nContent-Type: application/json\r\nContent-Length: 3"
                        b"\r\nConnection: close\r\n\r\n{x}")
    assert out.startswith(b"HTTP/1.1 400") and b"invalid JSON" in out


@pytest.mark.parametrize("path", ["/small-body", "/small-stream"])
def test_body_over_the_limit_is_413(daemon: str, path: str) -> None:
    def post(body: bytes) -> bytes:
        return _talk(daemon, f"POST {path} HTTP/1.1\r\nHost: d\r\nContent-Length: {len(body)}\r\n"
                             "Connection: close\r\n\r\n".encode() + body)
    assert post(b"x" * 10).startswith(b"HTTP/1.1 200")
    out = post(b"x" * 20)
    assert out.startswith(b"HTTP/1.1 413") and b"request body larger than 10 bytes" in out, out[:300]


def test_stream_is_chunked(daemon: str) -> None:
    out = _talk(daemon, b"GET /stream HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n")
    head, _, body = out.partition(b"\r\n\r\n")
    assert b"Transfer-Encoding: chunked" in head
    assert b'{"n": 2}' in body and body.endswith(b"0\r\n\r\n")


@pytest.mark.parametrize("upgrade", [True, False])
def test_hijack(daemon: str, upgrade: bool) -> None:
    extra = b"Connection: Upgrade\r\nUpgrade: tcp\r\n" if upgrade else b""
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(5)
    s.connect(daemon)
    s.sendall(b"POST /hijack HTTP/1.1\r\nHost: d\r\nContent-Length: 0\r\n" + extra + b"\r\n")
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(1)
    assert head.startswith(b"HTTP/1.1 101 UPGRADED" if upgrade else b"HTTP/1.1 200 OK"), head
    assert b"application/vnd.docker.raw-stream" in head
    s.sendall(b"hello")
    got = b""
    while len(got) < len(b"echo:hello"):
        chunk = s.recv(100)
        if not chunk:
            break
        got += chunk
    s.close()
    assert got == b"echo:hello"


def test_tcp_without_tls_is_refused() -> None:
    with pytest.raises(ServerConfigError, match="without TLS"):
        ListenConfig(unix_socket=None, tcp="127.0.0.1:23750").check()
    ListenConfig(unix_socket=None, tcp="127.0.0.1:23750", insecure_tcp=True).check()
