"""Containers, part 1: create, inspect, list with filters, rename, update, remove, prune (swagger: Container tag)."""

from __future__ import annotations

import json
import re
import string
import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conformance.client import RECORD, ApiClient, daemon_now, error_message
from conformance.resources import Containers, Names

HEX64 = re.compile(r"^[0-9a-f]{64}$")
IMAGE_ID = re.compile(r"^sha256:[0-9a-f]{64}$")
RFC3339 = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
CASE_LABEL = "org.conformance.case"


def _parse_time(value: str) -> datetime:
    """An RFC 3339 timestamp with up to nanosecond precision (datetime keeps microseconds)."""
    m = RFC3339.match(value)
    assert m, f"{value!r} is not an RFC 3339 timestamp"
    frac = (m.group(2) or ".0")[:7]
    zone = "+00:00" if m.group(3) == "Z" else m.group(3)
    return datetime.fromisoformat(m.group(1) + frac + zone)


def _case(names: Names) -> dict[str, str]:
    """A label unique to one check, so lists and prunes only ever see that check's containers."""
    return {CASE_LABEL: names("case")}


def _filters(labels: dict[str, str], **more: list[str]) -> dict[str, list[str]]:
    return {"label": [f"{k}={v}" for k, v in labels.items()], **more}


def _list(api: ApiClient, filters: dict[str, list[str]], **params: Any) -> list[dict[str, Any]]:
    resp = api.get("/containers/json", params={"filters": filters, **params})
    assert resp.status_code == 200, f"GET /containers/json {params} answered {resp.status_code}: {resp.text[:200]}"
    return resp.json()


def _ids(summaries: list[dict[str, Any]]) -> set[str]:
    return {c["Id"] for c in summaries}


def _create_raw(api: ApiClient, body: Any = None, *, data: str | None = None, params: dict[str, Any] | None = None,
                headers: dict[str, str] | None = None):
    if data is not None:
        return api.post("/containers/create", data=data, params=params,
                        headers=headers if headers is not None else {"Content-Type": "application/json"})
    return api.post("/containers/create", body, params=params, headers=headers)


def _trio(containers: Containers, labels: dict[str, str]) -> dict[str, str]:
    """One created, one running and one exited container sharing `labels`."""
    return {
        "created": containers.create(["true"], Labels=labels),
        "running": containers.run_long(Labels=labels),
        "exited": containers.run_to_exit(["true"], Labels=labels)[0],
    }


# ---------------------------------------------------------------- create


@pytest.mark.req("api.containers.create.minimal")
def test_create_minimal(api: ApiClient, containers: Containers) -> None:
    resp = _create_raw(api, containers.config())
    if resp.status_code == 201:
        containers.adopt(resp.json()["Id"])
    assert resp.status_code == 201, f"POST /containers/create with only Image answered {resp.status_code}: {resp.text[:200]}"
    body = resp.json()
    assert HEX64.match(body["Id"]), f"Id {body['Id']!r} is not 64 lowercase hex digits"
    assert isinstance(body["Warnings"], list), f"Warnings is {body['Warnings']!r}; the schema requires an array"


@pytest.mark.req("api.containers.create.name")
@pytest.mark.parametrize("slash", ["", "/"], ids=["plain", "leading-slash"])
def test_create_name(api: ApiClient, containers: Containers, names: Names, slash: str) -> None:
    name = names("named")
    cid = containers.create(["true"], name=slash + name)
    got = containers.inspect(cid)["Name"]
    assert got == "/" + name, f"created with name={slash + name!r}, inspect Name is {got!r}; expected '/{name}'"


@pytest.mark.req("api.containers.create.invalid-name")
@pytest.mark.parametrize("bad", ["a", "bad name", "-x", "_x", ".x", "x/y", "a:b", "x$"])
def test_create_invalid_name(api: ApiClient, containers: Containers, names: Names, bad: str) -> None:
    labels = _case(names)
    resp = _create_raw(api, containers.config(["true"], Labels=labels), params={"name": bad})
    if resp.status_code == 201:
        containers.adopt(resp.json()["Id"])
    assert resp.status_code == 400, (
        f"POST /containers/create?name={bad!r} answered {resp.status_code}; the name does not match "
        "/?[a-zA-Z0-9][a-zA-Z0-9_.-]+ so expected 400")
    assert error_message(resp), f"400 body {resp.text[:200]!r} is not {{'message': ...}}"
    assert not _list(api, _filters(labels), all=1), "a refused create still left a container behind"


@pytest.mark.req("api.containers.create.name-conflict")
def test_create_name_conflict(api: ApiClient, containers: Containers, names: Names) -> None:
    name = names("taken")
    first = containers.create(["true"], name=name)
    resp = _create_raw(api, containers.config(["true"]), params={"name": name})
    if resp.status_code == 201:
        containers.adopt(resp.json()["Id"])
    assert resp.status_code == 409, f"POST /containers/create with a taken name answered {resp.status_code}; expected 409 Conflict"
    msg = error_message(resp) or ""
    assert name in msg, f"the conflict message {msg!r} does not name {name!r}"
    assert containers.inspect(name)["Id"] == first, "the name no longer resolves to the first container"


@pytest.mark.req("api.containers.create.unknown-image")
def test_create_unknown_image(api: ApiClient, containers: Containers, run_id: str) -> None:
    image = f"conformance-no-such-image-{run_id}:missing"
    resp = _create_raw(api, containers.config(["true"], image=image))
    if resp.status_code == 201:
        containers.adopt(resp.json()["Id"])
    assert resp.status_code == 404, f"POST /containers/create with an absent image answered {resp.status_code}; expected 404"
    msg = error_message(resp) or ""
    assert f"conformance-no-such-image-{run_id}" in msg, f"the 404 message {msg!r} does not name the image"


