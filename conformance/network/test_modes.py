"""Network modes: `none` (loopback only), `host` (the host's own network namespace) and
`container:<id>` (another container's namespace). No traffic is sent."""

from __future__ import annotations

import os

import pytest

from conformance.host import Host
from conformance.network.conftest import NetInfo, parse_addrs, parse_links, sh, snapshot
from conformance.resources import Containers

LINKS = "ip -o link"


@pytest.mark.req("network.mode.none-only-lo")
def test_none_has_only_loopback(containers: Containers) -> None:
    res = sh(containers, "ip -o link; echo '## addr'; ip -o addr", HostConfig={"NetworkMode": "none"})
    assert res.exit_code == 0, f"listing links failed: {res.describe()}"
    links_part, _, addr_part = res.stdout.partition("## addr")
    links = sorted(parse_links(links_part.splitlines()))
    assert links == ["lo"], f"a container with NetworkMode none has links {links}; docker gives it only lo"
    addrs = parse_addrs(addr_part.splitlines())
    assert sorted(addrs) in (["lo"], []), f"NetworkMode none: addresses outside lo: {addrs}"


@pytest.mark.req("network.mode.none-inspect")
def test_none_inspect(containers: Containers) -> None:
    cid = containers.run_long(HostConfig={"NetworkMode": "none"})
    ins = containers.inspect(cid)
    nets = ins["NetworkSettings"].get("Networks") or {}
    assert sorted(nets) == ["none"], f"NetworkSettings.Networks of a NetworkMode none container is {sorted(nets)}"
    ep = nets["none"]
    assert not ep.get("IPAddress") and not ep.get("Gateway") and not ep.get("MacAddress"), (
        f"the none endpoint reports IPAddress {ep.get('IPAddress')!r}, Gateway {ep.get('Gateway')!r}, "
        f"MacAddress {ep.get('MacAddress')!r}; a container without a network has none of them")
    assert ins["HostConfig"]["NetworkMode"] == "none", f"HostConfig.NetworkMode is {ins['HostConfig']['NetworkMode']!r}"


@pytest.mark.req("network.mode.loopback")
@pytest.mark.parametrize("mode", ["default-bridge", "user-network", "none"])
def test_loopback_up(containers: Containers, usernet, mode: str) -> None:
    cfg = ({"HostConfig": {"NetworkMode": "none"}} if mode == "none" else
           usernet().endpoint() if mode == "user-network" else {})
    res = sh(containers, "ip -o link show lo; echo '## addr'; ip -o addr show lo", **cfg)
    links_part, _, addr_part = res.stdout.partition("## addr")
    lo = parse_links(links_part.splitlines()).get("lo", {})
    assert "UP" in lo.get("flags", "").split(","), f"lo is not up in a {mode} container: {res.describe()}"
    addrs = [str(a) for a in parse_addrs(addr_part.splitlines()).get("lo", [])]
    assert "127.0.0.1/8" in addrs, f"lo has addresses {addrs} in a {mode} container; 127.0.0.1/8 is expected"


@pytest.mark.req("network.mode.host-netns")
def test_host_mode_shares_host_netns(containers: Containers, hostside: Host) -> None:
    cid = containers.run_long(HostConfig={"NetworkMode": "host"})
    pid = containers.inspect(cid)["State"]["Pid"]
    inside, here = hostside.ns(pid, "net"), hostside.ns("self", "net")
    assert inside == here, (f"the NetworkMode host container's process is in {inside}, the host in {here}: "
                            "host mode must not create a network namespace")


@pytest.mark.req("network.mode.host-interfaces")
def test_host_mode_sees_host_interfaces(containers: Containers, hostside: Host) -> None:
    cid = containers.run_long(HostConfig={"NetworkMode": "host"})
    # Other containers come and go on a shared host: read the host's list before and after the container's,
    # and try again when a link appeared and vanished in between.
    for _attempt in range(4):
        before = set(os.listdir("/sys/class/net"))
        res = containers.exec(cid, ["sh", "-c", LINKS])
        after = set(os.listdir("/sys/class/net"))
        assert res.exit_code == 0, f"`ip -o link` failed: {res.describe()}"
        inside = set(parse_links(res.stdout.splitlines()))
        missing, extra = (before & after) - inside, inside - (before | after)
        if not missing and not extra:
            break
    assert not missing and not extra, (
        f"a NetworkMode host container lists links {sorted(inside)}; the host has {sorted(before)}: the container "
        f"lacks {sorted(missing)} and has {sorted(extra)} the host has not. Host mode shares the host's network "
        "namespace, so the lists must be equal")


@pytest.mark.req("network.mode.container-shares-address")
def test_container_mode_same_address(containers: Containers, usernet) -> None:
    net: NetInfo = usernet()
    first = containers.run_long(**net.endpoint())
    first_view = snapshot(containers, first, net)
    second = containers.run_long(HostConfig={"NetworkMode": f"container:{first}"})
    second_view = snapshot(containers, second, net)
    assert first_view.v4("eth0"), f"the first container has no eth0 address: {first_view.raw[-400:]!r}"
    assert second_view.addrs == first_view.addrs, (
        f"a NetworkMode container:<id> container shows addresses {second_view.addrs}; the container whose "
        f"namespace it joined shows {first_view.addrs}: they share one network namespace")
    assert second_view.eth0.get("mac") == first_view.eth0.get("mac"), (
        f"eth0 MAC {second_view.eth0.get('mac')} differs from the joined container's {first_view.eth0.get('mac')}")


@pytest.mark.req("network.mode.container-netns")
def test_container_mode_same_netns(containers: Containers, hostside: Host) -> None:
    first = containers.run_long()
    second = containers.run_long(HostConfig={"NetworkMode": f"container:{first}"})
    pids = [containers.inspect(c)["State"]["Pid"] for c in (first, second)]
    spaces = [hostside.ns(p, "net") for p in pids]
    assert spaces[0] == spaces[1], (
        f"the container:<id> container is in {spaces[1]}, the container it names in {spaces[0]}: they must share it")
    assert spaces[0] != hostside.ns("self", "net"), (
        f"the first container runs in the host's network namespace {spaces[0]}")
