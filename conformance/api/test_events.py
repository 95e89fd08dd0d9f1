"""GET /events: the event log over a since/until window, its filters, and the live stream.

Events are per daemon and other runs make events too, so every query is narrowed to objects
this check created (a label unique to the check, or the object's own ID or name).
"""

from __future__ import annotations

import json
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

import pytest

from conformance.client import ApiClient, daemon_now, error_message, json_lines
from conformance.resources import Containers, Images, Names, Networks, Volumes
from conformance.streams import hijack
from conformance.target import Target

Event = dict[str, Any]
LIFECYCLE = ("create", "start", "die", "destroy")
CHECK_LABEL = "org.conformance.events-check"


def _stamp(t: float) -> str:
    return f"{t:.9f}"


def _own(names: Names) -> tuple[dict[str, str], dict[str, list[str]]]:
    """Labels to put on this check's containers, and the event filter that selects them."""
    value = names("ev")
    return {CHECK_LABEL: value}, {"label": [f"{CHECK_LABEL}={value}"]}


def _window(api: ApiClient, since: float, filters: dict[str, list[str]], until: float | None = None) -> list[Event]:
    until = daemon_now(api) if until is None else until
    resp = api.get("/events", params={"since": _stamp(since), "until": _stamp(until), "filters": filters},
                   timeout=30)
    assert resp.status_code == 200, (
        f"GET /events with filters {filters} answered {resp.status_code} {resp.text[:200]!r}; expected 200")
    return json_lines(resp.content)


def _collect(api: ApiClient, since: float, filters: dict[str, list[str]], done: Callable[[list[Event]], bool],
             timeout: float = 10.0) -> list[Event]:
    """Query the window up to now until `done` holds (a daemon may log an event just after the call returns)."""
    deadline = time.monotonic() + timeout
    while True:
        events = _window(api, since, filters)
        if done(events) or time.monotonic() > deadline:
            return events
        time.sleep(0.2)


def _actions(events: list[Event], actor: str | None = None) -> list[str]:
    return [e.get("Action", "") for e in events if actor is None or e.get("Actor", {}).get("ID") == actor]


def _base_action(action: str) -> str:
    # dockerd appends the command to exec actions: "exec_create: sh -c exit 2".
    return action.split(":", 1)[0]


def _remove_container(api: ApiClient, cid: str) -> None:
    resp = api.delete(f"/containers/{cid}", params={"force": 1})
    assert resp.status_code == 204, f"DELETE /containers/{cid[:12]} answered {resp.status_code}; expected 204"


def _lifecycle(api: ApiClient, containers: Containers, labels: dict[str, str], **kw: Any) -> str:
    """Run a container to exit and remove it; returns its ID."""
    cid, _ = containers.run_to_exit(["true"], Labels=labels, **kw)
    _remove_container(api, cid)
    return cid


def _create_remove(api: ApiClient, containers: Containers, labels: dict[str, str]) -> str:
    """A container that is only created and removed (create and destroy events); returns its ID."""
    cid = containers.create(["true"], Labels=labels)
    _remove_container(api, cid)
    return cid


def _has_all(actor: str, wanted: tuple[str, ...]) -> Callable[[list[Event]], bool]:
    return lambda evs: set(wanted) <= {_base_action(a) for a in _actions(evs, actor)}


@pytest.mark.req("api.events.container-lifecycle")
def test_container_lifecycle(api: ApiClient, containers: Containers, names: Names) -> None:
    labels, flt = _own(names)
    since = daemon_now(api) - 1
    cid = _lifecycle(api, containers, labels)
    events = _collect(api, since, flt, _has_all(cid, LIFECYCLE))
    actions = _actions(events, cid)
    for action in LIFECYCLE:
        assert action in actions, f"no {action!r} event for container {cid[:12]}; its events were {actions}"
    positions = [actions.index(a) for a in LIFECYCLE]
    assert positions == sorted(positions), f"container events came in the order {actions}; expected {LIFECYCLE}"
    for e in events:
        assert e.get("Type") == "container", f"event {e.get('Action')!r} of a container has Type {e.get('Type')!r}"


