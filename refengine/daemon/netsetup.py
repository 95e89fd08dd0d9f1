"""The daemon's network wiring: the kernel bridge driver and the names of its kernel objects.

The first refengined on a host owns the standard names: the `refengine0` bridge (172.30.0.1/16 or --bip),
the nft table `refengine`, DOCKER-USER rules tagged `refengine`; it holds the lock /run/refengine-network.lock.
A daemon started while another holds the lock (tests and benchmarks run several side by side) gets private
names derived from its data root instead: bridge `re<hash>0`, table `refengine_<hash>`, tag likewise, and a
default-bridge /24 from 172.31.0.0/16 that no host route uses; its pools skip every routed prefix. So
daemons never share, or delete, each other's bridges and rules. Each holds its tag's lock while it runs; at
start, what daemons that died without cleaning up left (tags whose lock is free) is removed (orphans.py).
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO

from ..drivers.network import orphans
from ..drivers.network.driver import BridgeDriver
from ..engine.containers.bridged import BridgeNetworking
from ..engine.containers.store import ContainerStore
from ..engine.networks import Network, NetworkStore

PRIVATE_POOL = ipaddress.IPv4Network("172.31.0.0/16")  # default bridges of daemons with private names
log = logging.getLogger("refengine.network")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bip", help="address and prefix of the default bridge refengine0 (default 172.30.0.1/16)")
    p.add_argument("--mtu", type=int, default=1500, help="MTU of the default bridge's and networks' links")
    p.add_argument("--no-docker-user", action="store_true",
                   help="do not add ACCEPT rules for refengine's bridges to dockerd's DOCKER-USER chain "
                        "(then, where dockerd runs, forwarded bridge traffic is dropped by its FORWARD policy)")
    p.add_argument("--no-network-driver", action="store_true",
                   help="run without the kernel network driver (containers get only a private lo)")


@dataclass
class NetworkSetup:
    store: NetworkStore
    networking: BridgeNetworking | None
    warnings: list[str]
    lock: IO[str] | None = None
    tag: str = ""
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def readopt(self, containers: ContainerStore) -> None:
        """After a restart: endpoints of containers that no longer run are released; the ports and DNS of
        those that still run (they outlived the daemon) are served again. Needs the running loop."""
        if self.networking is None:
            return
        self.networking.forget_stale()
        loop = asyncio.get_running_loop()
        for c in containers:
            if c.state.running:
                self._tasks.add(loop.create_task(self.networking.readopt(c)))

    async def shutdown(self) -> None:
        if self.networking is not None:
            await self.networking.shutdown()
        if self.lock is not None:
            orphans.release(self.lock, self.tag)


def _private_bip(seed: str, taken: list[ipaddress.IPv4Network]) -> str:
    """A free /24 of PRIVATE_POOL, chosen from `seed` (stable for one data root while it stays free)."""
    subnets = list(PRIVATE_POOL.subnets(new_prefix=24))
    start = int(seed[:8], 16) % len(subnets)
    for i in range(len(subnets)):
        sub = subnets[(start + i) % len(subnets)]
        if not any(sub.overlaps(t) for t in taken):
            return f"{next(sub.hosts())}/24"
    raise RuntimeError(f"no free /24 in {PRIVATE_POOL} for the default bridge")


def _stored_bridge_name(data_root: str) -> str | None:
    """The bridge name the predefined `bridge` network of this data root was given at an earlier start."""
    directory = os.path.join(data_root, "networks")
    try:
        names = os.listdir(directory)
    except OSError:
        return None
    for name in names:
        try:
            with open(os.path.join(directory, name)) as fh:
                net = json.load(fh)
        except (OSError, ValueError):
            continue
        if net.get("builtin") and net.get("name") == "bridge":
            return (net.get("options") or {}).get("com.docker.network.bridge.name")
    return None


def setup(args: argparse.Namespace, containers: ContainerStore,
          event: Callable[[str, Network, dict[str, str]], None] | None = None) -> NetworkSetup:
    """`event(action, network, attrs)`: where the network events of containers joining and leaving go."""
    bip = getattr(args, "bip", None)
    if getattr(args, "no_network_driver", False) or shutil.which("nft") is None:
        msg = "" if getattr(args, "no_network_driver", False) else "WARNING: nft not found: no network driver"
        if msg:
            log.warning(msg)
        return NetworkSetup(NetworkStore(args.data_root, bip=bip), None, [msg] if msg else [])
    tag = orphans.private_tag(args.data_root)
    seed = tag.rpartition("_")[2]
    private = (tag, f"re{seed}0")
    # a data root that got private names keeps them (its surviving containers sit on that bridge)
    sticky = _stored_bridge_name(args.data_root) == private[1]
    lock = None if sticky else orphans.try_lock(orphans.STANDARD)
    table, bridge = (orphans.STANDARD, "refengine0") if lock is not None else private
    if lock is None:
        lock = orphans.try_lock(table)  # None only if a live daemon runs on this same data root
    docker_user = not getattr(args, "no_docker_user", False)
    mtu = getattr(args, "mtu", 1500)
    driver = BridgeDriver(table=table, default_mtu=mtu, docker_user=docker_user)
    try:
        orphans.collect(table, driver.worker)
    except Exception as exc:  # never keep the daemon from starting over someone else's leftovers
        log.warning("looking for what dead refengineds left failed: %s", exc)
    if table != orphans.STANDARD and not bip and not sticky:
        bip = _private_bip(seed, driver.routed_networks())
        log.info("another refengined owns refengine0: this one uses bridge %s (%s), nft table %s", bridge, bip,
                 table)
    store = NetworkStore(args.data_root, driver, bip=bip, bridge_name=bridge)
    store.routed = driver.routed_networks
    store.restore()
    networking = BridgeNetworking(driver, store, containers)
    if event is not None:
        networking.event = event
    warnings = driver.warnings() if not driver.docker_user.bridges else []
    for w in warnings:
        log.warning(w)
    return NetworkSetup(store, networking, warnings, lock, table)
