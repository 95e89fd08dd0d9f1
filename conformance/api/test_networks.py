"""Networks: create, inspect, list with filters, IPAM, connect/disconnect, remove, prune (swagger: Network tag).

No traffic is sent: the checks only look at what the daemon reports. Networks that do not test the
default address pool get a random 10.200-254.x.0/24 subnet, so parallel runs do not drain the pool.
"""

from __future__ import annotations

import ipaddress
import random
import re
from typing import Any

import pytest

from conformance.client import ApiClient, daemon_now, error_message
from conformance.early import EarlyRequests
from conformance.resources import RUN_LABEL, Containers, Names, Networks

HEX64 = re.compile(r"^[0-9a-f]{64}$")
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
PREDEFINED = {"bridge": "bridge", "host": "host", "none": "null"}  # name -> driver


def _subnet_network(api: ApiClient, networks: Networks, labels: dict[str, str] | None = None,
                    **extra: Any) -> tuple[str, str, ipaddress.IPv4Network, str]:
    """Create a bridge network on a random /24; returns (id, name, subnet, gateway)."""
    for _ in range(10):
        net = ipaddress.IPv4Network(f"10.{random.randint(200, 254)}.{random.randint(0, 255)}.0/24")
        gateway = str(net.network_address + 1)
        name = networks.names("net")
        body = {"Name": name, "CheckDuplicate": True, "Labels": {**(labels or {}), RUN_LABEL: networks.run_id},
                "IPAM": {"Driver": "default", "Config": [{"Subnet": str(net), "Gateway": gateway}]}, **extra}
        resp = api.post("/networks/create", body)
        if resp.status_code == 201:
            return networks.adopt(resp.json()["Id"]), name, net, gateway
        # Another run (or a host route) holds this subnet: draw again.
        assert resp.status_code in (403, 409) or "overlap" in (error_message(resp) or ""), (
            f"creating a network on {net} answered {resp.status_code} {resp.text[:200]!r}")
    pytest.fail("found no free 10.x.y.0/24 subnet in 10 tries")


def _inspect(api: ApiClient, ref: str) -> dict[str, Any]:
    resp = api.get(f"/networks/{ref}")
    assert resp.status_code == 200, f"GET /networks/{ref} answered {resp.status_code}: {resp.text[:200]}"
    return resp.json()


def _list(api: ApiClient, filters: dict[str, list[str]] | None = None) -> list[dict[str, Any]]:
    resp = api.get("/networks", params={"filters": filters} if filters else None)
    assert resp.status_code == 200, f"GET /networks filters={filters} answered {resp.status_code}: {resp.text[:200]}"
    return resp.json()


def _container_networks(containers: Containers, cid: str) -> dict[str, Any]:
    return containers.inspect(cid)["NetworkSettings"]["Networks"] or {}


# ---------------------------------------------------------------- list, create, inspect


@pytest.mark.req("api.networks.list-predefined")
@pytest.mark.parametrize("name", sorted(PREDEFINED))
def test_list_has_predefined(api: ApiClient, name: str) -> None:
    found = [n for n in _list(api) if n["Name"] == name]
    assert len(found) == 1, f"GET /networks lists the predefined network {name!r} {len(found)} times"
    assert found[0]["Driver"] == PREDEFINED[name], f"{name} has Driver {found[0]['Driver']!r}, expected {PREDEFINED[name]!r}"
    assert found[0]["Scope"] == "local", f"{name} has Scope {found[0]['Scope']!r}"


@pytest.mark.req("api.networks.create")
def test_create(api: ApiClient, networks: Networks) -> None:
    resp = api.post("/networks/create", {"Name": networks.names("net"), "CheckDuplicate": True,
                                         "Labels": {RUN_LABEL: networks.run_id}})
    assert resp.status_code == 201, f"POST /networks/create answered {resp.status_code}: {resp.text[:200]}"
    nid = networks.adopt(resp.json()["Id"])
    assert HEX64.match(nid), f"the network Id {nid!r} is not 64 hex digits"
    assert _inspect(api, nid)["Id"] == nid


@pytest.mark.req("api.networks.create-duplicate")
def test_create_duplicate_name(api: ApiClient, networks: Networks) -> None:
    _, name, _, _ = _subnet_network(api, networks)
    resp = api.post("/networks/create", {"Name": name, "CheckDuplicate": True, "Labels": {RUN_LABEL: networks.run_id}})
    if resp.status_code == 201:
        networks.adopt(resp.json()["Id"])
    assert resp.status_code == 409, f"a duplicate name with CheckDuplicate answered {resp.status_code}, expected 409"
    assert error_message(resp), f"the body {resp.text[:200]!r} is not {{'message': ...}}"


