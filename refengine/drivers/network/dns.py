"""The embedded DNS server of user-defined networks: 127.0.0.11:53 inside each container's netns.

As with dockerd, containers on user-defined networks get `nameserver 127.0.0.11` and find each other by
name. The listening sockets (UDP and TCP) are opened inside the container's netns by a forked child and
passed back (`nsutil.socket_in_netns`); the daemon's event loop serves them, so one process serves every
container without a thread or process per container.

Answers: A queries for names the container's resolver callback knows (container names, network aliases,
short IDs, as the caller decides) come back with TTL 600 (dockerd's); AAAA for such names is an empty
NOERROR (no IPv6 here), so resolvers don't fall through to the upstream; PTR for addresses the reverse
callback knows. Everything else goes, unchanged, to the upstream servers (the host's /etc/resolv.conf by
default) over the same transport, from the daemon's netns: loopback resolvers such as 127.0.0.53 work too.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

from .etcfiles import host_nameservers
from .nsutil import socket_in_netns

DNS_ADDR = "127.0.0.11"
DNS_PORT = 53
TTL = 600
UPSTREAM_TIMEOUT = 3.0  # per upstream server; dockerd's is 4 s for the whole exchange
T_A, T_PTR, T_AAAA, C_IN = 1, 12, 28, 1
RCODE_FORMERR, RCODE_SERVFAIL, RCODE_NXDOMAIN = 1, 2, 3

Lookup = Callable[[str], list[str] | None]  # name (lower case, no trailing dot) -> IPv4s, or None: not ours
Reverse = Callable[[str], str | None]  # IPv4 -> name, or None


class DNSFormatError(ValueError):
    pass


@dataclass(frozen=True)
class Query:
    id: int
    flags: int
    name: str  # as asked, without the trailing dot
    qtype: int
    qclass: int
    raw_question: bytes  # the question section as received, echoed in answers

    @property
    def rd(self) -> int:
        return self.flags & 0x0100


def parse_query(data: bytes) -> Query:
    if len(data) < 12:
        raise DNSFormatError("short header")
    qid, flags, qdcount = struct.unpack("!HHH", data[:6])
    if flags & 0x8000 or qdcount != 1:
        raise DNSFormatError("not a single-question query")
    labels, pos = [], 12
    while True:
        if pos >= len(data):
            raise DNSFormatError("truncated name")
        n = data[pos]
        if n & 0xC0:
            raise DNSFormatError("compressed question name")
        pos += 1
        if n == 0:
            break
        labels.append(data[pos:pos + n].decode("ascii", errors="replace"))
        pos += n
    if pos + 4 > len(data):
        raise DNSFormatError("truncated question")
    qtype, qclass = struct.unpack("!HH", data[pos:pos + 4])
    return Query(qid, flags, ".".join(labels), qtype, qclass, data[12:pos + 4])


def encode_name(name: str) -> bytes:
    out = b""
    for label in name.rstrip(".").split("."):
        if label:
            raw = label.encode("ascii")
            out += bytes([len(raw)]) + raw
    return out + b"\0"


def _header(q: Query, rcode: int, ancount: int) -> bytes:
    flags = 0x8000 | (q.flags & 0x7800) | 0x0400 | q.rd | 0x0080 | rcode  # QR, opcode, AA, RD, RA
    return struct.pack("!HHHHHH", q.id, flags, 1, ancount, 0, 0)


def answer(q: Query, rdatas: list[tuple[int, bytes]], rcode: int = 0, ttl: int = TTL) -> bytes:
    """A response to `q` with the given (type, rdata) records, each named by a pointer to the question."""
    body = b"".join(struct.pack("!HHHIH", 0xC00C, t, C_IN, ttl, len(rd)) + rd for t, rd in rdatas)
    return _header(q, rcode, len(rdatas)) + q.raw_question + body


def error_reply(data: bytes, rcode: int) -> bytes | None:
    """A bare error reply echoing the query's header ID, or None if even that can't be read."""
    if len(data) < 12:
        return None
    qid, flags = struct.unpack("!HH", data[:4])
    return struct.pack("!HHHHHH", qid, 0x8000 | (flags & 0x7900) | 0x0080 | rcode, 0, 0, 0, 0)


def _ptr_ip(name: str) -> str | None:
    if not name.endswith(".in-addr.arpa"):
        return None
    parts = name[: -len(".in-addr.arpa")].split(".")
    if len(parts) != 4:
        return None
    try:
        return str(ipaddress.IPv4Address(".".join(reversed(parts))))
    except ValueError:
        return None


@dataclass
class Scope:
    """What one container may resolve locally."""

    lookup: Lookup
    reverse: Reverse | None = None
    upstreams: list[tuple[str, int]] | None = None  # None: the server's default


def local_answer(q: Query, scope: Scope) -> bytes | None:
    """The answer from the container's own names, or None to forward the query."""
    if q.qclass != C_IN:
        return None
    name = q.name.lower().rstrip(".")
    if q.qtype == T_PTR and scope.reverse is not None:
        ip = _ptr_ip(name)
        target = scope.reverse(ip) if ip else None
        return answer(q, [(T_PTR, encode_name(target))]) if target else None
    if q.qtype not in (T_A, T_AAAA):
        return None
    ips = scope.lookup(name)
    if ips is None:
        return None
    if q.qtype == T_AAAA:
        return answer(q, [])  # known name, no IPv6 address: NOERROR/no data, as dockerd answers
    return answer(q, [(T_A, ipaddress.IPv4Address(ip).packed) for ip in ips])


