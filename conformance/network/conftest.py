"""Fixtures and helpers of the network area: test networks, what a container sees of its links, the outside world.

Traffic rule: checks send packets only to loopback, to containers on networks they created, and to
the outside namespace (conformance/network/outside.py). Names are only looked up on user-defined
networks, where the embedded DNS answers them itself; every container there gets
`Dns: ["127.0.0.1"]` so a name the embedded server does not know (say, under a fault) is forwarded
to loopback, never to the host's real resolvers. Containers on the default bridge look nothing up,
except against 127.0.0.11 given explicitly (their own loopback).
"""

from __future__ import annotations

import ipaddress
import os
import random
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from conformance.client import ApiClient, error_message
from conformance.host import Host, HostUnavailable, open_host
from conformance.resources import RUN_LABEL, Containers, Names, Networks

from .outside import Outside, OutsideUnavailable, outside_world

SAFE_DNS = ["127.0.0.1"]  # upstream of the embedded DNS: loopback, so unknown names never leave the machine
# One exec that shows a container's view of its network: addresses, routes, links, eth0's facts.
SNAPSHOT = ("echo '## addr'; ip -o addr; echo '## route'; ip route; echo '## link'; ip -o link; "
            "echo '## eth0'; cat /sys/class/net/eth0/address /sys/class/net/eth0/mtu /sys/class/net/eth0/iflink; "
            "echo '## end'")


@dataclass(frozen=True)
class NetInfo:
    """A bridge network as the daemon reports it (the default bridge or one a check created)."""

    id: str
    name: str
    subnet: ipaddress.IPv4Network
    gateway: str
    options: dict[str, str] = field(default_factory=dict)
    default: bool = False

    @property
    def bridge_name(self) -> str:
        """The host interface of this bridge: the name option, else docker's br-<first 12 of the id>."""
        return self.options.get("com.docker.network.bridge.name") or f"br-{self.id[:12]}"

    def endpoint(self, *, aliases: list[str] | None = None, ipv4: str | None = None, dns: bool = True,
                 **host_config: Any) -> dict[str, Any]:
        """Create-config kwargs that attach a container to this network (and to nothing else)."""
        hc: dict[str, Any] = dict(host_config)
        if self.default:
            return {"HostConfig": hc} if hc else {}
        hc["NetworkMode"] = self.name
        if dns:
            hc.setdefault("Dns", SAFE_DNS)
        ep: dict[str, Any] = {}
        if aliases:
            ep["Aliases"] = aliases
        if ipv4:
            ep["IPAMConfig"] = {"IPv4Address": ipv4}
        return {"HostConfig": hc, "NetworkingConfig": {"EndpointsConfig": {self.name: ep}}}


def network_info(api: ApiClient, ref: str) -> NetInfo:
    resp = api.get(f"/networks/{ref}")
    assert resp.status_code == 200, f"GET /networks/{ref} answered {resp.status_code}: {resp.text[:200]}"
    body = resp.json()
    config = [c for c in (body.get("IPAM") or {}).get("Config") or [] if ":" not in c.get("Subnet", ":")]
    assert config, f"network {body.get('Name')!r} reports IPAM.Config {config}: an IPv4 Subnet was expected"
    subnet = ipaddress.IPv4Network(config[0]["Subnet"])
    gateway = config[0].get("Gateway")
    default = body["Name"] == "bridge"
    if not gateway and default:
        # observed: dockerd restarted while docker0 still exists records the default bridge's Subnet but no
        # Gateway; the bridge keeps the first host address, which the checks on containers' Gateway verify
        gateway = str(subnet.network_address + 1)
    assert gateway, f"network {body.get('Name')!r} reports IPAM.Config {config}: a Gateway was expected"
    return NetInfo(body["Id"], body["Name"], subnet, gateway, dict(body.get("Options") or {}), default=default)


def _host_routes() -> list[ipaddress.IPv4Network]:
    """IPv4 networks this machine already routes (to keep test subnets away from them)."""
    try:
        from .outside import _taken_networks
        return _taken_networks()
    except Exception:  # noqa: BLE001 - no netlink here: the daemon's own overlap check still applies
        return []


