"""HTTP/1.1 for the Engine API on asyncio streams: the connection loop (keep-alive, pipelining, request
bodies with 100-continue, chunked streams, hijack) over the hand-written wire format in wire.py.

Why not aiohttp (or h11): the Engine API hijacks connections (attach/exec: `Upgrade: tcp` → 101, or a
200 `application/vnd.docker.raw-stream` after which the socket carries raw bytes both ways), so the
server must own the socket and its buffer; the bytes already read past the request head are handed to
the hijacker. h11 did this until the bench showed it costing over half of each small request's CPU.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, BinaryIO
from urllib.parse import parse_qs, unquote, urlsplit

from . import wire

log = logging.getLogger("refengine.http")

MAX_HEAD = wire.MAX_HEAD
READ_SIZE = 64 * 1024
COALESCE = 64 * 1024  # the most a byte stream buffers before it writes
RAW_STREAM = "application/vnd.docker.raw-stream"
MULTIPLEXED_STREAM = "application/vnd.docker.multiplexed-stream"


class ApiError(Exception):
    """An error the client is told about: an HTTP status and a `{"message": ...}` body."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def bad_request(message: str) -> ApiError:
    return ApiError(400, message)


@dataclass
class Request:
    method: str
    target: str  # as sent: path and query
    headers: dict[str, str]  # lower-case names
    path: str = ""  # the path without a /v1.xx prefix (set by the router)
    api_version: str | None = None  # from the prefix, if any
    params: dict[str, str] = field(default_factory=dict)  # route parameters
    http_version: str = "1.1"
    _conn: Connection | None = None
    _body: bytes | None = None
    _query: dict[str, list[str]] | None = None

    @property
    def raw_path(self) -> str:
        path, _, _ = self.target.partition("?")
        if "://" in path:  # absolute-form target (a proxy's request line): the path part of the URL
            path = urlsplit(path).path
        return unquote(path.partition("#")[0])

    @property
    def query(self) -> dict[str, list[str]]:
        """The query parameters (parsed once: handlers ask for several)."""
        if self._query is None:
            _, _, query = self.target.partition("?")
            self._query = parse_qs(query.partition("#")[0], keep_blank_values=True) if query else {}
        return self._query

    def q(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else default

    def qbool(self, name: str, default: bool = False) -> bool:
        """Docker's boolean query values: 1/true/True/yes are true, 0/false/'' false."""
        value = self.q(name)
        if value is None:
            return default
        low = value.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off", ""):
            return False
        raise bad_request(f"invalid boolean value for {name}: {value!r}")

    def qint(self, name: str, default: int | None = None) -> int | None:
        value = self.q(name)
        if value is None or value == "":
            return default
        try:
            return int(value)
        except ValueError:
            raise bad_request(f"invalid value for {name}: {value!r} is not an integer") from None

    def qjson(self, name: str) -> Any:
        value = self.q(name)
        if value is None or value == "":
            return None
        try:
            return json.loads(value)
        except ValueError as exc:
            raise bad_request(f"invalid JSON in {name}: {exc}") from None

    @property
    def wants_upgrade(self) -> bool:
        return "upgrade" in self.headers.get("connection", "").lower() and bool(self.headers.get("upgrade"))

    async def body(self, limit: int = 64 * 1024 * 1024) -> bytes:
        """The whole request body (read once, then cached)."""
        if self._body is None:
            self._body = b"".join([chunk async for chunk in self.chunks(limit)])
        return self._body

    async def chunks(self, limit: int | None = None) -> AsyncIterator[bytes]:
        """The request body as it arrives (for large uploads such as image tarballs); beyond `limit`
        bytes, a 413."""
        if self._body is not None:
            yield self._body
            return
        assert self._conn is not None
        size = 0
        async for chunk in self._conn.body_chunks():
            size += len(chunk)
            if limit is not None and size > limit:
                raise ApiError(413, f"request body larger than {limit} bytes")
            yield chunk

    async def json(self, required: bool = False) -> Any:
        """The body as JSON; an empty body is None unless required. Bad JSON is a 400."""
        data = await self.body()
        if not data.strip():
            if required:
                raise bad_request("request body is empty; a JSON object is required")
            return None
        ctype = self.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != "application/json":  # a body needs the JSON content type (dockerd's CheckForJSON)
            raise bad_request(f"Content-Type specified ({ctype}) must be 'application/json'")
        try:
            return json.loads(data)
        except ValueError as exc:
            raise bad_request(f"invalid JSON in the request body: {exc}") from None


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)
    content_type: str | None = None