class _OneShot(asyncio.DatagramProtocol):
    def __init__(self, qid: int) -> None:
        self.qid = qid
        self.done: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if len(data) >= 2 and struct.unpack("!H", data[:2])[0] == self.qid and not self.done.done():
            self.done.set_result(data)  # the ID must match: a stray datagram doesn't end the exchange

    def error_received(self, exc: Exception) -> None:
        if not self.done.done():
            self.done.set_exception(exc)


async def forward_udp(data: bytes, upstream: tuple[str, int], timeout: float = UPSTREAM_TIMEOUT) -> bytes:
    """One exchange with an upstream server from a fresh socket (a new random source port each time)."""
    loop = asyncio.get_running_loop()
    qid = struct.unpack("!H", data[:2])[0]
    transport, proto = await loop.create_datagram_endpoint(lambda: _OneShot(qid), remote_addr=upstream)
    try:
        transport.sendto(data)
        return await asyncio.wait_for(proto.done, timeout)
    finally:
        transport.close()


async def forward_tcp(data: bytes, upstream: tuple[str, int], timeout: float = UPSTREAM_TIMEOUT) -> bytes:
    async def exchange() -> bytes:
        reader, writer = await asyncio.open_connection(*upstream)
        try:
            writer.write(struct.pack("!H", len(data)) + data)
            await writer.drain()
            (n,) = struct.unpack("!H", await reader.readexactly(2))
            return await reader.readexactly(n)
        finally:
            writer.close()

    return await asyncio.wait_for(exchange(), timeout)


@dataclass
class _Listener:
    scope: Scope
    udp: asyncio.DatagramTransport
    tcp: asyncio.AbstractServer


@dataclass
class EmbeddedDNS:
    """One server for every container; `attach` adds a container's 127.0.0.11 listeners."""

    upstreams: list[tuple[str, int]] | None = None  # None: the nameservers in /etc/resolv.conf, port 53
    timeout: float = UPSTREAM_TIMEOUT
    listeners: dict[str, _Listener] = field(default_factory=dict)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def _upstreams(self, scope: Scope) -> list[tuple[str, int]]:
        if scope.upstreams is not None:
            return scope.upstreams
        if self.upstreams is not None:
            return self.upstreams
        try:
            with open("/etc/resolv.conf") as f:
                return [(ns, DNS_PORT) for ns in host_nameservers(f.read())]
        except OSError:
            return []

    async def resolve(self, data: bytes, scope: Scope, tcp: bool) -> bytes | None:
        try:
            q = parse_query(data)
        except DNSFormatError:
            return error_reply(data, RCODE_FORMERR)
        local = local_answer(q, scope)
        if local is not None:
            return local
        for upstream in self._upstreams(scope):
            try:
                return await (forward_tcp if tcp else forward_udp)(data, upstream, self.timeout)
            except (TimeoutError, OSError, asyncio.IncompleteReadError, struct.error):
                continue  # next upstream, like a stub resolver
        return answer(q, [], rcode=RCODE_SERVFAIL)

    async def attach(self, key: str, netns: str, scope: Scope, addr: str = DNS_ADDR, port: int = DNS_PORT) -> None:
        """Listen on addr:port (UDP and TCP) inside `netns` for one container (`key`, e.g. its ID).

        The netns's lo must be up (it is once the container has joined a network through the driver).
        """
        if key in self.listeners:
            self.listeners[key].scope = scope
            return
        loop = asyncio.get_running_loop()
        udp_sock = await loop.run_in_executor(None, socket_in_netns, netns, socket.AF_INET, socket.SOCK_DGRAM)
        tcp_sock = await loop.run_in_executor(None, socket_in_netns, netns, socket.AF_INET, socket.SOCK_STREAM)
        try:
            udp_sock.bind((addr, port))
            tcp_sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            tcp_sock.bind((addr, port))
            tcp_sock.listen(64)
            udp_sock.setblocking(False)
            tcp_sock.setblocking(False)
            holder: list[_Listener] = []
            udp, _ = await loop.create_datagram_endpoint(lambda: _UdpServer(self, holder), sock=udp_sock)
            tcp = await asyncio.start_server(lambda r, w: self._tcp_client(holder[0], r, w), sock=tcp_sock)
        except BaseException:
            udp_sock.close()
            tcp_sock.close()
            raise
        listener = _Listener(scope, udp, tcp)
        holder.append(listener)
        self.listeners[key] = listener

    async def _tcp_client(self, listener: _Listener, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        try:
            while True:  # RFC 7766: several queries may come on one connection
                (n,) = struct.unpack("!H", await asyncio.wait_for(reader.readexactly(2), 10))
                data = await reader.readexactly(n)
                reply = await self.resolve(data, listener.scope, tcp=True)
                if reply is None:
                    break
                writer.write(struct.pack("!H", len(reply)) + reply)
                await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def detach(self, key: str) -> None:
        listener = self.listeners.pop(key, None)
        if listener is None:
            return
        listener.udp.close()
        listener.tcp.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(listener.tcp.wait_closed(), 2)

    async def close(self) -> None:
        for key in list(self.listeners):
            await self.detach(key)
        for task in list(self.tasks):
            task.cancel()
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)


class _UdpServer(asyncio.DatagramProtocol):
    def __init__(self, server: EmbeddedDNS, holder: list[_Listener]) -> None:
        self.server, self.holder = server, holder
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if not self.holder:
            return
        task = asyncio.get_running_loop().create_task(self._serve(data, addr))
        self.server.tasks.add(task)
        task.add_done_callback(self.server.tasks.discard)

    async def _serve(self, data: bytes, addr: tuple[str, int]) -> None:
        reply = await self.server.resolve(data, self.holder[0].scope, tcp=False)
        if reply is not None and self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(reply, addr)
