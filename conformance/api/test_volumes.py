"""Volumes: create, inspect, list with filters, remove, prune, and data kept across containers (swagger: Volume tag)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from conformance.client import ApiClient, error_message
from conformance.early import EarlyRequests
from conformance.resources import RUN_LABEL, Containers, Names, Volumes

HEX64 = re.compile(r"^[0-9a-f]{64}$")
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
CASE_LABEL = "org.conformance.case"


def _inspect(api: ApiClient, name: str) -> dict[str, Any]:
    resp = api.get(f"/volumes/{name}")
    assert resp.status_code == 200, f"GET /volumes/{name} answered {resp.status_code}: {resp.text[:200]}"
    return resp.json()


def _listed(api: ApiClient, filters: dict[str, list[str]]) -> list[str]:
    resp = api.get("/volumes", params={"filters": filters})
    assert resp.status_code == 200, f"GET /volumes filters={filters} answered {resp.status_code}"
    return [v["Name"] for v in resp.json()["Volumes"] or []]


def _check_volume(vol: dict[str, Any], name: str, labels: dict[str, str]) -> None:
    assert vol["Name"] == name, f"Name is {vol['Name']!r}, expected {name!r}"
    assert vol["Driver"] == "local", f"Driver is {vol['Driver']!r}; the default driver is 'local'"
    assert vol["Scope"] == "local", f"Scope is {vol['Scope']!r}, expected 'local'"
    assert vol["Mountpoint"].startswith("/"), f"Mountpoint {vol['Mountpoint']!r} is not an absolute host path"
    for key, value in labels.items():
        assert (vol["Labels"] or {}).get(key) == value, f"Labels {vol['Labels']} lack {key}={value}"
    assert RFC3339.match(vol.get("CreatedAt") or ""), f"CreatedAt {vol.get('CreatedAt')!r} is not an RFC 3339 time"


# ---------------------------------------------------------------- create and inspect


@pytest.mark.req("api.volumes.create")
def test_create_named(api: ApiClient, names: Names, run_id: str, volumes: Volumes) -> None:
    name = names("vol")
    labels = {RUN_LABEL: run_id, CASE_LABEL: name}
    resp = api.post("/volumes/create", {"Name": name, "Labels": labels})
    volumes.adopt(name)
    assert resp.status_code == 201, f"POST /volumes/create answered {resp.status_code}; the schema says 201"
    _check_volume(resp.json(), name, labels)


@pytest.mark.req("api.volumes.inspect")
def test_inspect_matches_create(api: ApiClient, volumes: Volumes) -> None:
    created = volumes.create(labels={CASE_LABEL: "inspect"})
    got = _inspect(api, created["Name"])
    _check_volume(got, created["Name"], {CASE_LABEL: "inspect"})
    for key in ("Mountpoint", "CreatedAt", "Labels"):
        assert got[key] == created[key], f"inspect {key} {got[key]!r} differs from the create answer {created[key]!r}"


@pytest.mark.req("api.volumes.create-generated-name")
def test_create_without_name(api: ApiClient, run_id: str, volumes: Volumes) -> None:
    resp = api.post("/volumes/create", {"Labels": {RUN_LABEL: run_id}})
    assert resp.status_code == 201, f"POST /volumes/create without a Name answered {resp.status_code}"
    name = volumes.adopt(resp.json()["Name"])
    assert HEX64.match(name), f"the generated volume name {name!r} is not 64 hex digits"
    assert _inspect(api, name)["Name"] == name


@pytest.mark.req("api.volumes.create-existing")
def test_create_existing_returns_it(api: ApiClient, run_id: str, volumes: Volumes) -> None:
    first = volumes.create(labels={CASE_LABEL: "first"})
    resp = api.post("/volumes/create", {"Name": first["Name"], "Labels": {RUN_LABEL: run_id, CASE_LABEL: "second"}})
    assert resp.status_code == 201, f"creating an existing volume again answered {resp.status_code}; dockerd answers 201"
    again = resp.json()
    for key in ("Name", "Mountpoint", "CreatedAt"):
        assert again[key] == first[key], f"the second create gave {key} {again[key]!r}, the first {first[key]!r}"
    assert again["Labels"].get(CASE_LABEL) == "first", f"the second create changed the existing volume's labels to {again['Labels']}"


@pytest.mark.req("api.volumes.create-driver-opts")
def test_create_with_driver_opts(api: ApiClient, volumes: Volumes) -> None:
    opts = {"type": "tmpfs", "device": "tmpfs", "o": "size=1m"}
    created = volumes.create(Driver="local", DriverOpts=opts)
    for body in (created, _inspect(api, created["Name"])):
        assert body.get("Options") == opts, f"Options are {body.get('Options')}; the volume was created with {opts}"


@pytest.mark.req("api.volumes.create-unknown-driver")
def test_create_unknown_driver(api: ApiClient, early: EarlyRequests) -> None:
    # Sent when the area started (conftest.py): dockerd looks for a legacy plugin for ~15 s first.
    resp = early.answer("volume-unknown-driver", api)
    assert resp.status_code == 404, f"creating a volume with an unknown driver answered {resp.status_code}, expected 404"
    assert error_message(resp), f"the body {resp.text[:200]!r} is not {{'message': ...}}"


@pytest.mark.req("api.volumes.create-invalid-name")
@pytest.mark.parametrize("bad", ["bad/name!", "x", "-leading-dash"], ids=["slash", "too-short", "leading-dash"])
def test_create_invalid_name(api: ApiClient, run_id: str, volumes: Volumes, bad: str) -> None:
    resp = api.post("/volumes/create", {"Name": bad, "Labels": {RUN_LABEL: run_id}})
    if resp.status_code < 300:
        volumes.adopt(bad)
    assert resp.status_code == 400, f"creating a volume named {bad!r} answered {resp.status_code}, expected 400"
    assert error_message(resp), f"the 400 body {resp.text[:200]!r} is not {{'message': ...}}"


@pytest.mark.req("api.volumes.inspect-unknown")
def test_inspect_unknown(api: ApiClient, names: Names) -> None:
    resp = api.get(f"/volumes/{names('absent')}")
    assert resp.status_code == 404, f"inspecting an unknown volume answered {resp.status_code}; the schema says 404"
    assert error_message(resp), f"the 404 body {resp.text[:200]!r} is not {{'message': ...}}"


# ---------------------------------------------------------------- list


@pytest.mark.req("api.volumes.list")
def test_list_includes_created(api: ApiClient, volumes: Volumes) -> None:
    name = volumes.create()["Name"]
    resp = api.get("/volumes")
    assert resp.status_code == 200, f"GET /volumes answered {resp.status_code}"
    found = [v for v in resp.json()["Volumes"] or [] if v["Name"] == name]
    assert len(found) == 1, f"GET /volumes lists the new volume {name} {len(found)} times"
    assert found[0]["Driver"] == "local", f"the listed volume has Driver {found[0]['Driver']!r}"


@pytest.mark.req("api.volumes.list-filter-name")
def test_list_filter_name(api: ApiClient, names: Names, volumes: Volumes) -> None:
    stem = names("fname")
    mine = {volumes.create(f"{stem}-a")["Name"], volumes.create(f"{stem}-b")["Name"]}
    other = volumes.create()["Name"]
    got = _listed(api, {"name": [stem]})
    assert set(got) == mine, f"name={stem} listed {got}; expected exactly {sorted(mine)} (name matches a substring)"
    assert other not in got


@pytest.mark.req("api.volumes.list-filter-label")
@pytest.mark.parametrize("form", ["key", "key=value"])
def test_list_filter_label(api: ApiClient, names: Names, volumes: Volumes, form: str) -> None:
    key, value = f"org.conformance.{names('lbl')}", "yes"
    marked = volumes.create(labels={key: value})["Name"]
    other_value = volumes.create(labels={key: "no"})["Name"]
    unmarked = volumes.create()["Name"]
    got = set(_listed(api, {"label": [key if form == "key" else f"{key}={value}"]}))
    expected = {marked, other_value} if form == "key" else {marked}
    assert got == expected, f"label={form} listed {sorted(got)}; expected {sorted(expected)}"
    assert unmarked not in got


@pytest.mark.req("api.volumes.list-filter-dangling")
@pytest.mark.parametrize("dangling", ["true", "false"])
def test_list_filter_dangling(api: ApiClient, names: Names, volumes: Volumes, containers: Containers,
                              dangling: str) -> None:
    case = names("dangle")
    used = volumes.create(labels={CASE_LABEL: case})["Name"]
    unused = volumes.create(labels={CASE_LABEL: case})["Name"]
    containers.create(["true"], HostConfig={"Binds": [f"{used}:/data"]})
    got = set(_listed(api, {"label": [f"{CASE_LABEL}={case}"], "dangling": [dangling]}))
    expected = {unused} if dangling == "true" else {used}
    assert got == expected, f"dangling={dangling} listed {sorted(got)}; expected {sorted(expected)} (one volume is in use)"


@pytest.mark.req("api.volumes.list-filter-driver")
def test_list_filter_driver(api: ApiClient, names: Names, volumes: Volumes) -> None:
    case = names("drv")
    name = volumes.create(labels={CASE_LABEL: case})["Name"]
    assert _listed(api, {"label": [f"{CASE_LABEL}={case}"], "driver": ["local"]}) == [name], "driver=local missed the volume"
    assert _listed(api, {"label": [f"{CASE_LABEL}={case}"], "driver": ["no-such-driver"]}) == [], (
        "driver=no-such-driver listed a local volume")


# ---------------------------------------------------------------- remove and prune


@pytest.mark.req("api.volumes.remove")
def test_remove(api: ApiClient, volumes: Volumes) -> None:
    name = volumes.create()["Name"]
    resp = api.delete(f"/volumes/{name}")
    assert resp.status_code == 204, f"DELETE /volumes/{name} answered {resp.status_code}; the schema says 204"
    assert api.get(f"/volumes/{name}").status_code == 404, "the removed volume can still be inspected"


@pytest.mark.req("api.volumes.remove-in-use")
def test_remove_in_use(api: ApiClient, volumes: Volumes, containers: Containers) -> None:
    name = volumes.create()["Name"]
    containers.create(["true"], HostConfig={"Binds": [f"{name}:/data"]})
    resp = api.delete(f"/volumes/{name}")
    assert resp.status_code == 409, f"removing a volume a container uses answered {resp.status_code}; the schema says 409"
    assert error_message(resp), f"the 409 body {resp.text[:200]!r} is not {{'message': ...}}"
    assert _inspect(api, name)["Name"] == name


@pytest.mark.req("api.volumes.remove-in-use-force")
def test_remove_in_use_force(api: ApiClient, volumes: Volumes, containers: Containers) -> None:
    name = volumes.create()["Name"]
    containers.create(["true"], HostConfig={"Mounts": [{"Type": "volume", "Source": name, "Target": "/data"}]})
    resp = api.delete(f"/volumes/{name}", params={"force": 1})
    assert resp.status_code == 409, (
        f"DELETE /volumes/{name}?force=1 of a volume in use answered {resp.status_code}; dockerd refuses it with 409")
    assert _inspect(api, name)["Name"] == name, "the in-use volume disappeared"


@pytest.mark.req("api.volumes.remove-force-unknown")
def test_remove_force_unknown(api: ApiClient, names: Names) -> None:
    resp = api.delete(f"/volumes/{names('absent')}", params={"force": 1})
    assert resp.status_code == 204, f"forced removal of an unknown volume answered {resp.status_code}; dockerd answers 204"


@pytest.mark.req("api.volumes.remove-unknown")
def test_remove_unknown(api: ApiClient, names: Names) -> None:
    resp = api.delete(f"/volumes/{names('absent')}")
    assert resp.status_code == 404, f"removing an unknown volume answered {resp.status_code}; the schema says 404"
    assert error_message(resp), f"the 404 body {resp.text[:200]!r} is not {{'message': ...}}"


@pytest.mark.req("api.volumes.prune-label")
def test_prune_by_label(api: ApiClient, names: Names, volumes: Volumes, containers: Containers) -> None:
    key = f"org.conformance.prune-{names('p')}"
    doomed = volumes.create(labels={key: "yes"})["Name"]
    other_value = volumes.create(labels={key: "no"})["Name"]
    in_use = volumes.create(labels={key: "yes"})["Name"]
    containers.create(["true"], HostConfig={"Binds": [f"{in_use}:/data"]})
    resp = api.post("/volumes/prune", params={"filters": {"label": [f"{key}=yes"]}})
    assert resp.status_code == 200, f"POST /volumes/prune answered {resp.status_code}"
    deleted = resp.json().get("VolumesDeleted") or []
    assert deleted == [doomed], f"the label prune deleted {deleted}; expected only the unused {doomed}"
    assert api.get(f"/volumes/{doomed}").status_code == 404, "the pruned volume still exists"
    for name in (other_value, in_use):
        assert _inspect(api, name)["Name"] == name


# ---------------------------------------------------------------- data


@pytest.mark.req("api.volumes.data-persists")
@pytest.mark.parametrize("how", ["binds", "mounts"])
def test_data_survives_container(api: ApiClient, volumes: Volumes, containers: Containers, how: str) -> None:
    name = volumes.create()["Name"]

    def host_config(read_only: bool) -> dict[str, Any]:
        if how == "binds":
            return {"Binds": [f"{name}:/data" + (":ro" if read_only else "")]}
        return {"Mounts": [{"Type": "volume", "Source": name, "Target": "/data", "ReadOnly": read_only}]}

    _, code = containers.run_to_exit(["sh", "-c", "echo kept > /data/note"], HostConfig=host_config(False))
    assert code == 0, f"the writer container exited {code}"
    reader, code = containers.run_to_exit(["cat", "/data/note"], HostConfig=host_config(True))
    out = containers.output(reader)
    assert code == 0 and out == "kept\n", f"a second container read {out!r} (exit {code}) from the volume; expected 'kept'"