@pytest.mark.req("api.containers.create.no-image-no-cmd")
def test_create_without_image_or_cmd(api: ApiClient, containers: Containers, names: Names) -> None:
    labels = _case(names)
    body = containers.config(Labels=labels)
    del body["Image"]
    resp = _create_raw(api, body)
    if resp.status_code == 201:
        containers.adopt(resp.json()["Id"])
    assert resp.status_code == 400, f"POST /containers/create with neither Image nor Cmd answered {resp.status_code}; expected 400"
    assert error_message(resp), f"400 body {resp.text[:200]!r} is not {{'message': ...}}"


def _malformed(kind: str, image: str, labels: dict[str, str]) -> str:
    """A body the daemon cannot decode; the JSON ones carry labels so a wrongly created container is found."""
    if kind == "empty":
        return ""
    if kind == "invalid-json":
        return "{bad"
    body: dict[str, Any] = {"Image": image, "Labels": labels}
    if kind == "cmd-number":
        body["Cmd"] = 5
    elif kind == "env-string":
        body["Env"] = "x"
    elif kind == "memory-string":
        body["HostConfig"] = {"Memory": "lots"}
    elif kind == "init-string":
        body["HostConfig"] = {"Init": "yes"}
    return json.dumps(body)


MALFORMED = ["empty", "invalid-json", "cmd-number", "env-string", "memory-string", "init-string"]


@pytest.mark.req("api.containers.create.malformed-body")
@pytest.mark.deviation("docker", reason="dockerd 20.10 passes JSON decoding errors of the container config "
                       "through unwrapped, so they map to 500 instead of 400 (moby#38141 fixed this only for "
                       "other endpoints)")
@pytest.mark.parametrize("kind", MALFORMED)
def test_create_malformed_body_400(api: ApiClient, containers: Containers, names: Names, kind: str) -> None:
    labels = containers.config(Labels=_case(names))["Labels"]
    resp = _create_raw(api, data=_malformed(kind, containers.probe.base, labels))
    if resp.status_code == 201:
        containers.adopt(resp.json()["Id"])
    assert resp.status_code == 400, f"POST /containers/create with a {kind} body answered {resp.status_code}; expected 400"


@pytest.mark.req("api.containers.create.malformed-body-refused")
@pytest.mark.parametrize("kind", MALFORMED)
def test_create_malformed_body_refused(api: ApiClient, containers: Containers, names: Names, kind: str) -> None:
    case = _case(names)
    labels = containers.config(Labels=case)["Labels"]
    resp = _create_raw(api, data=_malformed(kind, containers.probe.base, labels))
    if resp.status_code == 201:
        containers.adopt(resp.json()["Id"])
    assert resp.status_code >= 400, f"POST /containers/create with a {kind} body answered {resp.status_code}; expected an error"
    assert error_message(resp), f"the error body {resp.text[:200]!r} is not {{'message': ...}}"
    assert not _list(api, _filters(case), all=1), "a refused create still left a container"


@pytest.mark.req("api.containers.create.content-type")
@pytest.mark.parametrize("ctype", ["text/plain", "application/x-www-form-urlencoded", None],
                         ids=["text-plain", "form-urlencoded", "absent"])
def test_create_wrong_content_type(api: ApiClient, containers: Containers, names: Names, ctype: str | None) -> None:
    labels = _case(names)
    resp = _create_raw(api, data=json.dumps(containers.config(["true"], Labels=labels)),
                       headers={"Content-Type": ctype} if ctype else {})
    if resp.status_code == 201:
        containers.adopt(resp.json()["Id"])
    assert resp.status_code == 400, f"POST /containers/create with Content-Type {ctype} answered {resp.status_code}; expected 400"
    assert not _list(api, _filters(labels), all=1), "a refused create still left a container"


@pytest.mark.req("api.containers.create.json-charset")
def test_create_json_with_charset(api: ApiClient, containers: Containers) -> None:
    resp = _create_raw(api, data=json.dumps(containers.config(["true"])),
                       headers={"Content-Type": "application/json; charset=utf-8"})
    if resp.status_code == 201:
        containers.adopt(resp.json()["Id"])
    assert resp.status_code == 201, (
        f"POST /containers/create with Content-Type application/json; charset=utf-8 answered {resp.status_code}; "
        "expected 201")


@pytest.mark.req("api.containers.create.unknown-fields")
def test_create_unknown_fields_ignored(api: ApiClient, containers: Containers) -> None:
    body = containers.config(["true"], NoSuchField=1, Another={"nested": True})
    resp = _create_raw(api, body)
    if resp.status_code == 201:
        containers.adopt(resp.json()["Id"])
    assert resp.status_code == 201, f"POST /containers/create with unknown fields answered {resp.status_code}: {resp.text[:200]}"


# The endpoint settings the docker CLI 25+ sends on every `docker run` (all zero values), keyed by
# the network mode's name rather than a network's.
CLI_DEFAULT_ENDPOINT = {"IPAMConfig": None, "Links": None, "Aliases": None, "MacAddress": "", "DriverOpts": None,
                        "GwPriority": 0, "NetworkID": "", "EndpointID": "", "Gateway": "", "IPAddress": "",
                        "IPPrefixLen": 0, "IPv6Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0,
                        "DNSNames": None}


@pytest.mark.req("api.containers.create.default-endpoint")
def test_create_default_endpoint_settings(api: ApiClient, containers: Containers) -> None:
    body = containers.config(["true"], HostConfig={"NetworkMode": "default"},
                             NetworkingConfig={"EndpointsConfig": {"default": CLI_DEFAULT_ENDPOINT}})
    resp = _create_raw(api, body)
    if resp.status_code == 201:
        containers.adopt(resp.json()["Id"])
    assert resp.status_code == 201, (
        f"create with NetworkMode default and EndpointsConfig {{'default': ...}} (what `docker run` of a current "
        f"docker CLI sends) answered {resp.status_code} {error_message(resp)!r}; dockerd takes it as the default "
        f"network's settings")
    networks = containers.inspect(resp.json()["Id"])["NetworkSettings"]["Networks"] or {}
    assert len(networks) == 1 and "default" not in networks, (
        f"the container is attached to {sorted(networks)}; expected the default network alone (dockerd: bridge)")


