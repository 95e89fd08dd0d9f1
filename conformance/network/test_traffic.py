"""Traffic between containers on networks the checks create: reachable on one network, isolated across
two, and cut when inter-container communication is disabled. Bounded waits: `ping -c1 -W1`, `nc -w 2` where an
answer is expected; probes that must go unanswered get NO_ANSWER_WINDOW (conftest.py) and are killed then.

The module shares its networks and containers (scene): net A with a server and a client, net B with
a server and a client, and a network without inter-container communication. Probes are execs.
"""

from __future__ import annotations

import pytest

from conformance.network.conftest import NO_ANSWER_WINDOW, NetInfo, Scene, endpoint_settings, unanswered
from conformance.resources import Names, Result

PORT = 7000


def _server(scene: Scene, names: Names, kind: str, **net_extra) -> tuple[NetInfo, str, str, str]:
    """(network, server name, server IPv4, greeting) of the TCP server container on network `kind`."""
    net = scene.net(kind, **net_extra)
    key = f"server-{kind}"
    if key not in scene.meta:
        name = names("srv")
        greeting = f"hello-from-{name}"
        cid = scene.container(key, net, ["nc", "-ll", "-p", str(PORT), "-e", "echo", greeting], name=name)
        ip = endpoint_settings(scene.containers.inspect(cid), net).get("IPAddress")
        assert ip, f"the server container reports no IPAddress on {net.name}: {scene.containers.inspect(cid)}"
        scene.meta[key] = (name, ip, greeting)
    return (net, *scene.meta[key])


def _client(scene: Scene, kind: str) -> str:
    return scene.container(f"client-{kind}", scene.net(kind))


def _tcp(target: str, tries: int = 10) -> list[str]:
    """A few connects (the server may still be starting), printing what the server said."""
    return ["sh", "-c", f"for i in $(seq {tries}); do out=$(nc -w 2 {target} {PORT} </dev/null); "
                        f"[ -n \"$out\" ] && echo \"$out\" && exit 0; sleep 0.2; done; exit 1"]


def _ping(target: str) -> list[str]:
    return ["sh", "-c", f"ping -c1 -W1 {target} || ping -c1 -W1 {target}"]


@pytest.mark.req("network.traffic.ping-same-network")
def test_ping_same_network(scene: Scene, names: Names) -> None:
    net, _, ip, _ = _server(scene, names, "a")
    res = scene.containers.exec(_client(scene, "a"), _ping(ip))
    assert res.exit_code == 0 and "1 packets received" in res.stdout, (
        f"a container could not ping {ip}, a container on the same network {net.name}: {res.describe()}")


@pytest.mark.req("network.traffic.tcp-same-network")
@pytest.mark.parametrize("by", ["address", "name"])
def test_tcp_same_network(scene: Scene, names: Names, by: str) -> None:
    net, name, ip, greeting = _server(scene, names, "a")
    target = ip if by == "address" else name
    res = scene.containers.exec(_client(scene, "a"), _tcp(target))
    assert res.exit_code == 0 and greeting in res.stdout, (
        f"a container on {net.name} connecting to port {PORT} of its peer by {by} ({target}) did not get the "
        f"server's greeting {greeting!r}: {res.describe()}")


@pytest.mark.req("network.isolation.between-networks")
@pytest.mark.parametrize("proto", ["icmp", "tcp"])
def test_isolation_between_networks(scene: Scene, names: Names, proto: str) -> None:
    net_b, _, ip_b, greeting = _server(scene, names, "b")
    net_a = scene.net("a")
    probe = f"ping -c1 -W1 {ip_b}" if proto == "icmp" else f"nc -w 2 {ip_b} {PORT} </dev/null"

    def reached(res: Result) -> bool:
        return f"{proto}=0" in res.stdout or greeting in res.stdout

    # A reach is confirmed by a second probe: dockerd deletes and re-inserts its FORWARD jump to the isolation
    # chain whenever any network is made (libnetwork's EnsureJumpRule), so a probe can slip through that gap while
    # another check creates a network. Where isolation is missing, the second probe gets through as well.
    tries: list[Result] = []
    while len(tries) < 2:
        tries.append(scene.containers.exec(_client(scene, "a"), unanswered({proto: probe})))
        assert "done" in tries[-1].stdout, f"the probe did not run to its end: {tries[-1].describe()}"
        if not reached(tries[-1]):
            break
    assert not all(reached(t) for t in tries), (
        f"a container on {net_a.name} ({net_a.subnet}) reached {ip_b} on {net_b.name} ({net_b.subnet}) over {proto} "
        f"within {NO_ANSWER_WINDOW} s, twice: {[t.describe() for t in tries]}. Docker isolates user-defined bridge "
        "networks from each other")
    # Control: the same target answers from its own network, so isolation, not a dead server, stopped the probe.
    ok = scene.containers.exec(_client(scene, "b"), _ping(ip_b) if proto == "icmp" else _tcp(ip_b))
    assert ok.exit_code == 0, f"control: a container on {net_b.name} itself could not reach {ip_b}: {ok.describe()}"


@pytest.mark.req("network.isolation.icc-disabled")
def test_icc_disabled(scene: Scene, names: Names) -> None:
    net, _, ip, greeting = _server(scene, names, "noicc", Options={"com.docker.network.bridge.enable_icc": "false"})
    res = scene.containers.exec(_client(scene, "noicc"),
                                unanswered({"icmp": f"ping -c1 -W1 {ip}", "tcp": f"nc -w 2 {ip} {PORT} </dev/null"}))
    assert "done" in res.stdout, f"the probe did not run to its end: {res.describe()}"
    assert "icmp=0" not in res.stdout and "tcp=0" not in res.stdout and greeting not in res.stdout, (
        f"on a network with com.docker.network.bridge.enable_icc=false a container reached its peer {ip} within "
        f"{NO_ANSWER_WINDOW} s: {res.describe()}")
