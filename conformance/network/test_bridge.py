"""Bridge attachment: what a container on the default bridge or a user-defined bridge network sees of its
link (address, default route, MAC, MTU) agrees with the network's IPAM config and with inspect.

No traffic is sent: the container reads its own interfaces; host-side checks read /sys/class/net.
"""

from __future__ import annotations

import pytest

from conformance.host import Host
from conformance.network.conftest import (
    KINDS,
    NetInfo,
    Scene,
    endpoint_settings,
    host_link_by_index,
    snapshot,
)
from conformance.resources import Containers


@pytest.mark.req("network.bridge.eth0-in-subnet")
@pytest.mark.parametrize("kind", KINDS)
def test_eth0_address_in_subnet(scene: Scene, kind: str) -> None:
    view = scene.view(kind)
    addrs = view.v4("eth0")
    assert len(addrs) == 1, (
        f"inside the container eth0 has IPv4 addresses {addrs} (all links: {sorted(view.addrs)}); a container on "
        f"the {kind} network {view.net.name!r} must have exactly one, from the network's IPAM subnet")
    assert addrs[0].ip in view.net.subnet, (
        f"eth0's address {addrs[0]} is outside {view.net.subnet}, the subnet GET /networks/{view.net.name} reports")
    assert addrs[0].network == view.net.subnet, (
        f"eth0 has {addrs[0]}: the prefix length must be the subnet's ({view.net.subnet})")


@pytest.mark.req("network.bridge.default-route")
@pytest.mark.parametrize("kind", KINDS)
def test_default_route_via_gateway(scene: Scene, kind: str) -> None:
    view = scene.view(kind)
    route = view.default_route()
    assert route is not None, f"the container on {kind} has no IPv4 default route; `ip route` shows {view.routes}"
    assert route == (view.net.gateway, "eth0"), (
        f"the default route goes via {route[0]} dev {route[1]}; docker routes a bridge container via the network's "
        f"IPAM gateway {view.net.gateway} on eth0")


@pytest.mark.req("network.bridge.inspect-agrees")
@pytest.mark.parametrize("kind", KINDS)
def test_inspect_agrees_with_inside(scene: Scene, kind: str) -> None:
    view = scene.view(kind)
    addrs = view.v4("eth0")
    assert addrs, f"eth0 has no IPv4 address inside the container: {view.raw[-600:]!r}"
    ep = endpoint_settings(view.inspect, view.net)
    attached = sorted(view.inspect["NetworkSettings"].get("Networks") or {})
    assert ep, (f"inspect's NetworkSettings.Networks is {attached}, "
                f"without the network {view.net.name!r} the container is attached to")
    seen = {"IPAddress": str(addrs[0].ip), "IPPrefixLen": addrs[0].network.prefixlen, "Gateway": view.net.gateway}
    reported = {k: ep.get(k) for k in seen}
    assert reported == seen, (f"NetworkSettings.Networks[{view.net.name!r}] reports {reported}; inside, eth0 and the "
                              f"default route show {seen}")
    assert ep.get("NetworkID") == view.net.id, f"the endpoint's NetworkID {ep.get('NetworkID')!r} is not {view.net.id}"
    if view.net.default:
        ns = view.inspect["NetworkSettings"]
        top = {k: ns.get(k) for k in seen}
        assert top == seen, f"on the default bridge the top-level NetworkSettings report {top}; inside shows {seen}"


@pytest.mark.req("network.bridge.mac-agrees")
@pytest.mark.parametrize("kind", KINDS)
def test_mac_agrees(scene: Scene, kind: str) -> None:
    view = scene.view(kind)
    ep = endpoint_settings(view.inspect, view.net)
    inside = view.eth0.get("mac", "")
    assert inside, f"could not read /sys/class/net/eth0/address: {view.raw[-600:]!r}"
    assert ep.get("MacAddress") == inside, (
        f"inspect reports MacAddress {ep.get('MacAddress')!r} for {view.net.name!r}; eth0 inside has {inside!r}")
    first = int(inside.split(":")[0], 16)
    assert not first & 1 and first & 2, f"eth0's MAC {inside} must be a locally administered unicast address"


@pytest.mark.req("network.bridge.mtu-default")
@pytest.mark.parametrize("kind", KINDS)
def test_mtu_default(scene: Scene, kind: str) -> None:
    view = scene.view(kind)
    expected = int(view.net.options.get("com.docker.network.driver.mtu") or 1500)
    mtu = view.eth0.get("mtu", "")
    assert mtu == str(expected), (
        f"eth0's MTU is {mtu!r}; on {view.net.name!r} (driver mtu option "
        f"{view.net.options.get('com.docker.network.driver.mtu')!r}) it must be {expected}")


@pytest.mark.req("network.bridge.mtu-option")
@pytest.mark.parametrize("mtu", [1280, 1400])
def test_mtu_option(usernet, containers: Containers, mtu: int) -> None:
    net: NetInfo = usernet(Options={"com.docker.network.driver.mtu": str(mtu)})
    cid = containers.run_long(**net.endpoint())
    view = snapshot(containers, cid, net)
    assert view.eth0.get("mtu") == str(mtu), (
        f"eth0's MTU is {view.eth0.get('mtu')!r} on a network created with com.docker.network.driver.mtu={mtu}")


@pytest.mark.req("network.bridge.host-veth")
@pytest.mark.parametrize("kind", KINDS)
def test_host_side_veth_on_bridge(scene: Scene, hostside: Host, kind: str) -> None:
    view = scene.view(kind)
    iflink = view.eth0.get("iflink", "")
    assert iflink.isdigit(), f"could not read /sys/class/net/eth0/iflink inside: {view.raw[-600:]!r}"
    peer = host_link_by_index(hostside, int(iflink))
    assert peer is not None, (
        f"eth0's peer is ifindex {iflink}, but no host interface has that index: eth0 must be one end of a veth "
        "pair whose other end is on the host")
    try:
        master = hostside.read(f"/sys/class/net/{peer}/master/uevent")
    except OSError:
        master = ""
    bridge = next((line.partition("=")[2] for line in master.splitlines() if line.startswith("INTERFACE=")), None)
    assert bridge == view.net.bridge_name, (
        f"the host end {peer} of eth0 is enslaved to {bridge!r}; it must be on the network's bridge "
        f"{view.net.bridge_name!r}")
    host_mtu = hostside.read(f"/sys/class/net/{peer}/mtu").strip()
    assert host_mtu == view.eth0.get("mtu"), (
        f"the host end {peer} has MTU {host_mtu}, eth0 inside {view.eth0.get('mtu')}: a veth pair has one MTU")
