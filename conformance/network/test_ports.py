"""Published ports, reached from the host on 127.0.0.1 only (the harness connects nowhere else here).

Servers: busybox `nc -ll -p 80 -e echo <greeting>` answers every TCP connection with a greeting.
UDP: busybox has no UDP server, so the check counts datagrams arriving at the container's closed port
(the kernel's per-namespace Udp NoPorts counter in /proc/net/snmp) after sending to the published port.
"""

from __future__ import annotations

import socket
import time

import pytest

from conformance.host import Host
from conformance.network.conftest import KINDS, Scene, free_port, poll, tcp_exchange
from conformance.resources import Containers

HTTP = "80/tcp"


def _published(scene: Scene, kind: str) -> tuple[str, int, str]:
    """(container, host port, greeting) of a server on `kind` publishing 80/tcp on 127.0.0.1:<free port>."""
    key = f"tcp-{kind}"
    if key not in scene.meta:
        port = free_port()
        greeting = f"greeting-{kind}-{port}"
        cid = scene.container(key, scene.net(kind), ["nc", "-ll", "-p", "80", "-e", "echo", greeting],
                              ExposedPorts={HTTP: {}},
                              host_config={"PortBindings": {HTTP: [{"HostIp": "127.0.0.1", "HostPort": str(port)}]}})
        scene.meta[key] = (cid, port, greeting)
    return scene.meta[key]


def _ports(containers: Containers, cid: str) -> dict:
    return containers.inspect(cid)["NetworkSettings"].get("Ports") or {}


@pytest.mark.req("network.ports.publish-tcp")
@pytest.mark.parametrize("kind", KINDS)
def test_publish_tcp_reachable(scene: Scene, kind: str) -> None:
    _, port, greeting = _published(scene, kind)
    got = tcp_exchange("127.0.0.1", port, greeting)
    assert greeting in got, (
        f"connecting to 127.0.0.1:{port}, published as {HTTP} of a server container on {kind}, gave {got!r}; "
        f"the server's greeting {greeting!r} was expected")


@pytest.mark.req("network.ports.inspect-bindings")
def test_inspect_reports_binding(scene: Scene) -> None:
    cid, port, _ = _published(scene, "user-network")
    ports = _ports(scene.containers, cid)
    assert ports.get(HTTP) == [{"HostIp": "127.0.0.1", "HostPort": str(port)}], (
        f"NetworkSettings.Ports is {ports}; the container published {HTTP} on 127.0.0.1:{port} only")
    bindings = scene.containers.inspect(cid)["HostConfig"].get("PortBindings") or {}
    assert bindings.get(HTTP) == [{"HostIp": "127.0.0.1", "HostPort": str(port)}], (
        f"HostConfig.PortBindings is {bindings}; it must echo what the container was created with")


@pytest.mark.req("network.ports.loopback-only")
def test_loopback_binding_listens_on_loopback_only(scene: Scene, hostside: Host) -> None:
    cid, port, greeting = _published(scene, "user-network")
    assert greeting in tcp_exchange("127.0.0.1", port, greeting), f"127.0.0.1:{port} does not answer"
    listeners = _listeners(hostside, port)
    if not listeners:
        pytest.skip(f"nothing listens on port {port} on the host: the daemon publishes without a userland proxy, so "
                    "there is no socket to check (inspect's HostIp is checked by network.ports.inspect-bindings)")
    assert set(listeners) == {"127.0.0.1"}, (
        f"host sockets listening on port {port}: {listeners}. A binding with HostIp 127.0.0.1 must listen on the "
        "loopback address only, not on every host address")


def _listeners(hostside: Host, port: int) -> list[str]:
    """Local addresses of LISTEN sockets on `port` in the host's /proc/net/tcp and tcp6."""
    import ipaddress
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = hostside.read(table).splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            addr, _, hexport = fields[1].partition(":")
            if int(hexport, 16) != port or fields[3] != "0A":
                continue
            raw = bytes.fromhex(addr)
            # /proc prints each 32-bit word in host (little-endian) order
            raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
            ip = ipaddress.ip_address(raw)
            if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
                ip = ip.ipv4_mapped
            found.append(str(ip))
    return found


@pytest.mark.req("network.ports.random-host-port")
@pytest.mark.parametrize("how", ["empty-host-port", "publish-all"])
def test_random_host_port(containers: Containers, usernet, how: str) -> None:
    # host_binding_ipv4 makes PublishAllPorts bind loopback too: nothing is exposed beyond this host.
    net = usernet(Options={"com.docker.network.bridge.host_binding_ipv4": "127.0.0.1"})
    greeting = f"random-{how}"
    binding = ({"PortBindings": {HTTP: [{"HostIp": "127.0.0.1", "HostPort": ""}]}} if how == "empty-host-port"
               else {"PublishAllPorts": True})
    cid = containers.run(["nc", "-ll", "-p", "80", "-e", "echo", greeting], ExposedPorts={HTTP: {}},
                         **net.endpoint(**binding))
    ports = _ports(containers, cid)
    reported = ports.get(HTTP) or []
    v4 = [b for b in reported if ":" not in b.get("HostIp", "")]
    assert v4 and str(v4[0].get("HostPort", "")).isdigit() and int(v4[0]["HostPort"]) > 0, (
        f"with {how}, NetworkSettings.Ports is {ports}; the daemon must report the host port it chose for {HTTP}")
    assert v4[0].get("HostIp") == "127.0.0.1", f"the binding {v4[0]} is not on 127.0.0.1"
    port = int(v4[0]["HostPort"])
    got = tcp_exchange("127.0.0.1", port, greeting)
    assert greeting in got, f"the chosen host port 127.0.0.1:{port} gave {got!r}, not the server's {greeting!r}"


@pytest.mark.req("network.ports.publish-udp")
def test_publish_udp(containers: Containers, usernet) -> None:
    net = usernet()
    port = free_port(socket.SOCK_DGRAM)
    cid = containers.run_long(ExposedPorts={"9999/udp": {}}, **net.endpoint(
        PortBindings={"9999/udp": [{"HostIp": "127.0.0.1", "HostPort": str(port)}]}))
    reported = _ports(containers, cid).get("9999/udp")
    assert reported == [{"HostIp": "127.0.0.1", "HostPort": str(port)}], (
        f"NetworkSettings.Ports['9999/udp'] is {reported}; published on 127.0.0.1:{port}")

    def noports() -> int:
        res = containers.exec(cid, ["grep", "^Udp:", "/proc/net/snmp"])
        header, values = (line.split() for line in res.stdout.splitlines()[:2])
        return int(values[header.index("NoPorts")])

    before = noports()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        def delivered() -> bool:
            s.sendto(b"conformance", ("127.0.0.1", port))
            time.sleep(0.05)
            return noports() > before
        arrived = poll(delivered, timeout=8, interval=0.2)
    assert arrived, (
        f"datagrams sent to 127.0.0.1:{port} (published as 9999/udp) never reached the container: its Udp NoPorts "
        f"counter stayed at {before}")


@pytest.mark.req("network.ports.exposed-not-published")
def test_exposed_not_published(containers: Containers, usernet) -> None:
    cid = containers.run_long(ExposedPorts={HTTP: {}}, **usernet().endpoint())
    ports = _ports(containers, cid)
    assert HTTP in ports and ports[HTTP] is None, (
        f"NetworkSettings.Ports is {ports}; an exposed, unpublished port is listed with null bindings")