CONFIG_FIELDS: dict[str, Any] = {
    "Env": ["ALPHA=1", "BETA=two words"],
    "Cmd": ["sh", "-c", "exit 0"],
    "Entrypoint": ["/bin/sh", "-c"],
    "WorkingDir": "/tmp",
    "Hostname": "probe-host",
    "Domainname": "example.test",
    "User": "1000:1000",
    "Labels": {"org.conformance.extra": "yes"},
    "Tty": True,
    "OpenStdin": True,
    "StopSignal": "SIGTERM",
    "ExposedPorts": {"9090/udp": {}},
}


@pytest.mark.req("api.containers.create.config-propagated")
@pytest.mark.parametrize("field", list(CONFIG_FIELDS))
def test_create_config_propagated(api: ApiClient, containers: Containers, field: str) -> None:
    value = CONFIG_FIELDS[field]
    cid = containers.create(**{field: value})
    got = containers.inspect(cid)["Config"].get(field)
    if field == "Env":
        missing = [e for e in value if e not in (got or [])]
        assert not missing, f"Config.Env {got!r} lacks {missing!r} given at create"
    elif field == "Labels":
        assert got and got.get("org.conformance.extra") == "yes", f"Config.Labels {got!r} lacks the label given at create"
    else:
        assert got == value, f"created with {field}={value!r}, inspect Config.{field} is {got!r}"


IMAGE_FIELDS: dict[str, Any] = {
    "Entrypoint": ["/bin/echo", "entrypoint"],
    "Cmd": ["default-cmd"],
    "WorkingDir": "/srv",
    "ExposedPorts": {"8080/tcp": {}},
    "Volumes": {"/data": {}},
    "StopSignal": "SIGUSR1",
}


@pytest.mark.req("api.containers.create.image-config-inherited")
@pytest.mark.parametrize("field", list(IMAGE_FIELDS))
def test_create_inherits_image_config(api: ApiClient, containers: Containers, field: str) -> None:
    cid = containers.create(image=containers.probe.config)
    got = containers.inspect(cid)["Config"].get(field)
    assert got == IMAGE_FIELDS[field], (
        f"a container of the probe config image has Config.{field}={got!r}; the image sets {IMAGE_FIELDS[field]!r}")


@pytest.mark.req("api.containers.create.image-labels-merged")
def test_create_merges_image_labels(api: ApiClient, containers: Containers) -> None:
    cid = containers.create(image=containers.probe.config, Labels={"org.conformance.variant": "mine", "extra": "1"})
    got = containers.inspect(cid)["Config"]["Labels"]
    assert got.get("org.conformance.probe") == "config", f"image label missing from Config.Labels {got!r}"
    assert got.get("org.conformance.variant") == "mine", f"the container's label did not override the image's: {got!r}"
    assert got.get("extra") == "1", f"the container's own label is missing: {got!r}"


@pytest.mark.req("api.containers.create.env-merged")
def test_create_merges_env(api: ApiClient, containers: Containers) -> None:
    cid = containers.create(image=containers.probe.config, Env=["PROBE_ENV=override", "MINE=1"])
    env = containers.inspect(cid)["Config"]["Env"]
    assert "PROBE_ENV=override" in env and "PROBE_ENV=from-image" not in env, (
        f"Config.Env {env!r}: the container's PROBE_ENV must replace the image's")
    assert "MINE=1" in env, f"Config.Env {env!r} lacks the container's own variable"
    assert any(e.startswith("PATH=") for e in env), f"Config.Env {env!r} lost the image's PATH"


@pytest.mark.req("api.containers.create.cmd-keeps-entrypoint")
def test_create_cmd_keeps_image_entrypoint(api: ApiClient, containers: Containers) -> None:
    cid = containers.create(["mine"], image=containers.probe.config)
    info = containers.inspect(cid)
    assert (info["Path"], info["Args"]) == ("/bin/echo", ["entrypoint", "mine"]), (
        f"Path/Args are {info['Path']!r} {info['Args']!r}; expected the image Entrypoint followed by the given Cmd")


@pytest.mark.req("api.containers.create.entrypoint-drops-image-cmd")
def test_create_entrypoint_drops_image_cmd(api: ApiClient, containers: Containers) -> None:
    cid = containers.create(image=containers.probe.config, Entrypoint=["/bin/true"])
    info = containers.inspect(cid)
    assert info["Config"]["Cmd"] in (None, []), (
        f"with an Entrypoint given, Config.Cmd is {info['Config']['Cmd']!r}; the image's Cmd must not be inherited")
    assert (info["Path"], info["Args"]) == ("/bin/true", []), f"Path/Args are {info['Path']!r} {info['Args']!r}"


# ---------------------------------------------------------------- inspect


@pytest.mark.req("api.containers.inspect.created-state")
def test_inspect_created_state(api: ApiClient, containers: Containers) -> None:
    cid = containers.create(["sh", "-c", "exit 0"])
    info = containers.inspect(cid)
    state = info["State"]
    assert state["Status"] == "created", f"State.Status of a created container is {state['Status']!r}"
    assert state["Running"] is False and state["Paused"] is False, f"State of a created container: {state!r}"
    assert state["Pid"] == 0, f"State.Pid of a never-started container is {state['Pid']}; expected 0"
    assert state["ExitCode"] == 0, f"State.ExitCode of a never-started container is {state['ExitCode']}"
    assert info["Id"] == cid, f"inspect Id {info['Id']!r} differs from the created {cid!r}"
    assert IMAGE_ID.match(info["Image"]), f"Image {info['Image']!r} is not sha256:<64 hex>"
    assert (info["Path"], info["Args"]) == ("sh", ["-c", "exit 0"]), f"Path/Args are {info['Path']!r} {info['Args']!r}"
    assert info["RestartCount"] == 0, f"RestartCount of a new container is {info['RestartCount']}"


