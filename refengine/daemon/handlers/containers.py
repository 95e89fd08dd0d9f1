"""/containers endpoints that need no running process (create, inspect, list, rename, update, remove, prune),
and /commit."""

from __future__ import annotations

from ...engine import Engine
from ..http import Request, Response, empty, json_response
from ..router import Router


def register(router: Router, engine: Engine) -> None:
    async def create(request: Request) -> Response:
        body = await request.json(required=True)
        return json_response(await engine.run("container_create", body=body, name=request.q("name")), 201)

    async def listing(request: Request) -> Response:
        return json_response(await engine.run("container_list", all=request.qbool("all"), limit=request.qint("limit"),
                                              size=request.qbool("size"), filters=request.q("filters")))

    async def inspect(request: Request) -> Response:
        return json_response(await engine.run("container_inspect", request.params["id"], size=request.qbool("size")))

    async def rename(request: Request) -> Response:
        await engine.run("container_rename", request.params["id"], name=request.q("name"))
        return empty(204)

    async def update(request: Request) -> Response:
        body = await request.json(required=True)
        return json_response(await engine.run("container_update", request.params["id"], body=body))

    async def remove(request: Request) -> Response:
        await engine.run("container_remove", request.params["id"], force=request.qbool("force"),
                         volumes=request.qbool("v"), link=request.qbool("link"))
        return empty(204)

    async def prune(request: Request) -> Response:
        return json_response(await engine.run("container_prune", filters=request.q("filters")))

    async def commit(request: Request) -> Response:
        body = await request.json()
        return json_response(await engine.run(
            "container_commit", request.q("container") or "", config=body, repo=request.q("repo"),
            tag=request.q("tag"), comment=request.q("comment"), author=request.q("author"),
            pause=request.qbool("pause", True), changes=request.query.get("changes") or []), 201)

    router.add("POST", "/commit", commit)
    router.add("POST", "/containers/create", create)
    router.add("GET", "/containers/json", listing)
    router.add("POST", "/containers/prune", prune)
    router.add("GET", "/containers/{id}/json", inspect)
    router.add("POST", "/containers/{id}/rename", rename)
    router.add("POST", "/containers/{id}/update", update)
    router.add("DELETE", "/containers/{id}", remove)
