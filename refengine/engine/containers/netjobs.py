"""Containers on networks: the endpoints a container is configured with, connect and disconnect.

A created container only records its endpoints (NetworkSettings.Networks with the network's ID and
the requested addresses); addresses are allocated and interfaces made when it starts (the `Networking`
seam). A running container is connected and disconnected at once through `BridgeNetworking`.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from ..engine import Engine, Job
from ..errors import Forbidden, InvalidParameter
from ..networks import Network, NetworkStore
from .bridged import BridgeNetworking
from .record import Container
from .store import ContainerStore

HOST_MODES = ("host", "none")


def endpoint(network_id: str, config: dict[str, Any] | None = None) -> dict[str, Any]:
    """An EndpointSettings record before the container runs."""
    config = config or {}
    return {"IPAMConfig": config.get("IPAMConfig") or {}, "Links": list(config.get("Links") or []),
            "Aliases": list(config.get("Aliases") or []), "NetworkID": network_id, "EndpointID": "",
            "Gateway": "", "IPAddress": "", "IPPrefixLen": 0, "IPv6Gateway": "", "GlobalIPv6Address": "",
            "GlobalIPv6PrefixLen": 0, "MacAddress": "", "DriverOpts": config.get("DriverOpts") or {}}


def check_static(net: Network, config: dict[str, Any] | None) -> None:
    """A requested IPv4Address: only on user-defined networks, inside the network's subnet (as dockerd)."""
    wanted = ((config or {}).get("IPAMConfig") or {}).get("IPv4Address")
    if not wanted:
        return
    if net.builtin:
        raise InvalidParameter("user specified IP address is supported on user defined networks only")
    try:
        ip = ipaddress.ip_address(wanted)
    except ValueError:
        raise InvalidParameter(f"invalid IPv4 address: {wanted}") from None
    if not any(ip in ipaddress.ip_network(s["Subnet"]) for s in net.subnets if s.get("Subnet")):
        raise InvalidParameter(f"no configured subnet or ip-range contain the IP address {wanted}")


def configure(c: Container, networks: NetworkStore) -> None:
    """At create: the network of NetworkMode (default → bridge) and those of NetworkingConfig, which must exist."""
    mode = c.host_config.get("NetworkMode") or "default"
    settings: dict[str, Any] = {"Networks": {}, "Ports": {}}
    if mode.startswith("container:"):
        c.network_settings = settings
        return
    name = "bridge" if mode == "default" else mode
    if mode == "default" and "default" in (c.networking or {}):
        # the endpoint settings a client gave under the mode's name (docker CLI 25+ always sends
        # EndpointsConfig {"default": ...}): dockerd moves them to the default network's key
        c.networking = dict(c.networking)
        c.networking[name] = c.networking.pop("default")
    net = networks.get(name)  # an unknown network is a 404 at create, as dockerd
    check_static(net, (c.networking or {}).get(net.name))
    settings["Networks"][net.name] = endpoint(net.id, (c.networking or {}).get(net.name))
    for ref, cfg in (c.networking or {}).items():
        other = networks.get(ref)
        if other.name not in settings["Networks"]:
            if mode in HOST_MODES:
                raise InvalidParameter(f"container cannot be connected to network endpoints: {mode}, {other.name}")
            check_static(other, cfg)
            settings["Networks"][other.name] = endpoint(other.id, cfg)
    c.network_settings = settings


def register(engine: Engine, containers: ContainerStore, networks: NetworkStore,
             live: BridgeNetworking | None = None) -> None:
    """`live`: connects running containers (None: only created/stopped ones can be connected)."""
    def _parse(job: Job) -> tuple[Any, Container, dict[str, Any]]:
        body = job.getenv("body") or {}
        if not isinstance(body, dict) or not isinstance(body.get("Container"), str) or not body["Container"]:
            raise InvalidParameter("Container must be the name or ID of a container")
        net = networks.get(job.args[0])
        return net, containers.get(body["Container"]), body

    async def connect(job: Job) -> None:
        net, c, body = _parse(job)
        attached = c.network_settings.setdefault("Networks", {})
        mode = c.host_config.get("NetworkMode") or "default"
        if mode in HOST_MODES or mode.startswith("container:"):
            raise InvalidParameter(f"container sharing network namespace with another container or host cannot "
                                   f"be connected to any other network ({mode})")
        if net.name in attached:
            raise Forbidden(f"endpoint with name {c.name.lstrip('/')} already exists in network {net.name}")
        running = c.state.running or c.state.paused
        if running and live is None:
            raise InvalidParameter("connecting a running container needs the network driver, which this daemon "
                                   "runs without")
        cfg = body.get("EndpointConfig") or {}
        check_static(net, cfg)
        wanted = (cfg.get("IPAMConfig") or {}).get("IPv4Address")
        if wanted:
            networks.allocate_ip(net, wanted)  # validates: inside the subnet, not taken
        attached[net.name] = ep = endpoint(net.id, cfg)
        if running and live is not None:
            try:
                await live.connect(c, net, ep)
            except BaseException:
                attached.pop(net.name, None)
                raise
        containers.save(c)

    async def disconnect(job: Job) -> None:
        net, c, _body = _parse(job)
        attached = c.network_settings.setdefault("Networks", {})
        if net.name not in attached:
            raise Forbidden(f"container {c.id} is not connected to network {net.name}")
        if live is not None and c.id in net.endpoints:
            await live.disconnect(c, net)
        del attached[net.name]
        containers.save(c)

    engine.register("network_connect", connect)
    engine.register("network_disconnect", disconnect)
