"""Which registry a reference names, and how to reach it.

dockerd's defaults: Docker Hub (`docker.io`) is served by `registry-1.docker.io`; a registry on a
loopback address (127.0.0.0/8, ::1, `localhost`) is insecure, so plain http; every other one https.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from ..reference import DEFAULT_DOMAIN, Reference

HUB_HOST = "registry-1.docker.io"
HUB_INDEX_NAMES = {"docker.io", "index.docker.io", "registry-1.docker.io", "https://index.docker.io/v1/"}


@dataclass(frozen=True)
class Endpoint:
    """One registry: `host` as in references (`127.0.0.1:5000`), reached at `base_url`."""

    host: str
    secure: bool

    @property
    def base_url(self) -> str:
        return f"{'https' if self.secure else 'http'}://{self.host}"

    def url(self, path: str) -> str:
        return self.base_url + path


def is_loopback(host: str) -> bool:
    """True for `localhost[:port]`, `127.x.y.z[:port]`, `[::1][:port]`."""
    name = host
    if name.startswith("["):
        name = name[1:].partition("]")[0]
    elif name.count(":") == 1:
        name = name.partition(":")[0]
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def for_host(host: str) -> Endpoint:
    if host in HUB_INDEX_NAMES or host == DEFAULT_DOMAIN:
        return Endpoint(HUB_HOST, secure=True)
    return Endpoint(host, secure=not is_loopback(host))


def for_reference(ref: Reference) -> Endpoint:
    return for_host(ref.domain or DEFAULT_DOMAIN)


def for_server_address(address: str) -> Endpoint:
    """`serveraddress` of `POST /auth`: `host[:port]`, optionally with a scheme and a path.
    An explicit `http://` is honoured only for loopback hosts (the others stay https)."""
    text = address.strip() or "https://index.docker.io/v1/"
    if text in HUB_INDEX_NAMES:
        return for_host(DEFAULT_DOMAIN)
    host = text.split("://", 1)[-1].split("/", 1)[0]
    return for_host(host)


def repository_path(ref: Reference) -> str:
    """The repository as the registry names it (`library/busybox`, `hc/probe`)."""
    return ref.path
