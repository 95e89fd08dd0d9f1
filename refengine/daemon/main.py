"""`refengined`: parse options, build the engine and its subsystems, serve until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from ..drivers.exec import native
from ..drivers.graph import detect_driver
from ..engine import Engine
from ..engine import build as build_jobs
from ..engine import events as event_jobs
from ..engine import images as image_jobs
from ..engine import networks as network_jobs
from ..engine import system as system_jobs
from ..engine import volumes as volume_jobs
from ..engine.containers import commit as commit_jobs
from ..engine.containers import jobs as container_jobs
from ..engine.containers import lifecycle as lifecycle_jobs
from ..engine.containers import netjobs, restore
from ..engine.containers.record import Container
from ..engine.containers.store import ContainerStore
from ..images.store import ContainerUse, ImageStore
from ..libcontainer import cgroups
from .handlers import archive as archive_handlers
from .handlers import build as build_handlers
from .handlers import containers as container_handlers
from .handlers import images as image_handlers
from .handlers import inspection as inspection_handlers
from .handlers import lifecycle as lifecycle_handlers
from .handlers import networks as network_handlers
from .handlers import system as system_handlers
from .handlers import volumes as volume_handlers
from .netsetup import add_arguments as add_network_arguments
from .netsetup import setup as setup_network
from .router import Router
from .server import DEFAULT_SOCKET, ListenConfig, Server, ServerConfigError

log = logging.getLogger("refengine")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="refengined", description="the reference Docker-API-compatible engine daemon")
    p.add_argument("-H", "--host", action="append", default=[], metavar="URL",
                   help=f"unix:///path or tcp://host:port to listen on (default unix://{DEFAULT_SOCKET})")
    p.add_argument("--group", help="group owning the unix socket (mode 0660)")
    p.add_argument("--data-root", default="/var/lib/refengine", help="state directory")
    p.add_argument("-s", "--storage-driver", choices=["overlay2", "overlay", "vfs"], help="graph driver "
                   "(default: overlay2 where this host can mount it, else vfs)")
    p.add_argument("--tlscacert", help="CA that client certificates must be signed by")
    p.add_argument("--tlscert", help="server certificate")
    p.add_argument("--tlskey", help="server key")
    p.add_argument("--insecure-tcp", action="store_true", help="allow TCP without TLS (dangerous)")
    p.add_argument("--debug", "-D", action="store_true")
    p.add_argument("--stop-containers-on-exit", action="store_true",
                   help="stop every container when the daemon exits (by default they keep running under their "
                        "monitors and a restarted daemon takes them back); for test and embedded daemons")
    p.add_argument("--init", action="store_true",
                   help="run an init (docker-init) as PID 1 in containers whose HostConfig.Init is not set")
    p.add_argument("--init-path", help="the init binary to bind in containers (default: docker-init from PATH)")
    add_network_arguments(p)
    return p.parse_args(argv)


def listen_config(args: argparse.Namespace) -> ListenConfig:
    unix, tcp = None, None
    for url in args.host or [f"unix://{DEFAULT_SOCKET}"]:
        parts = urlsplit(url)
        if parts.scheme == "unix" and parts.path:
            if unix:
                raise ServerConfigError("only one unix socket is supported")
            unix = parts.path
        elif parts.scheme == "tcp" and parts.hostname and parts.port:
            if tcp:
                raise ServerConfigError("only one TCP address is supported")
            tcp = f"{parts.hostname}:{parts.port}"
        else:
            raise ServerConfigError(f"cannot listen on {url!r}: use unix:///path or tcp://host:port")
    return ListenConfig(unix_socket=unix, socket_group=args.group, tcp=tcp, tlscacert=args.tlscacert,
                        tlscert=args.tlscert, tlskey=args.tlskey, insecure_tcp=args.insecure_tcp)


def _spool_under(data_root: str) -> None:
    """Temporary files (uploads, exports, saves, archives, build contexts) go to <data-root>/tmp, as
    dockerd's do (it sets TMPDIR the same way): /tmp may be a small tmpfs, and they can be gigabytes.
    What a killed daemon left there is removed."""
    tmp = os.path.join(data_root, "tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp, mode=0o700, exist_ok=True)
    os.environ["TMPDIR"] = tmp
    tempfile.tempdir = None  # computed again from TMPDIR on next use


def build(args: argparse.Namespace) -> tuple[Engine, Router, Callable[[], Awaitable[None]]]:
    engine = Engine()
    router = Router()
    os.makedirs(args.data_root, mode=0o711, exist_ok=True)
    _spool_under(args.data_root)
    sysinfo = system_jobs.SystemInfo(root_dir=args.data_root)
    sysinfo.extra["InitBinary"] = args.init_path or native.INIT_BINARY  # what dockerd's info names
    system_jobs.register(engine, sysinfo)
    system_handlers.register(router, engine)
    events = event_jobs.EventLog()
    event_jobs.register(engine, events)
    volume_store = volume_jobs.VolumeStore(args.data_root)
    volume_jobs.register(engine, volume_store,
                         lambda action, name, attrs: events.emit("volume", action, name, attrs))
    volume_handlers.register(router, engine)
    containers = ContainerStore(args.data_root)
    net_setup = setup_network(args, containers, lambda action, net, attrs: events.emit(
        "network", action, net.id, {"name": net.name, **attrs}))
    network_store = net_setup.store
    if net_setup.warnings:
        sysinfo.extra["Warnings"] = list(net_setup.warnings)
    network_jobs.register(engine, network_store,
                          lambda action, net, attrs: events.emit("network", action, net.id,
                                                                 {"name": net.name, **attrs}))
    network_handlers.register(router, engine)
    driver = detect_driver(args.data_root, args.storage_driver or "")
    images = ImageStore(os.path.join(args.data_root, "image", driver.name), driver)
    images.on_event = lambda action, image_id, name: events.emit("image", action, image_id,
                                                                 {"name": name or image_id})
    image_jobs.register(engine, images, lambda image_id: sum(1 for c in containers if c.image_id == image_id))
    image_handlers.register(router, engine)
    images.containers_using = lambda image_id: [ContainerUse(c.id, c.state.running) for c in containers
                                                if c.image_id == image_id]
    volume_store.users = lambda name: [c.id for c in containers if name in _volume_names(c)]
    hooks = container_jobs.Hooks(
        event=lambda kind, action, c, extra: events.emit(kind, action, c.id, {
            "name": c.name.lstrip("/"), "image": c.config.get("Image", ""), **(c.config.get("Labels") or {}),
            **extra}),
        volumes_of=_volume_names,
        configure=lambda c: netjobs.configure(c, network_store))
    def volume_dir(name: str) -> str:
        if name not in volume_store.volumes:  # a named volume in Binds is created on first use, as dockerd
            volume_store.create(name)
        return volume_jobs.data_dir(args.data_root, name)

    life = lifecycle_jobs.Lifecycle(images, containers, volume_dir,
                                    lambda action, c, extra: hooks.event("container", action, c, extra),
                                    lambda: volume_store.create(anonymous=True).name, net_setup.networking,
                                    native.InitOptions(args.init, args.init_path))

    def remove_anonymous(c: Container) -> None:
        for m in c.mounts:
            vol = volume_store.volumes.get(m.get("Name") or "")
            if vol is not None and vol.anonymous:
                volume_store.remove(vol.name, force=True)
    hooks.remove_anonymous_volumes = remove_anonymous
    restore.restore_all(life)  # containers whose monitor still runs are ours again; the others are settled
    net_setup.readopt(containers)  # network of containers that survived the restart; release the others'
    container_jobs.register(engine, containers, image_jobs.StoreLookup(images), life, hooks, driver.name)
    lifecycle_jobs.register(engine, containers, life)
    commit_jobs.register(engine, containers, life)
    build_jobs.register(engine, containers, life)
    build_handlers.register(router, engine)
    lifecycle_handlers.register(router, engine, containers, life)
    inspection_handlers.register(router, containers, life, images, volume_store)
    archive_handlers.register(router, containers, images, life.event)

    def counts() -> dict[str, int]:
        states = [c.state.status for c in containers]
        return {"Containers": len(states), "ContainersRunning": states.count("running"),
                "ContainersPaused": states.count("paused"),
                "ContainersStopped": len(states) - states.count("running") - states.count("paused"),
                "Images": len(images.images())}
    sysinfo.counts = counts
    sysinfo.graph_driver = driver.name
    sysinfo.cgroup_version = str(cgroups.detect().version)

    async def shutdown() -> None:
        """Containers keep running under their monitors (a restarted daemon takes them back). With
        --stop-containers-on-exit (test daemons) they are stopped instead, and our then empty parent
        cgroups removed, so nothing of refengine's is left in the hierarchy."""
        life.closing = True
        if args.stop_containers_on_exit:
            async def stop(c: Container) -> None:
                was = c.manually_stopped  # as dockerd: a stop by the daemon's exit is not the user's stop
                try:
                    await life.stop(c, 5)
                except Exception:
                    log.exception("stopping %s at shutdown", c.id[:12])
                c.manually_stopped = was
                if c.id in containers.by_id:
                    containers.save(c)
            await asyncio.gather(*(stop(c) for c in list(containers) if c.id in life.running))  # side by side
            if life.tasks:  # exits being settled (layers unmounted, monitors reaped)
                await asyncio.wait(list(life.tasks), timeout=30)
            try:
                cgroups.detect().remove_parent()
            except Exception as exc:  # e.g. another refengined still uses it: leave it to that one
                log.warning("parent cgroup not removed: %s", exc)
        life.detach_all()
        await net_setup.shutdown()  # bridges, nft table, DOCKER-USER rules no surviving container needs
    netjobs.register(engine, containers, network_store, net_setup.networking)
    container_handlers.register(router, engine)
    return engine, router, shutdown


def _volume_names(c: Container) -> list[str]:
    """Named volumes a container refers to (Binds `name:/path`, Mounts of type volume)."""
    names = []
    for bind in c.host_config.get("Binds") or []:
        source = bind.split(":", 1)[0]
        if source and not source.startswith("/"):
            names.append(source)
    for mount in c.host_config.get("Mounts") or []:
        if mount.get("Type", "volume") == "volume" and mount.get("Source"):
            names.append(mount["Source"])
    names += [m["Name"] for m in c.mounts if m.get("Type") == "volume" and m.get("Name")]
    return names


async def serve(args: argparse.Namespace) -> None:
    listen = listen_config(args)  # a bad -H fails before anything (bridges, rules) is made
    _engine, router, shutdown = build(args)
    server = Server(router, listen)
    try:
        await server.start()
    except BaseException:
        await shutdown()  # e.g. the socket is taken: remove what build made
        raise
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down")
    await server.stop()
    await shutdown()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        asyncio.run(serve(args))
    except ServerConfigError as exc:
        print(f"refengined: {exc}", file=sys.stderr)
        return 2
    except PermissionError as exc:
        print(f"refengined: {exc} (refengined runs as root)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
