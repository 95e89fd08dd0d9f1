"""Name resolution: the embedded DNS server (127.0.0.11) of user-defined networks, /etc/resolv.conf and
/etc/hosts as docker writes them, and the default bridge's lack of container-name resolution.

Only names the embedded server knows are looked up on user networks (their containers forward unknown
names to loopback, see conftest); on the default bridge the only query goes to 127.0.0.11 given
explicitly, i.e. to the container's own loopback.
"""

from __future__ import annotations

import ipaddress

import pytest

from conformance.host import Host
from conformance.network.conftest import KINDS, Scene, View, endpoint_settings, snapshot
from conformance.resources import Containers, Names

EXTRA_HOSTS = {"probe-extra.conformance.invalid": "198.51.100.7", "probe-two": "203.0.113.9"}


def _named_server(scene: Scene, names: Names, kind: str) -> tuple[str, str, list[str]]:
    """(name, IPv4, aliases) of an idle container with a name and two network aliases on `kind`."""
    key = f"named-{kind}"
    if key not in scene.meta:
        name = names("peer")
        aliases = [f"alias-one-{name}", f"alias-two-{name}"] if kind != "default-bridge" else []
        net = scene.net(kind)
        if aliases:
            cid = scene.containers.run(["sleep", "3600"], name=name, **net.endpoint(aliases=aliases))
        else:
            cid = scene.container(key, net, name=name)
        ip = endpoint_settings(scene.containers.inspect(cid), net).get("IPAddress")
        assert ip, f"the named container reports no IPAddress on {net.name}"
        scene.meta[key] = (name, ip, aliases)
    return scene.meta[key]


def _client(scene: Scene, kind: str) -> View:
    """An idle container on `kind` with ExtraHosts, and its network view."""
    key = f"client-{kind}"
    if key not in scene.meta:
        net = scene.net(kind)
        cid = scene.container(key, net, host_config={"ExtraHosts": [f"{h}:{ip}" for h, ip in EXTRA_HOSTS.items()]})
        scene.meta[key] = snapshot(scene.containers, cid, net)
    return scene.meta[key]


def _read(containers: Containers, cid: str, path: str) -> str:
    res = containers.exec(cid, ["cat", path])
    assert res.exit_code == 0, f"reading {path} in the container failed: {res.describe()}"
    return res.stdout


def _nameservers(text: str) -> list[str]:
    return [line.split()[1] for line in text.splitlines() if line.startswith("nameserver") and len(line.split()) > 1]


def _resolved(nslookup_out: str) -> list[str]:
    """Answer addresses in busybox nslookup output (lines after a Name: line)."""
    out, in_answer = [], False
    for line in nslookup_out.splitlines():
        if line.startswith("Name:"):
            in_answer = True
        elif in_answer and line.startswith("Address:"):
            out.append(line.split(":", 1)[1].strip())
    return out


@pytest.mark.req("network.dns.embedded-resolv-conf")
def test_user_network_resolv_conf(scene: Scene) -> None:
    view = _client(scene, "user-network")
    text = _read(scene.containers, view.cid, "/etc/resolv.conf")
    assert _nameservers(text) == ["127.0.0.11"], (
        f"/etc/resolv.conf on a user-defined network names {_nameservers(text)}; docker points it at its embedded "
        f"DNS server 127.0.0.11 only:\n{text}")


@pytest.mark.req("network.dns.default-bridge-resolv-conf")
def test_default_bridge_resolv_conf(scene: Scene, hostside: Host) -> None:
    view = _client(scene, "default-bridge")
    inside = [n for n in _nameservers(_read(scene.containers, view.cid, "/etc/resolv.conf")) if ":" not in n]
    expected: list[str] = []
    for path in ("/etc/resolv.conf", "/run/systemd/resolve/resolv.conf"):
        try:
            found = [n for n in _nameservers(hostside.read(path)) if ":" not in n]
        except OSError:
            continue
        expected = [n for n in found if not ipaddress.ip_address(n).is_loopback]
        if expected:
            break
    expected = expected or ["8.8.8.8", "8.8.4.4"]  # docker's fallback when the host has only local resolvers
    assert inside == expected, (
        f"/etc/resolv.conf on the default bridge names IPv4 nameservers {inside}; docker derives it from the host's "
        f"resolv.conf (non-loopback nameservers {expected}), there is no embedded DNS there")


@pytest.mark.req("network.dns.container-name")
def test_container_name_resolves(scene: Scene, names: Names) -> None:
    name, ip, _ = _named_server(scene, names, "user-network")
    res = scene.containers.exec(_client(scene, "user-network").cid, ["nslookup", name])
    assert _resolved(res.stdout) == [ip], (
        f"nslookup {name} on the same user-defined network answered {_resolved(res.stdout)}; the embedded DNS must "
        f"resolve the container's name to its address {ip}: {res.describe()}")


