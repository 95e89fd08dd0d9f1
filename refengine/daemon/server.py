"""refengined's listeners: a unix socket (mode 0660, a configurable group) and optionally TCP.

TCP is served only with TLS and client-certificate verification, unless `insecure_tcp` is set,
in which case the daemon says loudly that anyone who can reach the port is root on this host.
"""

from __future__ import annotations

import asyncio
import grp
import logging
import os
import platform
import ssl
import stat
from dataclasses import dataclass

from ..engine.system import API_VERSION, VERSION
from .http import Connection
from .router import Router

log = logging.getLogger("refengine.server")

DEFAULT_SOCKET = "/run/refengine.sock"


class ServerConfigError(ValueError):
    """A listener configuration that must not be served (reported, the daemon does not start)."""


@dataclass(frozen=True)
class ListenConfig:
    unix_socket: str | None = DEFAULT_SOCKET
    socket_group: str | None = None  # None: root's group (like dockerd without a docker group)
    socket_mode: int = 0o660
    tcp: str | None = None  # "host:port"
    tlscacert: str | None = None
    tlscert: str | None = None
    tlskey: str | None = None
    insecure_tcp: bool = False

    def check(self) -> None:
        if self.tcp:
            host, _, port = self.tcp.rpartition(":")
            if not host or not port.isdigit():
                raise ServerConfigError(f"--tcp wants host:port, got {self.tcp!r}")
            if not self.insecure_tcp and not (self.tlscacert and self.tlscert and self.tlskey):
                raise ServerConfigError(
                    "refusing to listen on TCP without TLS: give --tlscacert, --tlscert and --tlskey "
                    "(clients must present a certificate signed by that CA), or --insecure-tcp if you really "
                    "mean to give root on this host to anyone who can reach the port")
        if self.socket_group is not None:
            try:
                grp.getgrnam(self.socket_group)
            except KeyError:
                raise ServerConfigError(f"socket group {self.socket_group!r} does not exist") from None

    def tls_context(self) -> ssl.SSLContext | None:
        if not self.tcp or self.insecure_tcp:
            return None
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=self.tlscacert)
        ctx.load_cert_chain(self.tlscert or "", self.tlskey)
        ctx.verify_mode = ssl.CERT_REQUIRED  # client-certificate verification, as dockerd --tlsverify
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        return ctx


def default_headers() -> list[tuple[str, str]]:
    return [("Api-Version", API_VERSION), ("Docker-Experimental", "false"), ("Ostype", "linux"),
            ("Server", f"refengine/{VERSION} ({platform.system().lower()})")]


class Server:
    """Serves one router on the configured listeners until stopped."""

    def __init__(self, router: Router, config: ListenConfig) -> None:
        self.router, self.config = router, config
        self.servers: list[asyncio.AbstractServer] = []
        self.connections: set[asyncio.Task[None]] = set()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.connections.add(task)
        try:
            await Connection(reader, writer, self.router.dispatch, default_headers).serve()
        finally:
            self.connections.discard(task)

    async def start(self) -> None:
        cfg = self.config
        cfg.check()
        if cfg.unix_socket:
            path = cfg.unix_socket
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
            if os.path.exists(path):
                if not stat.S_ISSOCK(os.lstat(path).st_mode):
                    raise ServerConfigError(f"{path} exists and is not a socket; refusing to replace it")
                os.unlink(path)  # a stale socket of an earlier run
            old = os.umask(0o177)  # never world-accessible, not even for a moment
            try:
                srv = await asyncio.start_unix_server(self._client, path=path, limit=1 << 20)
            finally:
                os.umask(old)
            gid = grp.getgrnam(cfg.socket_group).gr_gid if cfg.socket_group else -1
            os.chown(path, -1, gid)
            os.chmod(path, cfg.socket_mode)
            self.servers.append(srv)
            log.info("listening on unix://%s (mode %o)", path, cfg.socket_mode)
        if cfg.tcp:
            host, _, port = cfg.tcp.rpartition(":")
            tls = cfg.tls_context()
            if tls is None:
                log.warning("!!! listening on tcp://%s WITHOUT TLS: anyone who can connect to this port controls "
                            "this host as root. Use --tlscacert/--tlscert/--tlskey instead of --insecure-tcp.", cfg.tcp)
            srv = await asyncio.start_server(self._client, host.strip("[]"), int(port), ssl=tls, limit=1 << 20)
            self.servers.append(srv)
            log.info("listening on tcp://%s (%s)", cfg.tcp, "TLS, client certificates required" if tls else "plain")

    async def stop(self) -> None:
        for srv in self.servers:
            srv.close()
        for task in list(self.connections):
            task.cancel()
        for srv in self.servers:
            await srv.wait_closed()
        if self.config.unix_socket and os.path.exists(self.config.unix_socket):
            os.unlink(self.config.unix_socket)