@pytest.mark.req("api.events.json-lines")
def test_json_lines(api: ApiClient, containers: Containers, names: Names) -> None:
    labels, flt = _own(names)
    since = daemon_now(api) - 1
    _lifecycle(api, containers, labels)
    resp = api.get("/events", params={"since": _stamp(since), "until": _stamp(daemon_now(api)), "filters": flt})
    assert resp.status_code == 200, f"GET /events answered {resp.status_code}; expected 200"
    ctype = resp.headers.get("Content-Type", "").split(";")[0].strip()
    assert ctype == "application/json", f"GET /events Content-Type is {ctype!r}; expected application/json"
    lines = [line for line in resp.content.split(b"\n") if line.strip()]
    assert len(lines) >= len(LIFECYCLE), f"GET /events sent {len(lines)} lines; expected at least {len(LIFECYCLE)}"
    for line in lines:
        try:
            doc = json.loads(line)
        except ValueError:
            pytest.fail(f"GET /events line {line[:200]!r} is not one JSON document")
        assert isinstance(doc, dict), f"GET /events line {line[:200]!r} is not a JSON object"


@pytest.mark.req("api.events.actor-attributes")
def test_actor_attributes(api: ApiClient, containers: Containers, names: Names) -> None:
    labels, flt = _own(names)
    labels["org.conformance.extra"] = "a value with spaces"
    name = names("evattr")
    since = daemon_now(api) - 1
    cid = _lifecycle(api, containers, labels, name=name)
    events = _collect(api, since, flt, _has_all(cid, ("create", "destroy")))
    create = [e for e in events if e.get("Action") == "create" and e.get("Actor", {}).get("ID") == cid]
    assert create, f"no create event for {cid[:12]} among {_actions(events)}"
    attrs = create[0]["Actor"].get("Attributes") or {}
    assert attrs.get("image") == containers.probe.base, (
        f"create event Attributes.image is {attrs.get('image')!r}; expected {containers.probe.base!r}")
    assert attrs.get("name") == name, f"create event Attributes.name is {attrs.get('name')!r}; expected {name!r}"
    for key, value in labels.items():
        assert attrs.get(key) == value, f"create event Attributes[{key!r}] is {attrs.get(key)!r}; expected label {value!r}"


@pytest.mark.req("api.events.timestamps")
def test_timestamps(api: ApiClient, containers: Containers, names: Names) -> None:
    labels, flt = _own(names)
    since = daemon_now(api)
    cid = _lifecycle(api, containers, labels)
    _collect(api, since, flt, _has_all(cid, LIFECYCLE))
    until = daemon_now(api)
    events = _window(api, since, flt, until)
    assert events, "no events in the window of a container's whole life"
    previous = 0
    for e in events:
        t, nano = e.get("time"), e.get("timeNano")
        assert isinstance(t, int) and isinstance(nano, int), f"event {e.get('Action')!r} time={t!r} timeNano={nano!r}"
        assert t == nano // 10**9, f"event {e.get('Action')!r} time {t} disagrees with timeNano {nano}"
        assert since - 1 <= nano / 1e9 <= until + 1, (
            f"event {e.get('Action')!r} at {nano / 1e9:.3f} lies outside the window {since:.3f}..{until:.3f}")
        assert nano >= previous, f"events are not in time order: {nano} after {previous}"
        previous = nano


@pytest.mark.req("api.events.die-exit-code")
def test_die_exit_code(api: ApiClient, containers: Containers, names: Names) -> None:
    labels, flt = _own(names)
    since = daemon_now(api) - 1
    cid, code = containers.run_to_exit(["sh", "-c", "exit 3"], Labels=labels)
    assert code == 3, f"the container exited {code}; expected 3"
    events = _collect(api, since, flt, _has_all(cid, ("die",)))
    dies = [e for e in events if e.get("Action") == "die"]
    assert dies, f"no die event for {cid[:12]}; events were {_actions(events)}"
    got = (dies[0]["Actor"].get("Attributes") or {}).get("exitCode")
    assert got == "3", f"die event exitCode is {got!r}; expected '3'"


