"""refengined with its bridge driver: kernel objects made at start, per network and per container, and all of
refengine's removed again at shutdown (bridges, nft table, DOCKER-USER rules). Root only; every daemon here is
started by the test (own socket and state) and stopped by its PID. Traffic: none beyond loopback."""

from __future__ import annotations

import ipaddress
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from conformance.probe_image import build_probe_tar

from .daemons import start_refengined, stop

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("nft") is None,
                                reason="the bridge driver needs root and the nft binary")


@dataclass
class Daemon:
    proc: subprocess.Popen[bytes]
    root: str
    sock: str
    client: object  # docker.DockerClient

    @property
    def log(self) -> str:
        with open(os.path.join(self.root, "daemon.log")) as fh:
            return fh.read()

    def stop(self) -> None:
        stop(self.proc, 30)


def _start(*extra: str, root: str | None = None) -> Daemon:
    import docker
    root = root or tempfile.mkdtemp(prefix="refengine-netd-")
    sock, proc = start_refengined(root, *extra, sock_name="d.sock", timeout=30)
    try:
        client = docker.DockerClient(base_url=f"unix://{sock}", version="1.41", timeout=60)
    except BaseException:
        stop(proc)  # never leave a daemon (or its bridges) behind
        raise
    return Daemon(proc, root, sock, client)


@pytest.fixture
def daemons() -> Iterator[Callable[..., Daemon]]:
    started: list[Daemon] = []

    def start(*extra: str, root: str | None = None) -> Daemon:
        started.append(_start(*extra, root=root))
        return started[-1]
    yield start
    for d in reversed(started):
        if d.proc.poll() is None:
            for c in d.client.containers.list(all=True):  # containers outlive a plain daemon stop
                c.remove(force=True)
        d.stop()
    for root in {d.root for d in started}:
        shutil.rmtree(root, ignore_errors=True)


def _links() -> set[str]:
    return set(os.listdir("/sys/class/net"))


def _addresses(ifname: str) -> list[str]:
    out = subprocess.run(["ip", "-o", "-4", "addr", "show", "dev", ifname], capture_output=True, text=True).stdout
    return [line.split()[3] for line in out.splitlines()]


def _nft_tables() -> set[str]:
    out = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    return {line.split()[-1] for line in out.splitlines() if line.startswith("table")}


def _docker_user() -> str | None:
    if shutil.which("iptables") is None:
        return None
    res = subprocess.run(["iptables", "-w", "5", "-S", "DOCKER-USER"], capture_output=True, text=True)
    return res.stdout if res.returncode == 0 else None


def _bridge(d: Daemon, name: str = "bridge") -> tuple[str, dict]:
    attrs = d.client.networks.get(name).attrs
    return attrs["Options"].get("com.docker.network.bridge.name") or f"br-{attrs['Id'][:12]}", attrs


def _image(d: Daemon) -> str:
    names, data = build_probe_tar("netd" + uuid.uuid4().hex[:8])
    import requests_unixsocket
    url = "http+unix://" + d.sock.replace("/", "%2F") + "/v1.41/images/load"
    resp = requests_unixsocket.Session().post(url, data=data, timeout=120)
    assert resp.status_code == 200, resp.text[:300]
    return names.base


def test_default_bridge_made_at_start_and_removed_at_shutdown(daemons) -> None:
    d = daemons()
    name, attrs = _bridge(d)
    gateway = attrs["IPAM"]["Config"][0]["Gateway"]
    prefix = ipaddress.ip_network(attrs["IPAM"]["Config"][0]["Subnet"]).prefixlen
    assert name in _links(), f"the default bridge {name} was not created at daemon start"
    assert f"{gateway}/{prefix}" in _addresses(name), f"{name} lacks the gateway {gateway}/{prefix}"
    table = "refengine" if name == "refengine0" else f"refengine_{name[2:10]}"
    assert table in _nft_tables(), f"nft table {table} missing for the bridge {name}"
    rules = _docker_user()
    if rules is not None:
        assert f"-i {name} " in rules and table in rules, f"no DOCKER-USER accept for {name}:\n{rules}"
    d.stop()
    assert name not in _links(), f"the bridge {name} survived the daemon's shutdown"
    assert table not in _nft_tables(), f"nft table {table} survived the daemon's shutdown"
    rules = _docker_user()
    assert rules is None or name not in rules, f"DOCKER-USER still has rules for {name}:\n{rules}"


def test_two_daemons_do_not_share_bridges(daemons) -> None:
    first, second = daemons(), daemons()
    (b1, a1), (b2, a2) = _bridge(first), _bridge(second)
    assert b1 != b2, f"two refengineds use the same default bridge {b1}"
    n1, n2 = (ipaddress.ip_network(a["IPAM"]["Config"][0]["Subnet"]) for a in (a1, a2))
    assert not n1.overlaps(n2), f"the default bridges' subnets overlap: {n1} and {n2}"
    second.stop()
    assert b2 not in _links() and b1 in _links(), "stopping one daemon must remove its bridge and only its"


def test_no_docker_user_option(daemons) -> None:
    if _docker_user() is None:
        pytest.skip("no DOCKER-USER chain on this host (dockerd is not running)")
    d = daemons("--no-docker-user")
    name, _ = _bridge(d)
    assert name not in (_docker_user() or ""), "--no-docker-user still added DOCKER-USER rules"


