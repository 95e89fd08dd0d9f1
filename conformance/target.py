"""The daemon under test: where it is (a URL like the docker CLI's -H) and how to reach it."""

from __future__ import annotations

import os
import socket
import ssl
import urllib.parse
from dataclasses import dataclass


class TargetError(ValueError):
    """A target URL or TLS setting that cannot be used."""


@dataclass(frozen=True)
class TLSConfig:
    cacert: str | None = None
    cert: str | None = None
    key: str | None = None
    verify: bool = True

    def context(self, server_hostname_check: bool = True) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=self.cacert) if self.cacert else ssl.create_default_context()
        if not self.verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        elif not server_hostname_check:
            ctx.check_hostname = False
        if self.cert:
            ctx.load_cert_chain(self.cert, self.key)
        return ctx


@dataclass(frozen=True)
class Target:
    """A daemon address: unix socket path or TCP host:port, optionally with TLS."""

    url: str
    scheme: str  # "unix" or "tcp"
    path: str | None = None
    host: str | None = None
    port: int | None = None
    tls: TLSConfig | None = None

    @property
    def is_local(self) -> bool:
        """True when the daemon runs on this machine, so host-side facts can be read."""
        if self.scheme == "unix":
            return True
        return self.host in ("127.0.0.1", "localhost", "::1")

    @property
    def base_url(self) -> str:
        """The URL prefix requests uses for this target."""
        if self.scheme == "unix":
            assert self.path is not None
            return "http+unix://" + urllib.parse.quote(self.path, safe="")
        proto = "https" if self.tls else "http"
        host = f"[{self.host}]" if self.host and ":" in self.host else self.host
        return f"{proto}://{host}:{self.port}"

    def connect(self, timeout: float = 30.0) -> socket.socket:
        """A fresh raw stream socket to the daemon (TLS-wrapped when configured)."""
        if self.scheme == "unix":
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            sock.connect(self.path)
            return sock
        sock = socket.create_connection((self.host, self.port), timeout=timeout)
        if self.tls:
            return self.tls.context().wrap_socket(sock, server_hostname=self.host)
        return sock


def parse_target(url: str, tls: TLSConfig | None = None) -> Target:
    """Parse a docker-style host URL: unix:///path, tcp://host:port, http(s)://host:port."""
    if not url:
        raise TargetError("empty target URL")
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme == "unix":
        path = parsed.path or parsed.netloc
        if not path:
            raise TargetError(f"unix target needs a socket path: {url!r}")
        return Target(url=url, scheme="unix", path=path)
    if parsed.scheme in ("tcp", "http", "https"):
        if not parsed.hostname:
            raise TargetError(f"tcp target needs a host: {url!r}")
        use_tls = tls is not None or parsed.scheme == "https"
        default_port = 2376 if use_tls else 2375
        try:
            port = parsed.port or default_port
        except ValueError as exc:
            raise TargetError(f"bad port in {url!r}: {exc}") from None
        return Target(url=url, scheme="tcp", host=parsed.hostname, port=port,
                      tls=(tls or TLSConfig()) if use_tls else None)
    if parsed.scheme == "fd":
        raise TargetError("fd:// targets are for daemons started by systemd; the harness needs unix:// or tcp://")
    raise TargetError(f"unsupported target scheme {parsed.scheme!r} in {url!r} (use unix:// or tcp://)")


def target_from_environment(explicit: str | None, tls: TLSConfig | None) -> Target | None:
    """The target named on the command line, else $CONFORMANCE_TARGET, else DOCKER_HOST
    (with DOCKER_TLS_VERIFY/DOCKER_CERT_PATH, as the docker CLI reads them)."""
    explicit = explicit or os.environ.get("CONFORMANCE_TARGET")
    if explicit:
        return parse_target(explicit, tls)
    env = os.environ.get("DOCKER_HOST")
    if not env:
        return None
    if tls is None and os.environ.get("DOCKER_TLS_VERIFY"):
        certs = os.environ.get("DOCKER_CERT_PATH", os.path.expanduser("~/.docker"))
        tls = TLSConfig(cacert=os.path.join(certs, "ca.pem"), cert=os.path.join(certs, "cert.pem"),
                        key=os.path.join(certs, "key.pem"))
    return parse_target(env, tls)
