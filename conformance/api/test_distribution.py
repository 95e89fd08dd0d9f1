"""Registries: push (POST /images/{name}/push), pull (POST /images/create?fromImage), the manifest a registry
holds (GET /distribution/{name}/json) and login (POST /auth), against a docker-registry the harness runs.

The registry listens on this machine's 127.0.0.1 only (one per xdist worker, stopped by PID afterwards):
nothing is pulled from or pushed to anywhere else. A daemon on another machine cannot reach it, so for a
remote target these checks skip. dockerd (and refengine) treat a 127.0.0.0/8 registry as insecure by
default, so it speaks plain HTTP.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator
from typing import Any

import pytest

from conformance import registry as registry_mod
from conformance.client import ApiClient, error_message, json_lines
from conformance.resources import Containers, Images, Names
from conformance.target import Target

USER, PASSWORD = "conformance", "conformance-secret"


def _auth_header(config: dict[str, str] | None = None) -> dict[str, str]:
    return {"X-Registry-Auth": base64.urlsafe_b64encode(json.dumps(config or {}).encode()).decode()}


def _running(target: Target, user: tuple[str, str] | None = None) -> Iterator[registry_mod.Registry]:
    if not target.is_local:
        pytest.skip("the daemon is on another machine: it cannot reach the registry on this machine's 127.0.0.1")
    if not os.path.exists(registry_mod.REGISTRY_BIN):
        pytest.skip(f"{registry_mod.REGISTRY_BIN} is not installed (apt install docker-registry)")
    if user is not None:
        pytest.importorskip("bcrypt", reason="bcrypt makes the registry's htpasswd file")
    with registry_mod.running("conformance-registry-", user) as reg:
        yield reg


@pytest.fixture(scope="session")
def registry(target: Target) -> Iterator[registry_mod.Registry]:
    yield from _running(target)


@pytest.fixture(scope="session")
def auth_registry(target: Target) -> Iterator[registry_mod.Registry]:
    yield from _running(target, (USER, PASSWORD))


def _stream_errors(messages: list[dict[str, Any]]) -> list[str]:
    return [m.get("error") or (m.get("errorDetail") or {}).get("message", "") for m in messages
            if "error" in m or "errorDetail" in m]


def _push(api: ApiClient, images: Images, containers: Containers, registry: registry_mod.Registry,
          names: Names) -> tuple[str, str]:
    """Tag the probe image into the registry's namespace and push it; (repository, the pushed digest)."""
    repo = f"{registry.host}/{names('dist')}/probe"
    resp = api.post(f"/images/{containers.probe.base}/tag", params={"repo": repo, "tag": "t"})
    assert resp.status_code == 201, f"tagging the probe image as {repo}:t answered {resp.status_code}"
    images.adopt(f"{repo}:t")
    resp = api.post(f"/images/{repo}/push", params={"tag": "t"}, headers=_auth_header(), timeout=120)
    assert resp.status_code == 200, f"POST /images/{repo}/push answered {resp.status_code} {error_message(resp)!r}"
    messages = json_lines(resp.content)
    assert not _stream_errors(messages), f"the push of {repo}:t failed: {_stream_errors(messages)}"
    aux = [m["aux"] for m in messages if isinstance(m.get("aux"), dict)]
    assert aux and str(aux[-1].get("Digest", "")).startswith("sha256:") and aux[-1].get("Tag") == "t", (
        f"the push stream's last aux is {aux[-1:]}; expected {{'Tag': 't', 'Digest': 'sha256:…', 'Size': n}}")
    digest = aux[-1]["Digest"]
    assert any(f"t: digest: {digest} size: " in (m.get("status") or "") for m in messages), (
        f"no status line 't: digest: {digest} size: N' in the push stream: {messages[-3:]}")
    return repo, digest


@pytest.mark.req("api.images.push-pull")
def test_push_then_pull(api: ApiClient, images: Images, containers: Containers, registry: registry_mod.Registry,
                        names: Names) -> None:
    repo, digest = _push(api, images, containers, registry, names)
    base_id = api.get(f"/images/{containers.probe.base}/json").json()["Id"]
    resp = api.delete(f"/images/{repo}:t")
    assert resp.status_code == 200, f"removing the local tag {repo}:t answered {resp.status_code}"
    resp = api.post("/images/create", params={"fromImage": repo, "tag": "t"}, headers=_auth_header(), timeout=120)
    assert resp.status_code == 200, f"POST /images/create?fromImage={repo} answered {resp.status_code} {error_message(resp)!r}"
    messages = json_lines(resp.content)
    assert not _stream_errors(messages), f"the pull of {repo}:t failed: {_stream_errors(messages)}"
    statuses = [m.get("status") or "" for m in messages]
    assert f"Digest: {digest}" in statuses, f"the pull stream does not name the manifest's digest {digest}: {statuses}"
    assert statuses[-1] == f"Status: Downloaded newer image for {repo}:t", (
        f"the pull stream ends with {statuses[-1]!r}; dockerd ends it with 'Status: Downloaded newer image for {repo}:t'")
    info = api.get(f"/images/{repo}:t/json").json()
    assert info.get("Id") == base_id, f"the pulled {repo}:t is {info.get('Id')}; it was pushed from {base_id}"
    assert f"{repo}@{digest}" in (info.get("RepoDigests") or []), (
        f"the pulled image's RepoDigests are {info.get('RepoDigests')}; expected {repo}@{digest}")


