"""`BridgeDriver`: the engine's `NetworkDriver` for bridge networks, plus endpoints, ports and DNS.

Who calls what:
- `NetworkStore.create/remove` call `create(net)` / `delete(net)` (sync, from a job handler on the event loop).
  At daemon start, call `create(net)` for every stored bridge network: it is idempotent and rebuilds the nft
  table, which `shutdown()` removes.
- Container start, per network in NetworkSettings.Networks: `record = join(net, endpoint_config, pid,
  container_id=...)`, then put `endpoint_settings(record)` into the container's NetworkSettings.Networks and
  `network_entry(record, name)` into `net.endpoints[cid]` (NetworkStore.allocate_ip reads IPv4Address there).
  Then `await publish(cid, ip, PortBindings)` and, on user-defined networks, `await attach_dns(cid, ...)`.
  Container stop: `await unpublish(cid)`, `await detach_dns(cid)`, `leave(net, cid)` per network.
- Modes without a bridge: `host` (the container shares the daemon's netns), `none`/`null` (only lo, which
  the runtime's fresh netns already has) and `container:<id>` (the runtime joins the other container's
  netns; that container's endpoints serve both): nothing to build, `join` returns an empty record for
  host/null networks and is never called for container mode.

Threads: link work runs on `NetlinkWorker` (see netlink.py); namespace work in forked children (nsutil.py);
`join`/`leave` block for the few ms they take, `ajoin`/`aleave` don't block the loop.
"""

from __future__ import annotations

import asyncio
import ipaddress
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from refengine.engine.errors import EngineError, InvalidParameter

from . import bridge as br
from . import veth
from .dns import EmbeddedDNS, Scope
from .dockeruser import DockerUserAccept
from .nat import DEFAULT_TABLE, NatTable, NetRules, br_netfilter_on, forward_blockers
from .netlink import NetlinkWorker
from .nsutil import netns_path, same_netns, write_sysctl
from .ports import PortAllocated, PortProxy, PortSpec

OPT_BRIDGE_NAME = "com.docker.network.bridge.name"
OPT_MTU = "com.docker.network.driver.mtu"
OPT_MASQ = "com.docker.network.bridge.enable_ip_masquerade"
OPT_ICC = "com.docker.network.bridge.enable_icc"
OPT_DEFAULT = "com.docker.network.bridge.default_bridge"
NO_KERNEL_DRIVERS = ("host", "null", "none")


class NetworkLike(Protocol):
    """What the driver reads from refengine.engine.networks.Network."""

    id: str
    name: str
    driver: str
    subnets: list[dict[str, str]]
    internal: bool
    options: dict[str, str]
    builtin: bool


Ipam = Callable[[Any, str | None], tuple[str, int, str]]  # NetworkStore.allocate_ip(net, wanted)


def _flag(options: dict[str, str], key: str, default: bool) -> bool:
    value = options.get(key)
    if value is None or value == "":
        return default
    if value.lower() in ("1", "true", "t", "yes"):
        return True
    if value.lower() in ("0", "false", "f", "no"):
        return False
    raise InvalidParameter(f"invalid value {value!r} for option {key}")


