"""refengined on TCP: TLS with client-certificate verification, as dockerd --tlsverify."""

from __future__ import annotations

import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

trustme = pytest.importorskip("trustme", reason="trustme makes the test certificates")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def tls_daemon(tmp_path_factory) -> Iterator[tuple[int, trustme.CA, str]]:
    d = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    ca.cert_pem.write_to_path(str(d / "ca.pem"))
    server.private_key_pem.write_to_path(str(d / "key.pem"))
    server.cert_chain_pems[0].write_to_path(str(d / "cert.pem"))
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "refengine.daemon.main", "-H", f"tcp://127.0.0.1:{port}",
                             "--tlscacert", str(d / "ca.pem"), "--tlscert", str(d / "cert.pem"),
                             "--tlskey", str(d / "key.pem"), "--data-root", str(d / "state")],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.1)
    yield port, ca, str(d)
    proc.terminate()
    proc.wait(15)


def _ping(port: int, ctx: ssl.SSLContext) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
            ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
        s.sendall(b"GET /_ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := s.recv(4096):
            data += chunk
        return data


def _client_ctx(ca: trustme.CA, client_ca: trustme.CA | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    if client_ca is not None:
        client_ca.issue_cert("client@example.test").configure_cert(ctx)
    return ctx


def test_client_with_certificate_is_served(tls_daemon) -> None:
    port, ca, _ = tls_daemon
    assert _ping(port, _client_ctx(ca, ca)).startswith(b"HTTP/1.1 200 OK")


@pytest.mark.parametrize("who", ["no client certificate", "certificate of another CA"])
def test_other_clients_are_refused(tls_daemon, who: str) -> None:
    port, ca, _ = tls_daemon
    ctx = _client_ctx(ca, None if who == "no client certificate" else trustme.CA())
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        reply = _ping(port, ctx)
        # TLS 1.3 reports the refusal at the first read: an empty reply is a refusal too
        if not reply:
            raise ConnectionError("closed")


def test_plain_http_on_the_tls_port_gets_nothing(tls_daemon) -> None:
    port, _, _ = tls_daemon
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET /_ping HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            data = s.recv(4096)
        except ConnectionError:
            data = b""
    assert b"200 OK" not in data