@pytest.mark.req("api.events.exec-events")
def test_exec_events(api: ApiClient, containers: Containers, names: Names) -> None:
    labels, flt = _own(names)
    cid = containers.run_long(Labels=labels)
    since = daemon_now(api) - 1
    resp = api.post(f"/containers/{cid}/exec", {"Cmd": ["sh", "-c", "exit 2"]})
    assert resp.status_code == 201, f"exec create answered {resp.status_code}"
    eid = resp.json()["Id"]
    resp = api.post(f"/exec/{eid}/start", {"Detach": True})
    assert resp.status_code == 200, f"exec start (detached) answered {resp.status_code}"
    wanted = ("exec_create", "exec_start", "exec_die")
    events = _collect(api, since, flt, _has_all(cid, wanted))
    base = [_base_action(a) for a in _actions(events, cid)]
    for action in wanted:
        assert action in base, f"no {action} event for the exec; events were {_actions(events, cid)}"
    die = [e for e in events if _base_action(e.get("Action", "")) == "exec_die"][0]
    attrs = die["Actor"].get("Attributes") or {}
    assert attrs.get("execID") == eid, f"exec_die execID is {attrs.get('execID')!r}; expected {eid!r}"
    assert attrs.get("exitCode") == "2", f"exec_die exitCode is {attrs.get('exitCode')!r}; expected '2'"


def _tiny_tar() -> bytes:
    import io
    import tarfile
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("from-events-check")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    return buf.getvalue()


# operation -> (request, event action, attributes the event must carry); {old} is the container's name
ACTIONS: dict[str, tuple[Callable[[ApiClient, str], Any], str, dict[str, str]]] = {
    "top": (lambda api, cid: api.get(f"/containers/{cid}/top"), "top", {}),
    "resize": (lambda api, cid: api.post(f"/containers/{cid}/resize", params={"h": 20, "w": 80}), "resize",
               {"height": "20", "width": "80"}),
    "archive-get": (lambda api, cid: api.get(f"/containers/{cid}/archive", params={"path": "/etc/hostname"}),
                    "archive-path", {}),
    "archive-put": (lambda api, cid: api.request("PUT", f"/containers/{cid}/archive", params={"path": "/tmp"},
                                                 data=_tiny_tar(), headers={"Content-Type": "application/x-tar"}),
                    "extract-to-dir", {}),
    "export": (lambda api, cid: api.get(f"/containers/{cid}/export"), "export", {}),
    "rename": (lambda api, cid: api.post(f"/containers/{cid}/rename", params={"name": f"{cid[:12]}-renamed"}),
               "rename", {"oldName": "{old}"}),
    "update": (lambda api, cid: api.post(f"/containers/{cid}/update", {"CpuShares": 512}), "update", {}),
    "pause": (lambda api, cid: api.post(f"/containers/{cid}/pause"), "pause", {}),
    "unpause": (lambda api, cid: (api.post(f"/containers/{cid}/pause"), api.post(f"/containers/{cid}/unpause"))[1],
                "unpause", {}),
}


@pytest.mark.req("api.events.container-actions")
@pytest.mark.parametrize("operation", list(ACTIONS))
def test_container_action_event(api: ApiClient, containers: Containers, names: Names, operation: str) -> None:
    request, action, attrs = ACTIONS[operation]
    labels, flt = _own(names)
    name = names("act")
    cid = containers.run_long(Labels=labels, name=name, Tty=operation == "resize")
    since = daemon_now(api) - 1
    resp = request(api, cid)
    assert resp.status_code in (200, 204), f"{operation} answered {resp.status_code} {error_message(resp)!r}"
    resp.close()
    events = _collect(api, since, flt, lambda evs: action in _actions(evs, cid))
    found = [e for e in events if e.get("Action") == action and e.get("Actor", {}).get("ID") == cid]
    assert found, f"no container {action!r} event after {operation}; the container's events were {_actions(events, cid)}"
    got = found[0]["Actor"].get("Attributes") or {}
    for key, value in attrs.items():
        value = value.format(old="/" + name)
        assert got.get(key) == value, f"the {action} event's {key} is {got.get(key)!r}; dockerd sends {value!r}"


@pytest.mark.req("api.events.stop-events")
def test_stop_events(api: ApiClient, containers: Containers, names: Names) -> None:
    labels, flt = _own(names)
    cid = containers.run_long(Labels=labels)
    since = daemon_now(api) - 1
    resp = api.post(f"/containers/{cid}/stop", params={"t": 1}, timeout=30)
    assert resp.status_code == 204, f"stop answered {resp.status_code}; expected 204"
    events = _collect(api, since, flt, _has_all(cid, ("kill", "die", "stop")))
    actions = _actions(events, cid)
    for action in ("kill", "die", "stop"):
        assert action in actions, f"no {action} event when stopping; events were {actions}"
    assert actions.index("kill") < actions.index("die") < actions.index("stop"), (
        f"stop produced {actions}; expected kill, then die, then stop")


