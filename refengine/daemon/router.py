"""Method + path → handler, with the Engine API's `/v1.xx` prefix and version rules.

Patterns use `{name}` for one path segment and `{name:.*}` for the rest-of-path names that image
references need (`/images/localhost:5000/a/b:tag/json`).
"""

from __future__ import annotations

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


@dataclass(frozen=True)
class Route:
    method: str
    pattern: str
    regex: re.Pattern[str]
    handler: Handler


def _compile(pattern: str) -> re.Pattern[str]:
    out, pos = "", 0
    for m in re.finditer(r"\{(\w+)(?::([^}]+))?\}", pattern):
        out += re.escape(pattern[pos:m.start()]) + f"(?P<{m.group(1)}>{m.group(2) or '[^/]+'})"
        pos = m.end()
    return re.compile("^" + out + re.escape(pattern[pos:]) + "$")


class Router:
    def __init__(self) -> None:
        self.routes: list[Route] = []

    def add(self, method: str, pattern: str, handler: Handler) -> None:
        self.routes.append(Route(method.upper(), pattern, _compile(pattern), handler))

    def route(self, method: str, pattern: str) -> Callable[[Handler], Handler]:
        def deco(fn: Handler) -> Handler:
            self.add(method, pattern, fn)
            return fn
        return deco

    def resolve(self, request: Request) -> tuple[Handler, dict[str, str]] | None:
        method = "GET" if request.method == "HEAD" else request.method
        for r in self.routes:
            if r.method != method and not (r.method == "HEAD" and request.method == "HEAD"):
                continue
            m = r.regex.match(request.path)
            if m:
                return r.handler, m.groupdict()
        return None

    async def dispatch(self, request: Request) -> AnyResponse:
        """Strip and check the version prefix, find the handler, turn errors into JSON bodies."""
        path = request.raw_path
        m = _PREFIX.match(path)
        if m:
            version, path = m.group(1), m.group(2)
            try:
                vt = version_tuple(version)
            except ValueError:
                return error_response(400, f"invalid API version: {version}")
            if vt < version_tuple(MIN_API_VERSION):
                return error_response(400, f"client version {version} is too old. Minimum supported API version "
                                           f"is {MIN_API_VERSION}, please upgrade your client to a newer version")
            if vt > version_tuple(API_VERSION):
                return error_response(400, f"client version {version} is too new. Maximum supported API version "
                                           f"is {API_VERSION}")
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
