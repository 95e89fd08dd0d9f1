"""Bridges and veth endpoints made by the network driver, checked over netlink (root; test-made netns only)."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
import subprocess
import tempfile
import time

import pytest
from pyroute2 import IPRoute

from refengine.drivers.network.driver import endpoint_settings, network_entry
from refengine.drivers.network.veth import docker_mac, host_ifname
from refengine.engine.errors import Forbidden, InvalidParameter
from refengine.engine.networks import NetworkStore

from .test_netdriver_lab import Lab


def _link(name: str, ns: str | None = None) -> dict | None:
    with IPRoute(netns=ns, flags=0) if ns else IPRoute() as ipr:
        found = ipr.link_lookup(ifname=name)
        if not found:
            return None
        link = ipr.get_links(found[0])[0]
        addrs = [(a.get("address"), a["prefixlen"]) for a in ipr.get_addr(index=found[0], family=2)]
        return {"kind": link.get(("linkinfo", "kind")), "mtu": link.get("mtu"), "alias": link.get("ifalias"),
                "up": bool(link["flags"] & 1), "mac": link.get("address"), "addrs": addrs,
                "master": link.get("master"), "index": found[0]}


def _table(lab: Lab) -> str:
    res = subprocess.run(["nft", "list", "table", "ip", lab.table], capture_output=True, text=True)
    return res.stdout if res.returncode == 0 else ""


def test_bridge_create_is_idempotent_and_delete_removes_it(lab: Lab) -> None:
    drv = lab.driver()
    net = lab.network(options={"com.docker.network.driver.mtu": "1450"})
    bridge = net.options["com.docker.network.bridge.name"]
    sub = ipaddress.ip_network(net.subnets[0]["Subnet"])
    drv.create(net)
    drv.create(net)  # again: same state, no error
    link = _link(bridge)
    assert link is not None
    assert link["kind"] == "bridge" and link["mtu"] == 1450 and link["up"]
    assert link["alias"] == f"refengine:{net.id[:12]}@{lab.table}"
    assert link["addrs"] == [(str(sub[1]), 24)]
    table = _table(lab)
    assert f"ip saddr {sub} oifname != \"{bridge}\"" in table and "masquerade" in table
    drv.delete(net)
    assert _link(bridge) is None
    assert _table(lab) == ""  # the last network gone: our table goes too
    drv.delete(net)  # idempotent


def test_default_bridge_name_and_internal_network(lab: Lab) -> None:
    drv = lab.driver()
    net = lab.network(internal=True)
    del net.options["com.docker.network.bridge.name"]
    name = "br-" + net.id[:12]
    lab.host_links.append(name)  # no lab suffix in this name: let close() know it
    drv.create(net)
    try:
        assert _link(name) is not None
        table = _table(lab)
        assert f'iifname "{name}" oifname != "{name}" drop' in table
        assert "masquerade" not in table  # internal networks don't get out
    finally:
        drv.delete(net)
    assert _link(name) is None


def test_existing_foreign_bridge_is_used_but_not_deleted(lab: Lab) -> None:
    drv = lab.driver()
    name = lab.name("b")
    with IPRoute() as ipr:
        ipr.link("add", ifname=name, kind="bridge")
    net = lab.network(bridge=name)
    drv.create(net)
    assert _link(name)["addrs"] == [(net.subnets[0]["Gateway"], 24)]
    drv.delete(net)
    link = _link(name)
    assert link is not None and link["addrs"] == []  # our address went, the admin's bridge stayed


def test_join_configures_the_container_netns(lab: Lab) -> None:
    drv = lab.driver()
    net = lab.network(options={"com.docker.network.driver.mtu": "1400"})
    drv.create(net)
    ns = lab.netns()
    sub = ipaddress.ip_network(net.subnets[0]["Subnet"])
    ip = str(sub[7])
    cid = os.urandom(32).hex()
    t0 = time.perf_counter()
    rec = drv.join(net, {"Aliases": ["web"]}, netns=ns, container_id=cid, address=(ip, 24, str(sub[1])))
    join_ms = (time.perf_counter() - t0) * 1000
    assert rec["IPAddress"] == ip and rec["IPPrefixLen"] == 24 and rec["Gateway"] == str(sub[1])
    assert rec["MacAddress"] == docker_mac(ip) == f"02:42:0a:e6:{sub[0].packed[2]:02x}:07"
    assert rec["NetworkID"] == net.id and len(rec["EndpointID"]) == 64 and rec["IPv4Address"] == f"{ip}/24"
    assert endpoint_settings(rec)["Aliases"] == ["web"]
    assert network_entry(rec, "/c1") == {"Name": "c1", "EndpointID": rec["EndpointID"], "MacAddress": rec["MacAddress"],
                                         "IPv4Address": f"{ip}/24", "IPv6Address": ""}
    eth0 = _link("eth0", ns)
    assert eth0 is not None and eth0["up"] and eth0["mtu"] == 1400 and eth0["mac"] == rec["MacAddress"]
    assert eth0["addrs"] == [(ip, 24)]
    assert _link("lo", ns)["up"]
    with IPRoute(netns=ns, flags=0) as ipr:
        (default,) = ipr.get_default_routes(family=2)
        assert default.get("gateway") == str(sub[1])
    host_end = _link(host_ifname(net.id, cid))
    assert host_end is not None and host_end["master"] == _link(net.options["com.docker.network.bridge.name"])["index"]
    assert host_end["mtu"] == 1400 and host_end["up"]
    # host -> container is local traffic (OUTPUT/INPUT), not forwarded: it works even beside dockerd
    assert lab.ping(ns, str(sub[1]))
    assert drv.leave(net, cid) is True
    assert _link(host_ifname(net.id, cid)) is None and _link("eth0", ns) is None
    assert drv.leave(net, cid) is False
    drv.delete(net)
    print(f"join took {join_ms:.1f} ms")


def test_join_by_pid_and_second_network_is_eth1(lab: Lab) -> None:
    drv = lab.driver()
    net1, net2 = lab.network(), lab.network()
    drv.create(net1)
    drv.create(net2)
    ns = lab.netns()
    proc = lab.spawn(ns, "import time; print('ready'); time.sleep(60)")
    cid = os.urandom(32).hex()
    s1, s2 = (ipaddress.ip_network(n.subnets[0]["Subnet"]) for n in (net1, net2))
    drv.join(net1, {}, proc.pid, container_id=cid, address=(str(s1[2]), 24, str(s1[1])))
    rec = drv.join(net2, {"MacAddress": "02:00:00:00:00:99"}, proc.pid, container_id=cid,
                   address=(str(s2[2]), 24, str(s2[1])))
    assert rec["MacAddress"] == "02:00:00:00:00:99"
    assert _link("eth1", ns)["addrs"] == [(str(s2[2]), 24)]
    with IPRoute(netns=ns, flags=0) as ipr:
        gws = [r.get("gateway") for r in ipr.get_default_routes(family=2)]
    assert gws == [str(s1[1])]  # the first network keeps the default route
    for n in (net1, net2):
        drv.leave(n, cid)
        drv.delete(n)


def test_netns_gone_before_leave(lab: Lab) -> None:
    drv = lab.driver()
    net = lab.network()
    drv.create(net)
    ns = lab.netns()
    sub = ipaddress.ip_network(net.subnets[0]["Subnet"])
    drv.join(net, {}, netns=ns, container_id="c" * 64, address=(str(sub[3]), 24, str(sub[1])))
    from pyroute2 import netns as pnetns

    name = os.path.basename(ns)
    pnetns.remove(name)
    lab.namespaces.remove(name)
    # the netns dies with its last reference and takes the veth pair along; leave copes either way
    from .test_netdriver_lab import wait_until

    assert wait_until(lambda: _link(host_ifname(net.id, "c" * 64)) is None or drv.leave(net, "c" * 64) is True)
    drv.delete(net)


def test_missing_netns_fails_cleanly(lab: Lab) -> None:
    drv = lab.driver()
    net = lab.network()
    drv.create(net)
    sub = ipaddress.ip_network(net.subnets[0]["Subnet"])
    with pytest.raises(FileNotFoundError):
        drv.join(net, {}, netns=f"/run/netns/rtnone{lab.sfx}", container_id="d" * 64,
                 address=(str(sub[3]), 24, str(sub[1])))
    assert not os.path.exists(f"/run/netns/rtnone{lab.sfx}")  # never created by accident
    assert _link(host_ifname(net.id, "d" * 64)) is None
    drv.delete(net)


def test_host_and_none_networks_need_nothing(lab: Lab) -> None:
    drv = lab.driver()
    for driver in ("host", "null"):
        net = lab.network()
        net.driver = driver
        drv.create(net)
        rec = drv.join(net, {}, container_id="e" * 64)
        assert rec["IPAddress"] == "" and rec["NetworkID"] == net.id
        drv.delete(net)
    assert _table(lab) == ""


def test_network_store_drives_the_kernel_from_the_event_loop(lab: Lab) -> None:
    """NetworkStore calls the driver synchronously from a job handler on the event loop: that must work."""
    drv = lab.driver()
    ns = lab.netns()
    sub = lab.subnet()
    bridge = lab.name("b")

    # pyroute2's sync API can't run on the loop's thread, so the checks below go through the driver's worker too
    async def main() -> None:
        with tempfile.TemporaryDirectory() as root:
            store = NetworkStore(root, driver=drv)
            drv.ipam = store.allocate_ip
            net = store.create({"Name": f"n{lab.sfx}", "IPAM": {"Config": [{"Subnet": str(sub)}]},
                                "Options": {"com.docker.network.bridge.name": bridge}})
            assert drv.worker.call(_link, bridge) is not None
            rec = drv.join(net, {"IPAMConfig": {"IPv4Address": str(sub[9])}}, netns=ns, container_id="f" * 64)
            assert rec["IPAddress"] == str(sub[9])
            net.endpoints["f" * 64] = network_entry(rec, "c")
            rec2 = await drv.ajoin(net, {}, netns=lab.netns(), container_id="a" * 64)
            assert rec2["IPAddress"] == str(sub[2])  # IPAM skipped the gateway (.1) and saw .9 taken
            net.endpoints["a" * 64] = network_entry(rec2, "c2")
            with pytest.raises(Forbidden):
                store.remove(net.id)
            for cid in ("f" * 64, "a" * 64):
                assert await drv.aleave(net, cid)
                del net.endpoints[cid]
            store.remove(net.id)
            assert drv.worker.call(_link, bridge) is None

    asyncio.run(main())


def test_shutdown_removes_only_our_table(lab: Lab) -> None:
    drv = lab.driver()
    net = lab.network()
    drv.create(net)
    assert _table(lab)
    before = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout.splitlines()
    asyncio.run(drv.aclose())
    after = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout.splitlines()
    assert set(before) - set(after) == {f"table ip {lab.table}"}  # dockerd's (and anyone's) tables untouched
    bridge = net.options["com.docker.network.bridge.name"]
    assert _link(bridge) is not None  # bridges outlive the daemon, as dockerd's do; create() restores rules
    drv2 = lab.driver()
    drv2.create(net)
    assert _table(lab)
    drv2.delete(net)


def test_namespace_helpers(lab: Lab) -> None:
    from refengine.drivers.network.nsutil import NetnsError, read_sysctl, socket_in_netns, write_sysctl

    ns = lab.netns()
    # IPv4 devconf of a new netns is inherited from the host's (devconf_inherit_init_net=0): 1 here
    assert read_sysctl("net.ipv4.ip_forward", ns) == read_sysctl("net.ipv4.ip_forward") == "1"
    write_sysctl("net.ipv4.ip_forward", "0", ns)
    assert read_sysctl("net.ipv4.ip_forward", ns) == "0"
    assert read_sysctl("net.ipv4.ip_forward") == "1"  # the write stayed in the test's netns
    assert read_sysctl("net.ipv4.no_such_key", ns) is None
    lab.lo_up(ns)
    s = socket_in_netns(ns, socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.bind(("127.0.0.11", 0))  # 127.0.0.11 is local in *that* netns's lo
        with IPRoute(netns=ns, flags=0) as ipr:
            assert ipr.link_lookup(ifname="lo")
    finally:
        s.close()
    with pytest.raises(FileNotFoundError):
        socket_in_netns(f"/run/netns/rtmissing{lab.sfx}")
    with pytest.raises(NetnsError, match="setns"):
        socket_in_netns("/proc/self/ns/uts")  # not a network namespace: setns fails in the child, reported here


def test_refuses_to_configure_the_hosts_own_netns(lab: Lab) -> None:
    drv = lab.driver()
    net = lab.network()
    drv.create(net)
    sub = ipaddress.ip_network(net.subnets[0]["Subnet"])
    with IPRoute() as ipr:
        before = sorted(link.get("ifname") for link in ipr.get_links())
    for kw in ({"pid": os.getpid()}, {"netns": "/proc/self/ns/net"}):
        with pytest.raises(InvalidParameter, match="host's"):
            drv.join(net, {}, container_id="b" * 64, address=(str(sub[4]), 24, str(sub[1])), **kw)
    with IPRoute() as ipr:
        assert sorted(link.get("ifname") for link in ipr.get_links()) == before
    drv.delete(net)