@pytest.mark.req("api.networks.create-predefined-name")
@pytest.mark.parametrize("name", sorted(PREDEFINED))
def test_create_predefined_name(api: ApiClient, networks: Networks, name: str) -> None:
    resp = api.post("/networks/create", {"Name": name, "CheckDuplicate": True, "Labels": {RUN_LABEL: networks.run_id}})
    if resp.status_code == 201:
        networks.adopt(resp.json()["Id"])
    assert resp.status_code == 403, f"creating a network named {name!r} answered {resp.status_code}; the schema says 403"


@pytest.mark.req("api.networks.inspect")
def test_inspect(api: ApiClient, networks: Networks) -> None:
    nid, name, net, gateway = _subnet_network(api, networks, labels={"org.conformance.case": "inspect"})
    body = _inspect(api, nid)
    expected = {"Id": nid, "Name": name, "Driver": "bridge", "Scope": "local", "Internal": False,
                "Attachable": False, "EnableIPv6": False}
    for key, value in expected.items():
        assert body.get(key) == value, f"{key} is {body.get(key)!r}, expected {value!r}"
    assert body["Labels"].get("org.conformance.case") == "inspect", f"Labels are {body['Labels']}"
    assert body["IPAM"]["Driver"] == "default", f"IPAM.Driver is {body['IPAM']['Driver']!r}"
    assert RFC3339.match(body.get("Created") or ""), f"Created {body.get('Created')!r} is not an RFC 3339 time"
    assert body.get("Containers") == {}, f"a new network has Containers {body.get('Containers')}"


@pytest.mark.req("api.networks.inspect-by-name-or-prefix")
@pytest.mark.parametrize("form", ["name", "id-prefix"])
def test_inspect_by_name_or_prefix(api: ApiClient, networks: Networks, form: str) -> None:
    nid, name, _, _ = _subnet_network(api, networks)
    ref = name if form == "name" else nid[:12]
    assert _inspect(api, ref)["Id"] == nid, f"GET /networks/{ref} found another network"


@pytest.mark.req("api.networks.inspect-unknown")
def test_inspect_unknown(api: ApiClient, names: Names) -> None:
    resp = api.get(f"/networks/{names('absent')}")
    assert resp.status_code == 404, f"inspecting an unknown network answered {resp.status_code}; the schema says 404"
    assert error_message(resp), f"the 404 body {resp.text[:200]!r} is not {{'message': ...}}"


@pytest.mark.req("api.networks.ipam-config")
def test_ipam_subnet_gateway(api: ApiClient, networks: Networks) -> None:
    nid, _, net, gateway = _subnet_network(api, networks)
    config = _inspect(api, nid)["IPAM"]["Config"]
    assert config == [{"Subnet": str(net), "Gateway": gateway}], (
        f"IPAM.Config is {config}; the network was created with subnet {net} and gateway {gateway}")


@pytest.mark.req("api.networks.ipam-overlap")
def test_ipam_overlap(api: ApiClient, networks: Networks) -> None:
    _, _, net, _ = _subnet_network(api, networks)
    resp = api.post("/networks/create", {"Name": networks.names("overlap"), "CheckDuplicate": True,
                                         "Labels": {RUN_LABEL: networks.run_id},
                                         "IPAM": {"Config": [{"Subnet": str(net)}]}})
    if resp.status_code == 201:
        networks.adopt(resp.json()["Id"])
    assert resp.status_code == 403, f"a second network on the taken subnet {net} answered {resp.status_code}; dockerd answers 403"
    assert error_message(resp), f"the 403 body {resp.text[:200]!r} is not {{'message': ...}}"


@pytest.mark.req("api.networks.create-flags")
@pytest.mark.parametrize("flag", ["Internal", "Attachable"])
def test_create_flag(api: ApiClient, networks: Networks, flag: str) -> None:
    nid, _, _, _ = _subnet_network(api, networks, **{flag: True})
    body = _inspect(api, nid)
    assert body[flag] is True, f"a network created with {flag}=true inspects as {flag}={body[flag]!r}"


@pytest.mark.req("api.networks.create-options")
def test_create_driver_options(api: ApiClient, networks: Networks) -> None:
    opts = {"com.docker.network.driver.mtu": "1400"}
    nid, _, _, _ = _subnet_network(api, networks, Options=opts)
    got = _inspect(api, nid)["Options"]
    assert got.get("com.docker.network.driver.mtu") == "1400", f"Options are {got}; the network was created with {opts}"


