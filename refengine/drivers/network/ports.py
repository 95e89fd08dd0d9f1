"""Published ports through a userland proxy: asyncio TCP and UDP forwarders in the daemon.

Why a proxy, not DNAT (dockerd's default is the same, `userland-proxy=true`):
- Reachable from the host's own loopback: a connection to 127.0.0.1:8080 never passes PREROUTING, and DNAT
  in OUTPUT to a bridge address would need `net.ipv4.conf.<if>.route_localnet=1` (loopback-sourced packets
  may not otherwise leave lo), a host-wide weakening refengine should not make.
- The proxy's sockets are ordinary listeners: a taken port fails at bind with a clear error, and HostPort ""
  binds port 0 so the kernel picks a free one, which is then reported.
- The proxy talks to the container from the host (OUTPUT/INPUT, not FORWARD), so it also works where another
  firewall's FORWARD policy drops the bridges' forwarded traffic (see nat.py).
The cost: the container sees the bridge gateway as the client address, and each byte crosses userspace.

With `netns=` (refengine's bridges kept in a namespace of their own) listeners and upstream sockets are
created in that namespace through `nsutil.socket_in_netns`.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass, field

from refengine.engine.errors import EngineError, InvalidParameter

from .nsutil import socket_in_netns

UDP_IDLE = 90.0  # seconds a UDP flow is kept without traffic (dockerd's proxy uses the same)
CONNECT_TIMEOUT = 10.0
CHUNK = 65536


class PortAllocated(EngineError):
    """The host port is taken (dockerd answers 500 with the same text)."""

    http_status = 500


@dataclass(frozen=True)
class PortSpec:
    container_port: int
    proto: str  # "tcp" | "udp"
    host_ip: str  # "" = all IPv4 addresses
    host_port: str  # "" = any; "8080"; or a range "8000-8010"

    @staticmethod
    def parse(key: str, binding: dict[str, str] | None) -> PortSpec:
        """From a PortBindings entry: key "80/tcp", binding {"HostIp": "", "HostPort": "8080"}."""
        number, _, proto = key.partition("/")
        proto = proto or "tcp"
        if proto not in ("tcp", "udp"):
            raise InvalidParameter(f"invalid proto '{proto}' (sctp is not supported)")
        try:
            port = int(number)
        except ValueError:
            raise InvalidParameter(f"invalid port specification: \"{key}\"") from None
        binding = binding or {}
        host_ip = binding.get("HostIp") or ""
        try:
            ipaddress.ip_address(host_ip or "0.0.0.0")
        except ValueError:
            host_ip = ""  # as dockerd: an address that does not parse is nil there, i.e. every address
        return PortSpec(port, proto, host_ip, str(binding.get("HostPort") or ""))

    def candidates(self) -> list[int]:
        if not self.host_port:
            return [0]
        lo, _, hi = self.host_port.partition("-")
        try:
            first, last = int(lo), int(hi or lo)
        except ValueError:
            raise InvalidParameter(f"invalid port specification: \"{self.host_port}\"") from None
        if not (0 <= first <= last <= 65535):
            raise InvalidParameter(f"invalid port specification: \"{self.host_port}\"")
        return list(range(first, last + 1))


@dataclass
class Published:
    spec: PortSpec
    host_ip: str
    host_port: int
    sock: socket.socket
    server: asyncio.AbstractServer | None = None
    transport: asyncio.BaseTransport | None = None

    def binding(self) -> dict[str, str]:
        return {"HostIp": self.host_ip, "HostPort": str(self.host_port)}


def _bind(spec: PortSpec, netns: str | None) -> tuple[socket.socket, str, int]:
    host_ip = spec.host_ip or "0.0.0.0"
    family = socket.AF_INET6 if ":" in host_ip else socket.AF_INET
    kind = socket.SOCK_STREAM if spec.proto == "tcp" else socket.SOCK_DGRAM
    last: OSError | None = None
    for port in spec.candidates():
        sock = socket_in_netns(netns, family, kind) if netns else socket.socket(family, kind)
        try:
            if kind == socket.SOCK_STREAM:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT must not block a restart
            sock.bind((host_ip, port))
            if kind == socket.SOCK_STREAM:
                sock.listen(128)
            sock.setblocking(False)
            return sock, host_ip, sock.getsockname()[1]
        except OSError as exc:
            sock.close()
            last = exc
            if exc.errno != errno.EADDRINUSE:
                break
    shown = f"[{host_ip}]" if family == socket.AF_INET6 else host_ip
    if last is not None and last.errno == errno.EADDRINUSE:
        raise PortAllocated(f"Bind for {shown}:{spec.host_port} failed: port is already allocated")
    raise EngineError(f"Bind for {shown}:{spec.host_port or 0} failed: {last.strerror if last else 'unknown'}")


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()  # pass the half-close on: a client may shut down its sending side first
    except (ConnectionError, OSError):
        writer.transport.abort()


class _UdpFlows(asyncio.DatagramProtocol):
    """One host listener; per client address, a connected UDP socket towards the container."""

    def __init__(self, target: tuple[str, int], new_socket: Callable[[], socket.socket]) -> None:
        self.target, self.new_socket = target, new_socket
        self.transport: asyncio.DatagramTransport | None = None
        self.flows: dict[tuple[str, int], tuple[socket.socket, asyncio.TimerHandle]] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        loop = asyncio.get_running_loop()
        flow = self.flows.get(addr)
        if flow is None:
            s = self.new_socket()
            s.setblocking(False)
            s.connect(self.target)  # UDP connect: only filters replies to the container's address
            loop.add_reader(s.fileno(), self._reply, s, addr)
            flow = (s, loop.call_later(UDP_IDLE, self._expire, addr))
            self.flows[addr] = flow
        else:
            flow[1].cancel()
            self.flows[addr] = flow = (flow[0], loop.call_later(UDP_IDLE, self._expire, addr))
        with contextlib.suppress(OSError):
            flow[0].send(data)

    def _reply(self, s: socket.socket, addr: tuple[str, int]) -> None:
        try:
            data = s.recv(CHUNK)
        except BlockingIOError:
            return
        except OSError:  # ICMP port unreachable from the container: drop the datagram, keep the flow
            return
        if self.transport is not None:
            self.transport.sendto(data, addr)

    def _expire(self, addr: tuple[str, int]) -> None:
        flow = self.flows.pop(addr, None)
        if flow is not None:
            asyncio.get_running_loop().remove_reader(flow[0].fileno())
            flow[0].close()

    def close(self) -> None:
        for addr in list(self.flows):
            self.flows[addr][1].cancel()
            self._expire(addr)


@dataclass
class PortProxy:
    """The published ports of one container endpoint."""

    target_ip: str
    netns: str | None = None  # where the bridges live; None = the daemon's netns
    published: list[Published] = field(default_factory=list)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def _upstream(self, kind: int) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.target_ip else socket.AF_INET
        return socket_in_netns(self.netns, family, kind) if self.netns else socket.socket(family, kind)

    def bind(self, specs: list[PortSpec]) -> list[Published]:
        """Bind every host port first (all or nothing), so errors come before anything is served."""
        done: list[Published] = []
        try:
            for spec in specs:
                sock, ip, port = _bind(spec, self.netns)
                done.append(Published(spec, ip, port, sock))
        except BaseException:
            for p in done:
                p.sock.close()
            raise
        self.published += done
        return done

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        for p in self.published:
            target = (self.target_ip, p.spec.container_port)
            if p.spec.proto == "tcp" and p.server is None:
                p.server = await asyncio.start_server(self._tcp_handler(target), sock=p.sock)
            elif p.spec.proto == "udp" and p.transport is None:
                p.transport, _ = await loop.create_datagram_endpoint(
                    lambda t=target: _UdpFlows(t, lambda: self._upstream(socket.SOCK_DGRAM)), sock=p.sock)

    def _tcp_handler(self, target: tuple[str, int]) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], object]:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            if task is not None:
                self.tasks.add(task)
            try:
                if self.netns:
                    loop = asyncio.get_running_loop()
                    s = await loop.run_in_executor(None, self._upstream, socket.SOCK_STREAM)
                    s.setblocking(False)
                    await asyncio.wait_for(loop.sock_connect(s, target), CONNECT_TIMEOUT)
                    up_r, up_w = await asyncio.open_connection(sock=s)
                else:
                    up_r, up_w = await asyncio.wait_for(asyncio.open_connection(*target), CONNECT_TIMEOUT)
            except (TimeoutError, OSError):
                writer.transport.abort()  # like dockerd's proxy: the client sees a reset
                if task is not None:
                    self.tasks.discard(task)
                return
            try:
                await asyncio.gather(_pipe(reader, up_w), _pipe(up_r, writer))
            finally:
                for w in (writer, up_w):
                    w.close()
                if task is not None:
                    self.tasks.discard(task)

        return handle

    def bindings(self) -> dict[str, list[dict[str, str]]]:
        """NetworkSettings.Ports for what is published here."""
        out: dict[str, list[dict[str, str]]] = {}
        for p in self.published:
            out.setdefault(f"{p.spec.container_port}/{p.spec.proto}", []).append(p.binding())
        return out

    async def close(self) -> None:
        for p in self.published:
            if p.server is not None:
                p.server.close()
            if p.transport is not None:
                proto = p.transport.get_protocol()
                if isinstance(proto, _UdpFlows):
                    proto.close()
                p.transport.close()
            if p.server is None and p.transport is None:
                p.sock.close()
        for task in list(self.tasks):
            task.cancel()
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)
        for p in self.published:
            if p.server is not None:
                await p.server.wait_closed()
        self.published.clear()
