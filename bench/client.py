"""A small keep-alive HTTP/1.1 client for one daemon (unix socket or loopback TCP), one connection per object.

http.client does the framing (Content-Length, chunked, close-delimited); the socket comes from the
harness's Target.connect(), so unix://, tcp:// and TLS behave as in the conformance suite. Not
thread-safe: give each thread its own Api (see `parallel`).
"""

from __future__ import annotations

import http.client
import json
import threading
import urllib.parse
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from conformance.target import Target

DEFAULT_TIMEOUT = 120.0
T = TypeVar("T")
R = TypeVar("R")


class ApiError(RuntimeError):
    """The daemon answered a status the measurement cannot go on with."""

    def __init__(self, what: str, status: int, body: bytes) -> None:
        super().__init__(f"{what}: the daemon answered {status} {body[:300]!r}")
        self.status = status


class _Connection(http.client.HTTPConnection):
    def __init__(self, target: Target, timeout: float) -> None:
        super().__init__("docker", timeout=timeout)
        self._target = target

    def connect(self) -> None:
        self.sock = self._target.connect(self.timeout if isinstance(self.timeout, (int, float)) else 30.0)


@dataclass
class Reply:
    status: int
    body: bytes
    headers: dict[str, str]

    def json(self) -> Any:
        return json.loads(self.body)

    def expect(self, what: str, *status: int) -> Reply:
        if self.status not in status:
            raise ApiError(what, self.status, self.body)
        return self


def query(path: str, params: dict[str, Any] | None) -> str:
    if not params:
        return path
    enc = {k: (json.dumps(v) if isinstance(v, dict) else v) for k, v in params.items()}
    return path + "?" + urllib.parse.urlencode(enc)


class Api:
    """Engine API calls over one keep-alive connection (reconnecting when the daemon closed it)."""

    def __init__(self, target: Target, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.target = target
        self.timeout = timeout
        self._conn: _Connection | None = None

    def _connection(self) -> _Connection:
        if self._conn is None:
            self._conn = _Connection(self.target, self.timeout)
        return self._conn

    def request(self, method: str, path: str, body: Any = None, *, params: dict[str, Any] | None = None,
                data: bytes | None = None, headers: dict[str, str] | None = None) -> Reply:
        """One request; the whole body is read. A reused connection the daemon closed is retried once."""
        url = query(path, params)
        hdrs = dict(headers or {})
        payload = data
        if body is not None:
            payload = json.dumps(body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        for attempt in (1, 2):
            conn = self._connection()
            reused = conn.sock is not None
            try:
                conn.request(method, url, body=payload, headers=hdrs)
                resp = conn.getresponse()
                data_out = resp.read()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self.close()
                if attempt == 2 or not reused:
                    raise
                continue
            except BaseException:
                self.close()
                raise
            if resp.will_close:
                self.close()
            return Reply(resp.status, data_out, {k.lower(): v for k, v in resp.getheaders()})
        raise AssertionError("unreachable")

    def stream(self, method: str, path: str, *, params: dict[str, Any] | None = None) -> http.client.HTTPResponse:
        """Send a request and return the response unread, on a connection of its own (closed with it)."""
        conn = _Connection(self.target, self.timeout)
        conn.request(method, query(path, params))
        return conn.getresponse()

    def get(self, path: str, **kw: Any) -> Reply:
        return self.request("GET", path, **kw)

    def post(self, path: str, body: Any = None, **kw: Any) -> Reply:
        return self.request("POST", path, body, **kw)

    def delete(self, path: str, **kw: Any) -> Reply:
        return self.request("DELETE", path, **kw)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def parallel(target: Target, fn: Callable[[Api, T], R], items: Iterable[T], workers: int) -> list[R]:
    """fn(api, item) for every item on `workers` threads, each with its own connection; results in order.

    On an error or Ctrl-C the items not started yet are cancelled and the running ones finish before
    this returns, so nothing is created behind the back of the cleanup that follows.
    """
    items = list(items)
    if not items:
        return []
    apis: list[Api] = []
    local = threading.local()

    def call(item: T) -> R:
        api = getattr(local, "api", None)
        if api is None:
            api = local.api = Api(target)
            apis.append(api)
        return fn(api, item)

    pool = ThreadPoolExecutor(max_workers=max(1, min(workers, len(items))), thread_name_prefix="bench")
    futures: list[Future[R]] = []
    try:
        futures = [pool.submit(call, item) for item in items]
        return [f.result() for f in futures]
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        for api in apis:
            api.close()
