"""Pure parts of the daemon's network wiring: IPAM with --bip and IPv6, pools clear of routed prefixes, port
specs at create, names for the embedded DNS, DOCKER-USER rule parsing, private names of a second daemon."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from refengine.daemon.netsetup import PRIVATE_POOL, _private_bip
from refengine.drivers.network import dockeruser
from refengine.drivers.network.ports import PortSpec
from refengine.engine.containers import netjobs
from refengine.engine.containers.bridged import BridgeNetworking
from refengine.engine.containers.config import check_port_bindings
from refengine.engine.containers.record import Container, State
from refengine.engine.containers.store import ContainerStore
from refengine.engine.errors import InvalidParameter
from refengine.engine.networks import NetworkStore


def _container(store: ContainerStore, name: str, **host_config: Any) -> Container:
    c = Container(id=store.new_id(), name="/" + name, created="", image_id="", path="sleep", args=[],
                  config={}, host_config=host_config, state=State(status="running", running=True, pid=1))
    store.add(c)
    return c


def test_bip_sets_the_default_bridge(tmp_path) -> None:
    store = NetworkStore(str(tmp_path), bip="172.29.5.1/24", bridge_name="retest0")
    bridge = store.get("bridge")
    assert bridge.subnets == [{"Subnet": "172.29.5.0/24", "Gateway": "172.29.5.1"}]
    assert bridge.options["com.docker.network.bridge.name"] == "retest0"
    again = NetworkStore(str(tmp_path), bip="172.29.6.1/24", bridge_name="retest1")  # a later start with a new --bip
    assert again.get("bridge").subnets == [{"Subnet": "172.29.6.0/24", "Gateway": "172.29.6.1"}]
    assert again.get("bridge").options["com.docker.network.bridge.name"] == "retest1"


@pytest.mark.parametrize("bip", ["172.29.5.0/24", "nonsense", "fd00::1/64"])
def test_bad_bip_refused(tmp_path, bip: str) -> None:
    with pytest.raises(InvalidParameter):
        NetworkStore(str(tmp_path), bip=bip)


def test_pool_skips_routed_prefixes(tmp_path) -> None:
    store = NetworkStore(str(tmp_path))
    store.routed = lambda: [ipaddress.IPv4Network("10.230.0.0/23")]
    net = store.create({"Name": "n1"})
    assert net.subnets[0]["Subnet"] == "10.230.2.0/24"


def test_ipv6_network_allocates_both_families(tmp_path) -> None:
    store = NetworkStore(str(tmp_path))
    net = store.create({"Name": "v6", "EnableIPv6": True,
                        "IPAM": {"Config": [{"Subnet": "10.99.0.0/24"}, {"Subnet": "fd12:3456::/64"}]}})
    assert store.allocate_ip(net) == ("10.99.0.2", 24, "10.99.0.1")
    assert store.allocate_ip6(net) == ("fd12:3456::2", 64, "fd12:3456::1")
    net.endpoints["x"] = {"IPv4Address": "10.99.0.2/24", "IPv6Address": "fd12:3456::2/64"}
    assert store.allocate_ip6(net) == ("fd12:3456::3", 64, "fd12:3456::1")
    with pytest.raises(InvalidParameter, match="IPv6 subnet"):
        store.create({"Name": "v6-nopool", "EnableIPv6": True})
    assert store.allocate_ip6(store.create({"Name": "v4only"})) is None


@pytest.mark.parametrize("bindings", [{"bad": [{"HostPort": "1"}]}, {"80/tcp": [{"HostPort": "70000"}]},
                                      ["80/tcp"]])
def test_bad_port_bindings_refused_at_create(bindings: Any) -> None:
    with pytest.raises(InvalidParameter):
        check_port_bindings(bindings)


def test_good_port_bindings_pass() -> None:
    # an unparseable HostIp is not refused by dockerd 20.10 (observed): Go's ParseIP gives nil, i.e. all addresses
    check_port_bindings({"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": ""}], "53/udp": None,
                         "81/tcp": [{"HostIp": "nope"}]})
    assert PortSpec.parse("81/tcp", {"HostIp": "nope"}).host_ip == ""


def test_static_address_rules(tmp_path) -> None:
    store = NetworkStore(str(tmp_path))
    user = store.create({"Name": "u", "IPAM": {"Config": [{"Subnet": "10.98.0.0/24"}]}})
    netjobs.check_static(user, {"IPAMConfig": {"IPv4Address": "10.98.0.9"}})
    with pytest.raises(InvalidParameter, match="no configured subnet"):
        netjobs.check_static(user, {"IPAMConfig": {"IPv4Address": "10.97.0.9"}})
    with pytest.raises(InvalidParameter, match="user defined networks only"):
        netjobs.check_static(store.get("bridge"), {"IPAMConfig": {"IPv4Address": "172.30.0.9"}})


def test_dns_names_on_shared_user_networks(tmp_path) -> None:
    nets = NetworkStore(str(tmp_path))
    store = ContainerStore(str(tmp_path))
    a, b = nets.create({"Name": "a"}), nets.create({"Name": "b"})
    web = _container(store, "web")
    client = _container(store, "client", Links=["/web:/client/db"])
    other = _container(store, "other")
    web.network_settings = {"Networks": {"a": {"Aliases": ["www"]}}}
    a.endpoints = {web.id: {"IPv4Address": "10.230.0.2/24"}, client.id: {"IPv4Address": "10.230.0.3/24"}}
    b.endpoints = {other.id: {"IPv4Address": "10.230.1.2/24"}}
    live = BridgeNetworking(None, nets, store)  # type: ignore[arg-type]  # names need no driver
    assert live.lookup(client.id, "web") == ["10.230.0.2"]
    assert live.lookup(client.id, "www") == ["10.230.0.2"]
    assert live.lookup(client.id, web.id[:12]) == ["10.230.0.2"]
    assert live.lookup(client.id, "db") == ["10.230.0.2"]  # the --link alias
    assert live.lookup(client.id, "other") is None  # on another network: not visible
    assert live.reverse(client.id, "10.230.0.2") == "web.a"
    assert live.lookup(other.id, "web") is None


def test_docker_user_rules_carry_the_tag() -> None:
    rules = dockeruser._rules("br-0123", "refengine_ab")
    assert all(r[r.index("--comment") + 1] == "refengine_ab" and r[-2:] == ["-j", "ACCEPT"] for r in rules)
    assert rules[0][:2] == ["-i", "br-0123"] and rules[1][:2] == ["-o", "br-0123"]
    with pytest.raises(ValueError):
        dockeruser._rules("bad name;", "refengine")


def test_docker_user_finds_only_its_own_rules(monkeypatch) -> None:
    listing = "\n".join([
        "-N DOCKER-USER",
        "-A DOCKER-USER -i refengine0 -m comment --comment refengine -j ACCEPT",
        "-A DOCKER-USER -o refengine0 -m conntrack --ctstate RELATED,ESTABLISHED -m comment --comment refengine "
        "-j ACCEPT",
        "-A DOCKER-USER -i re1234abcd0 -m comment --comment refengine_1234abcd -j ACCEPT",
        "-A DOCKER-USER -i br-admin -j ACCEPT",
        "-A DOCKER-USER -j RETURN"])

    class Done:
        returncode, stdout, stderr = 0, listing, ""
    du = dockeruser.DockerUserAccept("refengine")
    monkeypatch.setattr(dockeruser.shutil, "which", lambda name: "/usr/sbin/iptables")
    monkeypatch.setattr(du, "_iptables", lambda *args: Done())
    assert du.ours() == ["refengine0"]


def test_private_bip_avoids_taken_subnets() -> None:
    taken = [ipaddress.IPv4Network("172.31.0.0/17")]
    bip = ipaddress.ip_interface(_private_bip("00000000", taken))
    assert bip.network.subnet_of(PRIVATE_POOL) and not bip.network.overlaps(taken[0])
    assert bip.ip == next(bip.network.hosts())
    with pytest.raises(RuntimeError):
        _private_bip("00000000", [PRIVATE_POOL])


def test_orphan_locks(tmp_path, monkeypatch) -> None:
    from refengine.drivers.network import orphans
    monkeypatch.setattr(orphans, "LOCK_DIR", str(tmp_path))
    assert orphans.lock_path("refengine").endswith("/refengine-network.lock")
    assert orphans.lock_path("refengine_0123abcd").endswith("/refengine-network-0123abcd.lock")
    assert orphans.try_lock("refengine_0123abcd", create=False) is None  # no lock file: never judged dead
    held = orphans.try_lock("refengine_0123abcd")
    assert held is not None
    assert orphans.try_lock("refengine_0123abcd", create=False) is None  # a live owner holds it
    orphans.release(held, "refengine_0123abcd")
    assert not (tmp_path / "refengine-network-0123abcd.lock").exists()
    assert [t for t in ("refengine", "refengine_0123abcd", "refengine_x", "refengine0") if orphans.TAG.match(t)] == [
        "refengine", "refengine_0123abcd"]
