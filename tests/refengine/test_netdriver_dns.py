"""The embedded DNS at 127.0.0.11 inside a test-made netns; the upstream is a fake server this test starts.

No real resolver is ever queried: the server is given `upstreams=[(127.0.0.1, <fake port>)]`.
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct

from refengine.drivers.network.dns import T_A, Scope, answer, parse_query

from .test_netdriver_lab import Lab

CLIENT = r"""
import json, socket, struct, sys
def query(name, qtype, tcp=False):
    q = struct.pack("!HHHHHH", 0x4242, 0x0100, 1, 0, 0, 0)
    q += b"".join(bytes([len(l)]) + l.encode() for l in name.rstrip(".").split(".")) + b"\0"
    q += struct.pack("!HH", qtype, 1)
    if tcp:
        s = socket.create_connection(("127.0.0.11", 53), timeout=3)
        s.sendall(struct.pack("!H", len(q)) + q)
        buf = b""
        while len(buf) < 2 or len(buf) < 2 + struct.unpack("!H", buf[:2])[0]:
            chunk = s.recv(4096)
            if not chunk:
                break
            buf += chunk
        r = buf[2:]
    else:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(3)
        s.connect(("127.0.0.11", 53))  # connected: an ICMP port-unreachable comes back as ECONNREFUSED
        s.send(q)
        try:
            r = s.recv(4096)
        except (TimeoutError, ConnectionRefusedError) as e:
            return {"error": type(e).__name__}
    qid, flags, qd, an = struct.unpack("!HHHH", r[:8])
    pos = 12
    while r[pos]:
        pos += r[pos] + 1
    pos += 5
    out = []
    for _ in range(an):
        if r[pos] & 0xC0:
            pos += 2
        else:
            while r[pos]:
                pos += r[pos] + 1
            pos += 1
        t, c, ttl, n = struct.unpack("!HHIH", r[pos:pos + 10])
        data = r[pos + 10:pos + 10 + n]
        pos += 10 + n
        if t == 1:
            out.append(socket.inet_ntoa(data))
        elif t == 12:
            labels, i = [], 0
            while data[i]:
                labels.append(data[i + 1:i + 1 + data[i]].decode()); i += data[i] + 1
            out.append(".".join(labels))
        out.append(ttl)
    return {"id": qid, "rcode": flags & 0xF, "aa": bool(flags & 0x400), "answers": out}
print(json.dumps([query(*a) for a in json.loads(sys.argv[1])]))
"""



def _client(queries: list[list]) -> str:
    """The client program with its queries baked in: [name, qtype] or [name, qtype, True] for TCP."""
    return CLIENT.replace("sys.argv[1]", repr(json.dumps(queries)))


UPSTREAM_ANSWER = "10.230.255.254"  # what the fake upstream answers, for any name


class FakeUpstream(asyncio.DatagramProtocol):
    """A DNS server on 127.0.0.1 (UDP and TCP) answering every A query with UPSTREAM_ANSWER."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []
        self.transport: asyncio.DatagramTransport | None = None

    def reply(self, data: bytes, proto: str) -> bytes:
        q = parse_query(data)
        self.seen.append((proto, q.name))
        return answer(q, [(T_A, socket.inet_aton(UPSTREAM_ANSWER))], ttl=30)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        assert self.transport is not None
        self.transport.sendto(self.reply(data, "udp"), addr)

    async def tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        (n,) = struct.unpack("!H", await reader.readexactly(2))
        r = self.reply(await reader.readexactly(n), "tcp")
        writer.write(struct.pack("!H", len(r)) + r)
        await writer.drain()
        writer.close()


def test_embedded_dns_answers_names_and_forwards_the_rest(lab: Lab) -> None:
    ns = lab.netns()
    lab.lo_up(ns)
    cid = "0123456789ab" + "c" * 52
    names = {"web": ["10.230.200.2"], "db-alias": ["10.230.200.3"], cid[:12]: ["10.230.200.2"]}
    scope = Scope(lookup=lambda n: names.get(n), reverse=lambda ip: "web" if ip == "10.230.200.2" else None)
    queries = [["web", 1], ["WEB.", 1], ["db-alias", 1], [cid[:12], 1], ["web", 28], ["example.test", 1],
               ["2.200.230.10.in-addr.arpa", 12], ["web", 1, True], ["other.example.test", 1, True]]

    async def main() -> list[dict]:
        loop = asyncio.get_running_loop()
        up = FakeUpstream()
        udp, _ = await loop.create_datagram_endpoint(lambda: up, local_addr=("127.0.0.1", 0))
        port = udp.get_extra_info("sockname")[1]
        tcp = await asyncio.start_server(up.tcp, "127.0.0.1", port)
        drv = lab.driver(dns_upstreams=[("127.0.0.1", port)])
        try:
            await drv.attach_dns(cid, ns, scope)
            res = await loop.run_in_executor(None, lambda: lab.py(ns, _client(queries)))
            assert res.returncode == 0, res.stderr
            await drv.detach_dns(cid)
            gone = await loop.run_in_executor(None, lambda: lab.py(ns, _client([["web", 1]])))
            assert json.loads(gone.stdout)[0] == {"error": "ConnectionRefusedError"}
            assert up.seen == [("udp", "example.test"), ("tcp", "other.example.test")]
            return json.loads(res.stdout)
        finally:
            udp.close()
            tcp.close()

    r = asyncio.run(main())
    assert r[0] == {"id": 0x4242, "rcode": 0, "aa": True, "answers": ["10.230.200.2", 600]}
    assert r[1]["answers"] == ["10.230.200.2", 600]  # case and trailing dot don't matter
    assert r[2]["answers"] == ["10.230.200.3", 600]
    assert r[3]["answers"] == ["10.230.200.2", 600]  # the short container ID
    assert r[4]["rcode"] == 0 and r[4]["answers"] == []  # AAAA of a known name: NOERROR, no data
    assert r[5]["answers"] == [UPSTREAM_ANSWER, 30]  # the upstream's answer (its TTL), passed on
    assert r[6]["answers"] == ["web", 600]
    assert r[7]["answers"] == ["10.230.200.2", 600]  # over TCP
    assert r[8]["answers"] == [UPSTREAM_ANSWER, 30]  # forwarded over TCP


def test_dead_upstream_gives_servfail(lab: Lab) -> None:
    ns = lab.netns()
    lab.lo_up(ns)
    closed = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # bound and silent: our own dead "upstream"
    closed.bind(("127.0.0.1", 0))

    async def main() -> dict:
        loop = asyncio.get_running_loop()
        drv = lab.driver(dns_upstreams=[("127.0.0.1", closed.getsockname()[1])])
        drv.dns.timeout = 0.5
        await drv.attach_dns("c", ns, Scope(lookup=lambda n: None))
        res = await loop.run_in_executor(None, lambda: lab.py(ns, _client([["nowhere.test", 1]]), timeout=20))
        return json.loads(res.stdout)[0]

    try:
        out = asyncio.run(main())
    finally:
        closed.close()
    assert out["rcode"] == 2 and out["answers"] == [], out  # SERVFAIL
