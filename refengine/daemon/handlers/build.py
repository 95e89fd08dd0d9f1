"""POST /build: the classic builder (API version 1 builds; BuildKit's version 2 is refused)."""

from __future__ import annotations

import json
from typing import Any

from ...engine import Engine
from ...engine.build.builder import BuildOptions
from ...engine.errors import InvalidParameter
from ..http import Request, Response, StreamResponse, json_response
from ..router import Router


def _json_param(request: Request, name: str) -> dict[str, Any]:
    raw = request.q(name)
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        raise InvalidParameter(f"invalid {name} JSON: {raw[:100]!r}") from None
    if not isinstance(value, dict):
        raise InvalidParameter(f"{name} must be a JSON object")
    return value


def register(router: Router, engine: Engine) -> None:
    async def build(request: Request) -> StreamResponse:
        if request.q("version") == "2":
            raise InvalidParameter("BuildKit builds (version=2) are not supported by refengine; "
                                   "use the classic builder (DOCKER_BUILDKIT=0)")
        if request.q("remote"):
            raise InvalidParameter("a remote build context is not supported by refengine (send the context as the body)")
        opts = BuildOptions(dockerfile=request.q("dockerfile") or "Dockerfile", tags=request.query.get("t") or [],
                            buildargs=_json_param(request, "buildargs"), labels=_json_param(request, "labels"),
                            rm=request.qbool("rm", True), forcerm=request.qbool("forcerm"), quiet=request.qbool("q"),
                            nocache=request.qbool("nocache"))
        lines = await engine.run("image_build", body=request.chunks(), options=opts)
        return StreamResponse(lines, content_type="application/json")

    async def prune(request: Request) -> Response:
        return json_response(await engine.run("build_cache_prune", filters=request.q("filters")))

    router.add("POST", "/build", build)
    router.add("POST", "/build/prune", prune)
