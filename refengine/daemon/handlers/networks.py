"""/networks endpoints (CRUD and prune; connect/disconnect are wired with the containers)."""

from __future__ import annotations

from ...engine import Engine
from ..http import Request, Response, empty, json_response
from ..router import Router


def register(router: Router, engine: Engine) -> None:
    async def create(request: Request) -> Response:
        return json_response(await engine.run("network_create", body=await request.json(required=True)), 201)

    async def listing(request: Request) -> Response:
        return json_response(await engine.run("network_list", filters=request.q("filters")))

    async def inspect(request: Request) -> Response:
        return json_response(await engine.run("network_inspect", request.params["id"]))

    async def remove(request: Request) -> Response:
        await engine.run("network_remove", request.params["id"])
        return empty(204)

    async def prune(request: Request) -> Response:
        return json_response(await engine.run("network_prune", filters=request.q("filters")))

    async def connect(request: Request) -> Response:
        await engine.run("network_connect", request.params["id"], body=await request.json(required=True))
        return Response(200)

    async def disconnect(request: Request) -> Response:
        await engine.run("network_disconnect", request.params["id"], body=await request.json(required=True))
        return Response(200)

    router.add("POST", "/networks/{id}/connect", connect)
    router.add("POST", "/networks/{id}/disconnect", disconnect)
    router.add("POST", "/networks/create", create)
    router.add("GET", "/networks", listing)
    router.add("POST", "/networks/prune", prune)
    router.add("GET", "/networks/{id}", inspect)
    router.add("DELETE", "/networks/{id}", remove)
