"""What the target says it is (from /version and /info): drives skips and deviations."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import requests

from .client import ApiClient
from .target import Target

HARNESS_API = "1.41"  # the swagger version the checks are written against


@dataclass(frozen=True)
class Capabilities:
    product: str  # docker, podman, refengine or unknown
    version: str
    api_version: str
    min_api_version: str
    os: str
    arch: str
    cgroup_version: str | None
    cgroup_driver: str | None
    kernel: str
    raw_version: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def label(self) -> str:
        """A short name for reports, e.g. docker-20.10.24."""
        return f"{self.product}-{self.version.split('+')[0]}"

    def as_dict(self) -> dict[str, Any]:
        return {"product": self.product, "version": self.version, "api_version": self.api_version,
                "min_api_version": self.min_api_version, "os": self.os, "arch": self.arch,
                "cgroup_version": self.cgroup_version, "cgroup_driver": self.cgroup_driver,
                "kernel": self.kernel}


def product_of(version: dict[str, Any]) -> str:
    names = [str(c.get("Name", "")) for c in version.get("Components") or []]
    platform = str((version.get("Platform") or {}).get("Name", ""))
    text = " ".join(names + [platform]).lower()
    if "podman" in text:
        return "podman"
    if "refengine" in text:
        return "refengine"
    if "Engine" in names or "docker" in platform.lower():
        return "docker"
    return "unknown"


def negotiate(server_api: str) -> str:
    """The version prefix to speak: the lower of the server's and the harness's."""
    def key(v: str) -> tuple[int, ...]:
        return tuple(int(p) for p in v.split("."))
    return min(server_api, HARNESS_API, key=key)


class TargetUnreachable(RuntimeError):
    pass


def probe_capabilities(target: Target) -> Capabilities:
    """Ask an unversioned /version and /info, as a client negotiating its version does."""
    client = ApiClient(target)
    try:
        version = client.get("/version", versioned=False, timeout=15).json()
        info = client.get("/info", versioned=False, timeout=15).json()
    except requests.RequestException as exc:
        raise TargetUnreachable(f"cannot reach the target {target.url}: {exc}") from exc
    except ValueError as exc:
        raise TargetUnreachable(f"{target.url} did not answer /version or /info with JSON: {exc}") from exc
    finally:
        client.close()
    return Capabilities(
        product=product_of(version),
        version=str(version.get("Version", "")),
        api_version=str(version.get("ApiVersion", "")),
        min_api_version=str(version.get("MinAPIVersion", "")),
        os=str(version.get("Os", "")),
        arch=str(version.get("Arch", "")),
        cgroup_version=info.get("CgroupVersion"),
        cgroup_driver=info.get("CgroupDriver"),
        kernel=str(version.get("KernelVersion", "")),
        raw_version=version,
    )
