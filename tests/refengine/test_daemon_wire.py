"""The hand-written HTTP/1.1 wire format (refengine/daemon/wire.py): what it accepts and what it refuses."""

from __future__ import annotations

import pytest

from refengine.daemon import wire


def test_parses_a_request_head() -> None:
    head = wire.parse_head(b"GET /v1.41/containers/json?all=1 HTTP/1.1\r\nHost: docker\r\n"
                           b"User-Agent:  x y \r\nX-Two: 1\r\nx-two: 2\r\n")
    assert (head.method, head.target, head.version) == ("GET", "/v1.41/containers/json?all=1", "1.1")
    assert head.headers == {"host": "docker", "user-agent": "x y", "x-two": "2"}
    assert head.keep_alive and not head.has_body and head.length is None and not head.chunked


def test_bare_lf_line_ends_and_http10() -> None:
    head = wire.parse_head(b"POST /x HTTP/1.0\nContent-Length: 5\n")
    assert head.version == "1.0" and head.length == 5 and head.has_body
    assert not head.keep_alive  # HTTP/1.0 closes after the response


@pytest.mark.parametrize("value,keep", [("close", False), ("keep-alive, Close", False), ("keep-alive", True)])
def test_connection_close(value: str, keep: bool) -> None:
    head = wire.parse_head(f"GET / HTTP/1.1\r\nHost: d\r\nConnection: {value}".encode())
    assert head.keep_alive is keep


def test_chunked_and_expect_continue() -> None:
    head = wire.parse_head(b"POST /x HTTP/1.1\r\nHost: d\r\nTransfer-Encoding: chunked\r\nExpect: 100-Continue")
    assert head.chunked and head.has_body and head.expect_continue


@pytest.mark.parametrize("raw,status", [
    (b"GARBAGE", 400),
    (b"GET /_ping", 400),
    (b"GET /_ping HTTP/1.1 extra\r\nHost: d", 400),
    (b"GET /_ping HTTP/9.9\r\nHost: d", 505),
    (b"GET /_ping HTTP/1.1", 400),  # no Host
    (b"GET /_ping HTTP/1.1\r\nHost: a\r\nHost: b", 400),
    (b"GET /_ping HTTP/1.1\r\nHost: d\r\nno colon here", 400),
    (b"GET /_ping HTTP/1.1\r\nHost: d\r\nX: a\r\n folded", 400),
    (b"GET /_ping HTTP/1.1\r\nHost: d\r\nBad Name: a", 400),
    (b"GET /_ping HTTP/1.1\r\nHost: d\r\nX: a\x00b", 400),
    (b"GET /_ping HTTP/1.1\r\nHost: d\r\nX: a\rb", 400),
    (b"POST / HTTP/1.1\r\nHost: d\r\nContent-Length: 3\r\nTransfer-Encoding: chunked", 400),
    (b"POST / HTTP/1.1\r\nHost: d\r\nContent-Length: 3\r\nContent-Length: 4", 400),
    (b"POST / HTTP/1.1\r\nHost: d\r\nContent-Length: -1", 400),
    (b"POST / HTTP/1.1\r\nHost: d\r\nTransfer-Encoding: gzip, chunked", 501),
    (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked", 400),
])
def test_refuses(raw: bytes, status: int) -> None:
    with pytest.raises(wire.ProtocolError) as err:
        wire.parse_head(raw)
    assert err.value.status == status


def test_same_content_length_twice_is_one_length() -> None:
    assert wire.parse_head(b"POST / HTTP/1.1\r\nHost: d\r\nContent-Length: 7, 7\r\nContent-Length: 7").length == 7


@pytest.mark.parametrize("buf,found", [
    (b"GET / HTTP/1.1\r\nHost: d\r\n\r\nrest", (24, 27)),
    (b"GET / HTTP/1.1\nHost: d\n\nrest", (22, 24)),
    (b"GET / HTTP/1.1\r\nHost: d\r\n", None),
])
def test_head_end(buf: bytes, found: tuple[int, int] | None) -> None:
    assert wire.head_end(buf) == found
    if found:
        assert buf[found[1]:] == b"rest"


def test_skip_blank_lines_keeps_a_lone_cr() -> None:
    buf = bytearray(b"\r\n\nGET")
    wire.skip_blank_lines(buf)
    assert buf == b"GET"
    buf = bytearray(b"\rGET")
    wire.skip_blank_lines(buf)
    assert buf == b"\rGET"


def test_chunk_size() -> None:
    assert wire.chunk_size(b"1A\r") == 26
    assert wire.chunk_size(b"0;ext=1") == 0
    for bad in (b"", b"zz", b"-1", b"1 2"):
        with pytest.raises(wire.ProtocolError):
            wire.chunk_size(bad)


def test_response_headers_cannot_be_split() -> None:
    assert wire.encode_headers([("A", "1"), ("B", "x y")]) == b"A: 1\r\nB: x y\r\n"
    for bad in ([("A", "1\r\nSet-Cookie: x")], [("A B", "1")], [("A", "\n")], [("A", "\u20ac")]):
        with pytest.raises(ValueError):
            wire.encode_headers(bad)


def test_status_line_and_chunks() -> None:
    assert wire.status_line(404) == b"HTTP/1.1 404 Not Found\r\n"
    assert wire.status_line(101, "UPGRADED") == b"HTTP/1.1 101 UPGRADED\r\n"
    assert wire.chunk(b"abc") + wire.LAST_CHUNK == b"3\r\nabc\r\n0\r\n\r\n"
