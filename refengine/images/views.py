"""API shapes of images: ImageInspect, ImageSummary, history items (Engine API v1.41 swagger),
with the quirks dockerd 20.10 shows (nulls where Go has nil slices or maps, -1 placeholders)."""

from __future__ import annotations

import calendar
import re
import time
from typing import Any

ZERO_TIME = "0001-01-01T00:00:00Z"

# container.Config as Go marshals it: (field, omitted when empty).
CONFIG_FIELDS: tuple[tuple[str, bool], ...] = (
    ("Hostname", False), ("Domainname", False), ("User", False), ("AttachStdin", False),
    ("AttachStdout", False), ("AttachStderr", False), ("ExposedPorts", True), ("Tty", False),
    ("OpenStdin", False), ("StdinOnce", False), ("Env", False), ("Cmd", False), ("Healthcheck", True),
    ("ArgsEscaped", True), ("Image", False), ("Volumes", False), ("WorkingDir", False), ("Entrypoint", False),
    ("NetworkDisabled", True), ("MacAddress", True), ("OnBuild", False), ("Labels", False),
    ("StopSignal", True), ("StopTimeout", True), ("Shell", True),
)
_ZERO: dict[str, Any] = {"Hostname": "", "Domainname": "", "User": "", "AttachStdin": False, "AttachStdout": False,
                         "AttachStderr": False, "Tty": False, "OpenStdin": False, "StdinOnce": False,
                         "Image": "", "WorkingDir": "", "ArgsEscaped": False, "NetworkDisabled": False,
                         "MacAddress": "", "StopSignal": ""}
_STRSLICE = {"Cmd", "Entrypoint", "Shell"}


def container_config(raw: dict[str, Any] | None) -> dict[str, Any]:
    """An image config's `config`/`container_config` in Go's shape. Go matches JSON keys
    case-insensitively, so OCI configs (`Env`, `Cmd`, ...) and odd casings land in the same fields."""
    lowered = {k.lower(): v for k, v in (raw or {}).items()}
    out: dict[str, Any] = {}
    for name, omitempty in CONFIG_FIELDS:
        value = lowered.get(name.lower(), _ZERO.get(name))
        if name in _STRSLICE and isinstance(value, str):
            value = [value]  # strslice accepts a bare string
        if omitempty and value in (None, "", False, 0, [], {}):
            continue
        out[name] = value
    return out


def now_rfc3339nano() -> str:
    """Now as Go's time.RFC3339Nano prints it (trailing zeros of the fraction dropped)."""
    ns = time.time_ns()
    frac = f"{ns % 10**9:09d}".rstrip("0")
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 10**9)) + (f".{frac}" if frac else "") + "Z"


_TIME_RE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(Z|z|[+-]\d{2}:\d{2})$")


def parse_time(text: str | None) -> tuple[int, int, str] | None:
    """RFC 3339 → (unix seconds, nanoseconds, zone as written), or None."""
    m = _TIME_RE.match(text or "")
    if not m:
        return None
    year, month, day, hour, minute, sec = (int(g) for g in m.groups()[:6])
    nanos = int(((m.group(7) or "") + "000000000")[:9])
    zone = m.group(8).upper()
    offset = 0 if zone == "Z" else (1 if zone[0] == "+" else -1) * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
    seconds = calendar.timegm((year, month, day, hour, minute, sec, 0, 0, 0)) - offset
    return seconds, nanos, zone


def rfc3339nano(text: str | None) -> str:
    """Go's `Format(time.RFC3339Nano)` of a parsed time: trailing fraction zeros dropped, the zone kept."""
    parsed = parse_time(text)
    m = _TIME_RE.match(text or "")
    if parsed is None or m is None:
        return ZERO_TIME
    frac = (m.group(7) or "")[:9].rstrip("0")
    return f"{text[:19].replace('t', 'T').replace(' ', 'T')}{'.' + frac if frac else ''}{parsed[2]}"


