"""A Linux bridge per network, with its gateway address and MTU, over rtnetlink (pyroute2).

Ownership: a bridge refengine creates carries the interface alias `refengine:<network id prefix>@<tag>` (the tag
is the daemon's nft table name, so a dead daemon's bridges can be told apart: see orphans.py). Only such
bridges are ever deleted. A bridge that already exists without our alias (an admin's, or one named by
`com.docker.network.bridge.name`) is used as dockerd uses one: we add our gateway address and bring it up,
and on delete we remove only that address, never the link.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from pyroute2 import IPRoute

from .netlink import EEXIST, ENODEV, NetlinkError

ALIAS_PREFIX = "refengine:"
IFNAME = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")  # IFNAMSIZ-1; also keeps names safe inside nft scripts


@dataclass(frozen=True)
class BridgeSpec:
    name: str
    gateway: str  # the bridge's own address, the containers' default gateway
    prefixlen: int
    mtu: int = 1500
    owner: str = ""  # network ID the bridge belongs to; goes into the alias
    tag: str = ""  # the owning daemon's tag (its nft table name); goes into the alias

    def __post_init__(self) -> None:
        check_ifname(self.name)
        ipaddress.ip_address(self.gateway)
        if not 68 <= self.mtu <= 65535:
            raise ValueError(f"invalid MTU {self.mtu}")

    @property
    def alias(self) -> str:
        return ALIAS_PREFIX + self.owner[:12] + (f"@{self.tag}" if self.tag else "")


def check_ifname(name: str) -> str:
    if not IFNAME.match(name) or name in (".", ".."):
        raise ValueError(f"invalid interface name {name!r}")
    return name


def lookup(ipr: IPRoute, name: str) -> int | None:
    found = ipr.link_lookup(ifname=name)
    return found[0] if found else None


def is_ours(ipr: IPRoute, index: int) -> bool:
    link = ipr.get_links(index)[0]
    return (link.get("ifalias") or "").startswith(ALIAS_PREFIX)


@dataclass(frozen=True)
class BridgeState:
    index: int
    ours: bool  # carries our alias: ours to delete
    created: bool  # made by this call (a failed network create may undo it; an existing one it must not)


def ensure_bridge(ipr: IPRoute, spec: BridgeSpec) -> BridgeState:
    """Create (or adopt) the bridge; idempotent."""
    index = lookup(ipr, spec.name)
    created = index is None
    if index is None:
        try:
            ipr.link("add", ifname=spec.name, kind="bridge", mtu=spec.mtu)
        except NetlinkError as exc:
            if exc.code != EEXIST:  # lost a race with ourselves: fall through to the lookup
                raise
        index = lookup(ipr, spec.name)
        assert index is not None
        ipr.link("set", index=index, ifalias=spec.alias)
    link = ipr.get_links(index)[0]
    kind = link.get(("linkinfo", "kind"))
    if kind != "bridge":
        raise ValueError(f"{spec.name} exists and is not a bridge (kind {kind})")
    ours = (link.get("ifalias") or "").startswith(ALIAS_PREFIX)
    if ours and link.get("mtu") != spec.mtu:
        ipr.link("set", index=index, mtu=spec.mtu)
    ensure_addr(ipr, index, spec.gateway, spec.prefixlen)
    ipr.link("set", index=index, state="up")
    return BridgeState(index, ours, created)


def routed_networks(ipr: IPRoute) -> list[ipaddress.IPv4Network]:
    """Every IPv4 prefix routed (any table, default routes aside) or assigned to an interface."""
    out = []
    for route in ipr.get_routes(family=2, table=0):
        if route["dst_len"]:
            out.append(ipaddress.IPv4Network(f"{route.get('dst') or '0.0.0.0'}/{route['dst_len']}", strict=False))
    for addr in ipr.get_addr(family=2):
        out.append(ipaddress.IPv4Network(f"{addr.get('address')}/{addr['prefixlen']}", strict=False))
    return out


def ensure_addr(ipr: IPRoute, index: int, address: str, prefixlen: int) -> None:
    have = {(a.get("address"), a["prefixlen"]) for a in ipr.get_addr(index=index)}
    if (address, prefixlen) in have:
        return
    try:
        ipr.addr("add", index=index, address=address, prefixlen=prefixlen)
    except NetlinkError as exc:
        if exc.code != EEXIST:
            raise


def delete_bridge(ipr: IPRoute, spec: BridgeSpec) -> bool:
    """Remove the bridge if it is ours, else only our gateway address. True if a link was deleted."""
    index = lookup(ipr, spec.name)
    if index is None:
        return False
    if is_ours(ipr, index):
        try:
            ipr.link("del", index=index)
        except NetlinkError as exc:
            if exc.code != ENODEV:
                raise
        return True
    try:
        ipr.addr("del", index=index, address=spec.gateway, prefixlen=spec.prefixlen)
    except NetlinkError:
        pass  # already gone
    return False
