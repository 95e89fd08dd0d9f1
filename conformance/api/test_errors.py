"""Error responses: status codes for missing objects, conflicts and bad input, always {"message": ...}.

The swagger's introduction says every error body is JSON of the form {"message": "..."} and that
the daemon ignores extra query parameters and body properties; these checks hold it to that.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import requests

from conformance.client import ApiClient, error_message
from conformance.resources import RUN_LABEL, Containers, Names, Networks, Volumes

SERVER_500 = ("dockerd 20.10 answers a container create/update body it cannot decode with 500: the JSON "
              "decoding error is not marked as an invalid parameter")


def _ctype(resp: requests.Response) -> str:
    return resp.headers.get("Content-Type", "").split(";")[0].strip()


def _assert_error(resp: requests.Response, status: int, what: str, names: str | None = None) -> None:
    """`resp` is the error `status` with a JSON {"message": ...} body (naming `names` when given)."""
    assert resp.status_code == status, (
        f"{what} answered {resp.status_code} {resp.text[:200]!r}; expected {status}")
    assert _ctype(resp) == "application/json", (
        f"{what}: the {status} error has Content-Type {resp.headers.get('Content-Type')!r}; expected application/json")
    message = error_message(resp)
    assert message, f"{what}: the {status} body {resp.text[:200]!r} is not {{'message': <non-empty string>}}"
    if names is not None:
        assert names in message, f"{what}: the message {message!r} does not name {names!r}"


class Kit:
    """The factories a case needs, and clean-up of anything a wrongly successful request made."""

    def __init__(self, api: ApiClient, containers: Containers, volumes: Volumes, networks: Networks,
                 names: Names, run_id: str) -> None:
        self.api, self.containers, self.volumes, self.networks = api, containers, volumes, networks
        self.names, self.run_id = names, run_id

    def labels(self) -> dict[str, str]:
        return {RUN_LABEL: self.run_id}

    def keep(self, resp: requests.Response) -> requests.Response:
        """Adopt what a request that should have failed created anyway, so it is removed."""
        if 200 <= resp.status_code < 300 and resp.request is not None:
            path = resp.request.path_url.split("?")[0]
            try:
                body = resp.json()
            except ValueError:
                return resp
            if path.endswith("/containers/create"):
                self.containers.adopt(body["Id"])
            elif path.endswith("/volumes/create"):
                self.volumes.adopt(body["Name"])
            elif path.endswith("/networks/create"):
                self.networks.adopt(body["Id"])
        return resp

    def post_raw(self, path: str, data: str, ctype: str | None = "application/json",
                 params: dict[str, Any] | None = None) -> requests.Response:
        headers = {"Content-Type": ctype} if ctype else {}
        return self.keep(self.api.request("POST", path, data=data, headers=headers, params=params))


@pytest.fixture
def kit(api: ApiClient, volumes: Volumes, networks: Networks, containers: Containers, names: Names,
        run_id: str) -> Kit:
    # containers is set up last so it is torn down first: a volume or network in use cannot go.
    return Kit(api, containers, volumes, networks, names, run_id)


# ---------------------------------------------------------------- 404


def _op_id(method: str, path: str) -> str:
    return f"{method}-" + path.strip("/").replace("{}", "x").replace("/", "-")


CONTAINER_OPS = [
    ("GET", "/containers/{}/json", None, None),
    ("POST", "/containers/{}/start", None, None),
    ("POST", "/containers/{}/stop", {"t": 1}, None),
    ("POST", "/containers/{}/restart", {"t": 1}, None),
    ("POST", "/containers/{}/kill", None, None),
    ("POST", "/containers/{}/pause", None, None),
    ("POST", "/containers/{}/unpause", None, None),
    ("GET", "/containers/{}/logs", {"stdout": 1}, None),
    ("GET", "/containers/{}/top", None, None),
    ("GET", "/containers/{}/changes", None, None),
    ("GET", "/containers/{}/export", None, None),
    ("GET", "/containers/{}/stats", {"stream": 0}, None),
    ("POST", "/containers/{}/wait", None, None),
    ("POST", "/containers/{}/rename", {"name": "conformance-renamed-missing"}, None),
    ("POST", "/containers/{}/resize", {"h": 10, "w": 10}, None),
    ("POST", "/containers/{}/update", None, {"CpuShares": 512}),
    ("POST", "/containers/{}/exec", None, {"Cmd": ["true"]}),
    ("GET", "/containers/{}/archive", {"path": "/"}, None),
    ("DELETE", "/containers/{}", None, None),
]


@pytest.mark.req("api.errors.no-such-container")
@pytest.mark.parametrize("method,path,params,body", CONTAINER_OPS,
                         ids=[_op_id(m, p) for m, p, _, _ in CONTAINER_OPS])
def test_no_such_container(api: ApiClient, names: Names, method: str, path: str, params: dict | None,
                           body: dict | None) -> None:
    missing = names("missing")
    url = path.format(missing)
    resp = api.request(method, url, params=params, json_body=body)
    _assert_error(resp, 404, f"{method} {url}", names=missing)


OBJECT_OPS = [
    ("GET", "/images/{}/json", None, None),
    ("GET", "/images/{}/history", None, None),
    ("POST", "/images/{}/tag", {"repo": "conformance-never-made", "tag": "x"}, None),
    ("DELETE", "/images/{}", None, None),
    ("GET", "/volumes/{}", None, None),
    ("DELETE", "/volumes/{}", None, None),
    ("GET", "/networks/{}", None, None),
    ("DELETE", "/networks/{}", None, None),
    ("GET", "/exec/{}/json", None, None),
    ("POST", "/exec/{}/start", None, {"Detach": True}),
    ("POST", "/exec/{}/resize", {"h": 10, "w": 10}, None),
]


@pytest.mark.req("api.errors.no-such-object")
@pytest.mark.parametrize("method,path,params,body", OBJECT_OPS,
                         ids=[_op_id(m, p) for m, p, _, _ in OBJECT_OPS])
def test_no_such_object(api: ApiClient, names: Names, method: str, path: str, params: dict | None,
                        body: dict | None) -> None:
    missing = names("missing")
    url = path.format(missing)
    resp = api.request(method, url, params=params, json_body=body)
    _assert_error(resp, 404, f"{method} {url}", names=missing)


# ---------------------------------------------------------------- 409


def _name_taken(kit: Kit) -> tuple[str, requests.Response]:
    name = kit.names("taken")
    kit.containers.create(["true"], name=name)
    resp = kit.api.post("/containers/create", kit.containers.config(["true"]), params={"name": name})
    return f"creating a second container named {name}", kit.keep(resp)


def _rename_taken(kit: Kit) -> tuple[str, requests.Response]:
    name = kit.names("taken")
    kit.containers.create(["true"], name=name)
    other = kit.containers.create(["true"])
    return f"renaming a container to the taken name {name}", kit.api.post(f"/containers/{other}/rename",
                                                                        params={"name": name})


def _remove_running(kit: Kit) -> tuple[str, requests.Response]:
    cid = kit.containers.run_long()
    return "DELETE of a running container without force", kit.api.delete(f"/containers/{cid}")


def _pause_stopped(kit: Kit) -> tuple[str, requests.Response]:
    cid = kit.containers.create(["true"])
    return "pausing a container that is not running", kit.api.post(f"/containers/{cid}/pause")


def _kill_stopped(kit: Kit) -> tuple[str, requests.Response]:
    cid = kit.containers.create(["true"])
    return "killing a container that is not running", kit.api.post(f"/containers/{cid}/kill")


def _exec_stopped(kit: Kit) -> tuple[str, requests.Response]:
    cid = kit.containers.create(["true"])
    return "creating an exec in a container that is not running", kit.api.post(
        f"/containers/{cid}/exec", {"Cmd": ["true"]})


def _volume_in_use(kit: Kit) -> tuple[str, requests.Response]:
    vol = kit.volumes.create()["Name"]
    kit.containers.create(["true"], HostConfig={"Binds": [f"{vol}:/v"]})
    return f"removing volume {vol} while a container uses it", kit.api.delete(f"/volumes/{vol}")


def _network_name_taken(kit: Kit) -> tuple[str, requests.Response]:
    name = kit.names("net")
    kit.networks.create(name)
    resp = kit.api.post("/networks/create", {"Name": name, "CheckDuplicate": True, "Labels": kit.labels()})
    return f"creating a second network named {name} with CheckDuplicate", kit.keep(resp)


CONFLICTS: dict[str, Callable[[Kit], tuple[str, requests.Response]]] = {
    "container-name-taken": _name_taken,
    "rename-to-taken-name": _rename_taken,
    "remove-running": _remove_running,
    "pause-stopped": _pause_stopped,
    "kill-stopped": _kill_stopped,
    "exec-in-stopped": _exec_stopped,
    "volume-in-use": _volume_in_use,
    "network-name-taken": _network_name_taken,
}


@pytest.mark.req("api.errors.conflict")
@pytest.mark.parametrize("case", list(CONFLICTS))
def test_conflict(kit: Kit, case: str) -> None:
    what, resp = CONFLICTS[case](kit)
    _assert_error(resp, 409, what)


# ---------------------------------------------------------------- 400


def _create_with(kit: Kit, params: dict[str, Any] | None = None, **extra: Any) -> requests.Response:
    return kit.keep(kit.api.post("/containers/create", kit.containers.config(["true"], **extra), params=params))


def _nothing_to_run(kit: Kit) -> tuple[str, requests.Response]:
    # Without Image but with Cmd, dockerd creates a container on an empty root filesystem.
    body = {"Labels": kit.labels()}
    return "creating a container with neither Image nor Cmd", kit.keep(kit.api.post("/containers/create", body))


BAD_PARAMETERS: dict[str, Callable[[Kit], tuple[str, requests.Response]]] = {
    "create-nothing-to-run": _nothing_to_run,
    "create-invalid-name": lambda k: ("creating a container named 'bad name!'",
                                      _create_with(k, params={"name": "bad name!"})),
    "create-unknown-restart-policy": lambda k: (
        "creating a container with RestartPolicy 'sometimes'",
        _create_with(k, HostConfig={"RestartPolicy": {"Name": "sometimes"}})),
    "create-invalid-port": lambda k: (
        "creating a container with port binding 'bad'",
        _create_with(k, HostConfig={"PortBindings": {"bad": [{"HostPort": "1"}]}})),
    "create-unknown-mount-type": lambda k: (
        "creating a container with mount Type 'bogus'",
        _create_with(k, HostConfig={"Mounts": [{"Type": "bogus", "Target": "/x"}]})),
    "list-unknown-filter": lambda k: (
        "GET /containers/json with filter key 'no-such-filter'",
        k.api.get("/containers/json", params={"filters": {"no-such-filter": ["x"]}})),
    "kill-unknown-signal": lambda k: (
        "kill with signal NOPE",
        k.api.post(f"/containers/{k.containers.run_long()}/kill", params={"signal": "NOPE"})),
    "exec-without-cmd": lambda k: (
        "exec create without Cmd", k.api.post(f"/containers/{k.containers.run_long()}/exec", {})),
    "logs-without-streams": lambda k: (
        "logs with neither stdout nor stderr", k.api.get(f"/containers/{k.containers.create(['true'])}/logs")),
    "archive-without-path": lambda k: (
        "GET archive without path", k.api.get(f"/containers/{k.containers.create(['true'])}/archive")),
    "rename-without-name": lambda k: (
        "rename without a new name", k.api.post(f"/containers/{k.containers.create(['true'])}/rename")),
    "volume-invalid-name": lambda k: (
        "creating a volume named 'bad name!'",
        k.keep(k.api.post("/volumes/create", {"Name": "bad name!", "Labels": k.labels()}))),
}


@pytest.mark.req("api.errors.bad-parameter")
@pytest.mark.parametrize("case", list(BAD_PARAMETERS))
def test_bad_parameter(kit: Kit, case: str) -> None:
    what, resp = BAD_PARAMETERS[case](kit)
    _assert_error(resp, 400, what)


# ---------------------------------------------------------------- bodies


def _endpoint(kit: Kit, which: str) -> str:
    if which == "exec":  # a running container, so only the body can be wrong
        return f"/containers/{kit.containers.run_long()}/exec"
    if which == "update":
        return f"/containers/{kit.containers.create(['true'])}/update"
    return f"/{which}/create"


@pytest.mark.req("api.errors.malformed-json")
@pytest.mark.parametrize("which", [
    pytest.param("containers", marks=pytest.mark.deviation("docker", reason=SERVER_500)),
    "networks",
    "volumes",
    "exec",
    pytest.param("update", marks=pytest.mark.deviation("docker", reason=SERVER_500)),
])
def test_malformed_json(kit: Kit, which: str) -> None:
    path = _endpoint(kit, which)
    _assert_error(kit.post_raw(path, '{"Image": "x", not json'), 400, f"POST {path} with a body that is not JSON")


WRONG_TYPES = [
    pytest.param("containers", {"Image": 5}, id="container-image-number",
                 marks=pytest.mark.deviation("docker", reason=SERVER_500)),
    pytest.param("containers", {"HostConfig": {"Memory": "lots"}}, id="container-memory-string",
                 marks=pytest.mark.deviation("docker", reason=SERVER_500)),
    pytest.param("update", {"Memory": "lots"}, id="update-memory-string",
                 marks=pytest.mark.deviation("docker", reason=SERVER_500)),
    pytest.param("volumes", {"Name": 5}, id="volume-name-number"),
    pytest.param("volumes", {"Labels": "x"}, id="volume-labels-string"),
    pytest.param("networks", {"Name": 5}, id="network-name-number"),
    pytest.param("networks", {"Name": ["a", "b"]}, id="network-name-array"),
    pytest.param("exec", {"Cmd": 5}, id="exec-cmd-number"),
]


@pytest.mark.req("api.errors.wrong-type")
@pytest.mark.parametrize("which,body", WRONG_TYPES)
def test_wrong_type(kit: Kit, which: str, body: dict[str, Any]) -> None:
    path = _endpoint(kit, which)
    if which == "containers":
        body = {**kit.containers.config(["true"]), **body}
    _assert_error(kit.post_raw(path, json.dumps(body)), 400, f"POST {path} with {json.dumps(body)}")


@pytest.mark.req("api.errors.unknown-body-fields")
@pytest.mark.parametrize("which", ["containers", "volumes", "networks"])
def test_unknown_body_fields(kit: Kit, which: str) -> None:
    if which == "containers":
        body = kit.containers.config(["true"], NoSuchField=1, HostConfig={"NoSuchHostField": True})
    else:
        body = {"Name": kit.names("extra"), "Labels": kit.labels(), "NoSuchField": {"a": 1}}
    resp = kit.post_raw(f"/{which}/create", json.dumps(body))
    assert resp.status_code == 201, (
        f"POST /{which}/create with unknown fields answered {resp.status_code} {resp.text[:200]!r}; expected 201")


@pytest.mark.req("api.errors.unknown-query-params")
@pytest.mark.parametrize("which", ["version", "containers-json", "containers-create"])
def test_unknown_query_params(kit: Kit, which: str) -> None:
    extra = {"no-such-param": "1", "another": "x"}
    if which == "version":
        resp, want = kit.api.get("/version", params=extra), 200
    elif which == "containers-json":
        resp, want = kit.api.get("/containers/json", params={**extra, "limit": 1}), 200
    else:
        resp, want = kit.keep(kit.api.post("/containers/create", kit.containers.config(["true"]), params=extra)), 201
    assert resp.status_code == want, (
        f"{which} with unknown query parameters answered {resp.status_code} {resp.text[:200]!r}; expected {want}")


@pytest.mark.req("api.errors.json-content-type-required")
@pytest.mark.parametrize("which", ["containers", "volumes", "networks"])
@pytest.mark.parametrize("ctype", ["text/plain", None], ids=["text-plain", "none"])
def test_json_content_type_required(kit: Kit, which: str, ctype: str | None) -> None:
    if which == "containers":
        body = kit.containers.config(["true"])
    else:
        body = {"Name": kit.names("ctype"), "Labels": kit.labels()}
    resp = kit.post_raw(f"/{which}/create", json.dumps(body), ctype=ctype)
    _assert_error(resp, 400, f"POST /{which}/create with Content-Type {ctype!r}")


@pytest.mark.req("api.errors.json-charset-accepted")
def test_json_charset_accepted(kit: Kit) -> None:
    resp = kit.post_raw("/containers/create", json.dumps(kit.containers.config(["true"])),
                        ctype="application/json; charset=utf-8")
    assert resp.status_code == 201, (
        f"Content-Type 'application/json; charset=utf-8' answered {resp.status_code} {resp.text[:200]!r}; expected 201")


@pytest.mark.req("api.errors.get-body-ignored")
def test_get_body_ignored(api: ApiClient) -> None:
    resp = api.get("/version", data="{this is not json", headers={"Content-Type": "application/json"})
    assert resp.status_code == 200, f"GET /version with a garbage body answered {resp.status_code}; expected 200"