@dataclass(frozen=True)
class BridgeConfig:
    """A bridge network's kernel-side settings, from its Network record."""

    bridge: str
    gateway: str
    prefixlen: int
    subnets: tuple[str, ...]
    mtu: int
    masquerade: bool
    icc: bool
    internal: bool
    user_defined: bool
    gateway6: str = ""  # the bridge's IPv6 address on networks with an IPv6 subnet
    prefixlen6: int = 0

    @staticmethod
    def of(net: NetworkLike, default_mtu: int = 1500) -> BridgeConfig:
        v4 = [c for c in net.subnets if ipaddress.ip_network(c["Subnet"]).version == 4]
        if not v4:
            raise InvalidParameter(f"network {net.name} has no IPv4 subnet")
        sub = ipaddress.ip_network(v4[0]["Subnet"])
        gateway = v4[0].get("Gateway") or str(next(sub.hosts()))
        try:
            mtu = int(net.options.get(OPT_MTU) or default_mtu)
        except ValueError:
            raise InvalidParameter(f"invalid MTU {net.options.get(OPT_MTU)!r}") from None
        name = net.options.get(OPT_BRIDGE_NAME) or "br-" + net.id[:12]
        try:
            br.check_ifname(name)
        except ValueError as exc:
            raise InvalidParameter(str(exc)) from None
        v6 = [c for c in net.subnets if ipaddress.ip_network(c["Subnet"]).version == 6]
        gateway6, prefixlen6 = "", 0
        if v6 and getattr(net, "enable_ipv6", False):
            sub6 = ipaddress.ip_network(v6[0]["Subnet"])
            gateway6, prefixlen6 = v6[0].get("Gateway") or str(next(sub6.hosts())), sub6.prefixlen
        return BridgeConfig(name, gateway, sub.prefixlen, tuple(c["Subnet"] for c in net.subnets), mtu,
                            _flag(net.options, OPT_MASQ, True), _flag(net.options, OPT_ICC, True),
                            bool(net.internal), not (net.builtin or _flag(net.options, OPT_DEFAULT, False)),
                            gateway6, prefixlen6)

    def spec(self, owner: str, tag: str = "") -> br.BridgeSpec:
        return br.BridgeSpec(self.bridge, self.gateway, self.prefixlen, self.mtu, owner, tag)

    def rules(self) -> NetRules:
        return NetRules(self.bridge, self.subnets, self.masquerade, self.internal, self.icc)


def endpoint_settings(record: dict[str, Any]) -> dict[str, Any]:
    """The EndpointSettings for the container's NetworkSettings.Networks[<name>]."""
    keys = ("IPAMConfig", "Links", "Aliases", "NetworkID", "EndpointID", "Gateway", "IPAddress", "IPPrefixLen",
            "IPv6Gateway", "GlobalIPv6Address", "GlobalIPv6PrefixLen", "MacAddress", "DriverOpts")
    return {k: record.get(k) for k in keys}


def network_entry(record: dict[str, Any], container_name: str) -> dict[str, Any]:
    """The entry for Network.endpoints (network inspect's Containers); IPAM reads its IPv4Address."""
    return {"Name": container_name.lstrip("/"), "EndpointID": record["EndpointID"],
            "MacAddress": record["MacAddress"], "IPv4Address": record["IPv4Address"],
            "IPv6Address": record["IPv6Address"]}


