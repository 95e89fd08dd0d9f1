"""Pure parts of the network driver: DNS messages, /etc files, nft rendering, names and options."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess

import pytest

from refengine.drivers.network import etcfiles
from refengine.drivers.network.dns import (
    RCODE_FORMERR,
    T_A,
    T_AAAA,
    DNSFormatError,
    EmbeddedDNS,
    Scope,
    encode_name,
    local_answer,
    parse_query,
)
from refengine.drivers.network.driver import BridgeConfig
from refengine.drivers.network.nat import NatTable, NetRules, render
from refengine.drivers.network.nsutil import netns_path
from refengine.drivers.network.veth import docker_mac, host_ifname
from refengine.engine.errors import InvalidParameter
from refengine.engine.networks import Network


def _query(name: str, qtype: int = T_A, qid: int = 7) -> bytes:
    return struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + encode_name(name) + struct.pack("!HH", qtype, 1)


def test_dns_parse_and_local_answer() -> None:
    q = parse_query(_query("Web.Example."))
    assert (q.id, q.name, q.qtype, q.rd) == (7, "Web.Example", T_A, 0x0100)
    scope = Scope(lookup=lambda n: ["10.230.1.2", "10.230.1.3"] if n == "web.example" else None)
    out = local_answer(q, scope)
    assert out is not None
    qid, flags, qd, an = struct.unpack("!HHHH", out[:8])
    assert (qid, qd, an) == (7, 1, 2) and flags & 0x8000 and flags & 0x0400 and flags & 0x0100
    assert out.endswith(bytes([10, 230, 1, 3]))
    assert local_answer(parse_query(_query("other")), scope) is None  # not ours: to be forwarded
    assert struct.unpack("!H", local_answer(parse_query(_query("web.example", T_AAAA)), scope)[6:8])[0] == 0


def test_dns_malformed_queries() -> None:
    for bad in (b"", b"\0" * 11, _query("x")[:-3], struct.pack("!HHHHHH", 1, 0x8000, 1, 0, 0, 0)):
        with pytest.raises(DNSFormatError):
            parse_query(bad)
    import asyncio

    reply = asyncio.run(EmbeddedDNS(upstreams=[]).resolve(_query("x")[:-3], Scope(lambda n: None), tcp=False))
    assert reply is not None and struct.unpack("!HH", reply[:4]) == (7, 0x8000 | 0x0100 | 0x0080 | RCODE_FORMERR)


HOST_RESOLV = """# generated
nameserver 127.0.0.53
nameserver 10.255.255.53
nameserver ::1
search corp.example
options edns0 trust-ad
"""


def test_resolv_conf_like_dockerd() -> None:
    assert etcfiles.resolv_conf(HOST_RESOLV, user_network=True) == (
        "search corp.example\nnameserver 127.0.0.11\noptions ndots:0 edns0 trust-ad\n")
    assert etcfiles.resolv_conf(HOST_RESOLV, user_network=False) == (
        "search corp.example\nnameserver 10.255.255.53\noptions edns0 trust-ad\n")
    only_loopback = "nameserver 127.0.0.53\n"
    assert etcfiles.resolv_conf(only_loopback, False) == "nameserver 8.8.8.8\nnameserver 8.8.4.4\n"
    assert etcfiles.resolv_conf(only_loopback, False, dns=["10.230.0.53"], dns_search=["a.b"],
                                dns_options=["ndots:2"]) == "search a.b\nnameserver 10.230.0.53\noptions ndots:2\n"
    assert etcfiles.resolv_conf("options ndots:3\n", True) == "nameserver 127.0.0.11\noptions ndots:3\n"
    assert etcfiles.host_nameservers(HOST_RESOLV) == ["127.0.0.53", "10.255.255.53", "::1"]


def test_hosts_and_hostname_files(tmp_path) -> None:  # noqa: ANN001
    text = etcfiles.hosts("abc123def456", ["10.230.1.2"], extra_hosts=["db:10.230.9.9", "v6:fd00::1"])
    assert text.startswith("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n")
    assert text.endswith("10.230.9.9\tdb\nfd00::1\tv6\n10.230.1.2\tabc123def456\n")
    assert etcfiles.hosts("h", ["10.0.0.2"], domainname="example").endswith("10.0.0.2\th.example\th\n")
    resolv = tmp_path / "host-resolv.conf"
    resolv.write_text(HOST_RESOLV)
    paths = etcfiles.write_container_files(str(tmp_path), "abc123def456", ["10.230.1.2"], user_network=True,
                                           host_resolv=str(resolv))
    assert open(paths["hostname"]).read() == "abc123def456\n"
    assert "nameserver 127.0.0.11" in open(paths["resolv.conf"]).read()
    assert oct(os.stat(paths["hosts"]).st_mode & 0o777) == "0o644"
    assert sorted(os.listdir(tmp_path)) == ["host-resolv.conf", "hostname", "hosts", "resolv.conf"]


def test_names_and_macs() -> None:
    assert docker_mac("172.17.0.2") == "02:42:ac:11:00:02"
    name = host_ifname("n" * 64, "c" * 64)
    assert name.startswith("veth") and len(name) == 11 and name == host_ifname("n" * 64, "c" * 64)
    assert netns_path(pid=42) == "/proc/42/ns/net"
    assert netns_path(path="ns1") == "/run/netns/ns1" and netns_path(path="/x/y") == "/x/y"
    with pytest.raises(ValueError):
        netns_path()


def _net(**kw) -> Network:  # noqa: ANN003
    base = dict(id="ab" * 32, name="n", driver="bridge", created="",
                subnets=[{"Subnet": "10.230.5.0/24", "Gateway": "10.230.5.1"}])
    base.update(kw)
    return Network(**base)


def test_bridge_config_from_network_options() -> None:
    cfg = BridgeConfig.of(_net())
    assert (cfg.bridge, cfg.gateway, cfg.prefixlen, cfg.mtu, cfg.masquerade, cfg.icc, cfg.user_defined) == (
        "br-" + "ab" * 6, "10.230.5.1", 24, 1500, True, True, True)
    cfg = BridgeConfig.of(_net(options={"com.docker.network.bridge.name": "refengine0",
                                        "com.docker.network.bridge.default_bridge": "true",
                                        "com.docker.network.driver.mtu": "1400",
                                        "com.docker.network.bridge.enable_ip_masquerade": "false",
                                        "com.docker.network.bridge.enable_icc": "false"}))
    assert (cfg.bridge, cfg.mtu, cfg.masquerade, cfg.icc, cfg.user_defined) == ("refengine0", 1400, False, False, False)
    for bad in ({"com.docker.network.bridge.name": 'x"; flush ruleset; "'},
                {"com.docker.network.driver.mtu": "big"}, {"com.docker.network.bridge.enable_icc": "maybe"}):
        with pytest.raises(InvalidParameter):
            BridgeConfig.of(_net(options=bad))
    with pytest.raises(InvalidParameter):
        BridgeConfig.of(_net(subnets=[]))


def test_nft_rendering_is_ours_only_and_valid() -> None:
    with pytest.raises(ValueError):
        NetRules('x" accept; #', ("10.0.0.0/24",))
    with pytest.raises(ValueError):
        NatTable("filter; flush ruleset")
    t = NatTable("refengine_unit")
    assert t.script() == ("table ip refengine_unit {}\ndelete table ip refengine_unit\n"
                          "table ip6 refengine_unit {}\ndelete table ip6 refengine_unit\n")
    t.nets = {"a": NetRules("br-a", ("10.230.1.0/24",)), "b": NetRules("br-b", ("10.230.2.0/24",), internal=True)}
    script = t.script()
    for line in script.splitlines():  # every statement names our table or sits inside its block
        if line.startswith(("table", "delete")):
            assert " refengine_unit" in line
    assert "policy drop" not in script  # our base chains never drop foreign traffic by policy
    body = render("refengine_unit", "ip", list(t.nets.values()))
    assert 'iifname "br-a" oifname != "br-a" oifname @bridges drop' in body
    assert 'ip saddr 10.230.1.0/24 oifname != "br-a" counter masquerade' in body
    assert "10.230.2.0/24" not in body  # internal: no masquerade
    if os.geteuid() == 0 and shutil.which("nft"):
        res = subprocess.run(["nft", "-c", "-f", "-"], input=script, capture_output=True, text=True)
        assert res.returncode == 0, res.stderr  # -c: checked by nft, nothing applied