@pytest.mark.req("api.containers.inspect.created-time")
def test_inspect_created_time(api: ApiClient, containers: Containers) -> None:
    cid = containers.create(["true"])
    created = _parse_time(containers.inspect(cid)["Created"])
    now = _parse_time(api.get("/info", validate=RECORD).json()["SystemTime"])  # the daemon clock: scene-setting
    assert abs(now - created) < timedelta(minutes=5), f"Created {created} is far from the daemon's SystemTime {now}"
    assert created.tzinfo is not None and created.utcoffset() is not None
    assert created <= now + timedelta(seconds=2), f"Created {created} is after the daemon's clock {now}"


@pytest.mark.req("api.containers.inspect.image-matches")
def test_inspect_image_id_matches_image(api: ApiClient, containers: Containers) -> None:
    cid = containers.create(["true"])
    info = containers.inspect(cid)
    # Only the Id matters here; the image body's schema is the images checks' business.
    image = api.get(f"/images/{containers.probe.base}/json", validate=False).json()
    assert info["Image"] == image["Id"], f"container Image {info['Image']!r} differs from the image's Id {image['Id']!r}"
    assert info["Config"]["Image"] == containers.probe.base, (
        f"Config.Image is {info['Config']['Image']!r}; expected the reference given at create")


@pytest.mark.req("api.containers.inspect.default-hostname")
def test_inspect_default_hostname(api: ApiClient, containers: Containers) -> None:
    cid = containers.create(["true"])
    hostname = containers.inspect(cid)["Config"]["Hostname"]
    assert hostname == cid[:12], f"Config.Hostname defaults to {hostname!r}; dockerd uses the 12-character short ID {cid[:12]!r}"


@pytest.mark.req("api.containers.inspect.hostconfig-defaults")
def test_inspect_hostconfig_defaults(api: ApiClient, containers: Containers) -> None:
    cid = containers.create(["true"])
    hc = containers.inspect(cid)["HostConfig"]
    assert hc["NetworkMode"] == "default", f"HostConfig.NetworkMode defaults to {hc['NetworkMode']!r}; expected 'default'"
    assert hc["RestartPolicy"]["Name"] in ("", "no"), f"default RestartPolicy is {hc['RestartPolicy']!r}"
    assert hc["Privileged"] is False and hc["AutoRemove"] is False, "Privileged/AutoRemove default to true"
    assert hc["LogConfig"]["Type"], f"HostConfig.LogConfig {hc['LogConfig']!r} names no log driver"


@pytest.mark.req("api.containers.inspect.by-name")
def test_inspect_by_name(api: ApiClient, containers: Containers, names: Names) -> None:
    name = names("byname")
    cid = containers.create(["true"], name=name)
    resp = api.get(f"/containers/{name}/json")
    assert resp.status_code == 200, f"GET /containers/{name}/json answered {resp.status_code}"
    assert resp.json()["Id"] == cid, f"inspect by name gave {resp.json()['Id']!r}, the container is {cid!r}"


@pytest.mark.req("api.containers.inspect.by-id-prefix")
@pytest.mark.parametrize("length", [12, 20, 64])
def test_inspect_by_id_prefix(api: ApiClient, containers: Containers, length: int) -> None:
    cid = containers.create(["true"])
    resp = api.get(f"/containers/{cid[:length]}/json")
    assert resp.status_code == 200, f"GET /containers/<{length}-char ID prefix>/json answered {resp.status_code}"
    assert resp.json()["Id"] == cid, f"the {length}-char prefix resolved to {resp.json()['Id']!r}, not {cid!r}"


@pytest.mark.req("api.containers.inspect.unknown")
def test_inspect_unknown(api: ApiClient, run_id: str) -> None:
    name = f"conformance-no-such-container-{run_id}"
    resp = api.get(f"/containers/{name}/json")
    assert resp.status_code == 404, f"GET /containers/<unknown>/json answered {resp.status_code}; expected 404"
    msg = error_message(resp) or ""
    assert name in msg, f"the 404 message {msg!r} does not name {name!r}"


@pytest.mark.req("api.containers.inspect.size")
def test_inspect_size(api: ApiClient, containers: Containers) -> None:
    cid, _ = containers.run_to_exit(["sh", "-c", "head -c 20000 /dev/zero > /tmp/blob"])
    resp = api.get(f"/containers/{cid}/json", params={"size": 1})
    assert resp.status_code == 200, f"GET /containers/{{id}}/json?size=1 answered {resp.status_code}"
    info = resp.json()
    assert isinstance(info.get("SizeRw"), int) and info["SizeRw"] >= 20000, (
        f"SizeRw is {info.get('SizeRw')!r} after writing 20000 bytes; expected at least that")
    assert isinstance(info.get("SizeRootFs"), int) and info["SizeRootFs"] >= info["SizeRw"], (
        f"SizeRootFs {info.get('SizeRootFs')!r} is not at least SizeRw {info['SizeRw']}")


_NAME_HEAD = string.ascii_letters + string.digits


@pytest.mark.req("api.containers.create.valid-names-roundtrip")
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(head=st.sampled_from(_NAME_HEAD), tail=st.text(alphabet=_NAME_HEAD + "_.-", min_size=1, max_size=20))
def test_valid_names_roundtrip(api: ApiClient, containers: Containers, head: str, tail: str) -> None:
    # A unique suffix keeps generated names clear of other runs' containers.
    name = f"{head}{tail}.{uuid.uuid4().hex[:10]}"
    resp = _create_raw(api, containers.config(["true"]), params={"name": name})
    if resp.status_code == 201:
        containers.adopt(resp.json()["Id"])
    assert resp.status_code == 201, f"POST /containers/create?name={name!r} answered {resp.status_code}: {resp.text[:200]}"
    got = containers.inspect(name)
    assert got["Name"] == "/" + name, f"created as {name!r}, inspect Name is {got['Name']!r}"
    api.delete(f"/containers/{got['Id']}", params={"force": 1})


