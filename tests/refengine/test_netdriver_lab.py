"""A lab for the network driver's kernel tests: netns "containers", bridges, veths, helper processes.

Everything a lab makes carries its random suffix and is removed by `close()` (called from a fixture's
finally, so also after a failure); `leftovers()` lists what would have survived. Processes are killed by
the PIDs the lab started, nothing else. Addresses come from refengine's 10.230.0.0/16, picked at random
in its upper half and checked against the host's routes, so tests never touch dockerd's or anyone's nets.

`Lab(sandbox=True)` also makes a netns that plays the host: the driver keeps its bridges and nft table
there (`BridgeDriver(host_netns=...)`), out of reach of dockerd's FORWARD drop policy on this host.
"""

from __future__ import annotations

import ipaddress
import json
import os
import random
import secrets
import shutil
import subprocess
import sys
import time
from typing import Any

import pytest
from pyroute2 import IPRoute, netns

from refengine.drivers.network.driver import BridgeDriver
from refengine.drivers.network.nat import forward_blockers
from refengine.engine.networks import Network

DOCKERD_FORWARD_DROP = ("dockerd's FORWARD DROP policy on this host drops forwarded traffic of refengine's bridges "
                        "(table ip filter, chain FORWARD, policy drop; br_netfilter on); not changing dockerd's rules")


def need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces, links, nftables)")
    for tool in ("nft", "nsenter"):
        if shutil.which(tool) is None:
            pytest.skip(f"needs the {tool} binary")