@pytest.mark.req("api.networks.create-unknown-driver")
def test_create_unknown_driver(api: ApiClient, early: EarlyRequests) -> None:
    # Sent when the area started (conftest.py): dockerd looks for a legacy plugin for ~15 s first.
    resp = early.answer("network-unknown-driver", api)
    assert resp.status_code == 404, f"creating a network with an unknown driver answered {resp.status_code}; the schema says 404"
    assert error_message(resp), f"the body {resp.text[:200]!r} is not {{'message': ...}}"


# ---------------------------------------------------------------- list filters


@pytest.mark.req("api.networks.list-filter")
def test_list_filter_name(api: ApiClient, networks: Networks) -> None:
    _, first, _, _ = _subnet_network(api, networks)
    stem = first.rsplit("-", 1)[0]  # conf-<run>-<worker>-net: every network this worker made
    got = {n["Name"] for n in _list(api, {"name": [first]})}
    assert got == {first}, f"name={first} listed {sorted(got)}"
    assert first in {n["Name"] for n in _list(api, {"name": [stem]})}, f"name={stem} (a substring) missed {first}"


@pytest.mark.req("api.networks.list-filter")
@pytest.mark.parametrize("form", ["key", "key=value"])
def test_list_filter_label(api: ApiClient, names: Names, networks: Networks, form: str) -> None:
    key = f"org.conformance.{names('lbl')}"
    yes, _, _, _ = _subnet_network(api, networks, labels={key: "yes"})
    no, _, _, _ = _subnet_network(api, networks, labels={key: "no"})
    got = {n["Id"] for n in _list(api, {"label": [key if form == "key" else f"{key}=yes"]})}
    expected = {yes, no} if form == "key" else {yes}
    assert got == expected, f"label filter ({form}) listed {sorted(got)}; expected {sorted(expected)}"


@pytest.mark.req("api.networks.list-filter")
def test_list_filter_driver(api: ApiClient, names: Names, networks: Networks) -> None:
    case = names("drv")
    nid, _, _, _ = _subnet_network(api, networks, labels={"org.conformance.case": case})
    label = [f"org.conformance.case={case}"]
    assert [n["Id"] for n in _list(api, {"driver": ["bridge"], "label": label})] == [nid], "driver=bridge missed the network"
    assert _list(api, {"driver": ["host"], "label": label}) == [], "driver=host listed a bridge network"


@pytest.mark.req("api.networks.list-filter")
def test_list_filter_id(api: ApiClient, networks: Networks) -> None:
    nid, _, _, _ = _subnet_network(api, networks)
    got = [n["Id"] for n in _list(api, {"id": [nid[:16]]})]
    assert got == [nid], f"id={nid[:16]} (a prefix) listed {got}"


@pytest.mark.req("api.networks.list-filter-type")
@pytest.mark.parametrize("kind", ["custom", "builtin"])
def test_list_filter_type(api: ApiClient, networks: Networks, kind: str) -> None:
    nid, _, _, _ = _subnet_network(api, networks)
    listed = _list(api, {"type": [kind]})
    names = {n["Name"] for n in listed}
    ids = {n["Id"] for n in listed}
    if kind == "custom":
        assert nid in ids, "type=custom did not list a user-defined network"
        assert not names & set(PREDEFINED), f"type=custom listed predefined networks {sorted(names & set(PREDEFINED))}"
    else:
        assert set(PREDEFINED) <= names, f"type=builtin listed {sorted(names)}; expected bridge, host and none"
        assert nid not in ids, "type=builtin listed a user-defined network"


# ---------------------------------------------------------------- remove and prune


@pytest.mark.req("api.networks.remove")
def test_remove(api: ApiClient, networks: Networks) -> None:
    nid, _, _, _ = _subnet_network(api, networks)
    resp = api.delete(f"/networks/{nid}")
    assert resp.status_code == 204, f"DELETE /networks/{{id}} answered {resp.status_code}; the schema says 204"
    assert api.get(f"/networks/{nid}").status_code == 404, "the removed network can still be inspected"


@pytest.mark.req("api.networks.remove-predefined")
@pytest.mark.parametrize("name", sorted(PREDEFINED))
def test_remove_predefined(api: ApiClient, name: str) -> None:
    resp = api.delete(f"/networks/{name}")
    assert resp.status_code == 403, f"DELETE /networks/{name} answered {resp.status_code}; the schema says 403"
    assert error_message(resp), f"the 403 body {resp.text[:200]!r} is not {{'message': ...}}"


