"""Containers on networks: the endpoints a container is configured with, connect and disconnect.

A created container only records its endpoints (NetworkSettings.Networks with the network's ID and
the requested addresses); addresses are allocated and interfaces made by the network driver when it
starts (wired in with the exec driver).
"""

from __future__ import annotations

from typing import Any

from ..engine import Engine, Job
from ..errors import Forbidden, InvalidParameter
from ..networks import NetworkStore
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


def configure(c: Container, networks: NetworkStore) -> None:
    """At create: the network of NetworkMode (default → bridge) and those of NetworkingConfig, which must exist."""
    mode = c.host_config.get("NetworkMode") or "default"
    settings: dict[str, Any] = {"Networks": {}, "Ports": {}}
    if mode.startswith("container:"):
        c.network_settings = settings
        return
    name = "bridge" if mode == "default" else mode
    net = networks.get(name)  # an unknown network is a 404 at create, as dockerd
    settings["Networks"][net.name] = endpoint(net.id, (c.networking or {}).get(net.name))
    for ref, cfg in (c.networking or {}).items():
        other = networks.get(ref)
        if other.name not in settings["Networks"]:
            if mode in HOST_MODES:
                raise InvalidParameter(f"container cannot be connected to network endpoints: {mode}, {other.name}")
            settings["Networks"][other.name] = endpoint(other.id, cfg)
    c.network_settings = settings


def register(engine: Engine, containers: ContainerStore, networks: NetworkStore) -> None:
    def _parse(job: Job) -> tuple[Any, Container, dict[str, Any]]:
        body = job.getenv("body") or {}
        if not isinstance(body, dict) or not isinstance(body.get("Container"), str) or not body["Container"]:
            raise InvalidParameter("Container must be the name or ID of a container")
        net = networks.get(job.args[0])
        return net, containers.get(body["Container"]), body

    def connect(job: Job) -> None:
        net, c, body = _parse(job)
        attached = c.network_settings.setdefault("Networks", {})
        mode = c.host_config.get("NetworkMode") or "default"
        if mode in HOST_MODES or mode.startswith("container:"):
            raise InvalidParameter(f"container sharing network namespace with another container or host cannot "
                                   f"be connected to any other network ({mode})")
        if net.name in attached:
            raise Forbidden(f"endpoint with name {c.name.lstrip('/')} already exists in network {net.name}")
        if c.state.running:
            raise InvalidParameter("connecting a running container needs the network driver, which refengine does "
                                   "not run yet")
        cfg = body.get("EndpointConfig") or {}
        wanted = (cfg.get("IPAMConfig") or {}).get("IPv4Address")
        if wanted:
            networks.allocate_ip(net, wanted)  # validates: inside the subnet, not taken
        attached[net.name] = endpoint(net.id, cfg)
        containers.save(c)

    def disconnect(job: Job) -> None:
        net, c, _body = _parse(job)
        attached = c.network_settings.setdefault("Networks", {})
        if net.name not in attached:
            raise Forbidden(f"container {c.id} is not connected to network {net.name}")
        del attached[net.name]
        containers.save(c)

    engine.register("network_connect", connect)
    engine.register("network_disconnect", disconnect)