@pytest.mark.req("api.events.filter-type")
def test_filter_type(api: ApiClient, containers: Containers, names: Names) -> None:
    labels, flt = _own(names)
    since = daemon_now(api) - 1
    cid = _lifecycle(api, containers, labels)
    _collect(api, since, flt, _has_all(cid, LIFECYCLE))
    only = _window(api, since, {**flt, "type": ["container"]})
    assert only, "type=container returned none of this check's container events"
    wrong = [e for e in only if e.get("Type") != "container"]
    assert not wrong, f"type=container returned events of Type {[e.get('Type') for e in wrong]}"
    others = _window(api, since, {**flt, "type": ["image", "volume", "network"]})
    assert not others, f"type=image/volume/network returned container events {_actions(others)}"


@pytest.mark.req("api.events.filter-event")
def test_filter_event(api: ApiClient, containers: Containers, names: Names) -> None:
    labels, flt = _own(names)
    since = daemon_now(api) - 1
    cid = _lifecycle(api, containers, labels)
    _collect(api, since, flt, _has_all(cid, LIFECYCLE))
    actions = _actions(_window(api, since, {**flt, "event": ["start"]}))
    assert actions == ["start"], f"event=start returned {actions}; expected exactly one start"


@pytest.mark.req("api.events.filter-or")
def test_filter_or_and(api: ApiClient, containers: Containers, names: Names) -> None:
    labels, flt = _own(names)
    since = daemon_now(api) - 1
    first = _lifecycle(api, containers, labels)
    second = _lifecycle(api, containers, labels)
    _collect(api, since, flt, _has_all(second, LIFECYCLE))
    both = _window(api, since, {**flt, "event": ["start", "die"]})
    assert sorted(_actions(both)) == ["die", "die", "start", "start"], (
        f"event=[start, die] for two containers returned {_actions(both)}; expected start and die of each")
    one = _window(api, since, {**flt, "event": ["start", "die"], "container": [first]})
    assert sorted(_actions(one)) == ["die", "start"] and {e["Actor"]["ID"] for e in one} == {first}, (
        f"event=[start, die] and container={first[:12]} returned {[(e['Actor']['ID'][:12], e['Action']) for e in one]}")


@pytest.mark.req("api.events.filter-container")
@pytest.mark.parametrize("by", ["id", "name"])
def test_filter_container(api: ApiClient, containers: Containers, names: Names, by: str) -> None:
    labels, flt = _own(names)
    since = daemon_now(api) - 1
    name = names("evpick")
    picked = _lifecycle(api, containers, labels, name=name)
    other = _create_remove(api, containers, labels)
    _collect(api, since, flt, _has_all(other, ("create", "destroy")))
    events = _window(api, since, {"container": [picked if by == "id" else name]})
    actors = {e.get("Actor", {}).get("ID") for e in events}
    assert actors == {picked}, (
        f"container={by} filter returned events of {sorted(a[:12] for a in actors if a)}; expected only {picked[:12]}")
    assert set(LIFECYCLE) <= set(_actions(events)), f"container={by} filter returned only {_actions(events)}"


@pytest.mark.req("api.events.filter-label")
def test_filter_label(api: ApiClient, containers: Containers, names: Names) -> None:
    key = f"org.conformance.{names('evkey')}"
    since = daemon_now(api) - 1
    a = _lifecycle(api, containers, {key: "a"})
    b = _create_remove(api, containers, {key: "b"})
    _collect(api, since, {"label": [key]}, _has_all(b, ("create", "destroy")))
    by_value = {e["Actor"]["ID"] for e in _window(api, since, {"label": [f"{key}=a"]})}
    assert by_value == {a}, f"label={key}=a returned events of {sorted(x[:12] for x in by_value)}; expected {a[:12]}"
    by_key = {e["Actor"]["ID"] for e in _window(api, since, {"label": [key]})}
    assert by_key == {a, b}, f"label={key} returned events of {sorted(x[:12] for x in by_key)}; expected both containers"


