"""The "outside world" for egress and NAT checks: a network namespace this run creates, never a real network.

`Outside` makes a network namespace named after the run (and xdist worker), a veth pair with one
end in it, and a /30 from the 198.18.0.0/15 benchmarking range (RFC 2544) that no host route or
address overlaps. A TCP listener runs in the namespace and answers every connection with the
source address it saw, so a check can tell whether the container's traffic was masqueraded.
Helpers that act inside the namespace are freshly exec'd interpreters that `setns` before they
open a socket (setns only moves the calling thread, so it is done in a new single-threaded process).

Everything is removed afterwards, also when setting up fails halfway: the listener (killed by its
PID), the veth pair and the namespace. Host-side only: a remote daemon's containers cannot reach it.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import select
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

BENCHMARK = ipaddress.IPv4Network("198.18.0.0/15")
LISTEN_PORT = 7100
NETNS_DIR = "/var/run/netns"

# Runs as `python -I -S -c HELPER <netns> <mode> ...`: enter the namespace, then act there.
HELPER = r"""
import ctypes, json, os, socket, sys
ns, mode = sys.argv[1], sys.argv[2]
fd = os.open("/var/run/netns/" + ns, os.O_RDONLY)
if ctypes.CDLL(None, use_errno=True).setns(fd, 0x40000000) != 0:  # CLONE_NEWNET
    sys.exit("setns into %s failed: %s" % (ns, os.strerror(ctypes.get_errno())))
os.close(fd)
if mode == "listen":
    addr, port = sys.argv[3], int(sys.argv[4])
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((addr, port))
    srv.listen(16)
    print("ready", flush=True)
    while True:
        conn, peer = srv.accept()
        print("peer " + peer[0], flush=True)
        try:
            conn.sendall(("peer %s\n" % peer[0]).encode())
        except OSError:
            pass
        conn.close()
elif mode == "connect":
    addr, port, timeout = sys.argv[3], int(sys.argv[4]), float(sys.argv[5])
    out = {"ok": False, "data": "", "error": ""}
    try:
        with socket.create_connection((addr, port), timeout=timeout) as s:
            out["ok"] = True
            chunks = []
            while True:
                b = s.recv(4096)
                if not b:
                    break
                chunks.append(b)
            out["data"] = b"".join(chunks).decode(errors="replace")
    except OSError as exc:
        out["error"] = "%s: %s" % (type(exc).__name__, exc)
    print(json.dumps(out), flush=True)
