"""Egress and NAT, against a stand-in for the outside world: a network namespace this run creates,
linked to the host by a veth pair on a free 198.18.0.0/15 /30 (conformance/network/outside.py).

Containers reach the namespace's address through the host, masqueraded to the host end of the veth;
ports published on 127.0.0.1 are not reachable from there, ports published on the host's veth address are.
Host-side only (skips for remote targets): nothing outside this machine is ever contacted.
"""

from __future__ import annotations

import pytest

from conformance.network.conftest import (
    KINDS,
    NO_ANSWER_WINDOW,
    Scene,
    endpoint_settings,
    free_port,
    poll,
    unanswered,
)
from conformance.network.outside import Outside
from conformance.resources import Containers


def _egress(scene: Scene, outside: Outside, kind: str) -> tuple[str, str, object, list[str]]:
    """Connect from a container on `kind` to the listener; (container IP, what nc printed, result, new peers)."""
    key = f"egress-{kind}"
    if key not in scene.meta:
        net = scene.net(kind)
        cid = scene.container(key, net)
        ip = endpoint_settings(scene.containers.inspect(cid), net).get("IPAddress", "")
        seen = len(outside.peers())
        target = f"{outside.ns_addr} {outside.port}"
        res = scene.containers.exec(cid, ["sh", "-c", f"nc -w 2 {target} </dev/null || nc -w 2 {target} </dev/null"])
        poll(lambda: len(outside.peers()) > seen, timeout=3)
        scene.meta[key] = (ip, res.stdout, res, outside.peers()[seen:])
    return scene.meta[key]


@pytest.mark.req("network.egress.reach-outside")
@pytest.mark.parametrize("kind", KINDS)
def test_container_reaches_outside(scene: Scene, outside: Outside, kind: str) -> None:
    _, said, res, peers = _egress(scene, outside, kind)
    assert "peer " in said and peers, (
        f"a container on {kind} could not open a TCP connection to {outside.ns_addr}:{outside.port}, a host beyond "
        f"the docker host (reached through the host's routing table): {res.describe()}; the listener saw {peers}")


@pytest.mark.req("network.egress.masquerade")
@pytest.mark.parametrize("kind", KINDS)
def test_egress_is_masqueraded(scene: Scene, outside: Outside, kind: str) -> None:
    ip, said, res, peers = _egress(scene, outside, kind)
    assert peers, f"no connection reached the outside listener: {res.describe()}"
    assert peers == [outside.host_addr], (
        f"the outside listener saw the container's connection coming from {peers}; docker masquerades traffic leaving "
        f"a bridge network to the address of the outgoing host interface ({outside.host_addr}), not the container's "
        f"own {ip}")


@pytest.mark.req("network.egress.icmp")
def test_icmp_to_outside(scene: Scene, outside: Outside) -> None:
    cid = scene.container("egress-user-network", scene.net("user-network"))
    res = scene.containers.exec(cid, ["sh", "-c", f"ping -c1 -W1 {outside.ns_addr} || ping -c1 -W1 {outside.ns_addr}"])
    assert res.exit_code == 0, f"a container could not ping the outside address {outside.ns_addr}: {res.describe()}"


@pytest.mark.req("network.egress.internal-blocked")
def test_internal_network_has_no_egress(containers: Containers, usernet, outside: Outside) -> None:
    net = usernet(Internal=True)
    seen = len(outside.peers())
    res = containers.run_output(unanswered({"ping": f"ping -c1 -W1 {outside.ns_addr}",
                                            "nc": f"nc -w 2 {outside.ns_addr} {outside.port} </dev/null"}),
                                **net.endpoint())
    assert "done" in res.stdout, f"the probe did not run to its end: {res.describe()}"
    assert "ping=0" not in res.stdout and "peer " not in res.stdout and len(outside.peers()) == seen, (
        f"a container on an Internal network reached the outside address {outside.ns_addr} within "
        f"{NO_ANSWER_WINDOW} s: {res.describe()}; an internal network has no route beyond its bridge")


def _publish(containers: Containers, usernet, host_ip: str) -> tuple[int, str]:
    port = free_port()
    greeting = f"published-{host_ip}-{port}"
    containers.run(["nc", "-ll", "-p", "80", "-e", "echo", greeting], ExposedPorts={"80/tcp": {}},
                   **usernet().endpoint(PortBindings={"80/tcp": [{"HostIp": host_ip, "HostPort": str(port)}]}))
    return port, greeting


@pytest.mark.req("network.ports.not-exposed-elsewhere")
def test_loopback_binding_not_reachable_from_outside(containers: Containers, usernet, outside: Outside) -> None:
    port, greeting = _publish(containers, usernet, "127.0.0.1")
    got = outside.connect(outside.host_addr, port, timeout=2)
    assert greeting not in got.get("data", ""), (
        f"from the outside namespace, {outside.host_addr}:{port} (the host's veth address) answered {got}: a port "
        "published on 127.0.0.1 must not be reachable on the host's other addresses")


@pytest.mark.req("network.ports.publish-host-address")
def test_binding_on_host_address_reachable_from_outside(containers: Containers, usernet, outside: Outside) -> None:
    port, greeting = _publish(containers, usernet, outside.host_addr)
    tries: list[dict] = []

    def answered() -> bool:
        tries.append(outside.connect(outside.host_addr, port, timeout=2))
        return greeting in tries[-1].get("data", "")

    assert poll(answered, timeout=8, interval=0.2), (
        f"from the outside namespace, {outside.host_addr}:{port} (published with HostIp {outside.host_addr}) never "
        f"answered with the server's greeting {greeting!r}: last try {tries[-1]}")
