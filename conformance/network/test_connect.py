"""Connecting a running container to another network (POST /networks/{id}/connect) and disconnecting it:
the container gains, then loses, a link with an address in that network's subnet.

The networks are shared by the module; every check connects a container of its own."""

from __future__ import annotations

import random

import pytest

from conformance.client import ApiClient
from conformance.network.conftest import KINDS, NetInfo, Scene, View, endpoint_settings, snapshot
from conformance.resources import Containers


def _connect(api: ApiClient, net: NetInfo, cid: str, **endpoint) -> None:
    body = {"Container": cid, **({"EndpointConfig": endpoint} if endpoint else {})}
    resp = api.post(f"/networks/{net.id}/connect", body)
    assert resp.status_code == 200, f"POST /networks/{{id}}/connect answered {resp.status_code} {resp.text[:200]!r}"


def _in_subnet(view: View, net: NetInfo) -> dict[str, list[str]]:
    """Interfaces with an IPv4 address in `net`'s subnet: {ifname: [address]}."""
    return {name: [str(a.ip) for a in addrs if a.version == 4 and a.ip in net.subnet]
            for name, addrs in view.addrs.items() if any(a.version == 4 and a.ip in net.subnet for a in addrs)}




@pytest.mark.req("network.connect.adds-interface")
@pytest.mark.parametrize("kind", KINDS)
def test_connect_adds_interface(api: ApiClient, containers: Containers, scene: Scene, kind: str) -> None:
    first, second = scene.net(kind), scene.net("second")
    cid = containers.run_long(**first.endpoint())
    _connect(api, second, cid)
    view = snapshot(containers, cid, second)
    found = _in_subnet(view, second)
    assert len(found) == 1 and "eth0" not in found, (
        f"after connecting the running container to {second.name} ({second.subnet}) its interfaces with an address "
        f"there are {found}; one new interface (eth1) was expected. All addresses: {view.addrs}")
    ifname, [addr] = next(iter(found.items()))
    ep = endpoint_settings(view.inspect, second)
    assert ep.get("IPAddress") == addr, (
        f"inspect reports IPAddress {ep.get('IPAddress')!r} on {second.name}; {ifname} inside has {addr}")
    assert _in_subnet(view, first).get("eth0"), f"eth0 lost its address on {first.name}: {view.addrs}"


@pytest.mark.req("network.connect.disconnect-removes")
def test_disconnect_removes_interface(api: ApiClient, containers: Containers, scene: Scene) -> None:
    first, second = scene.net("user-network"), scene.net("second")
    cid = containers.run_long(**first.endpoint())
    _connect(api, second, cid)
    assert _in_subnet(snapshot(containers, cid, second), second), f"connect gave no address in {second.subnet}"
    resp = api.post(f"/networks/{second.id}/disconnect", {"Container": cid})
    assert resp.status_code == 200, f"POST /networks/{{id}}/disconnect answered {resp.status_code} {resp.text[:200]!r}"
    view = snapshot(containers, cid, second)  # the disconnect is done when the daemon answers
    assert not _in_subnet(view, second), (
        f"after disconnecting from {second.name} the container still has {_in_subnet(view, second)} in {second.subnet}")
    assert second.name not in (view.inspect["NetworkSettings"].get("Networks") or {}), (
        f"inspect still lists {second.name} after the disconnect")
    assert _in_subnet(view, first).get("eth0"), f"the disconnect also took eth0's address on {first.name}: {view.addrs}"


@pytest.mark.req("network.connect.reachable")
def test_connect_makes_peer_reachable(api: ApiClient, containers: Containers, scene: Scene) -> None:
    first, second = scene.net("user-network"), scene.net("second")
    peer = containers.run_long(**second.endpoint())
    peer_ip = endpoint_settings(containers.inspect(peer), second)["IPAddress"]
    cid = containers.run_long(**first.endpoint())
    _connect(api, second, cid)
    res = containers.exec(cid, ["sh", "-c", f"ping -c1 -W1 {peer_ip} || ping -c1 -W1 {peer_ip}"])
    assert res.exit_code == 0, (
        f"after connecting to {second.name}, the container could not ping {peer_ip} on it: {res.describe()}")


@pytest.mark.req("network.connect.static-ipv4")
def test_connect_with_static_address(api: ApiClient, containers: Containers, scene: Scene) -> None:
    first, second = scene.net("user-network"), scene.net("second")
    cid = containers.run_long(**first.endpoint())
    wanted = str(second.subnet.network_address + random.randint(100, 250))
    _connect(api, second, cid, IPAMConfig={"IPv4Address": wanted})
    view = snapshot(containers, cid, second)
    assert [a for addrs in _in_subnet(view, second).values() for a in addrs] == [wanted], (
        f"connected with IPAMConfig.IPv4Address {wanted}; the container's addresses in {second.subnet} are "
        f"{_in_subnet(view, second)}")
