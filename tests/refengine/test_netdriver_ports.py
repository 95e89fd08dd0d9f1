"""Published ports through the userland proxy: 127.0.0.1 -> a listener in a test-made container netns."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket

import pytest

from refengine.drivers.network.ports import PortAllocated, PortProxy, PortSpec

from .test_netdriver_lab import Lab, need_root

ECHO = """
import socket, threading
t = socket.socket(); t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.bind(("0.0.0.0", 8080)); t.listen(8)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("0.0.0.0", 8081))
def udp():
    while True:
        d, a = u.recvfrom(2048)
        u.sendto(b"udp:" + d, a)
threading.Thread(target=udp, daemon=True).start()
print("ready", flush=True)
while True:
    c, a = t.accept()
    data = b""
    while True:  # read to EOF: the proxy must pass the client's half-close on
        d = c.recv(4096)
        if not d:
            break
        data += d
    c.sendall(b"tcp:" + a[0].encode() + b":" + data)
    c.close()
"""


def _container(lab: Lab) -> tuple[object, str, str]:
    drv = lab.driver()
    net = lab.network()
    drv.create(net)
    ns = lab.netns()
    sub = ipaddress.ip_network(net.subnets[0]["Subnet"])
    drv.join(net, {}, netns=ns, container_id=os.urandom(32).hex(), address=(str(sub[2]), 24, str(sub[1])))
    lab.spawn(ns, ECHO)
    return drv, str(sub[2]), str(sub[1])


async def _tcp(port: int, payload: bytes, host: str = "127.0.0.1") -> bytes:
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 5)
    writer.write(payload)
    writer.write_eof()
    data = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    return data


async def _udp(port: int, payload: bytes) -> bytes:
    loop = asyncio.get_running_loop()
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setblocking(False)
    s.connect(("127.0.0.1", port))
    try:
        for _ in range(3):
            s.send(payload)
            try:
                return await asyncio.wait_for(loop.sock_recv(s, 2048), 1)
            except TimeoutError:
                continue
        raise TimeoutError("no UDP answer through the proxy")
    finally:
        s.close()


def test_tcp_and_udp_with_random_host_ports(lab: Lab) -> None:
    drv, ip, gateway = _container(lab)

    async def main() -> None:
        ports = await drv.publish("c1", ip, {"8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": ""}],
                                             "8081/udp": [{"HostIp": "127.0.0.1", "HostPort": ""}]})
        tcp_port = int(ports["8080/tcp"][0]["HostPort"])
        udp_port = int(ports["8081/udp"][0]["HostPort"])
        assert ports["8080/tcp"][0]["HostIp"] == "127.0.0.1" and tcp_port > 0 and udp_port > 0
        # the container sees the proxy's connection coming from the bridge's gateway (the host)
        assert await _tcp(tcp_port, b"hello") == f"tcp:{gateway}:hello".encode()
        assert await _tcp(tcp_port, b"x" * 200000) == f"tcp:{gateway}:".encode() + b"x" * 200000
        assert await _udp(udp_port, b"ping") == b"udp:ping"
        await drv.unpublish("c1")
        with pytest.raises(OSError):
            await _tcp(tcp_port, b"gone")

    asyncio.run(main())


def test_port_in_use_is_reported_like_dockerd(lab: Lab) -> None:
    drv, ip, _ = _container(lab)
    holder = socket.socket()  # a port this test owns, held open
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    taken = holder.getsockname()[1]

    async def main() -> None:
        with pytest.raises(PortAllocated) as err:
            await drv.publish("c1", ip, {"8081/udp": [{"HostIp": "127.0.0.1", "HostPort": ""}],
                                         "8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(taken)}]})
        assert str(err.value) == f"Bind for 127.0.0.1:{taken} failed: port is already allocated"
        assert err.value.http_status == 500
        assert "c1" not in drv.proxies  # all or nothing: the UDP port bound first was released
        with pytest.raises(PortAllocated, match="driver failed programming external connectivity on endpoint "
                                                 r"web \(abc\): Bind for 127.0.0.1:\d+ failed: port is already"):
            await drv.publish("c2", ip, {"8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(taken)}]},
                              endpoint="web (abc)")

    try:
        asyncio.run(main())
    finally:
        holder.close()


def test_explicit_port_and_range(lab: Lab) -> None:
    drv, ip, gateway = _container(lab)
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    free = probe.getsockname()[1]
    probe.close()

    async def main() -> None:
        ports = await drv.publish("c1", ip, {"8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(free)}]})
        assert ports == {"8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(free)}]}
        # a range: the first port is taken (by us, just above), so the next one in the range is used
        ports2 = await drv.publish("c2", ip, {"8080/tcp": [{"HostIp": "127.0.0.1",
                                                            "HostPort": f"{free}-{free + 20}"}]})
        assert free < int(ports2["8080/tcp"][0]["HostPort"]) <= free + 20
        assert await _tcp(int(ports2["8080/tcp"][0]["HostPort"]), b"r") == f"tcp:{gateway}:r".encode()

    asyncio.run(main())


def test_proxy_in_a_sandbox_netns() -> None:
    """With the bridges in their own netns, the proxy listens and connects there (sockets made by setns'd children)."""
    need_root()
    lab = Lab(sandbox=True)
    try:
        drv, ip, gateway = _container(lab)

        async def main() -> None:
            ports = await drv.publish("c1", ip, {"8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": "18080"}]})
            assert ports["8080/tcp"][0]["HostPort"] == "18080"
            loop = asyncio.get_running_loop()
            res = await loop.run_in_executor(None, lambda: lab.py(lab.sandbox, """
import socket
c = socket.create_connection(("127.0.0.1", 18080), timeout=5)
c.sendall(b"in-sandbox"); c.shutdown(socket.SHUT_WR)
print(c.recv(1000).decode())
"""))
            assert res.stdout.strip() == f"tcp:{gateway}:in-sandbox", res.stderr

        asyncio.run(main())
    finally:
        lab.close()
    assert lab.leftovers() == []


def test_port_spec_parsing() -> None:
    assert PortSpec.parse("80", None) == PortSpec(80, "tcp", "", "")
    assert PortSpec.parse("53/udp", {"HostIp": "127.0.0.1", "HostPort": "5353"}).candidates() == [5353]
    assert PortSpec.parse("80/tcp", {"HostPort": "8000-8002"}).candidates() == [8000, 8001, 8002]
    with pytest.raises(Exception, match="sctp"):
        PortSpec.parse("80/sctp", None)
    assert PortProxy("10.230.0.2").bindings() == {}
