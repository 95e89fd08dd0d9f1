"""/images endpoints."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from typing import BinaryIO

from ...engine import Engine
from ...engine.images import progress_lines
from ...images.distribution import AuthConfig, decode_auth_header
from ..http import ApiError, Request, Response, StreamResponse, file_body, json_response
from ..router import Router


def _taken(path: str) -> BinaryIO:
    """The engine's spool file, open and already unlinked (nothing stays on disk whatever the client does)."""
    fh = open(path, "rb")
    os.unlink(path)
    return fh


async def _progress(messages: list[dict]) -> AsyncIterator[bytes]:
    """Progress messages as a chunked body, as dockerd streams them: docker-py reads a load or import
    reply as a JSON stream only when it is chunked (a sized body must be one JSON document)."""
    for message in messages:
        yield progress_lines([message])


def _pull_auth(request: Request) -> AuthConfig:
    """`X-Registry-Auth` for a pull: an undecodable header means no credentials (dockerd)."""
    header = request.headers.get("x-registry-auth", "")
    try:
        return decode_auth_header(header) if header else AuthConfig()
    except ValueError:
        return AuthConfig()


async def _push_auth(request: Request) -> AuthConfig:
    """A push needs the header; without it dockerd reads credentials from the body (old clients)."""
    header = request.headers.get("x-registry-auth", "")
    if header:
        return _pull_auth(request)
    body = await request.body()
    try:
        return AuthConfig.from_json(json.loads(body))
    except ValueError as exc:
        raise ApiError(400, f"Bad parameters and missing X-Registry-Auth: {'EOF' if not body.strip() else exc}") from None


def register(router: Router, engine: Engine) -> None:
    async def load(request: Request) -> StreamResponse:
        messages = await engine.run("image_load", body=request.chunks(), quiet=request.qbool("quiet"))
        return StreamResponse(_progress(messages))

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
        return StreamResponse(file_body(_taken(path)), content_type="application/x-tar")

    async def get_many(request: Request) -> StreamResponse:
        path = await engine.run("image_save", *request.query.get("names", []))
        return StreamResponse(file_body(_taken(path)), content_type="application/x-tar")

    async def create(request: Request) -> Response | StreamResponse:
        if request.q("fromSrc") == "-":
            messages = await engine.run("image_import", body=request.chunks(), repo=request.q("repo"),
                                        tag=request.q("tag"), message=request.q("message"),
                                        changes=request.query.get("changes", []))
            return StreamResponse(_progress(messages))
        if request.q("fromImage"):
            lines = await engine.run("image_pull", request.q("fromImage") or "", tag=request.q("tag") or "",
                                     auth=_pull_auth(request))
            return StreamResponse(lines)
        return Response(400, (json.dumps({"message": "fromImage or fromSrc=- is required"}) + "\n").encode(),
                        content_type="application/json")

    async def push(request: Request) -> StreamResponse:
        auth = await _push_auth(request)
        lines = await engine.run("image_push", request.params["name"], tag=request.q("tag") or "", auth=auth)
        return StreamResponse(lines)

    async def login(request: Request) -> Response:
        body = await request.body()
        try:
            config = AuthConfig.from_json(json.loads(body))
        except ValueError as exc:  # dockerd: the decoder's error, as a 500
            raise ApiError(500, "EOF" if not body.strip() else str(exc)) from None
        return json_response(await engine.run("auth", config=config))

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
    router.add("POST", "/images/{name:.+}/push", push)
    async def distribution_inspect(request: Request) -> Response:
        return json_response(await engine.run("distribution_inspect", request.params["name"],
                                              auth=_pull_auth(request)))

    router.add("POST", "/auth", login)
    router.add("GET", "/distribution/{name:.+}/json", distribution_inspect)
    router.add("DELETE", "/images/{name:.+}", delete)