# ---------------------------------------------------------------- list


@pytest.mark.req("api.containers.list.running-by-default")
def test_list_running_only_by_default(api: ApiClient, containers: Containers, names: Names) -> None:
    labels = _case(names)
    trio = _trio(containers, labels)
    got = _ids(_list(api, _filters(labels)))
    assert got == {trio["running"]}, (
        f"GET /containers/json without all listed {sorted(i[:12] for i in got)}; expected only the running "
        f"{trio['running'][:12]}")


@pytest.mark.req("api.containers.list.all")
def test_list_all(api: ApiClient, containers: Containers, names: Names) -> None:
    labels = _case(names)
    trio = _trio(containers, labels)
    got = _ids(_list(api, _filters(labels), all=1))
    assert got == set(trio.values()), f"all=1 listed {sorted(i[:12] for i in got)}; expected created, running and exited"


@pytest.mark.req("api.containers.list.filter-status")
@pytest.mark.parametrize("status", ["created", "running", "exited"])
def test_list_filter_status(api: ApiClient, containers: Containers, names: Names, status: str) -> None:
    labels = _case(names)
    trio = _trio(containers, labels)
    got = _list(api, _filters(labels, status=[status]), all=1)
    assert _ids(got) == {trio[status]}, f"status={status} listed {sorted(i[:12] for i in _ids(got))}; expected {trio[status][:12]}"
    assert got[0]["State"] == status, f"the summary State is {got[0]['State']!r}; expected {status!r}"


@pytest.mark.req("api.containers.list.filter-label")
@pytest.mark.parametrize("form", ["key", "key=value"])
def test_list_filter_label(api: ApiClient, containers: Containers, names: Names, form: str) -> None:
    key = names("labelkey")
    wanted = containers.create(["true"], Labels={key: "v1"})
    other_value = containers.create(["true"], Labels={key: "v2"})
    containers.create(["true"], Labels={key + "-other": "v1"})
    expr = key if form == "key" else f"{key}=v1"
    got = _ids(_list(api, {"label": [expr]}, all=1))
    expected = {wanted, other_value} if form == "key" else {wanted}
    assert got == expected, f"label={expr} listed {sorted(i[:12] for i in got)}; expected {sorted(i[:12] for i in expected)}"


@pytest.mark.req("api.containers.list.filter-name")
def test_list_filter_name(api: ApiClient, containers: Containers, names: Names) -> None:
    labels = _case(names)
    name = names("listed")
    cid = containers.create(["true"], name=name, Labels=labels)
    containers.create(["true"], Labels=labels)
    got = _ids(_list(api, _filters(labels, name=[name]), all=1))
    assert got == {cid}, f"name={name} listed {sorted(i[:12] for i in got)}; expected {cid[:12]}"


@pytest.mark.req("api.containers.list.filter-id")
@pytest.mark.parametrize("length", [12, 64])
def test_list_filter_id(api: ApiClient, containers: Containers, names: Names, length: int) -> None:
    labels = _case(names)
    cid = containers.create(["true"], Labels=labels)
    containers.create(["true"], Labels=labels)
    got = _ids(_list(api, _filters(labels, id=[cid[:length]]), all=1))
    assert got == {cid}, f"id=<{length}-char prefix> listed {sorted(i[:12] for i in got)}; expected {cid[:12]}"


@pytest.mark.req("api.containers.list.filter-ancestor")
def test_list_filter_ancestor(api: ApiClient, containers: Containers, names: Names) -> None:
    labels = _case(names)
    rich = containers.create(image=containers.probe.config, Labels=labels)
    containers.create(["true"], Labels=labels)
    got = _ids(_list(api, _filters(labels, ancestor=[containers.probe.config]), all=1))
    assert got == {rich}, f"ancestor={containers.probe.config} listed {sorted(i[:12] for i in got)}; expected {rich[:12]}"


@pytest.mark.req("api.containers.list.filter-exited")
def test_list_filter_exited(api: ApiClient, containers: Containers, names: Names) -> None:
    labels = _case(names)
    three, code = containers.run_to_exit(["sh", "-c", "exit 3"], Labels=labels)
    assert code == 3, f"the container exited {code}, not 3"
    zero, _ = containers.run_to_exit(["true"], Labels=labels)
    got3 = _ids(_list(api, _filters(labels, exited=["3"]), all=1))
    got0 = _ids(_list(api, _filters(labels, exited=["0"]), all=1))
    assert got3 == {three}, f"exited=3 listed {sorted(i[:12] for i in got3)}; expected {three[:12]}"
    assert got0 == {zero}, f"exited=0 listed {sorted(i[:12] for i in got0)}; expected {zero[:12]}"


@pytest.mark.req("api.containers.list.filter-since-before")
def test_list_filter_since_before(api: ApiClient, containers: Containers, names: Names) -> None:
    labels = _case(names)
    first = containers.create(["true"], Labels=labels)
    middle = containers.create(["true"], Labels=labels)
    last = containers.create(["true"], Labels=labels)
    since = _ids(_list(api, _filters(labels, since=[middle]), all=1))
    before = _ids(_list(api, _filters(labels, before=[middle]), all=1))
    assert since == {last}, f"since=<middle> listed {sorted(i[:12] for i in since)}; expected only the last {last[:12]}"
    assert before == {first}, f"before=<middle> listed {sorted(i[:12] for i in before)}; expected only the first {first[:12]}"