def json_response(data: Any, status: int = 200) -> Response:
    return Response(status, (json.dumps(data) + "\n").encode(), content_type="application/json")


def error_response(status: int, message: str) -> Response:
    return json_response({"message": message}, status)


def empty(status: int = 204) -> Response:
    return Response(status)


@dataclass
class StreamResponse:
    """A chunked response whose body comes from an async iterator (logs, events, progress, stats).

    The iterator is cancelled when the client goes away.
    """

    chunks: AsyncIterator[bytes]
    status: int = 200
    content_type: str = "application/json"
    headers: list[tuple[str, str]] = field(default_factory=list)


async def file_body(fh: BinaryIO, piece: int = 1 << 20) -> AsyncIterator[bytes]:
    """A spooled file (an export, a saved image, an archive) as a response body, read in pieces and
    closed at its end or when the client goes away."""
    with fh:
        while data := fh.read(piece):
            yield data


RawHandler = Callable[["RawStream"], Awaitable[None]]


@dataclass
class HijackResponse:
    """Take the connection over: `101 UPGRADED` if the client asked for `Upgrade: tcp`, else
    `200 OK` with a raw-stream content type; then `run` gets the raw byte stream both ways."""

    run: RawHandler
    content_type: str = RAW_STREAM


class RawStream:
    """The socket after a hijack: bytes the parser had already buffered come first."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, pending: bytes) -> None:
        self.reader, self.writer, self._pending = reader, writer, pending

    async def read(self, n: int = READ_SIZE) -> bytes:
        if self._pending:
            data, self._pending = self._pending[:n], self._pending[n:]
            return data
        return await self.reader.read(n)

    async def write(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    def close_write(self) -> None:
        try:
            if self.writer.can_write_eof():
                self.writer.write_eof()
        except OSError:
            pass


AnyResponse = Response | StreamResponse | HijackResponse
Dispatcher = Callable[[Request], Awaitable[AnyResponse]]


class Connection:
    """One client connection: a loop of request → dispatch → response until close or hijack."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, dispatch: Dispatcher,
                 default_headers: Callable[[], list[tuple[str, str]]]) -> None:
        self.reader, self.writer, self.dispatch = reader, writer, dispatch
        self.default_headers = default_headers
        self._defaults = wire.encode_headers(default_headers())  # constant for a connection: encode once
        self.buf = bytearray()  # received, not yet consumed (pipelined requests, body bytes)
        self.eof = False
        self.keep_alive = False  # of the current request
        self._remaining: int | None = None  # body bytes still to read (Content-Length framing)
        self._chunked = False  # the current body is chunked and not finished
        self._chunk_left = 0  # data bytes left in the current chunk (state survives an abandoned iterator)
        self._continue = False  # the client waits for 100 Continue before it sends the body

    # -- reading ---------------------------------------------------------------------------------------

    async def _fill(self) -> bool:
        """Read more into the buffer; False at end of stream."""
        if self.eof:
            return False
        data = await self.reader.read(READ_SIZE)
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    async def _read_head(self) -> wire.Head | None:
        """The next request's head; None when the client closed cleanly between requests."""
        if not self.buf and not await self._fill():  # usually the buffer is empty between requests
            return None
        while True:
            wire.skip_blank_lines(self.buf)
            found = wire.head_end(self.buf)
            if found is not None:
                end, body_at = found
                if end > MAX_HEAD:
                    break
                head = wire.parse_head(bytes(self.buf[:end]))
                del self.buf[:body_at]
                return head
            if len(self.buf) > MAX_HEAD:
                break
            if not await self._fill():
                if self.buf:
                    raise wire.ProtocolError(400, "the connection closed in the middle of a request head")
                return None
        raise wire.ProtocolError(431, f"request head larger than {MAX_HEAD} bytes")

    async def _line(self) -> bytes:
        while (eol := self.buf.find(b"\n")) < 0:
            if len(self.buf) > wire.MAX_CHUNK_LINE:
                raise ApiError(400, "chunk size or trailer line too long")
            if not await self._fill():
                raise ApiError(400, "incomplete request body: the connection closed inside a chunked body")
        line = bytes(self.buf[:eol + 1])
        del self.buf[:eol + 1]
        return line.rstrip(b"\n")

    async def _take(self, limit: int) -> bytes:
        """Up to `limit` body bytes (at least one)."""
        if not self.buf and not await self._fill():
            self.keep_alive = False
            raise ApiError(400, "incomplete request body: the client closed the connection before its end")
        data = bytes(self.buf[:limit])
        del self.buf[:limit]
        return data

    async def body_chunks(self) -> AsyncIterator[bytes]:
        """The current request's body as it arrives (Content-Length or chunked)."""
        if self._continue:
            self._continue = False
            self.writer.write(wire.CONTINUE)
            await self.writer.drain()
        try:
            while self._remaining:
                data = await self._take(min(self._remaining, READ_SIZE))
                self._remaining -= len(data)
                yield data
            while self._chunked:
                if not self._chunk_left:
                    size = wire.chunk_size(await self._line())
                    if size == 0:
                        while await self._line() not in (b"", b"\r"):  # trailers: read and ignored
                            pass
                        self._chunked = False
                        break
                    self._chunk_left = size
                data = await self._take(min(self._chunk_left, READ_SIZE))
                self._chunk_left -= len(data)
                if not self._chunk_left and await self._line() not in (b"", b"\r"):
                    raise ApiError(400, "malformed chunked body: no CRLF after a chunk's data")
                yield data
        except (ApiError, wire.ProtocolError) as exc:
            self.keep_alive = False  # the framing is lost: nothing after this can be parsed
            self._remaining, self._chunked, self._chunk_left = 0, False, 0
            if isinstance(exc, wire.ProtocolError):
                raise ApiError(exc.status, exc.message) from None
            raise

    async def _drain_body(self) -> None:
        if self._remaining or self._chunked:
            async for _ in self.body_chunks():
                pass

    # -- the request loop ------------------------------------------------------------------------------

    async def serve(self) -> None:
        try:
            while True:
                try:
                    head = await self._read_head()
                except wire.ProtocolError as exc:
                    await self._send_plain_error(exc.status, exc.message)
                    return
                if head is None:
                    return
                self.keep_alive = head.keep_alive
                self._remaining, self._chunked, self._chunk_left = head.length, head.chunked, 0
                self._continue = head.expect_continue and head.has_body
                request = Request(head.method, head.target, head.headers, _conn=self)
                request.http_version = head.version
                response = await self.dispatch(request)
                if isinstance(response, HijackResponse):
                    await self._hijack(request, response)
                    return
                try:
                    await self._drain_body()
                except ApiError as exc:  # the unread rest of the body was broken: that is the answer
                    response = error_response(exc.status, exc.message)
                if isinstance(response, StreamResponse):
                    await self._send_stream(request, response)
                else:
                    await self._send(request, response)
                if not self.keep_alive:
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            self.writer.close()

    # -- writing ---------------------------------------------------------------------------------------

    def _head(self, status: int, headers: list[tuple[str, str]], content_type: str | None,
              reason: str | None = None) -> bytes:
        out = wire.status_line(status, reason) + self._defaults
        if content_type:
            out += b"Content-Type: " + content_type.encode("latin-1") + b"\r\n"
        if headers:
            out += wire.encode_headers(headers)
        if not self.keep_alive:
            out += b"Connection: close\r\n"
        return out

    async def _send(self, request: Request, response: Response) -> None:
        try:
            head = self._head(response.status, response.headers, response.content_type)
        except ValueError as exc:  # a handler produced a header that cannot be sent: a bug, not the client's
            log.error("response to %s %s: %s", request.method, request.target, exc)
            response = error_response(500, "internal error: the response had an invalid header")
            head = self._head(response.status, [], response.content_type)
        bodyless = response.status in (204, 304) or response.status < 200
        if not bodyless and not (response.headers and _has_length(response.headers)):
            head += b"Content-Length: %d\r\n" % len(response.body)
        head += b"\r\n"
        if request.method != "HEAD" and not bodyless:
            head += response.body
        self.writer.write(head)
        if self.writer.transport.get_write_buffer_size():  # wait only when the socket is backed up
            await self.writer.drain()

    async def _send_stream(self, request: Request, response: StreamResponse) -> None:
        framed = _has_length(response.headers)  # the handler frames the body itself
        chunked = not framed and request.http_version == "1.1"
        if not framed and not chunked:
            self.keep_alive = False  # HTTP/1.0: the body ends when the connection closes
        head = self._head(response.status, response.headers, response.content_type)
        if chunked:
            head += b"Transfer-Encoding: chunked\r\n"
        self.writer.write(head + b"\r\n")
        await self.writer.drain()
        if request.method == "HEAD":
            await _aclose(response.chunks)
            return
        # One task pumps the body while another watches for the client leaving: whichever ends first
        # ends the other (a task per chunk, as this once did, cost more than the logs it carried).
        pump = asyncio.ensure_future(self._pump(response, chunked))
        gone = asyncio.ensure_future(self._watch_close())
        try:
            await asyncio.wait({pump, gone}, return_when=asyncio.FIRST_COMPLETED)
            if not pump.done():
                self.keep_alive = False  # the client left in the middle of the body
            else:
                pump.result()  # a failing iterator fails the connection, as before
        finally:
            for task in (pump, gone):
                task.cancel()
                try:  # the watcher must have stopped reading before the next request is parsed
                    await task
                except (asyncio.CancelledError, ConnectionError):
                    pass
            await _aclose(response.chunks)

    async def _pump(self, response: StreamResponse, chunked: bool) -> None:
        """Write the body. Byte streams (logs, attach output, tar) are coalesced: what the iterator yields
        without waiting goes out in one write of up to COALESCE bytes, not a write per 1 KiB log frame.
        JSON streams (events, progress, stats) keep one chunk per item: some clients parse per chunk."""
        coalesce = response.content_type != "application/json"
        pending: list[bytes] = []
        size = 0
        flush_handle: asyncio.Handle | None = None

        def flush() -> None:
            nonlocal size, flush_handle
            flush_handle = None
            if pending:
                data = b"".join(pending)
                pending.clear()
                size = 0
                self.writer.write(wire.chunk(data) if chunked else data)

        try:
            async for data in response.chunks:
                if not data:
                    continue
                if not coalesce:
                    self.writer.write(wire.chunk(data) if chunked else data)
                    await self.writer.drain()
                    continue
                pending.append(data)
                size += len(data)
                if size >= COALESCE:
                    flush()
                    await self.writer.drain()
                elif flush_handle is None:  # runs as soon as the iterator waits for more
                    flush_handle = asyncio.get_running_loop().call_soon(flush)
            flush()
        finally:
            if flush_handle is not None:
                flush_handle.cancel()
        if chunked:
            self.writer.write(wire.LAST_CHUNK)
        await self.writer.drain()

    async def _watch_close(self) -> None:
        """Returns when the client closes its side (it sends nothing while it reads a stream)."""
        while await self._fill():  # pipelined bytes stay in the buffer for the next cycle
            pass

    async def _hijack(self, request: Request, response: HijackResponse) -> None:
        await self._drain_body()
        if request.wants_upgrade:
            head = self._head(101, [("Connection", "Upgrade"), ("Upgrade", "tcp")], response.content_type,
                              reason="UPGRADED")
        else:
            # Without Upgrade the API still hands over the socket: a 200 head with no framing,
            # then raw bytes until either side closes.
            head = self._head(200, [], response.content_type)
        self.writer.write(head + b"\r\n")
        await self.writer.drain()
        pending, self.buf = bytes(self.buf), bytearray()
        await response.run(RawStream(self.reader, self.writer, pending))
        try:
            await self.writer.drain()
        except ConnectionError:
            pass

    async def _send_plain_error(self, status: int, message: str) -> None:
        body = (json.dumps({"message": message}) + "\n").encode()
        self.keep_alive = False
        try:
            head = self._head(status, [("Content-Length", str(len(body)))], "application/json")
            self.writer.write(head + b"\r\n" + body)
            await self.writer.drain()
        except ConnectionError:
            pass


def _has_length(headers: list[tuple[str, str]]) -> bool:
    return any(k.lower() == "content-length" for k, _ in headers)


async def _aclose(chunks: AsyncIterator[bytes]) -> None:
    aclose = getattr(chunks, "aclose", None)
    if aclose:
        await aclose()