@pytest.mark.req("api.events.image-tag")
def test_image_tag_untag(api: ApiClient, images: Images, probe: Any) -> None:
    repo, tag = images.new_ref("evtag")
    ref = f"{repo}:{tag}"
    since = daemon_now(api) - 1
    resp = api.post(f"/images/{probe.base}/tag", params={"repo": repo, "tag": tag})
    assert resp.status_code == 201, f"tagging answered {resp.status_code}; expected 201"
    # Image inspect's body is the images checks' business; here only the ID matters.
    image_id = api.get(f"/images/{ref}/json", validate=False).json()["Id"]
    resp = api.delete(f"/images/{ref}")
    assert resp.status_code == 200, f"removing the tag answered {resp.status_code}; expected 200"

    def mine(evs: list[Event]) -> tuple[list[Event], list[Event]]:
        tags = [e for e in evs if e.get("Action") == "tag" and (e["Actor"].get("Attributes") or {}).get("name") == ref]
        # dockerd names the untagged image by its ID, not by the removed reference.
        untags = [e for e in evs if e.get("Action") == "untag" and
                  ((e["Actor"].get("Attributes") or {}).get("name") == ref or e["Actor"].get("ID") == image_id)]
        return tags, untags

    events = _collect(api, since, {"type": ["image"]}, lambda evs: all(mine(evs)))
    tags, untags = mine(events)
    assert tags, f"no image tag event naming {ref}; image events were {_actions(events)}"
    assert tags[0]["Type"] == "image" and tags[0]["Actor"]["ID"] == image_id, (
        f"tag event is {tags[0]}; expected Type image and Actor.ID {image_id}")
    assert untags, f"no image untag event for {ref}; image events were {_actions(events)}"
    by_ref = _actions(_window(api, since, {"image": [ref]}))
    assert "tag" in by_ref, f"image={ref} filter returned {by_ref}; expected the tag event"


@pytest.mark.req("api.events.volume-events")
def test_volume_events(api: ApiClient, volumes: Volumes) -> None:
    since = daemon_now(api) - 1
    name = volumes.create()["Name"]
    resp = api.delete(f"/volumes/{name}")
    assert resp.status_code == 204, f"removing volume {name} answered {resp.status_code}; expected 204"
    events = _collect(api, since, {"volume": [name]}, _has_all(name, ("create", "destroy")))
    actions = _actions(events, name)
    assert "create" in actions and "destroy" in actions, f"volume {name} events were {actions}; expected create, destroy"
    for e in events:
        assert e.get("Type") == "volume", f"volume event {e.get('Action')!r} has Type {e.get('Type')!r}"


@pytest.mark.req("api.events.network-events")
def test_network_events(api: ApiClient, networks: Networks, names: Names) -> None:
    since = daemon_now(api) - 1
    name = names("evnet")
    nid = networks.create(name)
    resp = api.delete(f"/networks/{nid}")
    assert resp.status_code == 204, f"removing network {name} answered {resp.status_code}; expected 204"
    events = _collect(api, since, {"network": [nid]}, _has_all(nid, ("create", "destroy")))
    actions = _actions(events, nid)
    assert "create" in actions and "destroy" in actions, f"network {name} events were {actions}; expected create, destroy"
    for e in events:
        assert e.get("Type") == "network", f"network event {e.get('Action')!r} has Type {e.get('Type')!r}"
        got = (e["Actor"].get("Attributes") or {}).get("name")
        assert got == name, f"network {e.get('Action')} event Attributes.name is {got!r}; expected {name!r}"


@pytest.mark.req("api.events.unknown-type-filter")
def test_unknown_type_filter(api: ApiClient, containers: Containers, names: Names) -> None:
    labels, flt = _own(names)
    since = daemon_now(api) - 1
    cid = _lifecycle(api, containers, labels)
    _collect(api, since, flt, _has_all(cid, LIFECYCLE))
    resp = api.get("/events", params={"since": _stamp(since), "until": _stamp(daemon_now(api)),
                                      "filters": {**flt, "type": ["nope"]}})
    if resp.status_code == 400:
        assert error_message(resp), f"400 body {resp.text[:200]!r} is not {{'message': ...}}"
        return
    assert resp.status_code == 200, f"type=nope answered {resp.status_code}; expected 400 or 200"
    assert not json_lines(resp.content), f"type=nope matched events {_actions(json_lines(resp.content))}"


@pytest.mark.req("api.events.malformed-filters")
@pytest.mark.deviation("docker", reason="dockerd 20.10 returns the JSON decoding error of filters as 500")
def test_malformed_filters(api: ApiClient) -> None:
    now = daemon_now(api)
    resp = api.get("/events", params={"since": _stamp(now - 5), "until": _stamp(now), "filters": "{bad"})
    assert resp.status_code == 400, f"filters={{bad answered {resp.status_code}; expected 400"
    assert error_message(resp), f"body {resp.text[:200]!r} is not {{'message': ...}}"