@pytest.mark.req("api.containers.list.invalid-filter")
@pytest.mark.parametrize("filters", [{"status": ["bogus"]}, {"no-such-filter": ["x"]}], ids=["bad-status", "unknown-key"])
def test_list_invalid_filter(api: ApiClient, filters: dict[str, list[str]]) -> None:
    resp = api.get("/containers/json", params={"all": 1, "filters": filters})
    assert resp.status_code == 400, f"GET /containers/json?filters={filters} answered {resp.status_code}; expected 400"
    assert error_message(resp), f"400 body {resp.text[:200]!r} is not {{'message': ...}}"


@pytest.mark.req("api.containers.list.malformed-filters")
@pytest.mark.deviation("docker", reason="dockerd 20.10 returns the JSON decoding error of the filters parameter "
                       "unwrapped, which maps to 500 instead of the documented 400 bad parameter")
def test_list_malformed_filters(api: ApiClient) -> None:
    resp = api.get("/containers/json", params={"all": 1, "filters": "{not json"})
    assert resp.status_code == 400, f"GET /containers/json with malformed filters JSON answered {resp.status_code}; expected 400"


@pytest.mark.req("api.containers.list.limit")
def test_list_limit(api: ApiClient, containers: Containers, names: Names) -> None:
    labels = _case(names)
    made = [containers.create(["true"], Labels=labels) for _ in range(3)]
    got = _list(api, _filters(labels), limit=2)
    assert [c["Id"] for c in got] == [made[2], made[1]], (
        f"limit=2 listed {[c['Id'][:12] for c in got]}; expected the two most recently created, newest first "
        f"({made[2][:12]}, {made[1][:12]}), including non-running ones")


@pytest.mark.req("api.containers.list.size")
def test_list_size(api: ApiClient, containers: Containers, names: Names) -> None:
    labels = _case(names)
    containers.run_to_exit(["sh", "-c", "head -c 20000 /dev/zero > /tmp/blob"], Labels=labels)
    got = _list(api, _filters(labels), all=1, size=1)
    assert len(got) == 1, f"listed {len(got)} containers; expected 1"
    assert got[0].get("SizeRw", 0) >= 20000, f"SizeRw is {got[0].get('SizeRw')!r} after writing 20000 bytes"
    assert got[0].get("SizeRootFs", 0) >= got[0]["SizeRw"], f"SizeRootFs is {got[0].get('SizeRootFs')!r}"


@pytest.mark.req("api.containers.list.summary-fields")
def test_list_summary_fields(api: ApiClient, containers: Containers, names: Names) -> None:
    labels = _case(names)
    name = names("summary")
    cid = containers.create(["sh", "-c", "true"], name=name, Labels={**labels, "k": "v"})
    got = _list(api, _filters(labels), all=1)
    assert len(got) == 1, f"listed {len(got)} containers; expected 1"
    summary, info = got[0], containers.inspect(cid)
    assert summary["Names"] == ["/" + name], f"Names is {summary['Names']!r}; expected ['/{name}']"
    assert summary["Image"] == containers.probe.base, f"Image is {summary['Image']!r}; expected {containers.probe.base!r}"
    assert summary["ImageID"] == info["Image"], f"ImageID {summary['ImageID']!r} differs from inspect Image {info['Image']!r}"
    assert summary["Command"] == "sh -c true", f"Command is {summary['Command']!r}; expected 'sh -c true'"
    assert summary["Labels"].get("k") == "v" and summary["Labels"].get(CASE_LABEL) == labels[CASE_LABEL], (
        f"Labels {summary['Labels']!r} lack the labels given at create")
    created = _parse_time(info["Created"])
    assert abs(summary["Created"] - created.timestamp()) < 2, (
        f"Created {summary['Created']} (Unix seconds) differs from inspect's {info['Created']}")


@pytest.mark.req("api.containers.list.names-slash")
def test_list_names_slash(api: ApiClient, containers: Containers, names: Names) -> None:
    labels = _case(names)
    containers.create(["true"], Labels=labels)
    containers.create(["true"], name=names("slash"), Labels=labels)
    for c in _list(api, _filters(labels), all=1):
        assert c["Names"] and all(n.startswith("/") for n in c["Names"]), f"Names {c['Names']!r} do not start with '/'"


# ---------------------------------------------------------------- rename


@pytest.mark.req("api.containers.rename.applied")
@pytest.mark.parametrize("running", [False, True], ids=["created", "running"])
def test_rename(api: ApiClient, containers: Containers, names: Names, running: bool) -> None:
    old, new = names("old"), names("new")
    cid = containers.run_long(name=old) if running else containers.create(["true"], name=old)
    resp = api.post(f"/containers/{cid}/rename", params={"name": new})
    assert resp.status_code == 204, f"POST /containers/{{id}}/rename answered {resp.status_code}: {resp.text[:200]}"
    assert containers.inspect(cid)["Name"] == "/" + new, f"after rename, Name is {containers.inspect(cid)['Name']!r}"
    gone = api.get(f"/containers/{old}/json")
    assert gone.status_code == 404, f"the old name still resolves ({gone.status_code}) after the rename"


@pytest.mark.req("api.containers.rename.conflict")
def test_rename_conflict(api: ApiClient, containers: Containers, names: Names) -> None:
    taken = names("taken")
    containers.create(["true"], name=taken)
    mine = names("mine")
    cid = containers.create(["true"], name=mine)
    resp = api.post(f"/containers/{cid}/rename", params={"name": taken})
    assert resp.status_code == 409, f"renaming to a taken name answered {resp.status_code}; expected 409"
    assert containers.inspect(cid)["Name"] == "/" + mine, "a refused rename still changed the name"