@pytest.mark.req("api.images.pull-unknown")
def test_pull_unknown(api: ApiClient, registry: registry_mod.Registry, names: Names) -> None:
    repo = f"{registry.host}/{names('dist')}/absent"
    resp = api.post("/images/create", params={"fromImage": repo, "tag": "t"}, headers=_auth_header(), timeout=60)
    if resp.status_code == 200:
        errors = _stream_errors(json_lines(resp.content))
        assert errors, f"the pull of the absent {repo}:t answered 200 without an error: {resp.text[-300:]!r}"
        msg, status = errors[-1], 200
    else:
        msg, status = error_message(resp) or "", resp.status_code
    assert status == 404 and "not found" in msg and "manifest unknown" in msg, (
        f"the pull of a tag the registry lacks answered {status} {msg!r}; dockerd answers 404 "
        f"'manifest for {repo}:t not found: manifest unknown: …'")


@pytest.mark.req("api.distribution.inspect")
def test_distribution_inspect(api: ApiClient, images: Images, containers: Containers,
                              registry: registry_mod.Registry, names: Names) -> None:
    repo, digest = _push(api, images, containers, registry, names)
    resp = api.get(f"/distribution/{repo}:t/json", headers=_auth_header(), timeout=60)
    assert resp.status_code == 200, f"GET /distribution/{repo}:t/json answered {resp.status_code} {error_message(resp)!r}"
    body = resp.json()
    descriptor = body.get("Descriptor") or {}
    assert descriptor.get("digest") == digest and descriptor.get("size", 0) > 0, (
        f"the distribution Descriptor is {descriptor}; the push made manifest {digest}")
    assert descriptor.get("mediaType") == "application/vnd.docker.distribution.manifest.v2+json", (
        f"the Descriptor's mediaType is {descriptor.get('mediaType')!r}; a pushed image is a schema 2 manifest")
    config = api.get(f"/images/{repo}:t/json").json()
    wanted = {"architecture": config.get("Architecture"), "os": config.get("Os")}
    assert any({k: p.get(k) for k in wanted} == wanted for p in body.get("Platforms") or []), (
        f"the Platforms are {body.get('Platforms')}; expected the image's {wanted}")


@pytest.mark.req("api.distribution.unknown")
def test_distribution_unknown(api: ApiClient, registry: registry_mod.Registry, names: Names) -> None:
    repo = f"{registry.host}/{names('dist')}/absent"
    resp = api.get(f"/distribution/{repo}:t/json", headers=_auth_header(), timeout=60)
    msg = error_message(resp) or ""
    assert resp.status_code == 404 and "manifest unknown" in msg, (
        f"GET /distribution for a tag the registry lacks answered {resp.status_code} {msg!r}; dockerd answers 404 "
        "with the registry's 'manifest unknown'")


@pytest.mark.req("api.auth.login")
def test_auth(api: ApiClient, auth_registry: registry_mod.Registry) -> None:
    good = {"username": USER, "password": PASSWORD, "serveraddress": auth_registry.host}
    resp = api.post("/auth", good)
    assert resp.status_code == 200 and resp.json().get("Status") == "Login Succeeded", (
        f"POST /auth with the right password answered {resp.status_code} {resp.text[:200]!r}; "
        "expected 200 {'Status': 'Login Succeeded'}")
    resp = api.post("/auth", {**good, "password": "wrong"})
    msg = error_message(resp) or ""
    # the schema's status for a refused login is 401; dockerd 20.10 wraps the registry's 401 in an untyped
    # error and answers 500: either, as long as the login is refused with the registry's words
    assert resp.status_code in (401, 500) and ("401 unauthorized" in msg.lower() or "unauthorized:" in msg.lower()), (
        f"POST /auth with a wrong password answered {resp.status_code} {msg!r}; expected a refusal (401, or "
        "dockerd 20.10's 500) naming the registry's 401 Unauthorized")
