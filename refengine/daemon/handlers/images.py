"""/images endpoints."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator

from ...engine import Engine
from ...engine.images import progress_lines
from ..http import Request, Response, StreamResponse, json_response
from ..router import Router


async def _file_chunks(path: str) -> AsyncIterator[bytes]:
    try:
        with open(path, "rb") as fh:
            while chunk := fh.read(1 << 20):
                yield chunk
    finally:
        os.unlink(path)


def register(router: Router, engine: Engine) -> None:
    async def load(request: Request) -> Response:
        messages = await engine.run("image_load", body=request.chunks(), quiet=request.qbool("quiet"))
        return Response(200, progress_lines(messages), content_type="application/json")

    async def listing(request: Request) -> Response:
        return json_response(await engine.run("image_list", all=request.qbool("all"), filters=request.q("filters")))

    async def inspect(request: Request) -> Response:
        return json_response(await engine.run("image_inspect", request.params["name"]))

    async def history(request: Request) -> Response:
        return json_response(await engine.run("image_history", request.params["name"]))

    async def tag(request: Request) -> Response:
        await engine.run("image_tag", request.params["name"], repo=request.q("repo"), tag=request.q("tag"))
        return Response(201)

    async def delete(request: Request) -> Response:
        return json_response(await engine.run("image_delete", request.params["name"], force=request.qbool("force"),
                                              noprune=request.qbool("noprune")))

    async def get_one(request: Request) -> StreamResponse:
        path = await engine.run("image_save", request.params["name"])
        return StreamResponse(_file_chunks(path), content_type="application/x-tar")

    async def get_many(request: Request) -> StreamResponse:
        path = await engine.run("image_save", *request.query.get("names", []))
        return StreamResponse(_file_chunks(path), content_type="application/x-tar")

    async def create(request: Request) -> Response:
        if request.q("fromSrc") == "-":
            messages = await engine.run("image_import", body=request.chunks(), repo=request.q("repo"),
                                        tag=request.q("tag"), message=request.q("message"),
                                        changes=request.query.get("changes", []))
            return Response(200, progress_lines(messages), content_type="application/json")
        if request.q("fromImage"):
            ref = request.q("fromImage") or ""
            tag = request.q("tag")
            await engine.run("image_pull", f"{ref}:{tag}" if tag and ":" not in ref.rsplit("/", 1)[-1] else ref)
        return Response(400, (json.dumps({"message": "fromImage or fromSrc=- is required"}) + "\n").encode(),
                        content_type="application/json")

    async def prune(request: Request) -> Response:
        return json_response(await engine.run("image_prune", filters=request.q("filters")))

    router.add("POST", "/images/load", load)
    router.add("GET", "/images/json", listing)
    router.add("GET", "/images/get", get_many)
    router.add("POST", "/images/create", create)
    router.add("POST", "/images/prune", prune)
    router.add("GET", "/images/{name:.+}/json", inspect)
    router.add("GET", "/images/{name:.+}/history", history)
    router.add("GET", "/images/{name:.+}/get", get_one)
    router.add("POST", "/images/{name:.+}/tag", tag)
    router.add("DELETE", "/images/{name:.+}", delete)