@pytest.mark.req("api.events.bad-since")
@pytest.mark.deviation("docker", reason="dockerd 20.10 returns the strconv error of since as 500")
def test_bad_since(api: ApiClient) -> None:
    resp = api.get("/events", params={"since": "yesterday-ish", "until": _stamp(daemon_now(api))})
    assert resp.status_code == 400, f"since=yesterday-ish answered {resp.status_code}; expected 400"
    assert error_message(resp), f"body {resp.text[:200]!r} is not {{'message': ...}}"


@pytest.mark.req("api.events.since-after-until")
def test_since_after_until(api: ApiClient) -> None:
    now = daemon_now(api)
    resp = api.get("/events", params={"since": _stamp(now + 10), "until": _stamp(now - 10)})
    assert resp.status_code == 400, f"since 20 s after until answered {resp.status_code}; expected 400"
    assert error_message(resp), f"body {resp.text[:200]!r} is not {{'message': ...}}"


@pytest.mark.req("api.events.until-only")
def test_until_without_since(api: ApiClient, containers: Containers, names: Names) -> None:
    labels, flt = _own(names)
    cid = _lifecycle(api, containers, labels)
    resp = api.get("/events", params={"until": _stamp(daemon_now(api)), "filters": flt}, timeout=20)
    assert resp.status_code == 200, f"GET /events with only until answered {resp.status_code}; expected 200"
    got = _actions(json_lines(resp.content), cid)
    # dockerd answers from its buffer of recent events (since defaults to its start), as with since=0.
    assert {"create", "start", "die", "destroy"} <= set(got), (
        f"GET /events?until=now (no since) returned {got} for a container that just ran; expected its "
        "create, start, die and destroy from the daemon's recent events")


@pytest.mark.req("api.events.future-window")
def test_future_window(api: ApiClient, containers: Containers, names: Names) -> None:
    labels, flt = _own(names)
    _lifecycle(api, containers, labels)
    now = daemon_now(api)
    started = time.monotonic()
    # since/until are read to the nanosecond; 0.5 s ahead stays in the future while the request travels, even on
    # a loaded machine (a GET reaches the daemon in milliseconds), and the daemon must still wait for until.
    resp = api.get("/events", params={"since": _stamp(now + 0.5), "until": _stamp(now + 0.8), "filters": flt},
                   timeout=20)
    assert resp.status_code == 200, f"a future window answered {resp.status_code}; expected 200"
    events = json_lines(resp.content)
    assert not events, f"a window after the container's life returned its events {_actions(events)}"
    assert time.monotonic() - started < 15, "a future window did not end soon after its until"


def _dechunk(buf: bytes) -> bytes:
    """The payload of the complete chunks at the start of a chunked body."""
    out, pos = b"", 0
    while True:
        end = buf.find(b"\r\n", pos)
        if end < 0:
            return out
        size = int(buf[pos:end].split(b";")[0] or b"0", 16)
        if size == 0 or len(buf) < end + 2 + size + 2:
            return out
        out += buf[end + 2:end + 2 + size]
        pos = end + 2 + size + 2


@pytest.mark.req("api.events.stream-live")
def test_stream_live(api: ApiClient, containers: Containers, names: Names, target: Target) -> None:
    labels, flt = _own(names)
    prefix = f"/v{api.version}" if api.version else ""
    path = f"{prefix}/events?filters={urllib.parse.quote(json.dumps(flt))}"
    stream = hijack(target, "GET", path, upgrade=False, timeout=15)
    raw, events = b"", []
    try:
        assert stream.response.status == 200, f"GET /events (streaming) answered {stream.response.status}"
        chunked = stream.response.header("transfer-encoding") == "chunked"
        cid = containers.create(["true"], Labels=labels)
        started = time.monotonic()
        deadline = started + 10
        while time.monotonic() < deadline and not any(e.get("Action") == "create" for e in events):
            raw += stream.read_until(b"\n", timeout=max(0.1, deadline - time.monotonic()))
            body = _dechunk(raw) if chunked else raw
            complete = body[:body.rfind(b"\n") + 1]
            events = [e for e in json_lines(complete) if e.get("Actor", {}).get("ID") == cid]
        waited = time.monotonic() - started
    finally:
        stream.close()
    assert any(e.get("Action") == "create" for e in events), (
        f"no create event for {cid[:12]} arrived on the open stream within {waited:.1f} s; got {raw[:300]!r}")
