"""Networks as the API sees them: records, IPAM bookkeeping, CRUD, filters, prune.

Kernel work (bridges, veth pairs, NAT) belongs to the network driver below this layer; it is asked
through `NetworkDriver` when a network is made or removed and when a running container joins or leaves.
Subnets come from refengine's own pools, chosen apart from dockerd's defaults (172.17-31/16 and
192.168/16) so both daemons can run on one host.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import secrets
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from . import filters as flt
from .clock import now_rfc3339 as _now
from .engine import Engine, Job
from .errors import Conflict, Forbidden, InvalidParameter, NotFound
from .state import read_json, write_json

PREDEFINED = {"bridge": "bridge", "host": "host", "none": "null"}
DRIVERS = ("bridge", "host", "null", "macvlan", "ipvlan")  # macvlan/ipvlan: accepted names, not built yet
DEFAULT_BRIDGE_SUBNET = "172.30.0.0/16"
USER_POOL = ipaddress.ip_network("10.230.0.0/16")  # /24 per user-defined network
LIST_FILTERS = ("driver", "id", "label", "name", "scope", "type", "dangling")
PRUNE_FILTERS = ("label", "label!", "until")
OPT_BRIDGE_NAME = "com.docker.network.bridge.name"
log = logging.getLogger("refengine.network")


@dataclass
class Network:
    id: str
    name: str
    driver: str
    created: str
    subnets: list[dict[str, str]] = field(default_factory=list)  # IPAM Config entries
    internal: bool = False
    attachable: bool = False
    ingress: bool = False
    enable_ipv6: bool = False
    options: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    ipam_driver: str = "default"
    ipam_options: dict[str, str] = field(default_factory=dict)
    endpoints: dict[str, dict[str, Any]] = field(default_factory=dict)  # container id -> endpoint record
    builtin: bool = False

    def api(self) -> dict[str, Any]:
        return {"Name": self.name, "Id": self.id, "Created": self.created, "Scope": "local", "Driver": self.driver,
                "EnableIPv6": self.enable_ipv6,
                "IPAM": {"Driver": self.ipam_driver, "Options": dict(self.ipam_options),
                         "Config": [dict(c) for c in self.subnets]},
                "Internal": self.internal, "Attachable": self.attachable, "Ingress": self.ingress,
                "ConfigFrom": {"Network": ""}, "ConfigOnly": False,
                "Containers": {cid: dict(ep) for cid, ep in self.endpoints.items()},
                "Options": dict(self.options), "Labels": dict(self.labels)}


class NetworkDriver(Protocol):
    def create(self, net: Network) -> None: ...
    def delete(self, net: Network) -> None: ...


class NoKernelDriver:
    """Bookkeeping only: used where the kernel network driver is not wired in (e.g. unit tests)."""

    def create(self, net: Network) -> None:
        pass

    def delete(self, net: Network) -> None:
        pass


class NetworkStore:
    def __init__(self, root: str, driver: NetworkDriver | None = None,
                 bridge_subnet: str = DEFAULT_BRIDGE_SUBNET, bip: str | None = None,
                 bridge_name: str = "refengine0") -> None:
        """`bip`: the default bridge's own address with prefix (dockerd's --bip, e.g. 172.30.0.1/16); it sets
        the subnet and gateway of the predefined `bridge` network."""
        self.dir = os.path.join(root, "networks")
        os.makedirs(self.dir, mode=0o700, exist_ok=True)
        self.driver = driver or NoKernelDriver()
        self.networks: dict[str, Network] = {}
        self.in_use: Callable[[Network], list[str]] = lambda net: list(net.endpoints)  # running containers
        # prefixes the host already routes (another daemon's bridges...): pools skip them
        self.routed: Callable[[], list[ipaddress.IPv4Network]] = lambda: []
        for name in sorted(os.listdir(self.dir)):
            if name.endswith(".json"):
                net = Network(**read_json(os.path.join(self.dir, name)))
                self.networks[net.id] = net
        bridge_config = _bridge_config(bridge_subnet, bip)
        for name, drv in PREDEFINED.items():
            existing = [n for n in self.networks.values() if n.name == name]
            if existing and name == "bridge" and ((bip and existing[0].subnets != [bridge_config]) or
                                                  existing[0].options.get(OPT_BRIDGE_NAME) != bridge_name):
                existing[0].subnets = [bridge_config] if bip else existing[0].subnets  # --bip changed
                existing[0].options[OPT_BRIDGE_NAME] = bridge_name
                self._save(existing[0])
            if not existing:
                subnets = [bridge_config] if name == "bridge" else []
                net = Network(secrets.token_hex(32), name, drv, _now(), subnets=subnets, builtin=True,
                              options={"com.docker.network.bridge.default_bridge": "true",
                                       OPT_BRIDGE_NAME: bridge_name} if name == "bridge" else {})
                self._save(net)
                self.networks[net.id] = net

    def restore(self) -> None:
        """At daemon start: (re)make the kernel side of every bridge network (idempotent; adopts what exists)."""
        for net in self.networks.values():
            if net.driver == "bridge":
                try:
                    self.driver.create(net)
                except Exception as exc:  # the daemon still serves; containers on it fail to start with the reason
                    log.error("network %s: its bridge could not be set up: %s", net.name, exc)

    def _save(self, net: Network) -> None:
        write_json(os.path.join(self.dir, f"{net.id}.json"), asdict(net))

    def get(self, ref: str) -> Network:
        """By full ID, then exact name, then unique ID prefix (dockerd's order)."""
        if ref in self.networks:
            return self.networks[ref]
        for net in self.networks.values():
            if net.name == ref:
                return net
        found = [n for nid, n in self.networks.items() if ref and nid.startswith(ref)]
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise InvalidParameter(f"network {ref} is ambiguous ({len(found)} matches found based on ID prefix)")
        raise NotFound(f"network {ref} not found")

    def _taken(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        return [ipaddress.ip_network(c["Subnet"], strict=False) for n in self.networks.values() for c in n.subnets
                if c.get("Subnet")]

    def _allocate(self) -> dict[str, str]:
        taken = self._taken() + list(self.routed())
        for sub in USER_POOL.subnets(new_prefix=24):
            if not any(sub.overlaps(t) for t in taken):
                return {"Subnet": str(sub), "Gateway": str(next(sub.hosts()))}
        raise Forbidden("could not find an available, non-overlapping IPv4 address pool among the defaults to "
                        "assign to the network")

    def create(self, body: dict[str, Any]) -> Network:
        name = body.get("Name")
        if not isinstance(name, str) or not name:
            raise InvalidParameter("network name must not be empty")
        driver = body.get("Driver") or "bridge"
        if name in PREDEFINED:
            raise Forbidden(f"{name} is a pre-defined network and cannot be created")
        if any(n.name == name for n in self.networks.values()):
            raise Conflict(f"network with name {name} already exists")
        if driver not in ("bridge",):
            if driver in ("host", "null"):
                raise Forbidden(f"only one instance of \"{driver}\" network is allowed")
            raise NotFound(f"plugin \"{driver}\" not found")
        ipam = body.get("IPAM") or {}
        subnets = []
        for cfg in ipam.get("Config") or []:
            subnets.append(self._check_subnet(cfg))
        if not any(ipaddress.ip_network(c["Subnet"]).version == 4 for c in subnets):
            subnets.insert(0, self._allocate())
        if body.get("EnableIPv6") and not any(ipaddress.ip_network(c["Subnet"]).version == 6 for c in subnets):
            raise InvalidParameter("EnableIPv6 needs an IPv6 subnet in IPAM.Config: refengine has no default IPv6 "
                                   "pool")
        net = Network(secrets.token_hex(32), name, driver, _now(), subnets=subnets,
                      internal=bool(body.get("Internal")), attachable=bool(body.get("Attachable")),
                      ingress=bool(body.get("Ingress")), enable_ipv6=bool(body.get("EnableIPv6")),
                      options=dict(body.get("Options") or {}), labels=dict(body.get("Labels") or {}),
                      ipam_driver=ipam.get("Driver") or "default", ipam_options=dict(ipam.get("Options") or {}))
        self.driver.create(net)
        self._save(net)
        self.networks[net.id] = net
        return net

    def _check_subnet(self, cfg: dict[str, Any]) -> dict[str, str]:
        out: dict[str, str] = {}
        try:
            sub = ipaddress.ip_network(cfg.get("Subnet", ""), strict=False)
        except ValueError:
            raise InvalidParameter(f"invalid subnet {cfg.get('Subnet')!r}") from None
        if any(sub.overlaps(t) for t in self._taken()):
            raise Forbidden("Pool overlaps with other one on this address space")
        out["Subnet"] = str(sub)
        gateway = cfg.get("Gateway")
        if gateway:
            if ipaddress.ip_address(gateway) not in sub:
                raise InvalidParameter(f"no matching subnet for gateway {gateway}")
            out["Gateway"] = gateway
        else:
            out["Gateway"] = str(next(sub.hosts()))
        if cfg.get("IPRange"):
            rng = ipaddress.ip_network(cfg["IPRange"], strict=False)
            if not rng.subnet_of(sub):  # type: ignore[arg-type]
                raise InvalidParameter(f"no matching subnet for range {cfg['IPRange']}")
            out["IPRange"] = str(rng)
        return out

    def remove(self, ref: str) -> Network:
        net = self.get(ref)
        if net.builtin:
            raise Forbidden(f"{net.name} is a pre-defined network and cannot be removed")
        users = self.in_use(net)
        if users:
            raise Forbidden(f"error while removing network: network {net.name} id {net.id} has active endpoints")
        self.driver.delete(net)
        del self.networks[net.id]
        try:
            os.unlink(os.path.join(self.dir, f"{net.id}.json"))
        except FileNotFoundError:
            pass
        return net

    def list(self, f: flt.Filters) -> list[Network]:
        out = []
        dangling = flt.boolean(f, "dangling")
        for net in self.networks.values():
            if "name" in f and not any(v in net.name for v in f["name"]):
                continue
            if "id" in f and not any(net.id.startswith(v) for v in f["id"]):
                continue
            if "driver" in f and net.driver not in f["driver"]:
                continue
            if "label" in f and not flt.match_labels(net.labels, f["label"]):
                continue
            if "scope" in f and "local" not in f["scope"]:
                continue
            if "type" in f:
                for t in f["type"]:
                    if t not in ("builtin", "custom"):
                        raise InvalidParameter(f"invalid filter: 'type'='{t}'")
                if ("builtin" if net.builtin else "custom") not in f["type"]:
                    continue
            if dangling is not None and (not net.builtin and not net.endpoints) != dangling:
                continue
            out.append(net)
        return sorted(out, key=lambda n: n.name)

    def save(self, net: Network) -> None:
        self._save(net)

    def allocate_ip(self, net: Network, wanted: str | None = None) -> tuple[str, int, str]:
        """An address for a new endpoint: (address, prefix length, gateway)."""
        return self._allocate_in(net, 4, wanted)

    def allocate_ip6(self, net: Network) -> tuple[str, int, str] | None:
        """An IPv6 address on an IPv6-enabled network with an IPv6 subnet, else None."""
        if not net.enable_ipv6 or not any(ipaddress.ip_network(c["Subnet"]).version == 6 for c in net.subnets):
            return None
        return self._allocate_in(net, 6, None)

    def _allocate_in(self, net: Network, version: int, wanted: str | None) -> tuple[str, int, str]:
        configs = [c for c in net.subnets if ipaddress.ip_network(c["Subnet"]).version == version]
        if not configs:
            raise InvalidParameter(f"network {net.name} has no IPv{version} subnet")
        cfg = configs[0]
        sub = ipaddress.ip_network(cfg["Subnet"])
        gateway = cfg.get("Gateway", "")
        key = "IPv4Address" if version == 4 else "IPv6Address"
        used = {ep.get(key, "").split("/")[0] for ep in net.endpoints.values()} | {gateway}
        if wanted:
            if ipaddress.ip_address(wanted) not in sub:
                raise InvalidParameter(f"no configured subnet or ip-range contain the IP address {wanted}")
            if wanted in used:
                raise Forbidden(f"Address already in use: {wanted}")
            return wanted, sub.prefixlen, gateway
        pool = ipaddress.ip_network(cfg["IPRange"]) if cfg.get("IPRange") else sub
        for host in pool.hosts():
            if str(host) not in used:
                return str(host), sub.prefixlen, gateway
        raise Forbidden(f"no available IPv{version} addresses on network {net.name}")

    def prune(self, f: flt.Filters) -> list[str]:
        until = flt.until(f)
        deleted = []
        for net in list(self.networks.values()):
            if net.builtin or net.endpoints or self.in_use(net):
                continue
            if not flt.prune_selects(f, until, net.labels, net.created):
                continue
            self.remove(net.id)
            deleted.append(net.name)
        return deleted


def _bridge_config(subnet: str, bip: str | None) -> dict[str, str]:
    if bip:
        try:
            iface = ipaddress.ip_interface(bip)
        except ValueError:
            raise InvalidParameter(f"invalid --bip {bip!r}: an address with a prefix length is expected") from None
        if iface.version != 4 or iface.ip in (iface.network.network_address, iface.network.broadcast_address):
            raise InvalidParameter(f"invalid --bip {bip!r}")
        return {"Subnet": str(iface.network), "Gateway": str(iface.ip)}
    sub = ipaddress.ip_network(subnet)
    return {"Subnet": str(sub), "Gateway": str(next(sub.hosts()))}


def register(engine: Engine, store: NetworkStore,
             event: Callable[[str, Network, dict[str, str]], None] = lambda action, net, attrs: None) -> None:
    def create(job: Job) -> dict[str, Any]:
        body = job.getenv("body")
        if not isinstance(body, dict):
            raise InvalidParameter("the network config must be a JSON object")
        net = store.create(body)
        event("create", net, {"type": net.driver})
        return {"Id": net.id, "Warning": ""}

    def inspect(job: Job) -> dict[str, Any]:
        return store.get(job.args[0]).api()

    def listing(job: Job) -> list[dict[str, Any]]:
        return [n.api() for n in store.list(flt.parse(job.getenv("filters"), LIST_FILTERS))]

    def remove(job: Job) -> None:
        net = store.remove(job.args[0])
        event("destroy", net, {"type": net.driver})

    def prune(job: Job) -> dict[str, Any]:
        return {"NetworksDeleted": store.prune(flt.parse(job.getenv("filters"), PRUNE_FILTERS))}

    for name, fn in (("network_create", create), ("network_inspect", inspect), ("network_list", listing),
                     ("network_remove", remove), ("network_prune", prune)):
        engine.register(name, fn)