class BridgeDriver:
    def __init__(self, table: str = DEFAULT_TABLE, host_netns: str | None = None, default_mtu: int = 1500,
                 ipam: Ipam | None = None, dns_upstreams: list[tuple[str, int]] | None = None,
                 docker_user: bool = False) -> None:
        """`host_netns`: path of the netns the bridges live in (None: the daemon's own). `table`: the nft table
        name, refengine's own. `ipam`: NetworkStore.allocate_ip, used when `join` gets no address.
        `docker_user`: add ACCEPT rules for our bridges to dockerd's DOCKER-USER chain (see dockeruser.py)."""
        self.host_netns = host_netns
        self.default_mtu = default_mtu
        self.ipam = ipam
        self.worker = NetlinkWorker(host_netns)
        self.nat = NatTable(table, host_netns)
        self.dns = EmbeddedDNS(dns_upstreams)
        self.proxies: dict[str, PortProxy] = {}
        self.docker_user = DockerUserAccept(table, docker_user, host_netns)
        self._forwarding = False

    def _container_netns(self, pid: int | None, netns: str | None) -> str:
        """The container's netns path, refusing the daemon's or the bridges' own namespace: configuring "eth1",
        an address and lo there would change the host (a runtime that forgot to unshare would do that)."""
        path = netns_path(pid, netns)
        for own in ("/proc/thread-self/ns/net", self.host_netns):
            if own and same_netns(path, own):
                raise InvalidParameter(f"{path} is not a container's network namespace: it is the host's")
        return path

    # -- networks (the NetworkDriver protocol) --

    def create(self, net: NetworkLike) -> None:
        if net.driver != "bridge":
            return
        cfg = BridgeConfig.of(net, self.default_mtu)
        state = self.worker.call(lambda: br.ensure_bridge(self.worker.host(), cfg.spec(net.id, self.nat.table)))
        if cfg.gateway6:
            self.worker.call(lambda: br.ensure_addr(self.worker.host(), state.index, cfg.gateway6, cfg.prefixlen6))
        if not self._forwarding:  # dockerd does the same; a no-op when already 1 (as on this host)
            write_sysctl("net.ipv4.ip_forward", "1", self.host_netns)
            self._forwarding = True
        try:
            self.nat.set(net.id, cfg.rules())
            self.docker_user.add(cfg.bridge)  # internal too: same-bridge traffic; our table drops the rest
        except BaseException:
            if state.created:  # never tear down a bridge that existed (and may carry live containers)
                self.worker.call(self._delete_bridge, cfg, net.id)
            raise

    def _delete_bridge(self, cfg: BridgeConfig, owner: str) -> None:
        br.delete_bridge(self.worker.host(), cfg.spec(owner))

    def delete(self, net: NetworkLike) -> None:
        if net.driver != "bridge":
            return
        cfg = BridgeConfig.of(net, self.default_mtu)
        self.docker_user.remove(cfg.bridge)
        self.nat.remove(net.id)
        self.worker.call(self._delete_bridge, cfg, net.id)

    def loopback_up(self, pid: int | None = None, netns: str | None = None) -> None:
        """Bring lo up in a container's netns that joins no bridge (NetworkMode none)."""
        path = self._container_netns(pid, netns)
        self.worker.call(veth.loopback_up, path)

    def routed_networks(self) -> list[ipaddress.IPv4Network]:
        """IPv4 prefixes the bridges' netns already routes or holds (to keep new subnets clear of them)."""
        return self.worker.call(lambda: br.routed_networks(self.worker.host()))

    # -- endpoints --

    def join(self, net: NetworkLike, endpoint_config: dict[str, Any] | None, pid: int | None = None, *,
             container_id: str, netns: str | None = None,
             address: tuple[str, int, str] | None = None,
             address6: tuple[str, int, str] | None = None) -> dict[str, Any]:
        """Connect the container (its netns: `pid` or `netns` path) to `net`; the endpoint record.

        `endpoint_config` is the API's EndpointSettings (IPAMConfig.IPv4Address, MacAddress, Aliases...).
        `address` is (ip, prefixlen, gateway) from IPAM; without it `self.ipam` is asked.
        """
        ec = dict(endpoint_config or {})
        record: dict[str, Any] = {
            "IPAMConfig": ec.get("IPAMConfig"), "Links": ec.get("Links"), "Aliases": ec.get("Aliases"),
            "NetworkID": net.id, "EndpointID": secrets.token_hex(32), "Gateway": "", "IPAddress": "",
            "IPPrefixLen": 0, "IPv6Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0,
            "MacAddress": "", "DriverOpts": ec.get("DriverOpts"), "IPv4Address": "", "IPv6Address": ""}
        if net.driver in NO_KERNEL_DRIVERS:
            return record
        if net.driver != "bridge":
            raise EngineError(f"network driver {net.driver} is not supported")
        cfg = BridgeConfig.of(net, self.default_mtu)
        if address is None:
            if self.ipam is None:
                raise InvalidParameter("no address given for the endpoint and no IPAM wired in")
            address = self.ipam(net, (ec.get("IPAMConfig") or {}).get("IPv4Address") or None)
        ip, prefixlen, gateway = address
        spec = veth.EndpointSpec(
            netns=self._container_netns(pid, netns), bridge=cfg.bridge, host_ifname=veth.host_ifname(net.id, container_id),
            ipv4=ip, prefixlen=prefixlen, gateway="" if cfg.internal else (gateway or cfg.gateway),
            mac=ec.get("MacAddress") or "", mtu=cfg.mtu, owner=f"{net.id[:12]}:{container_id[:12]}",
            ipv6=address6[0] if address6 else "", prefixlen6=address6[1] if address6 else 64,
            gateway6="" if cfg.internal or not address6 else (address6[2] or cfg.gateway6))

        ep = self.worker.call(lambda: veth.create_endpoint(self.worker.host(), spec))
        record.update({"Gateway": gateway or cfg.gateway, "IPAddress": ip, "IPPrefixLen": prefixlen,
                       "MacAddress": ep.mac, "IPv4Address": f"{ip}/{prefixlen}"})
        if address6:
            record.update({"GlobalIPv6Address": address6[0], "GlobalIPv6PrefixLen": address6[1],
                           "IPv6Gateway": address6[2] or cfg.gateway6,
                           "IPv6Address": f"{address6[0]}/{address6[1]}"})
        return record

    def leave(self, net: NetworkLike, container_id: str) -> bool:
        """Remove the container's veth pair on `net`; False if it was gone already (its netns died)."""
        if net.driver != "bridge":
            return False
        name = veth.host_ifname(net.id, container_id)

        return self.worker.call(lambda: veth.delete_endpoint(self.worker.host(), name))

    async def ajoin(self, *args: Any, **kw: Any) -> dict[str, Any]:
        return await asyncio.get_running_loop().run_in_executor(None, lambda: self.join(*args, **kw))

    async def aleave(self, net: NetworkLike, container_id: str) -> bool:
        return await asyncio.get_running_loop().run_in_executor(None, self.leave, net, container_id)

    # -- published ports (userland proxy) --

    async def publish(self, container_id: str, container_ip: str,
                      port_bindings: dict[str, list[dict[str, str]] | None],
                      endpoint: str = "") -> dict[str, list[dict[str, str]]]:
        """Serve HostConfig.PortBindings towards `container_ip`; returns NetworkSettings.Ports.

        Raises PortAllocated with dockerd's message when a host port is taken (nothing stays bound then).
        """
        specs = [PortSpec.parse(key, b) for key, bindings in port_bindings.items() for b in (bindings or [{}])]
        proxy = self.proxies.get(container_id) or PortProxy(container_ip, self.host_netns)
        try:
            new = proxy.bind(specs)
        except PortAllocated as exc:
            if endpoint:
                raise PortAllocated(f"driver failed programming external connectivity on endpoint {endpoint}: "
                                    f"{exc}") from None
            raise
        self.proxies[container_id] = proxy
        try:
            await proxy.start()
        except BaseException:
            for p in new:
                p.sock.close()
            raise
        return proxy.bindings()

    async def unpublish(self, container_id: str) -> None:
        proxy = self.proxies.pop(container_id, None)
        if proxy is not None:
            await proxy.close()

    # -- embedded DNS --

    async def attach_dns(self, container_id: str, netns: str | None, scope: Scope, pid: int | None = None) -> None:
        await self.dns.attach(container_id, self._container_netns(pid, netns), scope)

    async def detach_dns(self, container_id: str) -> None:
        await self.dns.detach(container_id)

    # -- daemon life cycle --

    def warnings(self) -> list[str]:
        """Coexistence problems found read-only (for `docker info` Warnings and the daemon log)."""
        blockers = forward_blockers(self.nat.table, self.host_netns)
        if not blockers:
            return []
        what = "; ".join(str(b) for b in blockers)
        scope = ("forwarded traffic, including container-to-container traffic on one bridge "
                 "(br_netfilter is on)") if br_netfilter_on(self.host_netns) else "routed (outbound) traffic"
        return [f"WARNING: {what} belongs to another program and drops {scope} of refengine's bridges; "
                "published ports (userland proxy) and the embedded DNS still work"]

    def shutdown(self, keep: set[str] | frozenset[str] = frozenset()) -> None:
        """Remove refengine's nft tables and DOCKER-USER rules, except those of the networks in `keep` (IDs of
        networks that surviving containers still use). Bridges are the caller's (`delete`)."""
        for net_id in list(self.nat.nets):
            if net_id not in keep:
                del self.nat.nets[net_id]
        self.nat.apply()
        self.docker_user.remove_all({r.bridge for r in self.nat.nets.values()})

    async def aclose(self) -> None:
        for cid in list(self.proxies):
            await self.unpublish(cid)
        await self.dns.close()
        self.shutdown()
        self.worker.close()