"""


class OutsideUnavailable(Exception):
    """Why the outside namespace could not be made here (the skip reason)."""


def _taken_networks() -> list[ipaddress.IPv4Network]:
    """Every IPv4 destination the host routes (any table) and every subnet its interfaces hold."""
    from pyroute2 import IPRoute
    taken = []
    with IPRoute() as ipr:
        for route in ipr.get_routes(family=socket.AF_INET, table=0):
            plen = route["dst_len"]
            dst = route.get("dst") or "0.0.0.0"
            if plen == 0:
                continue  # a default route overlaps everything and is no collision
            taken.append(ipaddress.IPv4Network(f"{dst}/{plen}", strict=False))
        for addr in ipr.get_addr(family=socket.AF_INET):
            taken.append(ipaddress.IPv4Network(f"{addr.get('address')}/{addr['prefixlen']}", strict=False))
    return taken


def pick_subnet(seed: str, taken: list[ipaddress.IPv4Network] | None = None) -> ipaddress.IPv4Network:
    """A /30 of 198.18.0.0/15 that no host route or address overlaps, chosen from `seed`."""
    taken = _taken_networks() if taken is None else taken
    if any(t.overlaps(BENCHMARK) and t.prefixlen <= BENCHMARK.prefixlen for t in taken):
        raise OutsideUnavailable(f"the host routes all of {BENCHMARK}; no range is free for the outside namespace")
    start = int.from_bytes(hashlib.sha256(seed.encode()).digest()[:4], "big") % (BENCHMARK.num_addresses // 4)
    for i in range(256):
        base = BENCHMARK.network_address + ((start + i * 97) % (BENCHMARK.num_addresses // 4)) * 4
        cand = ipaddress.IPv4Network(f"{base}/30")
        if not any(cand.overlaps(t) for t in taken):
            return cand
    raise OutsideUnavailable(f"found no free /30 in {BENCHMARK} after 256 tries")


class Outside:
    """A network namespace with a veth link to the host and a TCP listener that reports the peer address."""

    def __init__(self, tag: str) -> None:
        digest = hashlib.sha256(tag.encode()).hexdigest()[:8]
        self.netns = f"conf-{tag}-outside"
        self.host_if = f"cfo{digest}h"   # IFNAMSIZ: at most 15 characters
        self.ns_if = f"cfo{digest}n"
        self.subnet = pick_subnet(tag)
        hosts = list(self.subnet.hosts())
        self.host_addr, self.ns_addr = str(hosts[0]), str(hosts[1])
        self.port = LISTEN_PORT
        self.listener: subprocess.Popen[str] | None = None
        self._peers: list[str] = []
        self._buffer = ""

    # --- set up and tear down ------------------------------------------------------------------
    def start(self) -> None:
        from pyroute2 import IPRoute, NetNS, netns
        if self.netns in netns.listnetns():
            raise OutsideUnavailable(f"a network namespace {self.netns} already exists; not touching it")
        netns.create(self.netns)
        with IPRoute() as ipr:
            ipr.link("add", ifname=self.host_if, kind="veth", peer={"ifname": self.ns_if, "net_ns_fd": self.netns})
            idx = ipr.link_lookup(ifname=self.host_if)[0]
            ipr.addr("add", index=idx, address=self.host_addr, prefixlen=30)
            ipr.link("set", index=idx, state="up")
        with NetNS(self.netns) as ns:
            for ifname, addr in (("lo", None), (self.ns_if, self.ns_addr)):
                i = ns.link_lookup(ifname=ifname)[0]
                if addr:
                    ns.addr("add", index=i, address=addr, prefixlen=30)
                ns.link("set", index=i, state="up")
        self.listener = subprocess.Popen(
            self._helper("listen", self.ns_addr, str(self.port)), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True)
        fd = self.listener.stdout.fileno()  # type: ignore[union-attr]
        deadline = time.monotonic() + 10
        while "ready\n" not in self._buffer and time.monotonic() < deadline:
            if select.select([fd], [], [], 0.1)[0]:
                chunk = os.read(fd, 4096)
                if not chunk:
                    break
                self._buffer += chunk.decode(errors="replace")
        if "ready\n" not in self._buffer:
            err = self.listener.stderr.read() if self.listener.poll() is not None else ""  # type: ignore[union-attr]
            raise OutsideUnavailable(f"the listener in {self.netns} did not come up: {self._buffer!r} {err[-300:]!r}")
        self._buffer = self._buffer.split("ready\n", 1)[1]

    def stop(self) -> list[str]:
        """Remove everything; returns what could not be removed (empty when all went)."""
        problems = []
        if self.listener is not None:
            try:
                self.listener.kill()
                self.listener.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired) as exc:
                problems.append(f"listener pid {self.listener.pid}: {exc}")
        try:
            from pyroute2 import IPRoute, netns
            with IPRoute() as ipr:
                for idx in ipr.link_lookup(ifname=self.host_if):
                    ipr.link("del", index=idx)  # takes the peer in the namespace with it
            if self.netns in netns.listnetns():
                netns.remove(self.netns)
        except Exception as exc:  # noqa: BLE001 - report, never mask the check's own outcome
            problems.append(f"removing {self.host_if}/{self.netns}: {exc}")
        return problems

    # --- use -----------------------------------------------------------------------------------
    def _helper(self, mode: str, *args: str) -> list[str]:
        return [sys.executable, "-I", "-S", "-c", HELPER, self.netns, mode, *args]

    def peers(self) -> list[str]:
        """Source addresses of every connection the listener accepted so far (in order)."""
        if self.listener is not None and self.listener.stdout is not None:
            fd = self.listener.stdout.fileno()
            while select.select([fd], [], [], 0)[0]:
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                self._buffer += chunk.decode(errors="replace")
            *lines, self._buffer = self._buffer.split("\n")
            self._peers += [line.split()[1] for line in lines if line.startswith("peer ")]
        return list(self._peers)

    def wait_peer(self, timeout: float = 5) -> list[str]:
        """Poll the listener's log until a peer appears or the timeout passes."""
        deadline = time.monotonic() + timeout
        while not self.peers() and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.peers()

    def connect(self, addr: str, port: int, timeout: float = 2) -> dict:
        """Open a TCP connection from inside the namespace: {"ok", "data" (all it read), "error"}."""
        proc = subprocess.run(self._helper("connect", addr, str(port), str(timeout)), capture_output=True, text=True,
                              timeout=timeout + 15)
        try:
            return json.loads(proc.stdout.strip().splitlines()[-1])
        except (IndexError, ValueError):
            return {"ok": False, "data": "", "error": f"helper exited {proc.returncode}: {proc.stderr[-300:]!r}"}


@contextmanager
def outside_world(tag: str) -> Iterator[Outside]:
    """An `Outside`, removed again whatever happens (a failed set-up is undone before raising)."""
    if os.geteuid() != 0:
        raise OutsideUnavailable("creating a network namespace and a veth pair needs root")
    out = Outside(tag)
    try:
        out.start()
    except BaseException:
        out.stop()
        raise
    try:
        yield out
    finally:
        problems = out.stop()
        if problems:
            raise RuntimeError(f"the outside namespace was not fully removed: {problems}")