def test_user_network_container_lifecycle(daemons) -> None:
    d = daemons()
    image = _image(d)
    net = d.client.networks.create("netd-" + uuid.uuid4().hex[:6], driver="bridge")
    bridge, _ = _bridge(d, net.id)
    assert bridge in _links(), f"creating a network made no bridge {bridge}"
    c = d.client.containers.run(image, ["sleep", "60"], detach=True, network=net.name, ports={"80/tcp": None})
    try:
        c.reload()
        ep = c.attrs["NetworkSettings"]["Networks"][net.name]
        assert ipaddress.ip_address(ep["IPAddress"]) in ipaddress.ip_network(net.attrs["IPAM"]["Config"][0]["Subnet"])
        binding = c.attrs["NetworkSettings"]["Ports"]["80/tcp"]
        assert binding and int(binding[0]["HostPort"]) > 0, f"no random host port reported: {binding}"
        net.reload()
        assert c.id in net.attrs["Containers"], "the network does not list its running container"
        with pytest.raises(Exception, match="active endpoints"):
            net.remove()
        host_ends = [n for n in _links() if n.startswith("veth") and
                     os.path.exists(f"/sys/class/net/{n}/master") and
                     os.path.basename(os.readlink(f"/sys/class/net/{n}/master")) == bridge]
        assert len(host_ends) == 1, f"expected one veth on {bridge}, found {host_ends}"
        c.stop(timeout=1)
        c.reload()
        assert not c.attrs["NetworkSettings"]["Networks"][net.name]["IPAddress"]
        net.reload()
        assert not net.attrs["Containers"], f"a stopped container still holds an endpoint: {net.attrs['Containers']}"
        assert host_ends[0] not in _links(), f"the veth {host_ends[0]} survived the container"
        seen = [(e["Action"], e["Actor"]["Attributes"].get("container")) for e in d.client.events(
            since=0, until=int(time.time()) + 1, decode=True, filters={"type": "network", "network": net.id})]
        assert ("connect", c.id) in seen and ("disconnect", c.id) in seen, f"network events: {seen}"
    finally:
        c.remove(force=True)
    net.remove()
    assert bridge not in _links(), f"removing the network left its bridge {bridge}"


def _served(port: int, expect: bytes, timeout: float = 10) -> bytes:
    import socket
    deadline, got = time.monotonic() + timeout, b""
    while time.monotonic() < deadline and expect not in got:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                got = s.recv(100)
        except OSError as exc:
            got = str(exc).encode()
        time.sleep(0.1)
    return got


def test_network_of_surviving_containers_kept_and_readopted(daemons) -> None:
    d = daemons()
    image = _image(d)
    net = d.client.networks.create("netd-" + uuid.uuid4().hex[:6], driver="bridge")
    bridge, _ = _bridge(d, net.id)
    default_bridge, _ = _bridge(d)
    srv = d.client.containers.run(image, ["nc", "-ll", "-p", "80", "-e", "echo", "hello-netd"], detach=True,
                                  name="srv-" + uuid.uuid4().hex[:6], network=net.name, ports={"80/tcp": None})
    cli = d.client.containers.run(image, ["sleep", "300"], detach=True, network=net.name, dns=["127.0.0.1"])
    srv.reload()
    port = int(srv.attrs["NetworkSettings"]["Ports"]["80/tcp"][0]["HostPort"])
    assert b"hello-netd" in _served(port, b"hello-netd")
    d.stop()  # the containers keep running under their monitors
    assert bridge in _links(), "the bridge of a network with running containers was removed at shutdown"
    assert default_bridge not in _links(), "the unused default bridge survived the shutdown"
    again = daemons(root=d.root)
    assert b"hello-netd" in _served(port, b"hello-netd"), "the published port is not served after the restart"
    res = again.client.containers.get(cli.id).exec_run(["nslookup", srv.name])
    assert srv.attrs["NetworkSettings"]["Networks"][net.name]["IPAddress"] in res.output.decode(), res.output
    for c in again.client.containers.list(all=True):
        c.remove(force=True)
    again.client.networks.get(net.id).remove()
    again.stop()
    assert bridge not in _links() and default_bridge not in _links(), "bridges left after the last shutdown"


def test_internal_network_keeps_same_bridge_traffic(daemons) -> None:
    # where dockerd's FORWARD DROP and br_netfilter see our bridges, this needs our DOCKER-USER accept too
    d = daemons()
    image = _image(d)
    net = d.client.networks.create("netd-" + uuid.uuid4().hex[:6], driver="bridge", internal=True)
    a = d.client.containers.run(image, ["sleep", "120"], detach=True, network=net.name)
    b = d.client.containers.run(image, ["sleep", "120"], detach=True, network=net.name)
    b.reload()
    ip = b.attrs["NetworkSettings"]["Networks"][net.name]["IPAddress"]
    res = a.exec_run(["sh", "-c", f"ping -c1 -W1 {ip} || ping -c1 -W1 {ip}"])
    assert res.exit_code == 0, f"two containers on one internal network could not ping: {res.output!r}"
    routes = a.exec_run(["ip", "route"]).output.decode()
    assert "default" not in routes, f"a container on an internal network has a default route: {routes}"


def test_leftovers_of_a_killed_daemon_removed_by_the_next(daemons) -> None:
    daemons()  # holds the standard names if nobody else does: the victim below gets private ones
    victim = daemons()
    net = victim.client.networks.create("netd-" + uuid.uuid4().hex[:6], driver="bridge")
    bridges = [_bridge(victim)[0], _bridge(victim, net.id)[0]]
    table = "refengine_" + bridges[0][2:10]
    assert bridges[0] != "refengine0" and all(b in _links() for b in bridges)
    victim.proc.kill()  # no shutdown: everything stays behind
    victim.proc.wait()
    assert all(b in _links() for b in bridges) and table in _nft_tables()
    daemons()
    left = [b for b in bridges if b in _links()] + [t for t in (table,) if t in _nft_tables()]
    rules = _docker_user()
    assert not left and (rules is None or table not in rules), (
        f"the next daemon did not remove what the killed one left: {left}\n{rules}")
