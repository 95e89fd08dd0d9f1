"""A container's endpoint: a veth pair, one end on the bridge, the other as ethN in the container's netns.

The peer is created directly inside the container's namespace (IFLA_NET_NS_FD on the peer), under its final
name: no temporary name in the host's namespace to collide with, and no window where a half-made link
lingers on the host. Configuration inside the namespace goes through an rtnetlink socket opened there
(`iproute(netns=...)`, a forked child setns's and passes the socket back), never by moving a daemon thread.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
from dataclasses import dataclass

from pyroute2 import IPRoute

from .bridge import ALIAS_PREFIX, check_ifname, lookup
from .netlink import EEXIST, ENODEV, NetlinkError, iproute

IFA_F_NODAD = 0x02


def docker_mac(ipv4: str) -> str:
    """Docker's generated MAC: 02:42 (locally administered, unicast) followed by the four address bytes."""
    return "02:42:" + ":".join(f"{b:02x}" for b in ipaddress.IPv4Address(ipv4).packed)


def host_ifname(network_id: str, container_id: str) -> str:
    """Host-side veth name like dockerd's `veth` + 7 hex, but derived, so `leave` needs no saved state."""
    return "veth" + hashlib.sha256(f"{network_id}/{container_id}".encode()).hexdigest()[:7]


@dataclass(frozen=True)
class EndpointSpec:
    netns: str  # path of the container's netns: /proc/<pid>/ns/net or a bind-mounted /run/netns/<name>
    bridge: str
    host_ifname: str
    ipv4: str
    prefixlen: int
    gateway: str = ""  # "" for no default route (internal networks, or a second network)
    mac: str = ""  # "" means docker_mac(ipv4)
    mtu: int = 1500
    ifname: str = ""  # name inside the container; "" means the first free ethN
    owner: str = ""  # "<network id>:<container id>" prefixes, kept in the host end's alias
    ipv6: str = ""  # a global IPv6 address on IPv6-enabled networks ("" for none)
    prefixlen6: int = 64
    gateway6: str = ""

    def __post_init__(self) -> None:
        check_ifname(self.host_ifname)
        if self.ifname:
            check_ifname(self.ifname)
        ipaddress.IPv4Address(self.ipv4)
        if self.ipv6:
            ipaddress.IPv6Address(self.ipv6)


@dataclass(frozen=True)
class Endpoint:
    host_ifname: str
    ifname: str  # inside the container
    mac: str
    ipv4: str
    prefixlen: int
    gateway: str  # the gateway actually installed as default route ("" if the netns already had one)


def _free_ethn(nsipr: IPRoute) -> str:
    names = {link.get("ifname") for link in nsipr.get_links()}
    n = 0
    while f"eth{n}" in names:
        n += 1
    return f"eth{n}"


def create_endpoint(ipr: IPRoute, spec: EndpointSpec) -> Endpoint:
    """Make and configure the pair. `ipr` is the socket of the bridge's netns (normally the host's).

    On failure the host end is deleted again, which also destroys the peer.
    """
    mac = spec.mac or docker_mac(spec.ipv4)
    bridge_index = lookup(ipr, spec.bridge)
    if bridge_index is None:
        raise ValueError(f"bridge {spec.bridge} does not exist")
    stale = lookup(ipr, spec.host_ifname)
    if stale is not None:  # left behind by a crash: the name is derived from (network, container), so it's ours
        ipr.link("del", index=stale)
    with iproute(spec.netns) as nsipr:
        ifname = spec.ifname or _free_ethn(nsipr)
        nsfd = os.open(spec.netns, os.O_RDONLY | os.O_CLOEXEC)
        try:
            ipr.link("add", ifname=spec.host_ifname, kind="veth", mtu=spec.mtu,
                     peer={"ifname": ifname, "net_ns_fd": nsfd, "address": mac, "mtu": spec.mtu})
        finally:
            os.close(nsfd)
        try:
            index = lookup(ipr, spec.host_ifname)
            assert index is not None
            ipr.link("set", index=index, ifalias=ALIAS_PREFIX + spec.owner)
            ipr.link("set", index=index, master=bridge_index, state="up")
            gateway = _configure_inside(nsipr, ifname, spec)
        except BaseException:
            _delete(ipr, spec.host_ifname)
            raise
    return Endpoint(spec.host_ifname, ifname, mac, spec.ipv4, spec.prefixlen, gateway)


def _configure_inside(nsipr: IPRoute, ifname: str, spec: EndpointSpec) -> str:
    index = nsipr.link_lookup(ifname=ifname)[0]
    nsipr.addr("add", index=index, address=spec.ipv4, prefixlen=spec.prefixlen)
    nsipr.link("set", index=index, state="up")
    lo = nsipr.link_lookup(ifname="lo")
    if lo:
        nsipr.link("set", index=lo[0], state="up")  # 127.0.0.11 (embedded DNS) and localhost need it
    if spec.ipv6:
        _configure_ipv6(nsipr, index, spec)
    if not spec.gateway or nsipr.get_default_routes(family=2):
        return ""  # a netns has one default route: the first network joined keeps it, as with dockerd
    try:
        nsipr.route("add", dst="0.0.0.0/0", gateway=spec.gateway, oif=index)
    except NetlinkError as exc:
        if exc.code != EEXIST:
            raise
    return spec.gateway


def _configure_ipv6(nsipr: IPRoute, index: int, spec: EndpointSpec) -> None:
    # IFA_F_NODAD: the address is usable at once (the address is IPAM's, unique on the bridge)
    nsipr.addr("add", index=index, address=spec.ipv6, prefixlen=spec.prefixlen6, family=10, flags=IFA_F_NODAD)
    if spec.gateway6 and not nsipr.get_default_routes(family=10):
        try:
            nsipr.route("add", dst="::/0", gateway=spec.gateway6, oif=index, family=10)
        except NetlinkError as exc:
            if exc.code != EEXIST:
                raise


def _delete(ipr: IPRoute, name: str) -> bool:
    index = lookup(ipr, name)
    if index is None:
        return False
    try:
        ipr.link("del", index=index)
    except NetlinkError as exc:
        if exc.code != ENODEV:  # the container's netns died meanwhile and took the pair with it
            raise
    return True


def delete_endpoint(ipr: IPRoute, host_ifname: str) -> bool:
    """Delete the host end (the peer goes with it). False if it was already gone, e.g. the netns died."""
    return _delete(ipr, check_ifname(host_ifname))


def loopback_up(netns: str) -> None:
    """Set lo up inside `netns` (a container without a bridge endpoint still has 127.0.0.1)."""
    with iproute(netns) as nsipr:
        lo = nsipr.link_lookup(ifname="lo")
        if lo:
            nsipr.link("set", index=lo[0], state="up")