def create_user_network(api: ApiClient, networks: Networks, *, local: bool, **extra: Any) -> NetInfo:
    """A bridge network on a random 10.100-199.x.0/24 (clear of the api area's 10.200-254 and of host routes)."""
    taken = _host_routes() if local else []
    for _ in range(12):
        net = ipaddress.IPv4Network(f"10.{random.randint(100, 199)}.{random.randint(0, 255)}.0/24")
        if any(net.overlaps(t) for t in taken):
            continue
        gateway = str(net.network_address + 1)
        body = {"Name": networks.names("net"), "CheckDuplicate": True,
                "Labels": {**extra.pop("Labels", {}), RUN_LABEL: networks.run_id},
                "IPAM": {"Driver": "default", "Config": [{"Subnet": str(net), "Gateway": gateway}]}, **extra}
        resp = api.post("/networks/create", body)
        if resp.status_code == 201:
            return network_info(api, networks.adopt(resp.json()["Id"]))
        assert resp.status_code in (403, 409) or "overlap" in (error_message(resp) or ""), (
            f"creating a bridge network on {net} answered {resp.status_code} {resp.text[:200]!r}")
    pytest.fail("found no free 10.100-199.x.0/24 subnet for a test network in 12 tries")


@pytest.fixture
def usernet(api: ApiClient, networks: Networks, target: Any) -> Callable[..., NetInfo]:
    """Factory: a fresh user-defined bridge network with a subnet and gateway; removed after the check."""
    return lambda **extra: create_user_network(api, networks, local=target.is_local, **extra)


@pytest.fixture
def default_bridge(api: ApiClient) -> NetInfo:
    """The predefined `bridge` network as GET /networks/bridge reports it."""
    return network_info(api, "bridge")


# ---------------------------------------------------------------- what a container sees


@dataclass
class View:
    """A running container's network as seen from inside (one exec) and by inspect (same moment)."""

    cid: str
    net: NetInfo
    inspect: dict[str, Any]
    raw: str
    addrs: dict[str, list[ipaddress.IPv4Interface | ipaddress.IPv6Interface]]
    routes: list[str]
    links: dict[str, dict[str, str]]
    eth0: dict[str, str]

    def v4(self, ifname: str) -> list[ipaddress.IPv4Interface]:
        return [a for a in self.addrs.get(ifname, []) if isinstance(a, ipaddress.IPv4Interface)]

    def default_route(self) -> tuple[str, str] | None:
        """(gateway, device) of the IPv4 default route, if there is one."""
        for line in self.routes:
            words = line.split()
            if words[:2] == ["default", "via"] and ":" not in words[2]:
                return words[2], words[words.index("dev") + 1] if "dev" in words else ""
        return None


