"""/volumes endpoints."""

from __future__ import annotations

from ...engine import Engine
from ..http import Request, Response, empty, json_response
from ..router import Router


def register(router: Router, engine: Engine) -> None:
    async def create(request: Request) -> Response:
        return json_response(await engine.run("volume_create", body=await request.json()), 201)

    async def listing(request: Request) -> Response:
        return json_response(await engine.run("volume_list", filters=request.q("filters")))

    async def inspect(request: Request) -> Response:
        return json_response(await engine.run("volume_inspect", request.params["name"]))

    async def remove(request: Request) -> Response:
        await engine.run("volume_remove", request.params["name"], force=request.qbool("force"))
        return empty(204)

    async def prune(request: Request) -> Response:
        return json_response(await engine.run("volume_prune", filters=request.q("filters")))

    router.add("POST", "/volumes/create", create)
    router.add("GET", "/volumes", listing)
    router.add("POST", "/volumes/prune", prune)
    router.add("GET", "/volumes/{name}", inspect)
    router.add("DELETE", "/volumes/{name}", remove)
