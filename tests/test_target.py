"""Target URLs are parsed the way the docker CLI's -H reads them."""

from __future__ import annotations

import pytest

from conformance.target import TargetError, TLSConfig, parse_target, target_from_environment


def test_unix_url() -> None:
    t = parse_target("unix:///run/refengine.sock")
    assert (t.scheme, t.path, t.is_local) == ("unix", "/run/refengine.sock", True)
    assert t.base_url == "http+unix://%2Frun%2Frefengine.sock"


def test_tcp_default_ports() -> None:
    assert parse_target("tcp://127.0.0.1").port == 2375
    assert parse_target("tcp://127.0.0.1", TLSConfig()).port == 2376
    assert parse_target("tcp://10.0.0.5:1234").base_url == "http://10.0.0.5:1234"


def test_tls_gives_https() -> None:
    t = parse_target("tcp://localhost:2376", TLSConfig(cacert="/ca.pem"))
    assert t.base_url == "https://localhost:2376" and t.is_local


def test_ipv6_host() -> None:
    assert parse_target("tcp://[::1]:2375").base_url == "http://[::1]:2375"


@pytest.mark.parametrize("url", ["", "ftp://x", "unix://", "tcp://", "fd://", "tcp://h:notaport"])
def test_bad_urls_are_refused(url: str) -> None:
    with pytest.raises(TargetError):
        parse_target(url)


def test_environment_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    # CI exports CONFORMANCE_TARGET for the suite; this test sets up its own environment.
    monkeypatch.delenv("CONFORMANCE_TARGET", raising=False)
    monkeypatch.setenv("DOCKER_HOST", "unix:///from-docker-host")
    assert target_from_environment(None, None).path == "/from-docker-host"
    monkeypatch.setenv("CONFORMANCE_TARGET", "unix:///from-conformance")
    assert target_from_environment(None, None).path == "/from-conformance"
    assert target_from_environment("unix:///explicit", None).path == "/explicit"
    monkeypatch.delenv("CONFORMANCE_TARGET")
    monkeypatch.delenv("DOCKER_HOST")
    assert target_from_environment(None, None) is None


def test_docker_tls_verify_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CONFORMANCE_TARGET", raising=False)
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:2376")
    monkeypatch.setenv("DOCKER_TLS_VERIFY", "1")
    monkeypatch.setenv("DOCKER_CERT_PATH", "/certs")
    t = target_from_environment(None, None)
    assert t.tls and t.tls.cacert == "/certs/ca.pem" and t.tls.cert == "/certs/cert.pem"
