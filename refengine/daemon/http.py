"""HTTP/1.1 for the Engine API on asyncio streams, parsed by h11.

Why h11 and not aiohttp: the Engine API hijacks connections (attach/exec: `Upgrade: tcp` → 101,
or a 200 `application/vnd.docker.raw-stream` after which the socket carries raw bytes both ways).
h11 leaves the socket to us and hands back the bytes it had buffered (`trailing_data`), so a
hijack is exact. Keep-alive and chunked streaming come from h11 as well.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import h11

log = logging.getLogger("refengine.http")

MAX_HEAD = 64 * 1024
READ_SIZE = 64 * 1024
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
    _conn: Connection | None = None
    _body: bytes | None = None

    @property
    def raw_path(self) -> str:
        return unquote(urlsplit(self.target).path)

    @property
    def query(self) -> dict[str, list[str]]:
        return parse_qs(urlsplit(self.target).query, keep_blank_values=True)

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
            parts, size = [], 0
            async for chunk in self.chunks():
                size += len(chunk)
                if size > limit:
                    raise ApiError(413, f"request body larger than {limit} bytes")
                parts.append(chunk)
            self._body = b"".join(parts)
        return self._body

    async def chunks(self) -> AsyncIterator[bytes]:
        """The request body as it arrives (for large uploads such as image tarballs)."""
        if self._body is not None:
            yield self._body
            return
        assert self._conn is not None
        async for chunk in self._conn.body_chunks():
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


def _reason(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b""


class Connection:
    """One client connection: a loop of request → dispatch → response until close or hijack."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, dispatch: Dispatcher,
                 default_headers: Callable[[], list[tuple[str, str]]]) -> None:
        self.reader, self.writer, self.dispatch = reader, writer, dispatch
        self.default_headers = default_headers
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)

    async def _next_event(self) -> Any:
        while True:
            event = self.h11.next_event()
            if event is not h11.NEED_DATA:
                return event
            data = await self.reader.read(READ_SIZE)
            self.h11.receive_data(data)

    async def body_chunks(self) -> AsyncIterator[bytes]:
        while True:
            if self.h11.they_are_waiting_for_100_continue:
                self.writer.write(self.h11.send(h11.InformationalResponse(status_code=100, headers=[],
                                                                         reason=b"Continue")))
                await self.writer.drain()
            try:
                event = await self._next_event()
            except h11.RemoteProtocolError as exc:  # a body cut short: answer if the client still listens
                raise ApiError(400, f"incomplete request body: {exc}") from None
            if isinstance(event, h11.Data):
                yield bytes(event.data)
            elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)) or event is h11.PAUSED:
                return

    async def _drain_body(self) -> None:
        if self.h11.their_state is h11.SEND_BODY:
            async for _ in self.body_chunks():
                pass

    async def serve(self) -> None:
        try:
            while True:
                try:
                    event = await self._next_event()
                except h11.RemoteProtocolError as exc:
                    await self._send_plain_error(exc.error_status_hint, str(exc))
                    return
                if isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                    return
                if not isinstance(event, h11.Request):
                    return
                if event.http_version not in (b"1.0", b"1.1"):
                    await self._send_plain_error(505, f"HTTP version {event.http_version.decode()} is not supported")
                    return
                request = Request(event.method.decode(), event.target.decode("latin-1"),
                                  {k.decode().lower(): v.decode("latin-1") for k, v in event.headers}, _conn=self)
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
                if self.h11.our_state is h11.MUST_CLOSE or self.h11.their_state is h11.MUST_CLOSE:
                    return
                try:
                    self.h11.start_next_cycle()
                except h11.LocalProtocolError:
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            self.writer.close()

    def _head(self, response_headers: list[tuple[str, str]], content_type: str | None) -> list[tuple[str, str]]:
        headers = list(self.default_headers())
        if content_type:
            headers.append(("Content-Type", content_type))
        headers.extend(response_headers)
        return headers

    async def _send(self, request: Request, response: Response) -> None:
        headers = self._head(response.headers, response.content_type)
        if response.status not in (204, 304) and not any(k.lower() == "content-length" for k, _ in headers):
            headers.append(("Content-Length", str(len(response.body))))
        data = self.h11.send(h11.Response(status_code=response.status, headers=headers, reason=_reason(response.status)))
        if request.method != "HEAD" and response.status not in (204, 304) and response.body:
            data += self.h11.send(h11.Data(data=response.body))
        data += self.h11.send(h11.EndOfMessage())
        self.writer.write(data)
        await self.writer.drain()

    async def _send_stream(self, request: Request, response: StreamResponse) -> None:
        headers = self._head(response.headers, response.content_type)
        self.writer.write(self.h11.send(h11.Response(status_code=response.status, headers=headers, reason=_reason(response.status))))
        await self.writer.drain()
        gone = asyncio.ensure_future(self._watch_close())
        try:
            async for chunk in _until(response.chunks, gone):
                if chunk:
                    self.writer.write(self.h11.send(h11.Data(data=chunk)))
                    await self.writer.drain()
            self.writer.write(self.h11.send(h11.EndOfMessage()))
            await self.writer.drain()
        finally:
            gone.cancel()
            try:  # the watcher must have stopped reading before the next request is parsed
                await gone
            except (asyncio.CancelledError, ConnectionError):
                pass
            aclose = getattr(response.chunks, "aclose", None)
            if aclose:
                await aclose()

    async def _watch_close(self) -> None:
        """Returns when the client closes its side (it sends nothing while it reads a stream)."""
        while True:
            data = await self.reader.read(READ_SIZE)
            if not data:
                return
            self.h11.receive_data(data)  # pipelined bytes: keep them for the next cycle

    async def _hijack(self, request: Request, response: HijackResponse) -> None:
        if request.wants_upgrade:
            await self._drain_body()
            headers = self._head([("Connection", "Upgrade"), ("Upgrade", "tcp")], response.content_type)
            self.writer.write(self.h11.send(h11.InformationalResponse(status_code=101, headers=headers,
                                                                     reason=b"UPGRADED")))
        else:
            # Without Upgrade the API still hands over the socket: a 200 head written by hand
            # (h11 would frame the body), then raw bytes until either side closes.
            await self._drain_body()
            head = "HTTP/1.1 200 OK\r\n" + "".join(f"{k}: {v}\r\n" for k, v in self._head([], response.content_type))
            self.writer.write(head.encode("latin-1") + b"\r\n")
        await self.writer.drain()
        pending, _closed = self.h11.trailing_data
        await response.run(RawStream(self.reader, self.writer, bytes(pending)))
        try:
            await self.writer.drain()
        except ConnectionError:
            pass

    async def _send_plain_error(self, status: int, message: str) -> None:
        body = (json.dumps({"message": message}) + "\n").encode()
        try:
            head = self._head([("Content-Length", str(len(body))), ("Connection", "close")], "application/json")
            data = self.h11.send(h11.Response(status_code=status, headers=head, reason=_reason(status))) + self.h11.send(h11.Data(data=body))
            data += self.h11.send(h11.EndOfMessage())
            self.writer.write(data)
            await self.writer.drain()
        except (h11.LocalProtocolError, ConnectionError):
            pass


async def _until(chunks: AsyncIterator[bytes], gone: asyncio.Future[None]) -> AsyncIterator[bytes]:
    """Items of `chunks` until it ends or `gone` completes (the client left)."""
    it = chunks.__aiter__()
    while True:
        nxt = asyncio.ensure_future(it.__anext__())
        done, _ = await asyncio.wait({nxt, gone}, return_when=asyncio.FIRST_COMPLETED)
        if nxt not in done:
            nxt.cancel()
            return
        try:
            yield nxt.result()
        except StopAsyncIteration:
            return
