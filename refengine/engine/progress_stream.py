"""Run a blocking generator of progress messages (a pull, a push) in a worker thread and read it
from the event loop as JSON lines, with dockerd's rule for errors:

- a failure before the first message is raised to the caller (the handler answers 4xx/5xx);
- a failure after it becomes the stream's last line, `{"errorDetail": {"message": ...}, "error": ...}`.

If the client goes away, the generator is closed at its next message (its `finally` blocks run).
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

log = logging.getLogger(__name__)

_ITEM, _END, _ERROR = "item", "end", "error"


class ThreadedStream:
    def __init__(self, make: Callable[[], Iterator[dict[str, Any]]]) -> None:
        self._make = make
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self._stop = threading.Event()
        self._task = asyncio.ensure_future(asyncio.to_thread(self._run))

    def _put(self, kind: str, value: Any) -> None:
        self._loop.call_soon_threadsafe(self._queue.put_nowait, (kind, value))

    def _run(self) -> None:
        try:
            gen = self._make()
            try:
                for item in gen:
                    if self._stop.is_set():
                        break
                    self._put(_ITEM, item)
            finally:
                gen.close()  # type: ignore[attr-defined]
        except BaseException as exc:  # handed to the reader, which decides how to report it
            self._put(_ERROR, exc)
        else:
            self._put(_END, None)

    async def next(self) -> dict[str, Any] | None:
        """The next message; None at the end; raises the generator's error."""
        kind, value = await self._queue.get()
        if kind == _ERROR:
            raise value
        return value if kind == _ITEM else None

    def stop(self) -> None:
        self._stop.set()


def error_line(exc: BaseException) -> dict[str, Any]:
    message = str(exc) or type(exc).__name__
    return {"errorDetail": {"message": message}, "error": message}


def encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode() + b"\r\n"


async def start(make: Callable[[], Iterator[dict[str, Any]]]) -> AsyncIterator[bytes]:
    """Start `make()` in a thread and wait for its first message (its errors propagate from here);
    then the rest as encoded lines."""
    stream = ThreadedStream(make)
    try:
        first = await stream.next()
    except BaseException:
        stream.stop()
        raise
    return _lines(stream, first)


async def _lines(stream: ThreadedStream, first: dict[str, Any] | None) -> AsyncIterator[bytes]:
    try:
        item = first
        while item is not None:
            yield encode(item)
            try:
                item = await stream.next()
            except Exception as exc:
                if not hasattr(exc, "http_status"):
                    log.warning("stream failed: %r", exc)
                yield encode(error_line(exc))
                return
    finally:
        stream.stop()