def created_unix(text: str | None) -> int:
    parsed = parse_time(text)
    return parsed[0] if parsed else -62135596800  # Go's zero time


def inspect_view(image_id: str, document: dict[str, Any], *, repo_tags: list[str], repo_digests: list[str],
                 parent: str, size: int, driver_name: str, driver_data: dict[str, str] | None,
                 last_tag_time: str) -> dict[str, Any]:
    """`GET /images/{name}/json`."""
    history = document.get("history") or []
    comment = document.get("comment") or ""
    if not comment and history:
        comment = history[-1].get("comment") or ""
    rootfs = document.get("rootfs") or {}
    out: dict[str, Any] = {
        "Id": image_id, "RepoTags": repo_tags, "RepoDigests": repo_digests, "Parent": parent,
        "Comment": comment, "Created": rfc3339nano(document.get("created")),
        "Container": document.get("container") or "",
        "ContainerConfig": no_nulls(container_config(document.get("container_config"))),
        "DockerVersion": document.get("docker_version") or "", "Author": document.get("author") or "",
        "Config": no_nulls(container_config(document["config"])) if document.get("config") is not None else {},
        "Architecture": document.get("architecture") or "",
    }
    if document.get("variant"):
        out["Variant"] = document["variant"]
    out["Os"] = document.get("os") or "linux"
    if document.get("os.version"):
        out["OsVersion"] = document["os.version"]
    out.update({
        "Size": size, "VirtualSize": size,
        "GraphDriver": {"Data": driver_data or {}, "Name": driver_name},
        "RootFS": {"Type": rootfs.get("type") or "", **({"Layers": list(rootfs["diff_ids"])}
                                                       if rootfs.get("diff_ids") else {})},
        "Metadata": {"LastTagTime": last_tag_time or ZERO_TIME},
    })
    return out


def summary_view(image_id: str, document: dict[str, Any], *, parent: str, repo_tags: list[str] | None,
                 repo_digests: list[str] | None, size: int, shared_size: int = -1,
                 containers: int = -1) -> dict[str, Any]:
    """One item of `GET /images/json` (dockerd: -1 for SharedSize and Containers unless asked)."""
    config = document.get("config") or {}
    labels = {k.lower(): v for k, v in config.items()}.get("labels")
    return {
        "Containers": containers, "Created": created_unix(document.get("created")), "Id": image_id,
        "Labels": labels or {}, "ParentId": parent, "RepoDigests": repo_digests or [], "RepoTags": repo_tags or [],
        "SharedSize": shared_size, "Size": size, "VirtualSize": size,
    }


def history_view(document: dict[str, Any], layer_sizes: list[int],
                 lineage: list[tuple[str, list[str] | None]]) -> list[dict[str, Any]]:
    """`GET /images/{name}/history`, newest first. Each non-empty history entry takes the next
    layer's size. `lineage` is the image then its parents, each with its tags: dockerd names the
    newest entries after them one by one and leaves the rest `<missing>` (a loaded image has no
    parents, so only its newest entry has an ID)."""
    items: list[dict[str, Any]] = []
    layer = 0
    for entry in document.get("history") or []:
        size = 0
        if not entry.get("empty_layer"):
            if layer >= len(layer_sizes):
                raise ValueError("too many non-empty layers in History section")
            size = layer_sizes[layer]
            layer += 1
        items.append({"Comment": entry.get("comment") or "", "Created": created_unix(entry.get("created")),
                      "CreatedBy": entry.get("created_by") or "", "Id": "<missing>", "Size": size, "Tags": []})
    items.reverse()
    for item, (image_id, tags) in zip(items, lineage, strict=False):
        item["Id"], item["Tags"] = image_id, tags or []
    return items


def no_nulls(config: dict[str, Any] | None) -> dict[str, Any]:
    """Where dockerd marshals Go's nil slices and maps as null the schema has no x-nullable: refengine
    leaves such fields out, which the schema allows (dockerd's nulls are documented deviations)."""
    return {k: v for k, v in (config or {}).items() if v is not None}
