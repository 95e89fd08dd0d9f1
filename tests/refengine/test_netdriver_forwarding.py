"""Traffic through refengine's bridges: same-bridge, isolation between networks, masquerade to the outside.

Each test runs twice: in a sandbox netns playing the host (the driver's `host_netns`), where only refengine's
rules exist, and on the real host, where dockerd's `table ip filter` FORWARD chain (policy drop) also sees the
traffic. There the driver adds its own ACCEPT rules to dockerd's DOCKER-USER chain (dockeruser.py), as
refengined does; where that chain is missing but a foreign drop policy is present, the forwarded cases are
skipped with the reason (see nat.py's docstring).
"""

from __future__ import annotations

import ipaddress
import os
import subprocess
from collections.abc import Iterator

import pytest

from .test_netdriver_lab import DOCKERD_FORWARD_DROP, Lab, need_root

UDP_WHOAMI = """
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", 5353))
print("ready", flush=True)
while True:
    data, addr = s.recvfrom(2048)
    s.sendto(addr[0].encode(), addr)  # tell the sender which source address arrived here
"""


@pytest.fixture(params=["sandbox", "host"])
def lab(request: pytest.FixtureRequest) -> Iterator[Lab]:
    need_root()
    lab = Lab(sandbox=request.param == "sandbox")
    try:
        yield lab
    finally:
        lab.close()
    assert lab.leftovers() == []


def _container(lab: Lab, drv, net, host: int) -> tuple[str, str]:  # noqa: ANN001
    ns = lab.netns()
    sub = ipaddress.ip_network(net.subnets[0]["Subnet"])
    drv.join(net, {}, netns=ns, container_id=os.urandom(32).hex(), address=(str(sub[host]), 24, str(sub[1])))
    return ns, str(sub[host])


def _skip_if_dockerd_drops(lab: Lab) -> None:
    if lab.blocked_by_dockerd() and not any(d.docker_user.bridges for d in lab.drivers):
        pytest.skip(DOCKERD_FORWARD_DROP)


def test_ping_between_two_containers_on_one_bridge(lab: Lab) -> None:
    drv = lab.driver()
    net = lab.network()
    drv.create(net)
    a, _ = _container(lab, drv, net, 2)
    b, b_ip = _container(lab, drv, net, 3)
    ok = lab.ping(a, b_ip)
    if not ok:
        _skip_if_dockerd_drops(lab)  # br_netfilter sends same-bridge frames through dockerd's FORWARD drop
    assert ok


def test_icc_false_blocks_same_bridge(lab: Lab) -> None:
    drv = lab.driver()
    net = lab.network(options={"com.docker.network.bridge.enable_icc": "false"})
    drv.create(net)
    a, _ = _container(lab, drv, net, 2)
    b, b_ip = _container(lab, drv, net, 3)
    assert not lab.ping(a, b_ip)
    assert lab.ping(a, str(ipaddress.ip_network(net.subnets[0]["Subnet"])[1]))
    if lab.sandbox is None and not drv.docker_user.bridges:
        pytest.skip("no DOCKER-USER chain here: a foreign FORWARD drop may be what blocked it")  # the gateway (host) still answers


def test_isolation_between_user_networks(lab: Lab) -> None:
    drv = lab.driver()
    net_a, net_b = lab.network(), lab.network()
    drv.create(net_a)
    drv.create(net_b)
    if lab.blocked_by_dockerd() and not drv.docker_user.bridges:
        pytest.skip(DOCKERD_FORWARD_DROP)
    a, _ = _container(lab, drv, net_a, 2)
    _, b_ip = _container(lab, drv, net_b, 2)
    assert not lab.ping(a, b_ip)
    # the block is refengine's isolation rule, not a missing route: without our table the packets get through
    drv.nat.shutdown()
    try:
        assert lab.ping(a, b_ip)
    finally:
        drv.create(net_a)
        drv.create(net_b)
    assert not lab.ping(a, b_ip)


def test_masquerade_to_the_outside(lab: Lab) -> None:
    drv = lab.driver()
    net = lab.network()
    drv.create(net)
    outside = lab.netns("x")
    host_side, outside_ip = lab.link_outside(outside)
    lab.spawn(outside, UDP_WHOAMI)
    c, c_ip = _container(lab, drv, net, 2)
    res = lab.py(c, f"""
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(1)
for _ in range(3):
    s.sendto(b"?", ("{outside_ip}", 5353))
    try:
        print(s.recv(100).decode()); break
    except TimeoutError:
        pass
""", timeout=10)
    seen = res.stdout.strip()
    if not seen:
        _skip_if_dockerd_drops(lab)
    assert seen == host_side, f"outside saw {seen!r}; container is {c_ip}, host side {host_side}"
    if lab.sandbox:  # our masquerade rule did it
        out = subprocess.run(["nsenter", f"--net={lab.sandbox}", "nft", "list", "chain", "ip", lab.table,
                              "postrouting"], capture_output=True, text=True).stdout
        assert "masquerade" in out and "packets 0 " not in out.split("masquerade")[0].splitlines()[-1]


def test_internal_network_does_not_reach_the_outside(lab: Lab) -> None:
    drv = lab.driver()
    net = lab.network(internal=True)
    drv.create(net)
    outside = lab.netns("x")
    _, outside_ip = lab.link_outside(outside)
    c, _ = _container(lab, drv, net, 2)
    assert not lab.ping(c, outside_ip)


def test_a_foreign_forward_drop_policy_reproduced_in_the_sandbox() -> None:
    """The host's situation, rebuilt where the test owns everything: a dockerd-like `filter FORWARD` with policy
    drop in the sandbox netns. Our accept can't outvote it; same-bridge traffic dies too (br_netfilter); the
    driver's warnings name the chain; an accept in the foreign table's DOCKER-USER chain is what lets it pass."""
    need_root()
    lab = Lab(sandbox=True)
    try:
        drv = lab.driver()
        net = lab.network()
        drv.create(net)
        a, _ = _container(lab, drv, net, 2)
        b, b_ip = _container(lab, drv, net, 3)
        assert lab.ping(a, b_ip)
        assert drv.warnings() == []
        fake = f"dockerlike{lab.sfx}"
        nft = ["nsenter", f"--net={lab.sandbox}", "nft", "-f", "-"]
        subprocess.run(nft, check=True, text=True, input=f"""table ip {fake} {{
    chain DOCKER-USER {{ return; }}
    chain FORWARD {{ type filter hook forward priority filter; policy drop; jump DOCKER-USER; }}
}}
""")
        assert not lab.ping(a, b_ip)  # same bridge, yet dropped: br_netfilter hands it to every forward chain
        (warning,) = drv.warnings()
        assert f"table ip {fake} chain FORWARD" in warning and "container-to-container" in warning
        bridge = net.options["com.docker.network.bridge.name"]
        subprocess.run(nft, check=True, text=True,
                       input=f'insert rule ip {fake} DOCKER-USER iifname "{bridge}" oifname "{bridge}" accept\n')
        assert lab.ping(a, b_ip)
    finally:
        lab.close()
    assert lab.leftovers() == []
