"""How the client reaches a daemon: unix://path, tcp://host:port (TLS like the docker CLI), fd://N.

`fd://N` uses a socket the caller already connected and handed down as file descriptor N
(e.g. from a supervisor); it carries one connection, so every request reuses it (keep-alive).
"""

from __future__ import annotations

import http.client
import os
import socket
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

DEFAULT_HOST = "unix:///run/refengine.sock"


class HostError(ValueError):
    """A -H / DOCKER_HOST value the client cannot use."""


@dataclass(frozen=True)
class TLSOptions:
    verify: bool = False
    cacert: str | None = None
    cert: str | None = None
    key: str | None = None

    @property
    def enabled(self) -> bool:
        return self.verify or bool(self.cert)

    def context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=self.cacert)
        if not self.verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if self.cert:
            ctx.load_cert_chain(self.cert, self.key)
        return ctx


@dataclass(frozen=True)
class Host:
    scheme: str
    path: str = ""
    host: str = ""
    port: int = 0
    fd: int = -1

    @classmethod
    def parse(cls, url: str) -> Host:
        if "://" not in url:
            raise HostError(f"invalid host {url!r}: use unix:///path, tcp://host:port or fd://N")
        parts = urlsplit(url)
        if parts.scheme == "unix":
            if not parts.path:
                raise HostError(f"invalid host {url!r}: no socket path")
            return cls("unix", path=parts.path)
        if parts.scheme == "tcp":
            try:
                port = parts.port or 2375
            except ValueError:
                raise HostError(f"invalid host {url!r}: bad port") from None
            if not parts.hostname:
                raise HostError(f"invalid host {url!r}: no host name")
            return cls("tcp", host=parts.hostname, port=port)
        if parts.scheme == "fd":
            fd = parts.netloc or parts.path.lstrip("/")
            if not fd.isdigit():
                raise HostError(f"invalid host {url!r}: fd:// wants a file descriptor number")
            return cls("fd", fd=int(fd))
        raise HostError(f"invalid host {url!r}: unsupported scheme {parts.scheme!r}")

    def connect(self, tls: TLSOptions | None, timeout: float | None) -> socket.socket:
        if self.scheme == "unix":
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            sock.connect(self.path)
            return sock
        if self.scheme == "fd":
            return socket.socket(fileno=os.dup(self.fd))
        sock = socket.create_connection((self.host, self.port), timeout=timeout)
        if tls and tls.enabled:
            return tls.context().wrap_socket(sock, server_hostname=self.host)
        return sock


class Connection(http.client.HTTPConnection):
    """http.client over whichever socket Host gives."""

    def __init__(self, target: Host, tls: TLSOptions | None, timeout: float | None = 60) -> None:
        super().__init__("localhost" if target.scheme != "tcp" else target.host, timeout=timeout)
        self.target, self.tls = target, tls

    def connect(self) -> None:
        self.sock = self.target.connect(self.tls, self.timeout)
