"""The API's views of a container: ContainerInspect, ContainerSummary, and dockerd's status strings."""

from __future__ import annotations

import datetime as dt
from typing import Any

from ...images.views import no_nulls
from .record import Container, parse_rfc3339


def human_duration(seconds: float) -> str:
    """Go's units.HumanDuration, which `docker ps` shows in Status."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    m = s // 60
    if m == 1:
        return "About a minute"
    if m < 60:
        return f"{m} minutes"
    h = round(s / 3600)
    if h == 1:
        return "About an hour"
    if h < 48:
        return f"{h} hours"
    if h < 24 * 7 * 2:
        return f"{h // 24} days"
    if h < 24 * 30 * 2:
        return f"{h // 24 // 7} weeks"
    if h < 24 * 365 * 2:
        return f"{h // 24 // 30} months"
    return f"{h // 24 // 365} years"


def _since(stamp: str) -> float:
    return (dt.datetime.now(dt.UTC) - parse_rfc3339(stamp)).total_seconds()


def status_text(c: Container) -> str:
    st = c.state
    if st.status == "running":
        return f"Up {human_duration(_since(st.started_at))}"
    if st.status == "paused":
        return f"Up {human_duration(_since(st.started_at))} (Paused)"
    if st.status == "restarting":
        return f"Restarting ({st.exit_code}) {human_duration(_since(st.finished_at))} ago"
    if st.status == "exited":
        return f"Exited ({st.exit_code}) {human_duration(_since(st.finished_at))} ago"
    if st.status == "removing":
        return "Removal In Progress"
    if st.status == "dead":
        return "Dead"
    return "Created"


def _ports(c: Container) -> list[dict[str, Any]]:
    out = []
    # only what the running container's network settings hold, as dockerd: a created or stopped
    # container (or one on network none) lists no ports, even exposed ones
    bound = (c.network_settings or {}).get("Ports") or {}
    for port in sorted(bound):
        number, _, proto = port.partition("/")
        bindings = bound.get(port) or []
        if not bindings:
            out.append({"PrivatePort": int(number), "Type": proto or "tcp"})
        for b in bindings:
            out.append({"IP": b.get("HostIp") or "0.0.0.0", "PrivatePort": int(number),
                        "PublicPort": int(b.get("HostPort") or 0), "Type": proto or "tcp"})
    return out


def network_settings(c: Container) -> dict[str, Any]:
    ns = dict(c.network_settings or {})
    networks = ns.get("Networks") or {}
    base = {"Bridge": "", "SandboxID": "", "HairpinMode": False, "LinkLocalIPv6Address": "",
            "LinkLocalIPv6PrefixLen": 0, "Ports": ns.get("Ports") or {}, "SandboxKey": ns.get("SandboxKey", ""),
            "SecondaryIPAddresses": None, "SecondaryIPv6Addresses": None, "EndpointID": "", "Gateway": "",
            "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0, "IPAddress": "", "IPPrefixLen": 0,
            "IPv6Gateway": "", "MacAddress": "", "Networks": networks}
    default = networks.get("bridge") or {}
    for key in ("EndpointID", "Gateway", "GlobalIPv6Address", "GlobalIPv6PrefixLen", "IPAddress", "IPPrefixLen",
                "IPv6Gateway", "MacAddress"):
        if key in default:
            base[key] = default[key]
    return base


def inspect(c: Container, size: tuple[int, int] | None = None, exec_ids: list[str] | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {
        "Id": c.id, "Created": c.created, "Path": c.path, "Args": list(c.args), "State": c.state.api(),
        "Image": c.image_id, "ResolvConfPath": c.resolv_conf_path, "HostnamePath": c.hostname_path,
        "HostsPath": c.hosts_path, "LogPath": c.log_path, "Name": c.name, "RestartCount": c.restart_count,
        "Driver": c.driver, "Platform": "linux", "MountLabel": "", "ProcessLabel": "", "AppArmorProfile": "",
        "ExecIDs": list(exec_ids or []) or None, "HostConfig": no_nulls(c.host_config),
        "GraphDriver": {"Name": c.driver or "vfs", "Data": {}},
        "Mounts": list(c.mounts), "Config": {"Cmd": [], **no_nulls(c.config)}, "NetworkSettings": network_settings(c),
    }
    if size is not None:
        data["SizeRw"], data["SizeRootFs"] = size
    return data


def list_command(path: str, args: list[str]) -> str:
    """The list's Command as dockerd writes it: arguments holding a space in single quotes."""
    quoted = [f"'{a}'" if " " in a else a for a in args]
    return " ".join([path, *quoted]).strip()


def summary(c: Container, size: tuple[int, int] | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {
        "Id": c.id, "Names": [c.name], "Image": c.config.get("Image", ""), "ImageID": c.image_id,
        "Command": list_command(c.path, c.args), "Created": int(parse_rfc3339(c.created).timestamp()), "Ports": _ports(c),
        "Labels": c.config.get("Labels") or {}, "State": c.state.status, "Status": status_text(c),
        "HostConfig": {"NetworkMode": c.host_config.get("NetworkMode", "default")},
        "NetworkSettings": {"Networks": network_settings(c)["Networks"]},
        "Mounts": list(c.mounts),
    }
    if size is not None:
        data["SizeRw"], data["SizeRootFs"] = size
    return data
