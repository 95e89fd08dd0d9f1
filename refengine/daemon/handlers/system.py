"""/_ping, /version, /info."""

from __future__ import annotations

from ...engine import Engine
from ..http import Request, Response, StreamResponse, json_response
from ..router import Router


def register(router: Router, engine: Engine) -> None:
    async def ping(request: Request) -> Response:
        # dockerd: "OK" as text/plain, never cached; HEAD gets the same headers and no body
        return Response(200, b"OK", headers=[("Cache-Control", "no-cache, no-store, must-revalidate"),
                                             ("Pragma", "no-cache")], content_type="text/plain; charset=utf-8")

    async def version(request: Request) -> Response:
        return json_response(await engine.run("version"))

    async def info(request: Request) -> Response:
        return json_response(await engine.run("info"))

    async def events(request: Request) -> StreamResponse:
        chunks = await engine.run("events", filters=request.q("filters"), since=request.q("since"),
                                  until=request.q("until"))
        return StreamResponse(chunks)

    router.add("GET", "/events", events)
    router.add("GET", "/_ping", ping)
    router.add("HEAD", "/_ping", ping)
    router.add("GET", "/version", version)
    router.add("GET", "/info", info)