@pytest.mark.req("api.networks.remove-unknown")
def test_remove_unknown(api: ApiClient, names: Names) -> None:
    resp = api.delete(f"/networks/{names('absent')}")
    assert resp.status_code == 404, f"removing an unknown network answered {resp.status_code}; the schema says 404"


@pytest.mark.req("api.networks.remove-in-use")
def test_remove_with_running_container(api: ApiClient, networks: Networks, containers: Containers) -> None:
    nid, name, _, _ = _subnet_network(api, networks)
    containers.run_long(HostConfig={"NetworkMode": name})
    resp = api.delete(f"/networks/{nid}")
    assert resp.status_code == 403, (
        f"removing a network with a running container attached answered {resp.status_code}; dockerd answers 403")
    assert error_message(resp), f"the body {resp.text[:200]!r} is not {{'message': ...}}"
    assert _inspect(api, nid)["Id"] == nid


@pytest.mark.req("api.networks.prune-label")
def test_prune_by_label(api: ApiClient, names: Names, networks: Networks, containers: Containers) -> None:
    key = f"org.conformance.prune-{names('p')}"
    doomed, doomed_name, _, _ = _subnet_network(api, networks, labels={key: "yes"})
    kept, _, _, _ = _subnet_network(api, networks, labels={key: "no"})
    busy, busy_name, _, _ = _subnet_network(api, networks, labels={key: "yes"})
    containers.run_long(HostConfig={"NetworkMode": busy_name})
    resp = api.post("/networks/prune", params={"filters": {"label": [f"{key}=yes"]}})
    assert resp.status_code == 200, f"POST /networks/prune answered {resp.status_code}"
    deleted = resp.json().get("NetworksDeleted") or []
    assert deleted == [doomed_name], f"the label prune deleted {deleted}; expected only the unused {doomed_name}"
    assert api.get(f"/networks/{doomed}").status_code == 404, "the pruned network still exists"
    for nid in (kept, busy):
        assert _inspect(api, nid)["Id"] == nid


@pytest.mark.req("api.networks.prune-until")
def test_prune_until(api: ApiClient, names: Names, networks: Networks) -> None:
    key = f"org.conformance.prune-{names('p')}"
    nid, name, _, _ = _subnet_network(api, networks, labels={key: "yes"})
    later = f"{daemon_now(api) + 2:.3f}"  # on the daemon's clock (dockerd reads a duration to whole seconds)
    for until in ("978307200", "1h"):  # 2001-01-01, and a duration: an hour ago; the network is younger
        resp = api.post("/networks/prune", params={"filters": {"label": [f"{key}=yes"], "until": [until]}})
        assert resp.status_code == 200, f"POST /networks/prune until={until} answered {resp.status_code}"
        assert api.get(f"/networks/{nid}").status_code == 200, (
            f"prune with until={until} deleted {name}, created seconds ago "
            f"(NetworksDeleted {resp.json().get('NetworksDeleted')}); only networks created before it may go")
    resp = api.post("/networks/prune", params={"filters": {"label": [f"{key}=yes"], "until": [later]}})
    assert resp.status_code == 200 and (resp.json().get("NetworksDeleted") or []) == [name], (
        f"prune with until={later} (2 s from now) answered {resp.status_code} {resp.text[:200]!r}; expected {name} deleted")


# ---------------------------------------------------------------- connect and disconnect


@pytest.mark.req("api.networks.connect")
def test_connect_created_container(api: ApiClient, networks: Networks, containers: Containers) -> None:
    nid, name, _, _ = _subnet_network(api, networks)
    cid = containers.create(["true"])
    resp = api.post(f"/networks/{nid}/connect", {"Container": cid})
    assert resp.status_code == 200, f"POST /networks/{{id}}/connect answered {resp.status_code}; the schema says 200"
    attached = _container_networks(containers, cid)
    assert name in attached, f"after connect the container's NetworkSettings.Networks are {sorted(attached)}, without {name}"


@pytest.mark.req("api.networks.disconnect")
def test_disconnect(api: ApiClient, networks: Networks, containers: Containers) -> None:
    nid, name, _, _ = _subnet_network(api, networks)
    cid = containers.create(["true"])
    assert api.post(f"/networks/{nid}/connect", {"Container": cid}).status_code == 200
    resp = api.post(f"/networks/{nid}/disconnect", {"Container": cid})
    assert resp.status_code == 200, f"POST /networks/{{id}}/disconnect answered {resp.status_code}; the schema says 200"
    attached = _container_networks(containers, cid)
    assert name not in attached, f"after disconnect the container is still on {name}: {sorted(attached)}"


