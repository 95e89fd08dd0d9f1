"""The container's mount points as inspect shows them (`Mounts`), recorded at create as dockerd does.

Binds and HostConfig.Mounts each give one entry: host paths as type bind (Propagation rprivate unless
asked), named volumes as type volume (created now, on first use), a Mounts volume without a Source
as a new anonymous volume, tmpfs mounts as type tmpfs. HostConfig.Tmpfs is not listed (nor by dockerd).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

PROPAGATIONS = ("rprivate", "private", "rslave", "slave", "rshared", "shared")


def _volume(name: str, source: str, dest: str, mode: str, rw: bool) -> dict[str, Any]:
    return {"Type": "volume", "Name": name, "Source": source, "Destination": dest, "Driver": "local",
            "Mode": mode, "RW": rw, "Propagation": ""}


def _bind(source: str, dest: str, mode: str, rw: bool, propagation: str | None) -> dict[str, Any]:
    return {"Type": "bind", "Source": source, "Destination": dest, "Mode": mode, "RW": rw,
            "Propagation": propagation or "rprivate"}


def records(hc: dict[str, Any], volume_dir: Callable[[str], str],
            new_anonymous: Callable[[], str]) -> list[dict[str, Any]]:
    out = []
    for bind in hc.get("Binds") or []:
        parts = bind.split(":")
        if len(parts) < 2:
            continue  # refused at start with dockerd's message
        source, dest = parts[0], parts[1]
        mode = parts[2] if len(parts) > 2 else ""
        opts = mode.split(",") if mode else []
        rw = "ro" not in opts
        if source.startswith("/"):
            out.append(_bind(source, dest, mode, rw, next((o for o in opts if o in PROPAGATIONS), None)))
        else:
            out.append(_volume(source, volume_dir(source), dest, mode, rw))
    for m in hc.get("Mounts") or []:
        kind, dest, rw = m.get("Type") or "volume", m.get("Target") or "", not m.get("ReadOnly")
        if kind == "bind":
            out.append(_bind(m.get("Source") or "", dest, "", rw, (m.get("BindOptions") or {}).get("Propagation")))
        elif kind == "volume":
            name = m.get("Source") or new_anonymous()
            out.append(_volume(name, volume_dir(name), dest, "z", rw))  # dockerd's mode for Mounts volumes
        elif kind == "tmpfs":
            out.append({"Type": "tmpfs", "Source": "", "Destination": dest, "Mode": "", "RW": rw, "Propagation": ""})
    return out


def anonymous(c_mounts: list[dict[str, Any]], hc: dict[str, Any]) -> list[tuple[str, str]]:
    """(destination, host dir) of the anonymous volumes to bind at start: Config.Volumes ones and
    Mounts volumes without a Source (named ones and binds are bound from the HostConfig itself)."""
    named = {b.split(":")[1] for b in hc.get("Binds") or [] if b.count(":") >= 1}
    named |= {m.get("Target") for m in hc.get("Mounts") or [] if (m.get("Type") or "volume") != "volume"
              or m.get("Source")}
    return [(m["Destination"], m["Source"]) for m in c_mounts
            if m.get("Type") == "volume" and m.get("Name") and m["Destination"] not in named]