class Lab:
    def __init__(self, sandbox: bool = False) -> None:
        self.sfx = secrets.token_hex(3)
        self.table = f"refengine_t{self.sfx}"
        self.namespaces: list[str] = []
        self.procs: list[subprocess.Popen[str]] = []
        self.host_links: list[str] = []  # links the lab itself made in the host's netns
        self.drivers: list[BridgeDriver] = []
        self.taken: set[int] = set()
        self.n = 0
        self.sandbox = self.netns("h") if sandbox else None
        if self.sandbox:
            self.lo_up(self.sandbox)  # the proxy listens on 127.0.0.1 there

    # -- names and addresses --

    def name(self, kind: str) -> str:
        self.n += 1
        return f"rt{kind}{self.sfx}{self.n}"  # <= 15 chars: rt + 1 + 6 + digits

    def subnet(self) -> ipaddress.IPv4Network:
        with IPRoute() as ipr:
            routes = [ipaddress.ip_network(f"{r.get('dst') or '0.0.0.0'}/{r['dst_len']}")
                      for r in ipr.get_routes(family=2, table=254) if r.get("dst")]
        for _ in range(200):
            x = random.randint(128, 254)
            sub = ipaddress.ip_network(f"10.230.{x}.0/24")
            if x not in self.taken and not any(sub.overlaps(r) for r in routes):
                self.taken.add(x)
                return sub
        raise RuntimeError("no free test subnet in 10.230.128.0/17")

    def network(self, sub: ipaddress.IPv4Network | None = None, internal: bool = False,
                options: dict[str, str] | None = None, bridge: str | None = None) -> Network:
        sub = sub or self.subnet()
        opts = {"com.docker.network.bridge.name": bridge or self.name("b"), **(options or {})}
        return Network(secrets.token_hex(32), f"net{self.sfx}{self.n}", "bridge", "",
                       subnets=[{"Subnet": str(sub), "Gateway": str(sub[1])}], internal=internal, options=opts)

    def driver(self, **kw: Any) -> BridgeDriver:
        # on the real host, as refengined does: accepts for our bridges in dockerd's DOCKER-USER (if it exists)
        kw.setdefault("docker_user", self.sandbox is None)
        d = BridgeDriver(table=self.table, host_netns=self.sandbox, **kw)
        self.drivers.append(d)
        return d

    # -- namespaces and processes --

    def netns(self, kind: str = "c") -> str:
        name = self.name(kind)
        netns.create(name)
        self.namespaces.append(name)
        return f"/run/netns/{name}"

    def lo_up(self, path: str) -> None:
        with IPRoute(netns=path, flags=0) as ipr:
            ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")

    def spawn(self, ns: str | None, code: str) -> subprocess.Popen[str]:
        """A Python helper in netns `ns` (a path) that prints one line when ready."""
        argv = [sys.executable, "-I", "-S", "-u", "-c", code]
        if ns:
            argv = ["nsenter", f"--net={ns}", "--", *argv]
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.procs.append(proc)
        line = proc.stdout.readline() if proc.stdout else ""
        if not line.startswith("ready"):
            raise RuntimeError(f"helper did not start: {line!r} {proc.stderr.read() if proc.stderr else ''}")
        return proc

    def run(self, ns: str | None, argv: list[str], timeout: float = 10) -> subprocess.CompletedProcess[str]:
        if ns:
            argv = ["nsenter", f"--net={ns}", "--", *argv]
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)

    def py(self, ns: str | None, code: str, timeout: float = 10) -> subprocess.CompletedProcess[str]:
        return self.run(ns, [sys.executable, "-I", "-S", "-c", code], timeout)

    def ping(self, ns: str, addr: str) -> bool:
        return self.run(ns, ["busybox", "ping", "-c1", "-W1", addr], timeout=5).returncode == 0

    def link_outside(self, outside_ns: str) -> tuple[str, str]:
        """A veth between the (sandbox or real) host and `outside_ns`: (host-side address, outside address)."""
        sub = self.subnet()
        host_if, peer = self.name("o"), self.name("p")
        with IPRoute(netns=self.sandbox, flags=0) if self.sandbox else IPRoute() as ipr:
            fd = os.open(outside_ns, os.O_RDONLY)
            try:
                ipr.link("add", ifname=host_if, kind="veth", peer={"ifname": peer, "net_ns_fd": fd})
            finally:
                os.close(fd)
            if not self.sandbox:
                self.host_links.append(host_if)
            i = ipr.link_lookup(ifname=host_if)[0]
            ipr.addr("add", index=i, address=str(sub[1]), prefixlen=24)
            ipr.link("set", index=i, state="up")
        with IPRoute(netns=outside_ns, flags=0) as ipr:
            i = ipr.link_lookup(ifname=peer)[0]
            ipr.addr("add", index=i, address=str(sub[2]), prefixlen=24)
            ipr.link("set", index=i, state="up")
            ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")
        return str(sub[1]), str(sub[2])

    def blocked_by_dockerd(self) -> bool:
        return self.sandbox is None and bool(forward_blockers(self.table))

    # -- teardown --

    def close(self) -> None:
        import asyncio

        for proc in self.procs:  # only the PIDs this lab started
            if proc.poll() is None:
                proc.kill()
            proc.wait(5)
            for f in (proc.stdout, proc.stderr):
                if f:
                    f.close()
        for d in self.drivers:
            try:
                asyncio.run(d.aclose())
            except Exception:
                d.shutdown()
        with IPRoute() as ipr:
            for link in ipr.get_links():
                name = link.get("ifname") or ""
                if self.sfx in name or name in self.host_links:
                    ipr.link("del", index=link["index"])
        for fam in ("ip", "ip6"):
            subprocess.run(["nft", "delete", "table", fam, self.table], capture_output=True)
        for name in reversed(self.namespaces):
            try:
                netns.remove(name)
            except OSError:
                pass

    def leftovers(self) -> list[str]:
        out = []
        with IPRoute() as ipr:
            out += [f"link {n}" for n in (link.get("ifname") or "" for link in ipr.get_links()) if self.sfx in n]
        out += [f"netns {n}" for n in netns.listnetns() if self.sfx in n]
        res = subprocess.run(["nft", "-j", "list", "tables"], capture_output=True, text=True)
        for item in json.loads(res.stdout or '{"nftables": []}')["nftables"]:
            if "table" in item and self.sfx in item["table"]["name"]:
                out.append(f"nft table {item['table']['family']} {item['table']['name']}")
        out += [f"process {p.pid}" for p in self.procs if p.poll() is None]
        res = subprocess.run(["iptables", "-w", "5", "-S", "DOCKER-USER"], capture_output=True, text=True)
        out += [f"iptables rule {line}" for line in res.stdout.splitlines() if self.table in line]
        return out


def wait_until(pred: Any, timeout: float = 5.0, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(step)
    return bool(pred())


def test_lab_cleans_up_after_itself() -> None:
    need_root()
    lab = Lab(sandbox=True)
    try:
        ns = lab.netns()
        lab.link_outside(ns)
        lab.spawn(ns, "import time; print('ready'); time.sleep(60)")
        assert lab.leftovers()
    finally:
        lab.close()
    assert lab.leftovers() == []