def _sections(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        if line.startswith("## "):
            current = line[3:].strip()
            out[current] = []
        elif current is not None and line.strip():
            out[current].append(line)
    return out


def parse_addrs(lines: list[str]) -> dict[str, list[Any]]:
    """`ip -o addr` lines → {ifname: [IPv4Interface/IPv6Interface ...]}."""
    out: dict[str, list[Any]] = {}
    for line in lines:
        words = line.split()
        if len(words) >= 4 and words[2] in ("inet", "inet6"):
            out.setdefault(words[1].split("@")[0], []).append(ipaddress.ip_interface(words[3]))
    return out


def parse_links(lines: list[str]) -> dict[str, dict[str, str]]:
    """`ip -o link` lines → {ifname: {"flags", "mtu", "mac"}}."""
    out: dict[str, dict[str, str]] = {}
    for line in lines:
        head, _, rest = line.partition(">")
        parts = head.split(":")
        if len(parts) < 3:
            continue
        name = parts[1].strip().split("@")[0]
        words = rest.split()
        info = {"flags": head.split("<", 1)[-1]}
        if "mtu" in words:
            info["mtu"] = words[words.index("mtu") + 1]
        if "link/ether" in words:
            info["mac"] = words[words.index("link/ether") + 1]
        out[name] = info
    return out


def snapshot(containers: Containers, cid: str, net: NetInfo) -> View:
    res = containers.exec(cid, ["sh", "-c", SNAPSHOT], timeout=15)
    assert res.exit_code == 0 or "## end" in res.stdout, (
        f"reading the container's network view failed: {res.describe()}")
    sec = _sections(res.stdout)
    eth0 = sec.get("eth0", [])
    return View(cid, net, containers.inspect(cid), res.stdout, parse_addrs(sec.get("addr", [])), sec.get("route", []),
                parse_links(sec.get("link", [])),
                dict(zip(("mac", "mtu", "iflink"), eth0, strict=True)) if len(eth0) == 3 else {})


def sh(containers: Containers, script: str, timeout: float = 30, **cfg: Any) -> Any:
    """Run `sh -c script` in a new container to its end (Result)."""
    return containers.run_output(["sh", "-c", script], timeout=timeout, **cfg)


def endpoint_settings(inspect: dict[str, Any], net: NetInfo) -> dict[str, Any]:
    """The container's NetworkSettings.Networks entry for `net` (empty dict if absent)."""
    return ((inspect.get("NetworkSettings") or {}).get("Networks") or {}).get(net.name) or {}


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port nothing on 127.0.0.1 uses right now."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tcp_exchange(host: str, port: int, expect: str, timeout: float = 6) -> str:
    """Connect to host:port until the peer sends `expect` (a proxy may accept before the server listens)."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=2) as s:
                s.settimeout(2)
                data = b""
                while chunk := s.recv(4096):
                    data += chunk
                last = data.decode(errors="replace")
        except OSError as exc:
            last = f"{type(exc).__name__}: {exc}"
        if expect in last:
            return last
        time.sleep(0.1)
    return last


# How long a probe that should be dropped gets before it counts as unanswered. A peer on a bridge of this host
# answers a first ping (ARP included) in under 1 ms and a TCP connect with a greeting within ~20 ms, also at load 5
# on 2 cores, so 0.5 s without an answer means the packets were dropped. (busybox's `ping -W` and `nc -w` take whole
# seconds only, hence the kill.)
NO_ANSWER_WINDOW = 0.5


def unanswered(probes: dict[str, str], window: float = NO_ANSWER_WINDOW) -> list[str]:
    """`sh -c` command running every probe at once in the background, killing those still running after `window`.

    It prints `<name>=<exit status>` per probe (0: it got an answer; 143: killed unanswered; other: refused or
    failed) and then `done`; the probes' own output comes first. Probes that all end early (refused, no route)
    end the wait early.
    """
    names = list(probes)
    start = "; ".join(f"{cmd} & p{i}=$!" for i, cmd in enumerate(probes.values()))
    pids = " ".join(f"$p{i}" for i in range(len(names)))
    steps = max(1, round(window / 0.05))
    watch = (f"i=0; while [ $i -lt {steps} ]; do a=0; for p in {pids}; do kill -0 $p 2>/dev/null && a=1; done; "
             f"[ $a = 0 ] && break; sleep 0.05; i=$((i+1)); done")
    report = "; ".join(f"wait $p{i}; echo {name}=$?" for i, name in enumerate(names))
    return ["sh", "-c", f"{start}; {watch}; kill {pids} 2>/dev/null; {report}; echo done"]


def poll(fn: Callable[[], Any], timeout: float = 10, interval: float = 0.1) -> Any:
    """Call fn until it returns something truthy or the deadline passes; returns the last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def host_link_by_index(hostside: Host, ifindex: int) -> str | None:
    """The name of the host interface with this ifindex (in the harness's network namespace)."""
    for name in os.listdir("/sys/class/net"):
        try:
            if int(hostside.read(f"/sys/class/net/{name}/ifindex").strip()) == ifindex:
                return name
        except (OSError, ValueError):
            continue
    return None


# ---------------------------------------------------------------- the outside world


@pytest.fixture(scope="session")
def _net_host(_host_or_reason: Host | str, target: Any, _session_api: ApiClient, probe: Any, run_id: str) -> Host | str:
    """The plugin's host-side probe, re-tried once with polling when it found the container's process invisible.

    The plugin reads /proc/<pid>/cmdline right after start; on a loaded machine the process may not have
    exec'd yet, which would skip every host-side check of the worker for the wrong reason.
    """
    if not isinstance(_host_or_reason, str) or "not visible" not in _host_or_reason:
        return _host_or_reason
    if not target.is_local or os.geteuid() != 0:
        return _host_or_reason
    factory = Containers(_session_api, probe, run_id)
    try:
        cid = factory.run(["sleep", "30"])
        pid = factory.inspect(cid)["State"].get("Pid") or 0

        def execd() -> bool:
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as fh:
                    return pid > 0 and fh.read().split(b"\0")[0].endswith(b"sleep")
            except OSError:
                return False
        visible = bool(poll(execd, timeout=5, interval=0.05))
    finally:
        factory.cleanup()
    try:
        return open_host(True, visible)
    except HostUnavailable as exc:
        return str(exc)


@pytest.fixture
def hostside(_net_host: Host | str) -> Host:
    """As the plugin's `hostside`, over the re-tried probe (see _net_host)."""
    if isinstance(_net_host, str):
        pytest.skip(f"host-side check: {_net_host}")
    return _net_host


@pytest.fixture(scope="module")
def outside(_net_host: Host | str, names: Names) -> Iterator[Outside]:
    """A namespace standing in for the world beyond the host (see outside.py); skips on remote targets."""
    if isinstance(_net_host, str):
        pytest.skip(f"host-side check (needs a namespace on the daemon's host): {_net_host}")
    try:
        ctx = outside_world(f"{names.run_id}-{names.worker}")
        world = ctx.__enter__()
    except OutsideUnavailable as exc:
        pytest.skip(f"no outside namespace: {exc}")
    try:
        yield world
    finally:
        ctx.__exit__(None, None, None)


# ---------------------------------------------------------------- shared, lazily made scenes

KINDS = ["default-bridge", "user-network"]


class Scene:
    """Networks and long-running containers shared by the checks of one module.

    They are made on first use inside a check (so a daemon that refuses them fails that check
    rather than erroring its set-up) and removed when the module is done.
    """

    def __init__(self, api: ApiClient, containers: Containers, networks: Networks, local: bool) -> None:
        self.api, self.containers, self.networks, self.local = api, containers, networks, local
        self._nets: dict[str, NetInfo] = {}
        self._views: dict[str, View] = {}
        self._ctrs: dict[str, str] = {}
        self.meta: dict[str, Any] = {}  # what checks of the module remember about their scene

    def net(self, kind: str, **extra: Any) -> NetInfo:
        """The default bridge for "default-bridge"; otherwise one user network per `kind` (made with `extra`)."""
        if kind not in self._nets:
            self._nets[kind] = (network_info(self.api, "bridge") if kind == "default-bridge"
                                else create_user_network(self.api, self.networks, local=self.local, **extra))
        return self._nets[kind]

    def container(self, key: str, net: NetInfo, cmd: list[str] | None = None,
                  host_config: dict[str, Any] | None = None, **cfg: Any) -> str:
        """One long-running container per `key` on `net` (default command: sleep)."""
        if key not in self._ctrs:
            endpoint = net.endpoint(**(host_config or {}))
            self._ctrs[key] = self.containers.run(cmd or ["sleep", "3600"], **endpoint, **cfg)
        return self._ctrs[key]

    def view(self, kind: str) -> View:
        """A container idling on the `kind` network, with its inside view and inspect."""
        if kind not in self._views:
            net = self.net(kind)
            self._views[kind] = snapshot(self.containers, self.container(f"view-{kind}", net), net)
        return self._views[kind]


@pytest.fixture(scope="module")
def scene(_session_api: ApiClient, probe: Any, names: Names, run_id: str, target: Any) -> Iterator[Scene]:
    containers = Containers(_session_api, probe, run_id)
    networks = Networks(_session_api, names, run_id)
    try:
        yield Scene(_session_api, containers, networks, target.is_local)
    finally:
        containers.cleanup()
        networks.cleanup()
