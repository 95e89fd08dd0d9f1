"""`BridgeNetworking`: the `Networking` seam over the kernel bridge driver (refengine.drivers.network).

Per start: `etc_files` writes hostname, resolv.conf and a first /etc/hosts; `join` (a worker thread, while
the init waits) allocates addresses (IPAM of NetworkStore), makes a veth per attached network, publishes
ports (userland proxy), attaches the embedded DNS on user-defined networks, and rewrites /etc/hosts in place
with the container's address (in place: the file may already be bind-mounted). `leave` undoes all of it.
Modes: `host` (nothing: the host's netns and files), `none` (lo up only), `container:<id>` (the other
container's netns and its files).

Threads: `join` runs off the loop; IPAM and Network.endpoints are guarded by one lock, and the async parts of
the driver (ports, DNS) are run on the loop with `run_coroutine_threadsafe`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import threading
from collections.abc import Callable
from typing import Any

from ...drivers.network import etcfiles
from ...drivers.network.dns import Scope
from ...drivers.network.driver import BridgeDriver, endpoint_settings, network_entry
from ...libcontainer.process import StartError
from ..errors import InvalidParameter
from ..networks import Network, NetworkStore
from .record import Container
from .store import ContainerStore

log = logging.getLogger("refengine.network")
OPT_HOST_BINDING = "com.docker.network.bridge.host_binding_ipv4"
LOOP_TIMEOUT = 30.0
CLEARED = {"EndpointID": "", "Gateway": "", "IPAddress": "", "IPPrefixLen": 0, "IPv6Gateway": "",
           "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0, "MacAddress": ""}


def mode_of(c: Container) -> str:
    return c.host_config.get("NetworkMode") or "default"


def is_user_network(net: Network) -> bool:
    return net.driver == "bridge" and not net.builtin


class BridgeNetworking:
    def __init__(self, driver: BridgeDriver, networks: NetworkStore, store: ContainerStore,
                 host_resolv: str = "/etc/resolv.conf") -> None:
        self.driver, self.networks, self.store = driver, networks, store
        self.host_resolv = host_resolv
        self.lock = threading.RLock()
        self.loop: asyncio.AbstractEventLoop | None = None
        # network events ("connect"/"disconnect", attrs container and type), as dockerd emits on start/stop
        self.event: Callable[[str, Network, dict[str, str]], None] = lambda action, net, attrs: None

    # --- helpers ----------------------------------------------------------------------------------
    def _net(self, name: str, ep: dict[str, Any]) -> Network:
        return self.networks.networks.get(ep.get("NetworkID") or "") or self.networks.get(name)

    def _attached(self, c: Container) -> list[tuple[str, Network, dict[str, Any]]]:
        out = []
        for name, ep in ((c.network_settings or {}).get("Networks") or {}).items():
            out.append((name, self._net(name, ep), ep))
        return out

    def _primary(self, c: Container) -> Network | None:
        mode = mode_of(c)
        if mode.startswith("container:") or mode == "host":
            return None
        try:
            return self.networks.get("bridge" if mode == "default" else mode)
        except Exception:
            return None

    def _on_loop(self, coro: Any) -> Any:
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(LOOP_TIMEOUT)

    def _hosts_text(self, c: Container) -> str:
        primary = self._primary(c)
        eps = (c.network_settings or {}).get("Networks") or {}
        addresses = []
        if primary is not None and eps.get(primary.name, {}).get("IPAddress"):
            addresses.append(eps[primary.name]["IPAddress"])
        addresses += [ep["IPAddress"] for name, ep in eps.items()
                      if ep.get("IPAddress") and (primary is None or name != primary.name)]
        text = etcfiles.hosts(c.config.get("Hostname") or c.id[:12], addresses[:1],
                              c.config.get("Domainname") or "", c.host_config.get("ExtraHosts") or [])
        if primary is not None and not is_user_network(primary):
            text += "".join(self._legacy_links(c, primary))
        return text

    def _legacy_links(self, c: Container, net: Network) -> list[str]:
        """--link on the default bridge: a hosts line per linked container (alias, name, short ID)."""
        lines = []
        for link in c.host_config.get("Links") or []:
            target, _, alias = link.partition(":")
            try:
                other = self.store.get(target.lstrip("/"))
            except Exception:
                continue  # a link to a container that is gone: nothing to map
            ip = net.endpoints.get(other.id, {}).get("IPv4Address", "").split("/")[0]
            name = other.name.lstrip("/")
            alias = alias.rsplit("/", 1)[-1] or name
            if ip:
                lines.append(f"{ip}\t{' '.join(dict.fromkeys([alias, name, other.id[:12]]))}\n")
        return lines

    # --- the Networking protocol ----------------------------------------------------------------
    def etc_files(self, c: Container, cdir: str) -> dict[str, str]:
        self.loop = asyncio.get_running_loop()
        mode = mode_of(c)
        if mode.startswith("container:"):
            try:
                other = self.store.get(mode.split(":", 1)[1])
            except Exception:
                return {}  # the runtime refuses the start with the reason (no such container)
            files = {"/etc/hostname": other.hostname_path, "/etc/hosts": other.hosts_path,
                     "/etc/resolv.conf": other.resolv_conf_path}
            c.hostname_path, c.hosts_path, c.resolv_conf_path = (other.hostname_path, other.hosts_path,
                                                                 other.resolv_conf_path)
            return {k: v for k, v in files.items() if v and os.path.exists(v)}
        hostname = c.config.get("Hostname") or c.id[:12]
        if mode == "host":
            paths = {"/etc/hostname": os.path.join(cdir, "hostname"), "/etc/hosts": os.path.join(cdir, "hosts"),
                     "/etc/resolv.conf": os.path.join(cdir, "resolv.conf")}
            etcfiles.write(paths["/etc/hostname"], etcfiles.hostname_file(hostname))
            for src, key in (("/etc/hosts", "/etc/hosts"), (self.host_resolv, "/etc/resolv.conf")):
                if os.path.exists(src):
                    shutil.copyfile(src, paths[key])  # the host's own files, as dockerd does in host mode
                else:
                    etcfiles.write(paths[key], etcfiles.HOSTS_HEADER if key == "/etc/hosts" else "")
        else:
            primary = self._primary(c)
            user = primary is not None and is_user_network(primary)
            hc = c.host_config
            written = etcfiles.write_container_files(
                cdir, hostname, [], user, c.config.get("Domainname") or "", hc.get("ExtraHosts") or [],
                hc.get("Dns") or [], hc.get("DnsSearch") or [], hc.get("DnsOptions") or [], self.host_resolv)
            paths = {"/etc/hostname": written["hostname"], "/etc/hosts": written["hosts"],
                     "/etc/resolv.conf": written["resolv.conf"]}
        c.hostname_path, c.hosts_path = paths["/etc/hostname"], paths["/etc/hosts"]
        c.resolv_conf_path = paths["/etc/resolv.conf"]
        return paths

    def join(self, c: Container, pid: int) -> None:
        mode = mode_of(c)
        if mode == "host" or mode.startswith("container:"):
            return
        if mode == "none":
            self.driver.loopback_up(pid)
            return
        joined: list[Network] = []
        try:
            for name, net, ep in self._attached(c):
                if net.driver == "bridge":
                    self._join_one(c, name, net, ep, pid)
                    joined.append(net)
            self._publish(c)
            self._attach_dns(c, pid)
            if c.hosts_path:
                etcfiles.write(c.hosts_path, self._hosts_text(c), atomic=False)
        except Exception as exc:
            self._undo(c, joined)
            # as a StartError the start path closes the pipes, unmounts the rootfs and records the error
            raise StartError(str(exc)) from None
        except BaseException:
            self._undo(c, joined)
            raise

    def _undo(self, c: Container, joined: list[Network]) -> None:
        try:
            self._on_loop(self.driver.unpublish(c.id))
            self._on_loop(self.driver.detach_dns(c.id))
        except Exception:
            log.exception("undoing the ports and DNS of %s", c.id[:12])
        for net in joined:
            self._leave_one(c, net)

    def _join_one(self, c: Container, name: str, net: Network, ep: dict[str, Any], pid: int) -> dict[str, Any]:
        wanted = (ep.get("IPAMConfig") or {}).get("IPv4Address") or None
        if wanted and not is_user_network(net):
            raise InvalidParameter("user specified IP address is supported on user defined networks only")
        cfg = dict(ep)
        primary = self._primary(c)
        if not cfg.get("MacAddress") and primary is not None and primary.id == net.id:
            cfg["MacAddress"] = c.config.get("MacAddress") or ""
        with self.lock:
            address = self.networks.allocate_ip(net, wanted)
            address6 = self.networks.allocate_ip6(net)
            net.endpoints[c.id] = {"Name": c.name.lstrip("/"), "EndpointID": "", "MacAddress": "",  # reserved
                                   "IPv4Address": f"{address[0]}/{address[1]}",
                                   "IPv6Address": f"{address6[0]}/{address6[1]}" if address6 else ""}
        try:
            record = self.driver.join(net, cfg, pid, container_id=c.id, address=address, address6=address6)
        except BaseException:
            with self.lock:
                net.endpoints.pop(c.id, None)
            raise
        with self.lock:
            net.endpoints[c.id] = network_entry(record, c.name)
            self.networks.save(net)
        self._emit("connect", net, c)
        settings = endpoint_settings(record)
        settings["IPAMConfig"] = ep.get("IPAMConfig") or ({"IPv4Address": wanted} if wanted else {})
        settings["Aliases"] = list(ep.get("Aliases") or [])
        if is_user_network(net) and c.id[:12] not in settings["Aliases"]:
            settings["Aliases"].append(c.id[:12])  # dockerd adds the short ID on user-defined networks
        settings["Links"] = ep.get("Links") or []
        settings["DriverOpts"] = ep.get("DriverOpts") or {}
        ep.update(settings)
        return settings

    def _emit(self, action: str, net: Network, c: Container) -> None:
        attrs = {"container": c.id, "type": net.driver}
        if self.loop is not None and self.loop.is_running():  # events are the loop's: join runs in a thread
            self.loop.call_soon_threadsafe(self.event, action, net, attrs)

    def _leave_one(self, c: Container, net: Network) -> None:
        try:
            self.driver.leave(net, c.id)
        except Exception:
            log.exception("removing the endpoint of %s on %s", c.id[:12], net.name)
        with self.lock:
            if net.endpoints.pop(c.id, None) is not None and net.id in self.networks.networks:
                self.networks.save(net)
                self._emit("disconnect", net, c)

    def _port_bindings(self, c: Container, net: Network) -> dict[str, list[dict[str, str]] | None]:
        default_ip = net.options.get(OPT_HOST_BINDING, "")
        bindings: dict[str, list[dict[str, str]] | None] = {}
        for key, value in (c.host_config.get("PortBindings") or {}).items():
            bindings[key] = [{"HostIp": (b or {}).get("HostIp") or default_ip, "HostPort": (b or {}).get("HostPort")
                              or ""} for b in (value or [{}])]
        if c.host_config.get("PublishAllPorts"):
            for key in c.config.get("ExposedPorts") or {}:
                bindings.setdefault(key, [{"HostIp": default_ip, "HostPort": ""}])
        return {(k if "/" in k else f"{k}/tcp"): v for k, v in bindings.items()}

    def _publish(self, c: Container, previous: dict[str, Any] | None = None) -> None:
        """Serve the container's published ports; `previous`: NetworkSettings.Ports of a run being re-adopted
        (the host ports chosen then, random ones included, are bound again)."""
        ports: dict[str, Any] = {k: None for k in c.config.get("ExposedPorts") or {}}
        primary = self._primary(c)
        ep = ((c.network_settings or {}).get("Networks") or {}).get(primary.name) if primary else None
        if primary is not None and ep and ep.get("IPAddress"):
            bindings = ({k: v for k, v in previous.items() if v} if previous else None) or \
                self._port_bindings(c, primary)
            if bindings:
                ports.update(self._on_loop(self.driver.publish(c.id, ep["IPAddress"], bindings, ep["EndpointID"])))
        c.network_settings["Ports"] = ports

    def _attach_dns(self, c: Container, pid: int) -> None:
        if not any(is_user_network(net) for _n, net, _e in self._attached(c)):
            return
        dns = c.host_config.get("Dns") or []
        scope = Scope(lambda name, cid=c.id: self.lookup(cid, name), lambda ip, cid=c.id: self.reverse(cid, ip),
                      [(d, 53) for d in dns] or None)
        self._on_loop(self.driver.attach_dns(c.id, None, scope, pid=pid))

    async def leave(self, c: Container) -> None:
        try:
            await self.driver.unpublish(c.id)
            await self.driver.detach_dns(c.id)
        except Exception:
            log.exception("closing the ports and DNS of %s", c.id[:12])
        loop = asyncio.get_running_loop()
        for net in list(self.networks.networks.values()):
            if c.id in net.endpoints:
                await loop.run_in_executor(None, self._leave_one, c, net)
        settings = c.network_settings or {}
        for ep in (settings.get("Networks") or {}).values():
            ep.update(CLEARED)
        if settings:
            settings["Ports"] = {}

    # --- connect / disconnect of a running container ----------------------------------------------
    async def connect(self, c: Container, net: Network, ep: dict[str, Any]) -> None:
        """Join `net` now (c is running); `ep` is already in c.network_settings.Networks[net.name]."""
        self.loop = asyncio.get_running_loop()
        pid = c.state.pid
        await self.loop.run_in_executor(None, self._join_one, c, net.name, net, ep, pid)
        try:
            if is_user_network(net) and c.id not in self.driver.dns.listeners:
                await self.loop.run_in_executor(None, self._attach_dns, c, pid)
        except BaseException:
            await self.loop.run_in_executor(None, self._leave_one, c, net)
            raise

    async def disconnect(self, c: Container, net: Network) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self._leave_one, c, net)
        if not any(is_user_network(n) and c.id in n.endpoints for n in self.networks.networks.values()):
            await self.driver.detach_dns(c.id)

    # --- names for the embedded DNS -------------------------------------------------------------
    def _peers(self, cid: str) -> list[tuple[Network, str, Container]]:
        """(network, container id, container) of every endpoint on the user networks `cid` is on."""
        out = []
        for net in list(self.networks.networks.values()):
            if not is_user_network(net) or cid not in net.endpoints:
                continue
            for other_id in list(net.endpoints):
                other = self.store.by_id.get(other_id)
                if other is not None:
                    out.append((net, other_id, other))
        return out

    @staticmethod
    def _names(net: Network, other: Container) -> set[str]:
        ep = ((other.network_settings or {}).get("Networks") or {}).get(net.name) or {}
        names = {other.name.lstrip("/"), other.id[:12]} | set(ep.get("Aliases") or [])
        return {n.lower() for n in names}

    def lookup(self, cid: str, name: str) -> list[str] | None:
        me = self.store.by_id.get(cid)
        wanted = {name}
        if me is not None:  # --link name:alias on user networks resolves the alias to that container
            for link in me.host_config.get("Links") or []:
                target, _, alias = link.partition(":")
                alias = alias.rsplit("/", 1)[-1] or target.lstrip("/")
                if alias.lower() == name:
                    wanted.add(target.lstrip("/").lower())
        ips = []
        for net, other_id, other in self._peers(cid):
            if self._names(net, other) & wanted:
                ip = net.endpoints.get(other_id, {}).get("IPv4Address", "").split("/")[0]
                if ip and ip not in ips:
                    ips.append(ip)
        return ips or None

    def reverse(self, cid: str, ip: str) -> str | None:
        for net, other_id, other in self._peers(cid):
            if net.endpoints.get(other_id, {}).get("IPv4Address", "").split("/")[0] == ip:
                return f"{other.name.lstrip('/')}.{net.name}"
        return None

    # --- daemon start and stop ------------------------------------------------------------------
    def forget_stale(self) -> None:
        """At daemon start: endpoints of containers that no longer run are released."""
        for net in self.networks.networks.values():
            stale = [cid for cid in net.endpoints
                     if cid not in self.store.by_id or not self.store.by_id[cid].state.running]
            for cid in stale:
                del net.endpoints[cid]
            if stale:
                self.networks.save(net)

    async def readopt(self, c: Container) -> None:
        """A container that outlived the daemon: serve its published ports and names again."""
        self.loop = asyncio.get_running_loop()
        try:
            await self.loop.run_in_executor(None, self._publish, c, dict(c.network_settings.get("Ports") or {}))
            await self.loop.run_in_executor(None, self._attach_dns, c, c.state.pid)
        except Exception:
            log.exception("re-adopting the network of %s", c.id[:12])

    async def shutdown(self) -> None:
        """Remove bridges, rules and DNS/proxies that no surviving container needs."""
        await self.driver.dns.close()
        for cid in list(self.driver.proxies):
            await self.driver.unpublish(cid)
        keep = {net.id for net in self.networks.networks.values() if net.endpoints}
        loop = asyncio.get_running_loop()
        for net in list(self.networks.networks.values()):
            if net.driver == "bridge" and net.id not in keep:
                try:
                    await loop.run_in_executor(None, self.driver.delete, net)
                except Exception:
                    log.exception("removing the bridge of %s", net.name)
        try:
            await loop.run_in_executor(None, self.driver.shutdown, keep)
        except Exception:
            log.exception("removing refengine's nft table and DOCKER-USER rules")
        self.driver.worker.close()
