"""NAT and forwarding policy in refengine's own nftables tables, loaded with `nft -f -`.

What goes in (`table ip <name>`, `table ip6 <name>` only when a network has an IPv6 subnet):
- `postrouting` (nat, srcnat): `ip saddr <subnet> oifname != <bridge> masquerade` per network with
  masquerading on (dockerd's `-s subnet ! -o bridge -j MASQUERADE`); none for internal networks.
- `forward` (filter, policy ACCEPT): isolation between refengine's bridges (dockerd's DOCKER-ISOLATION
  stages), internal networks cut off from every other interface, `enable_icc=false`, then accepts for our
  bridges. The policy must stay accept: this base chain sees the whole host's forwarded traffic and a drop
  here would break dockerd's and podman's containers.
The whole table is rendered from the current set of networks and replaced in one nft transaction
(`table x {}` / `delete table x` / `table x {...}`), so there is no rule bookkeeping to drift; it is
deleted when the last network goes and at shutdown. No other table or chain is ever written.

Coexistence with dockerd (measured on this host, read-only: `nft list ruleset`, sysctl):
- dockerd (iptables-nft) owns `table ip filter` whose FORWARD base chain has **policy drop**; it accepts only
  docker0 (and podman's netavark adds its subnets to the same table). br_netfilter is loaded and
  `net.bridge.bridge-nf-call-iptables = 1`.
- nftables evaluates every base chain on a hook; an `accept` ends evaluation only within its own base chain,
  while a `drop` anywhere is final. So nothing in refengine's table can let a packet past dockerd's chain.
- Forwarded traffic of refengine's bridges is therefore dropped: container to outside (routed) and also
  container to container on the SAME bridge, because br_netfilter passes bridged IPv4 frames through the
  IPv4 FORWARD hook (iifname and oifname both the bridge). The per-bridge `nf_call_iptables` option can only
  add to the global sysctl, not switch it off. Seen here: a ping between two netns on one test bridge lost
  100% and dockerd's FORWARD counter rose by the 2 packets sent.
- Unaffected: host <-> container traffic (INPUT/OUTPUT, not FORWARD), hence the userland proxy for published
  ports and the embedded DNS (a socket in the container's netns, forwarding from the daemon's netns) work.
`forward_blockers()` detects foreign drop-policy forward chains so the daemon can warn (as dockerd warns about
bridge-nf-call-iptables in `docker info`). The way out refengined takes by default: tagged accepts for its
bridges in dockerd's DOCKER-USER chain, the hook dockerd documents for other tools (dockeruser.py; opt out
with `--no-docker-user`). Another: refengine's bridges in a namespace of their own (`BridgeDriver(host_netns=...)`,
as the tests do).
"""

from __future__ import annotations

import ipaddress
import json
import re
import subprocess
from dataclasses import dataclass, field

from .bridge import check_ifname
from .nsutil import command_in_netns, read_sysctl

DEFAULT_TABLE = "refengine"
TABLE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")  # quoted into scripts unescaped: keep it plain
NFT_TIMEOUT = 15


class NftError(RuntimeError):
    pass


@dataclass(frozen=True)
class NetRules:
    """What the rules need to know about one network."""

    bridge: str
    subnets: tuple[str, ...]
    masquerade: bool = True
    internal: bool = False
    icc: bool = True

    def __post_init__(self) -> None:
        check_ifname(self.bridge)  # names are quoted into an nft script: only safe characters pass
        for s in self.subnets:
            ipaddress.ip_network(s)


@dataclass(frozen=True)
class ForwardBlocker:
    family: str
    table: str
    chain: str
    prio: int

    def __str__(self) -> str:
        return f"table {self.family} {self.table} chain {self.chain} (hook forward, priority {self.prio}, policy drop)"


def _q(name: str) -> str:
    return '"' + check_ifname(name) + '"'


