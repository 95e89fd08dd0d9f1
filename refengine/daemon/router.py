"""Method + path → handler, with the Engine API's `/v1.xx` prefix and version rules.

Patterns use `{name}` for one path segment and `{name:.*}` for the rest-of-path names that image
references need (`/images/localhost:5000/a/b:tag/json`). The first registered match wins. Routes are
indexed by method and first path segment, so a request tries a handful of patterns, not all of them
(the linear scan was a visible part of a small request's cost in the bench profile).
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ..engine import JobError
from ..engine.system import API_VERSION, MIN_API_VERSION
from .http import AnyResponse, ApiError, Request, Response, error_response

log = logging.getLogger("refengine.router")

_PREFIX = re.compile(r"^/v([0-9]+(?:\.[0-9]+)*)(/.*)$")

Handler = Callable[[Request], Awaitable[AnyResponse]]


def version_tuple(v: str) -> tuple[int, ...]:
    return tuple(int(p) for p in v.split("."))


@functools.lru_cache(maxsize=64)
def version_error(version: str) -> str | None:
    """Why a `/vX.Y` prefix is refused, or None (cached: clients send the same few versions)."""
    try:
        vt = version_tuple(version)
    except ValueError:
        return f"invalid API version: {version}"
    if vt < version_tuple(MIN_API_VERSION):
        return (f"client version {version} is too old. Minimum supported API version "
                f"is {MIN_API_VERSION}, please upgrade your client to a newer version")
    if vt > version_tuple(API_VERSION):
        return f"client version {version} is too new. Maximum supported API version is {API_VERSION}"
    return None


@dataclass(frozen=True)
class Route:
    method: str
    pattern: str
    regex: re.Pattern[str]
    handler: Handler
    first: str | None  # the literal first path segment, None if the pattern has a parameter there


def _first_segment(path: str) -> str:
    return path.split("/", 2)[1] if path.startswith("/") else ""


def _literal_first(pattern: str) -> str | None:
    seg = _first_segment(pattern)
    return None if "{" in seg else seg


def _compile(pattern: str) -> re.Pattern[str]:
    out, pos = "", 0
    for m in re.finditer(r"\{(\w+)(?::([^}]+))?\}", pattern):
        out += re.escape(pattern[pos:m.start()]) + f"(?P<{m.group(1)}>{m.group(2) or '[^/]+'})"
        pos = m.end()
    return re.compile("^" + out + re.escape(pattern[pos:]) + "$")


class Router:
    def __init__(self) -> None:
        self.routes: list[Route] = []
        self._index: dict[tuple[str, str | None], list[Route]] = {}  # (method, first segment) → candidates
        self._methods: set[str] = set()
        self._firsts: set[str] = set()

    def add(self, method: str, pattern: str, handler: Handler) -> None:
        self.routes.append(Route(method.upper(), pattern, _compile(pattern), handler, _literal_first(pattern)))
        self._index.clear()
        self._methods.add(method.upper())
        self._firsts.add(self.routes[-1].first or "")

    def route(self, method: str, pattern: str) -> Callable[[Handler], Handler]:
        def deco(fn: Handler) -> Handler:
            self.add(method, pattern, fn)
            return fn
        return deco

    def _candidates(self, method: str, first: str) -> list[Route]:
        """Routes that may match, in registration order. Cached only for known methods and segments,
        so arbitrary client input cannot grow the cache."""
        known = first if first in self._firsts else None
        key = (method, known)
        found = self._index.get(key)
        if found is None:
            want = "GET" if method == "HEAD" else method
            found = [r for r in self.routes
                     if (r.method == want or (r.method == "HEAD" and method == "HEAD"))
                     and (r.first is None or r.first == known)]
            if method in self._methods or method == "HEAD":
                self._index[key] = found
        return found

    def resolve(self, request: Request) -> tuple[Handler, dict[str, str]] | None:
        path = request.path
        for r in self._candidates(request.method, _first_segment(path)):
            m = r.regex.match(path)
            if m:
                return r.handler, m.groupdict()
        return None

    async def dispatch(self, request: Request) -> AnyResponse:
        """Strip and check the version prefix, find the handler, turn errors into JSON bodies."""
        path = request.raw_path
        m = _PREFIX.match(path) if path.startswith("/v") else None
        if m:
            version, path = m.group(1), m.group(2)
            problem = version_error(version)
            if problem:
                return error_response(400, problem)
            request.api_version = version
        request.path = path
        found = self.resolve(request)
        if found is None:
            return error_response(404, "page not found")
        handler, request.params = found
        try:
            return await handler(request)
        except ConnectionError:
            raise  # the client left: nothing to answer
        except Exception as exc:
            return self._error(request, exc)

    @staticmethod
    def _error(request: Request, exc: Exception) -> Response:
        """An API error or an engine error with an `http_status` → its JSON body; anything else is a bug:
        the client gets a one-line message, the log gets the traceback."""
        cause: BaseException = exc.cause if isinstance(exc, JobError) else exc
        if isinstance(cause, ApiError):
            return error_response(cause.status, cause.message)
        status = getattr(cause, "http_status", None)
        if isinstance(status, int):
            return Response(304) if status == 304 else error_response(status, str(cause))
        log.error("handler for %s %s failed", request.method, request.target, exc_info=cause)
        return error_response(500, f"internal error: {cause}")