@pytest.mark.req("network.dns.alias")
@pytest.mark.parametrize("tool", ["nslookup", "ping"])
def test_alias_resolves(scene: Scene, names: Names, tool: str) -> None:
    _, ip, aliases = _named_server(scene, names, "user-network")
    cid = _client(scene, "user-network").cid
    for alias in aliases:
        if tool == "nslookup":
            res = scene.containers.exec(cid, ["nslookup", alias])
            assert _resolved(res.stdout) == [ip], (
                f"nslookup of the network alias {alias} answered {_resolved(res.stdout)}; expected {ip}: "
                f"{res.describe()}")
        else:
            res = scene.containers.exec(cid, ["ping", "-c1", "-W1", alias])
            assert res.exit_code == 0 and f"({ip})" in res.stdout, (
                f"ping of the network alias {alias} did not reach {ip}: {res.describe()}")


@pytest.mark.req("network.dns.alias-inspect")
def test_alias_in_inspect(scene: Scene, names: Names) -> None:
    name, _, aliases = _named_server(scene, names, "user-network")
    ep = endpoint_settings(scene.containers.inspect(name), scene.net("user-network"))
    reported = ep.get("Aliases") or []
    assert set(aliases) <= set(reported), (
        f"the endpoint's Aliases are {reported}; the container was created with EndpointsConfig Aliases {aliases}")


@pytest.mark.req("network.dns.hosts-own-name")
@pytest.mark.parametrize("kind", KINDS)
def test_hosts_has_own_hostname(scene: Scene, kind: str) -> None:
    view = _client(scene, kind)
    hostname = scene.containers.exec(view.cid, ["hostname"]).stdout.strip()
    ips = [str(a.ip) for a in view.v4("eth0")]
    hosts = _read(scene.containers, view.cid, "/etc/hosts")
    entries = {(w[0], n) for w in (line.split() for line in hosts.splitlines()) if w and not w[0].startswith("#")
               for n in w[1:]}
    assert ips and (ips[0], hostname) in entries, (
        f"/etc/hosts has no line mapping the container's hostname {hostname!r} to its address {ips}:\n{hosts}")
    assert ("127.0.0.1", "localhost") in entries, f"/etc/hosts lacks 127.0.0.1 localhost:\n{hosts}"


@pytest.mark.req("network.dns.extra-hosts")
@pytest.mark.parametrize("kind", KINDS)
def test_extra_hosts(scene: Scene, kind: str) -> None:
    view = _client(scene, kind)
    hosts = _read(scene.containers, view.cid, "/etc/hosts")
    entries = {(w[0], n) for w in (line.split() for line in hosts.splitlines()) if w for n in w[1:]}
    missing = [f"{ip} {h}" for h, ip in EXTRA_HOSTS.items() if (ip, h) not in entries]
    assert not missing, f"ExtraHosts entries {missing} are not in /etc/hosts:\n{hosts}"


@pytest.mark.req("network.dns.default-bridge-no-names")
def test_default_bridge_does_not_resolve_names(scene: Scene, names: Names) -> None:
    name, ip, _ = _named_server(scene, names, "default-bridge")
    cid = _client(scene, "default-bridge").cid
    hosts = _read(scene.containers, cid, "/etc/hosts")
    assert name not in hosts, f"/etc/hosts on the default bridge maps the other container {name}:\n{hosts}"
    res = scene.containers.exec(cid, ["nslookup", name, "127.0.0.11"])
    assert ip not in _resolved(res.stdout), (
        f"on the default bridge {name} resolved to {ip} through 127.0.0.11: {res.describe()}. Docker's default "
        "bridge has no embedded DNS and no container-name resolution (legacy links aside)")


@pytest.mark.req("network.dns.dns-options")
def test_dns_options_written(containers: Containers) -> None:
    # Nothing is looked up: the container only reads the file docker wrote.
    res = containers.run_output(["cat", "/etc/resolv.conf"], HostConfig={
        "Dns": ["203.0.113.53"], "DnsSearch": ["conformance.invalid"], "DnsOptions": ["ndots:3", "timeout:1"]})
    lines = [line.split() for line in res.stdout.splitlines() if line.strip()]
    assert ["nameserver", "203.0.113.53"] in lines and not [w for w in lines if w[0] == "nameserver" and
                                                              w[1] != "203.0.113.53"], (
        f"HostConfig.Dns [203.0.113.53] on the default bridge must be the only nameserver: {res.stdout!r}")
    assert ["search", "conformance.invalid"] in lines, f"DnsSearch is not the search line: {res.stdout!r}"
    options = {o for w in lines if w[0] == "options" for o in w[1:]}
    assert {"ndots:3", "timeout:1"} <= options, f"DnsOptions are not in the options line: {res.stdout!r}"
