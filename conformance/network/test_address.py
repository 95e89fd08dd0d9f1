"""Addresses a client chooses: MacAddress, a static IPv4Address on a user network, IPv6 where the daemon supports it.
No traffic is sent."""

from __future__ import annotations

import ipaddress
import random

import pytest

from conformance.client import ApiClient, error_message
from conformance.network.conftest import KINDS, NetInfo, endpoint_settings, snapshot
from conformance.resources import RUN_LABEL, Containers, Networks


def _random_mac() -> str:
    # 02:... is locally administered unicast; the rest random so parallel runs do not collide on a bridge.
    return "02:cf:" + ":".join(f"{random.randint(0, 255):02x}" for _ in range(4))


@pytest.mark.req("network.address.mac-option")
@pytest.mark.parametrize("kind", KINDS)
def test_mac_address_option(containers: Containers, usernet, default_bridge: NetInfo, kind: str) -> None:
    net = default_bridge if kind == "default-bridge" else usernet()
    mac = _random_mac()
    cid = containers.run_long(MacAddress=mac, **net.endpoint())
    view = snapshot(containers, cid, net)
    assert view.eth0.get("mac") == mac, (
        f"the container was created with MacAddress {mac}; eth0 inside has {view.eth0.get('mac')!r}")
    reported = endpoint_settings(view.inspect, net).get("MacAddress")
    assert reported == mac, f"inspect reports the endpoint's MacAddress {reported!r}, created with {mac}"


@pytest.mark.req("network.address.static-ipv4")
def test_static_ipv4(containers: Containers, usernet) -> None:
    net: NetInfo = usernet()
    wanted = str(net.subnet.network_address + random.randint(100, 250))
    cid = containers.run_long(**net.endpoint(ipv4=wanted))
    view = snapshot(containers, cid, net)
    got = [str(a.ip) for a in view.v4("eth0")]
    assert got == [wanted], f"EndpointsConfig asked IPAMConfig.IPv4Address {wanted}; eth0 inside has {got}"
    ep = endpoint_settings(view.inspect, net)
    assert ep.get("IPAddress") == wanted, f"inspect reports IPAddress {ep.get('IPAddress')!r}, asked for {wanted}"
    assert (ep.get("IPAMConfig") or {}).get("IPv4Address") == wanted, (
        f"inspect's endpoint IPAMConfig is {ep.get('IPAMConfig')}; it must keep the requested IPv4Address {wanted}")


def _refused(api: ApiClient, containers: Containers, what: str, **cfg) -> str:
    """Create and start; the daemon must refuse one of them. Returns the refusal message."""
    resp = api.post("/containers/create", containers.config(["sleep", "60"], **cfg))
    if resp.status_code != 201:
        assert 400 <= resp.status_code < 600 and error_message(resp), (
            f"create with {what} answered {resp.status_code} {resp.text[:200]!r}")
        return error_message(resp) or ""
    cid = containers.adopt(resp.json()["Id"])
    start = api.post(f"/containers/{cid}/start")
    running = containers.inspect(cid)["State"].get("Running")
    assert start.status_code >= 400 and not running, (
        f"a container with {what} was created and started (start answered {start.status_code}, running "
        f"{running}); the daemon must refuse it")
    assert error_message(start), f"the refusal {start.text[:200]!r} carries no message"
    return error_message(start) or ""


@pytest.mark.req("network.address.static-ipv4-outside-subnet")
def test_static_ipv4_outside_subnet_refused(api: ApiClient, containers: Containers, usernet) -> None:
    net: NetInfo = usernet()
    stray = str(ipaddress.IPv4Address(int(net.subnet.network_address) ^ (1 << 20)) + 7)  # another /24 of 10/8
    assert ipaddress.IPv4Address(stray) not in net.subnet
    _refused(api, containers, f"IPv4Address {stray} outside {net.subnet}", **net.endpoint(ipv4=stray))


@pytest.mark.req("network.address.static-ipv4-default-bridge")
def test_static_ipv4_on_default_bridge_refused(api: ApiClient, containers: Containers,
                                               default_bridge: NetInfo) -> None:
    wanted = str(default_bridge.subnet.network_address + 250)
    _refused(api, containers, f"IPv4Address {wanted} on the default bridge",
             NetworkingConfig={"EndpointsConfig": {"bridge": {"IPAMConfig": {"IPv4Address": wanted}}}})


@pytest.mark.req("network.address.ipv6")
def test_ipv6_on_user_network(api: ApiClient, containers: Containers, networks: Networks) -> None:
    v4 = ipaddress.IPv4Network(f"10.{random.randint(100, 199)}.{random.randint(0, 255)}.0/24")
    v6 = ipaddress.IPv6Network(f"fd{random.randint(0, 255):02x}:{random.randint(0, 0xffff):x}:cf::/64")
    name = networks.names("net6")
    resp = api.post("/networks/create", {
        "Name": name, "CheckDuplicate": True, "EnableIPv6": True, "Labels": {RUN_LABEL: networks.run_id},
        "IPAM": {"Driver": "default", "Config": [{"Subnet": str(v4), "Gateway": str(v4.network_address + 1)},
                                                 {"Subnet": str(v6), "Gateway": str(v6.network_address + 1)}]}})
    if resp.status_code != 201:
        pytest.skip(f"the daemon does not create an IPv6 bridge network here ({resp.status_code}: "
                    f"{error_message(resp)!r}); IPv6 is not enabled on this target")
    networks.adopt(resp.json()["Id"])
    net = NetInfo(resp.json()["Id"], name, v4, str(v4.network_address + 1))
    cid = containers.run_long(**net.endpoint())
    view = snapshot(containers, cid, net)
    globals6 = [a for a in view.addrs.get("eth0", []) if a.version == 6 and not a.ip.is_link_local]
    assert len(globals6) == 1 and globals6[0].ip in v6, (
        f"on a network with EnableIPv6 and subnet {v6}, eth0 has IPv6 addresses {globals6}; one from {v6} is expected")
    ep = endpoint_settings(view.inspect, net)
    assert ep.get("GlobalIPv6Address") == str(globals6[0].ip), (
        f"inspect reports GlobalIPv6Address {ep.get('GlobalIPv6Address')!r}; eth0 has {globals6[0].ip}")
    assert any(r.split()[:3] == ["default", "via", str(v6.network_address + 1)] for r in _v6_routes(containers, cid)), (
        f"no IPv6 default route via the network's IPv6 gateway {v6.network_address + 1}")


def _v6_routes(containers: Containers, cid: str) -> list[str]:
    return containers.exec(cid, ["ip", "-6", "route"]).stdout.splitlines()