@pytest.mark.req("api.containers.rename.invalid-name")
@pytest.mark.parametrize("bad", ["bad name", "-x", "x/y"])
def test_rename_invalid_name(api: ApiClient, containers: Containers, names: Names, bad: str) -> None:
    mine = names("mine")
    cid = containers.create(["true"], name=mine)
    resp = api.post(f"/containers/{cid}/rename", params={"name": bad})
    assert resp.status_code == 400, f"renaming to {bad!r} answered {resp.status_code}; expected 400"
    assert containers.inspect(cid)["Name"] == "/" + mine, "a refused rename still changed the name"


@pytest.mark.req("api.containers.rename.unknown")
def test_rename_unknown(api: ApiClient, names: Names, run_id: str) -> None:
    resp = api.post(f"/containers/conformance-no-such-container-{run_id}/rename", params={"name": names("x")})
    assert resp.status_code == 404, f"renaming an unknown container answered {resp.status_code}; expected 404"


# ---------------------------------------------------------------- update


UPDATES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "restart-policy": ({"RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 3}},
                       {"RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 3}}),
    "cpu-shares": ({"CpuShares": 512}, {"CpuShares": 512}),
    "memory": ({"Memory": 64 << 20, "MemorySwap": 128 << 20}, {"Memory": 64 << 20, "MemorySwap": 128 << 20}),
    "pids-limit": ({"PidsLimit": 100}, {"PidsLimit": 100}),
}


@pytest.mark.req("api.containers.update.applied")
@pytest.mark.parametrize("what", list(UPDATES))
def test_update_applied(api: ApiClient, containers: Containers, what: str) -> None:
    body, expected = UPDATES[what]
    cid = containers.create(["true"])
    resp = api.post(f"/containers/{cid}/update", body)
    assert resp.status_code == 200, f"POST /containers/{{id}}/update {body} answered {resp.status_code}: {resp.text[:200]}"
    hc = containers.inspect(cid)["HostConfig"]
    for key, value in expected.items():
        assert hc.get(key) == value, f"after updating {key} to {value!r}, HostConfig.{key} is {hc.get(key)!r}"


@pytest.mark.req("api.containers.update.running")
def test_update_running(api: ApiClient, containers: Containers) -> None:
    cid = containers.run_long()
    resp = api.post(f"/containers/{cid}/update", {"CpuShares": 256})
    assert resp.status_code == 200, f"updating a running container answered {resp.status_code}: {resp.text[:200]}"
    assert containers.inspect(cid)["HostConfig"]["CpuShares"] == 256, "CpuShares of the running container did not change"


@pytest.mark.req("api.containers.update.warnings")
def test_update_warnings(api: ApiClient, containers: Containers) -> None:
    cid = containers.create(["true"])
    resp = api.post(f"/containers/{cid}/update", {"CpuShares": 512})
    assert resp.status_code == 200, f"POST /containers/{{id}}/update answered {resp.status_code}"
    body = resp.json()
    assert isinstance(body, dict) and "Warnings" in body, f"the update response {body!r} has no Warnings"


@pytest.mark.req("api.containers.update.unknown")
def test_update_unknown(api: ApiClient, run_id: str) -> None:
    resp = api.post(f"/containers/conformance-no-such-container-{run_id}/update", {"CpuShares": 512})
    assert resp.status_code == 404, f"updating an unknown container answered {resp.status_code}; expected 404"
    assert error_message(resp), f"404 body {resp.text[:200]!r} is not {{'message': ...}}"


@pytest.mark.req("api.containers.update.invalid-restart-policy")
@pytest.mark.parametrize("policy", [{"Name": "bogus"}, {"Name": "always", "MaximumRetryCount": 3}],
                         ids=["unknown-name", "retries-with-always"])
def test_update_invalid_restart_policy(api: ApiClient, containers: Containers, policy: dict[str, Any]) -> None:
    cid = containers.create(["true"])
    resp = api.post(f"/containers/{cid}/update", {"RestartPolicy": policy})
    assert resp.status_code == 400, f"updating to RestartPolicy {policy} answered {resp.status_code}; expected 400"
    rp = containers.inspect(cid)["HostConfig"]["RestartPolicy"]
    assert rp["Name"] in ("", "no"), f"a refused update still changed RestartPolicy to {rp!r}"


@pytest.mark.req("api.containers.update.atomic")
def test_update_refused_changes_nothing(api: ApiClient, containers: Containers) -> None:
    cid = containers.create(["true"])
    resp = api.post(f"/containers/{cid}/update", {"CpuShares": 512, "RestartPolicy": {"Name": "bogus"}})
    assert resp.status_code >= 400, f"an update with an invalid restart policy answered {resp.status_code}"
    hc = containers.inspect(cid)["HostConfig"]
    assert hc["CpuShares"] == 0, f"a refused update still set CpuShares to {hc['CpuShares']}"


# ---------------------------------------------------------------- remove and prune


@pytest.mark.req("api.containers.remove.created")
def test_remove_created(api: ApiClient, containers: Containers) -> None:
    cid = containers.create(["true"])
    resp = api.delete(f"/containers/{cid}")
    assert resp.status_code == 204, f"DELETE of a created container answered {resp.status_code}: {resp.text[:200]}"
    after = api.get(f"/containers/{cid}/json")
    assert after.status_code == 404, f"inspect after DELETE answered {after.status_code}; expected 404"


@pytest.mark.req("api.containers.remove.running-conflict")
def test_remove_running_without_force(api: ApiClient, containers: Containers) -> None:
    cid = containers.run_long()
    resp = api.delete(f"/containers/{cid}")
    assert resp.status_code == 409, f"DELETE of a running container without force answered {resp.status_code}; expected 409"
    assert error_message(resp), f"409 body {resp.text[:200]!r} is not {{'message': ...}}"
    assert containers.inspect(cid)["State"]["Running"] is True, "the refused DELETE still stopped the container"


@pytest.mark.req("api.containers.remove.force")
def test_remove_running_force(api: ApiClient, containers: Containers) -> None:
    cid = containers.run_long()
    resp = api.delete(f"/containers/{cid}", params={"force": 1})
    assert resp.status_code == 204, f"DELETE ?force=1 of a running container answered {resp.status_code}: {resp.text[:200]}"
    after = api.get(f"/containers/{cid}/json")
    assert after.status_code == 404, f"inspect after a forced DELETE answered {after.status_code}; expected 404"


@pytest.mark.req("api.containers.remove.unknown")
def test_remove_unknown(api: ApiClient, run_id: str) -> None:
    resp = api.delete(f"/containers/conformance-no-such-container-{run_id}")
    assert resp.status_code == 404, f"DELETE of an unknown container answered {resp.status_code}; expected 404"
    assert error_message(resp), f"404 body {resp.text[:200]!r} is not {{'message': ...}}"


@pytest.mark.req("api.containers.remove.twice")
def test_remove_twice(api: ApiClient, containers: Containers) -> None:
    cid = containers.create(["true"])
    first = api.delete(f"/containers/{cid}")
    assert first.status_code == 204, f"the first DELETE answered {first.status_code}"
    second = api.delete(f"/containers/{cid}")
    assert second.status_code == 404, f"a second DELETE of the same container answered {second.status_code}; expected 404"


def _anonymous_volume(containers: Containers, cid: str) -> str:
    mounts = [m for m in containers.inspect(cid)["Mounts"] if m.get("Destination") == "/anon"]
    assert mounts and mounts[0].get("Type") == "volume" and mounts[0].get("Name"), (
        f"a container with Volumes {{'/anon': {{}}}} has Mounts {mounts!r}; expected an anonymous volume")
    return mounts[0]["Name"]


@pytest.mark.req("api.containers.remove.anonymous-volumes")
@pytest.mark.parametrize("v", [1, 0], ids=["v=1", "v=0"])
def test_remove_anonymous_volume(api: ApiClient, containers: Containers, v: int) -> None:
    cid = containers.create(["true"], Volumes={"/anon": {}})
    vol = _anonymous_volume(containers, cid)
    try:
        resp = api.delete(f"/containers/{cid}", params={"v": v})
        assert resp.status_code == 204, f"DELETE ?v={v} answered {resp.status_code}: {resp.text[:200]}"
        # Only existence matters here; the volume body's schema is the volume checks' business.
        status = api.get(f"/volumes/{vol}", validate=False).status_code
        if v:
            assert status == 404, f"after DELETE ?v=1 the anonymous volume {vol[:12]} still exists ({status})"
        else:
            assert status == 200, f"DELETE ?v=0 removed the anonymous volume {vol[:12]} (inspect: {status})"
    finally:
        # The anonymous volume carries no run label, so the leak check would not see it.
        api.delete(f"/volumes/{vol}", validate=False)


@pytest.mark.req("api.containers.prune.label-filter")
def test_prune_by_label(api: ApiClient, containers: Containers, names: Names) -> None:
    labels = _case(names)
    trio = _trio(containers, labels)
    bystander = containers.run_to_exit(["true"])[0]
    resp = api.post("/containers/prune", params={"filters": _filters(labels)})
    assert resp.status_code == 200, f"POST /containers/prune answered {resp.status_code}: {resp.text[:200]}"
    deleted = set(resp.json().get("ContainersDeleted") or [])
    assert deleted == {trio["created"], trio["exited"]}, (
        f"prune with label={labels[CASE_LABEL]} deleted {sorted(i[:12] for i in deleted)}; expected exactly the "
        f"created {trio['created'][:12]} and exited {trio['exited'][:12]} containers")
    left = _ids(_list(api, _filters(labels), all=1))
    assert left == {trio["running"]}, f"after prune {sorted(i[:12] for i in left)} remain; expected only the running one"
    assert api.get(f"/containers/{bystander}/json").status_code == 200, "prune removed a container outside its label filter"


@pytest.mark.req("api.containers.prune.until")
def test_prune_until(api: ApiClient, containers: Containers, names: Names) -> None:
    labels = _case(names)
    cid, _ = containers.run_to_exit(["true"], Labels=labels)
    later = f"{daemon_now(api) + 2:.3f}"  # on the daemon's clock (dockerd reads a duration to whole seconds)
    for until in ("978307200", "1h"):  # 2001-01-01, and a duration: an hour ago; the container is younger
        resp = api.post("/containers/prune", params={"filters": {**_filters(labels), "until": [until]}})
        assert resp.status_code == 200, f"POST /containers/prune until={until} answered {resp.status_code}"
        assert api.get(f"/containers/{cid}/json").status_code == 200, (
            f"prune with until={until} removed {cid[:12]}, created seconds ago "
            f"(ContainersDeleted {resp.json().get('ContainersDeleted')}); only containers created before it may go")
    resp = api.post("/containers/prune", params={"filters": {**_filters(labels), "until": [later]}})
    assert resp.status_code == 200 and resp.json().get("ContainersDeleted") == [cid], (
        f"prune with until={later} (2 s from now) answered {resp.status_code} {resp.text[:200]!r}; expected {cid[:12]} removed")


@pytest.mark.req("api.containers.prune.response")
def test_prune_response_shape(api: ApiClient, containers: Containers, names: Names) -> None:
    labels = _case(names)
    cid, _ = containers.run_to_exit(["sh", "-c", "head -c 20000 /dev/zero > /tmp/blob"], Labels=labels)
    resp = api.post("/containers/prune", params={"filters": _filters(labels)})
    assert resp.status_code == 200, f"POST /containers/prune answered {resp.status_code}"
    body = resp.json()
    assert body.get("ContainersDeleted") == [cid], f"ContainersDeleted is {body.get('ContainersDeleted')!r}; expected [{cid[:12]}…]"
    assert isinstance(body.get("SpaceReclaimed"), int) and body["SpaceReclaimed"] >= 20000, (
        f"SpaceReclaimed is {body.get('SpaceReclaimed')!r} after pruning a container that wrote 20000 bytes")