def render(table: str, family: str, nets: list[NetRules]) -> str:
    """The full `table <family> <table> {...}` for the given networks (family "ip" or "ip6")."""
    version = 4 if family == "ip" else 6
    saddr = "ip saddr" if version == 4 else "ip6 saddr"
    bridges = sorted({n.bridge for n in nets})
    lines = [f"table {family} {table} {{",
             "\tset bridges {", "\t\ttype ifname",
             *([("\t\telements = { " + ", ".join(_q(b) for b in bridges) + " }")] if bridges else []),
             "\t}",
             "\tchain forward {",
             "\t\ttype filter hook forward priority filter; policy accept;"]
    for n in sorted(nets, key=lambda n: n.bridge):
        b = _q(n.bridge)
        if n.internal:
            lines += [f"\t\tiifname {b} oifname != {b} drop", f"\t\toifname {b} iifname != {b} drop"]
        else:  # isolation: a bridge may not forward to another of ours
            lines.append(f"\t\tiifname {b} oifname != {b} oifname @bridges drop")
        if not n.icc:
            lines.append(f"\t\tiifname {b} oifname {b} drop")
    if bridges:
        # Accepts only end this chain; they document intent and keep counters, see the module docstring.
        lines += ["\t\toifname @bridges ct state established,related counter accept",
                  "\t\tiifname @bridges counter accept"]
    lines += ["\t}", "\tchain postrouting {", "\t\ttype nat hook postrouting priority srcnat; policy accept;"]
    for n in sorted(nets, key=lambda n: n.bridge):
        if n.internal or not n.masquerade:
            continue
        for s in n.subnets:
            sub = ipaddress.ip_network(s)
            if sub.version == version:
                lines.append(f"\t\t{saddr} {sub} oifname != {_q(n.bridge)} counter masquerade")
    lines += ["\t}", "}"]
    return "\n".join(lines) + "\n"


def _replace(table: str, family: str, body: str | None) -> str:
    # "add" first so "delete" can't fail on a missing table; all three are one transaction.
    out = f"table {family} {table} {{}}\ndelete table {family} {table}\n"
    return out + (body or "")


@dataclass
class NatTable:
    """refengine's nft tables, rendered from `nets` (network id -> NetRules)."""

    table: str = DEFAULT_TABLE
    netns: str | None = None  # None: the daemon's netns
    nets: dict[str, NetRules] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not TABLE_NAME.match(self.table):
            raise ValueError(f"invalid nft table name {self.table!r}")

    def _nft(self, script: str) -> None:
        argv = command_in_netns(["nft", "-f", "-"], self.netns)
        res = subprocess.run(argv, input=script, capture_output=True, text=True, timeout=NFT_TIMEOUT)
        if res.returncode != 0:
            raise NftError(f"nft failed ({res.returncode}): {res.stderr.strip()}\n--- script ---\n{script}")

    def script(self) -> str:
        nets = list(self.nets.values())
        v6 = [n for n in nets if any(ipaddress.ip_network(s).version == 6 for s in n.subnets)]
        out = _replace(self.table, "ip", render(self.table, "ip", nets) if nets else None)
        out += _replace(self.table, "ip6", render(self.table, "ip6", v6) if v6 else None)
        return out

    def apply(self) -> None:
        self._nft(self.script())

    def set(self, net_id: str, rules: NetRules) -> None:
        if self.nets.get(net_id) == rules:
            return
        old = self.nets.get(net_id)
        self.nets[net_id] = rules
        try:
            self.apply()
        except BaseException:
            if old is None:
                del self.nets[net_id]
            else:
                self.nets[net_id] = old
            raise

    def remove(self, net_id: str) -> None:
        if self.nets.pop(net_id, None) is not None:
            self.apply()

    def shutdown(self) -> None:
        """Delete our tables (only ours), whatever they hold."""
        self.nets.clear()
        self.apply()

    def exists(self, family: str = "ip") -> bool:
        argv = command_in_netns(["nft", "list", "table", family, self.table], self.netns)
        return subprocess.run(argv, capture_output=True, timeout=NFT_TIMEOUT).returncode == 0


def forward_blockers(own_table: str = DEFAULT_TABLE, netns: str | None = None) -> list[ForwardBlocker]:
    """Base chains of other tables on the forward hook with policy drop (read-only `nft -j list chains`)."""
    argv = command_in_netns(["nft", "-j", "list", "chains"], netns)
    res = subprocess.run(argv, capture_output=True, text=True, timeout=NFT_TIMEOUT)
    if res.returncode != 0:
        return []
    out = []
    for item in json.loads(res.stdout).get("nftables", []):
        ch = item.get("chain")
        if not ch or ch.get("hook") != "forward" or ch.get("policy") != "drop":
            continue
        if ch.get("table") == own_table or ch.get("family") not in ("ip", "inet", "bridge"):
            continue
        out.append(ForwardBlocker(ch["family"], ch["table"], ch["name"], int(ch.get("prio", 0))))
    return out


def br_netfilter_on(netns: str | None = None) -> bool:
    """True if bridged IPv4 frames go through the IPv4 hooks (and so through every forward chain)."""
    return read_sysctl("net.bridge.bridge-nf-call-iptables", netns) == "1"