@pytest.mark.req("api.networks.running-container-listed")
def test_running_container_in_network(api: ApiClient, networks: Networks, containers: Containers) -> None:
    nid, name, net, gateway = _subnet_network(api, networks)
    cid = containers.run_long(HostConfig={"NetworkMode": name})
    endpoint = _container_networks(containers, cid).get(name) or {}
    assert endpoint.get("NetworkID") == nid, f"the container's endpoint on {name} has NetworkID {endpoint.get('NetworkID')!r}"
    assert ipaddress.IPv4Address(endpoint["IPAddress"]) in net, f"the container got {endpoint['IPAddress']}, outside {net}"
    assert endpoint.get("Gateway") == gateway and endpoint.get("IPPrefixLen") == 24, (
        f"the endpoint has Gateway {endpoint.get('Gateway')!r}/{endpoint.get('IPPrefixLen')}; the network has {gateway}/24")
    listed = _inspect(api, nid)["Containers"] or {}
    assert cid in listed, f"the network's Containers {sorted(listed)} lack the running container"
    assert listed[cid]["IPv4Address"] == f"{endpoint['IPAddress']}/24", (
        f"the network lists {listed[cid]['IPv4Address']!r}, the container {endpoint['IPAddress']}")


@pytest.mark.req("api.networks.connect-static-ip")
def test_connect_with_static_ip(api: ApiClient, networks: Networks, containers: Containers) -> None:
    nid, name, net, _ = _subnet_network(api, networks)
    address = str(net.network_address + 77)
    cid = containers.create(["sleep", "3600"])
    resp = api.post(f"/networks/{nid}/connect",
                    {"Container": cid, "EndpointConfig": {"IPAMConfig": {"IPv4Address": address}}})
    assert resp.status_code == 200, f"connect with IPAMConfig answered {resp.status_code}: {resp.text[:200]}"
    containers.start(cid)
    got = (_container_networks(containers, cid).get(name) or {}).get("IPAddress")
    assert got == address, f"the container got {got!r} on {name}; it was connected with IPv4Address {address}"


@pytest.mark.req("api.networks.connect-unknown-container")
def test_connect_unknown_container(api: ApiClient, names: Names, networks: Networks) -> None:
    nid, _, _, _ = _subnet_network(api, networks)
    for action in ("connect", "disconnect"):
        resp = api.post(f"/networks/{nid}/{action}", {"Container": names("absent")})
        assert resp.status_code == 404, f"{action} of an unknown container answered {resp.status_code}; the schema says 404"
        assert error_message(resp), f"the 404 body {resp.text[:200]!r} is not {{'message': ...}}"


@pytest.mark.req("api.networks.connect-unknown-network")
def test_connect_running_to_unknown_network(api: ApiClient, names: Names, containers: Containers) -> None:
    cid = containers.run_long()
    resp = api.post(f"/networks/{names('absent')}/connect", {"Container": cid})
    assert resp.status_code == 404, f"connecting to an unknown network answered {resp.status_code}; the schema says 404"
    assert error_message(resp), f"the 404 body {resp.text[:200]!r} is not {{'message': ...}}"


@pytest.mark.req("api.networks.connect-unknown-network")
@pytest.mark.deviation("docker", reason="for a container that is not running dockerd only records the network "
                       "name in the container's config, without looking the network up, and answers 200")
def test_connect_created_to_unknown_network(api: ApiClient, names: Names, containers: Containers) -> None:
    cid = containers.create(["true"])
    resp = api.post(f"/networks/{names('absent')}/connect", {"Container": cid})
    assert resp.status_code == 404, f"connecting to an unknown network answered {resp.status_code}; the schema says 404"


@pytest.mark.req("api.networks.disconnect-not-connected")
def test_disconnect_not_connected(api: ApiClient, networks: Networks, containers: Containers) -> None:
    nid, _, _, _ = _subnet_network(api, networks)
    cid = containers.create(["true"])
    resp = api.post(f"/networks/{nid}/disconnect", {"Container": cid})
    # Both exist, so 404 would be wrong; the schema names no code for this (dockerd: 500).
    assert resp.status_code >= 400 and resp.status_code != 404, (
        f"disconnecting a container that is not on the network answered {resp.status_code}; expected an error other than 404")
    assert error_message(resp), f"the {resp.status_code} body {resp.text[:200]!r} is not {{'message': ...}}"
