"""Daemon start: take back the containers that outlived the previous daemon, settle the others.

For every container, the monitor socket in its directory decides: a monitor answers → the container
still runs (same PID): it is re-adopted (logs continue, stop/kill/wait/attach/exec work). No monitor
and the record says it ran → it ended while the daemon was down: the monitor's exit file gives the
status (255 and an error if there is none), its cgroup, root filesystem mount and network are
released. Then restart policies apply as dockerd applies them at start: `always` restarts, also after
a manual stop; `unless-stopped` unless manually stopped; `on-failure` after a non-zero exit within
the retry count.
"""

from __future__ import annotations

import asyncio
import logging

from ...drivers.exec import monitor_client
from ...libcontainer import Container as LcContainer
from ...libcontainer.cgroups import DEFAULT_PARENT
from ...libcontainer.config import ContainerConfig
from . import ipc
from .lifecycle import Lifecycle
from .record import Container, now_rfc3339

log = logging.getLogger("refengine")

LOST = "the container's monitor was gone when the daemon started, with no exit status recorded"


def restore_all(life: Lifecycle) -> None:
    """Synchronous part (the daemon's build step, on the running loop): who runs, who ended. The
    cleanup of ended ones and the restarts continue as tasks."""
    for c in life.store:
        cdir = life.store.container_dir(c.id)
        link = monitor_client.connect(cdir)
        if link is not None:
            _readopt(life, c, link)
        elif c.state.running or c.state.paused:
            rec = monitor_client.read_exit(cdir)
            st = c.state
            st.status, st.running, st.paused, st.restarting, st.pid = "exited", False, False, False, 0
            st.exit_code = rec.code if rec else 255
            st.oom_killed = bool(rec and rec.oom)
            st.finished_at = (rec.finished_at if rec else "") or now_rfc3339()
            st.error = "" if rec else LOST
            life.store.save(c)
            life._spawn(_settle(life, c))
        elif _restart_at_start(c):
            life._spawn(_restart(life, c))


def _adoption_config(c: Container, state: dict) -> ContainerConfig:
    """Enough of the libcontainer config to manage a running container (cgroup, exec, destroy)."""
    init = state.get("init") or {}
    return ContainerConfig(rootfs=init.get("rootfs") or "/", args=list(init.get("args") or ["/"]), id=c.id,
                           cgroup_name=state.get("cgroup_name") or c.id,
                           cgroup_parent=state.get("cgroup_parent") or DEFAULT_PARENT,
                           seccomp=state.get("seccomp", "default"), privileged=bool(c.host_config.get("Privileged")))


def _readopt(life: Lifecycle, c: Container, link: monitor_client.MonitorLink) -> None:
    state = monitor_client.read_init_state(life.store.container_dir(c.id)) or {}
    life.images.layers.mount(c.id)  # takes our reference; the mount itself is still there
    run = life.attach_monitor(c, _adoption_config(c, state), link)
    st = c.state
    if not st.running:  # the previous daemon died between the start and saving it
        st.started_at, c.has_been_started = now_rfc3339(), True
    st.running, st.pid, st.restarting, st.error = True, link.pid, False, ""
    frozen = False
    if run.lc.cgroup is not None:
        try:
            frozen = run.lc.cgroup.frozen()
        except Exception:
            frozen = False
    st.paused, st.status = frozen, "paused" if frozen else "running"
    life.store.save(c)
    log.info("container %s re-adopted (pid %d)", c.short_id, link.pid)


async def _settle(life: Lifecycle, c: Container) -> None:
    """Release what a container that ended while we were down still holds; then its policies."""
    cdir = life.store.container_dir(c.id)
    state = monitor_client.read_init_state(cdir) or {}
    proc = monitor_client.MonitoredProcess(0, None)
    proc.set_exit(c.state.exit_code)
    try:
        if state.get("init"):
            lc = LcContainer.adopt(_adoption_config(c, state), state, proc)
            await asyncio.to_thread(lc.destroy)  # kills stragglers in its cgroup, removes the cgroup
        await asyncio.to_thread(ipc.release, cdir)  # a shareable container's /dev/shm tmpfs
        await asyncio.to_thread(life.images.layers.unmount, c.id)
        await life.networking.leave(c)
    except Exception:
        log.exception("releasing what container %s held", c.short_id)
    life.store.save(c)
    life.event("die", c, {"exitCode": str(c.state.exit_code)})
    life.exits.get(c.id, asyncio.Event()).set()
    if c.host_config.get("AutoRemove"):
        await life.cleanup(c)
        life.store.remove(c)
        life.event("destroy", c, {})
    elif _restart_at_start(c):
        await _restart(life, c)


def _restart_at_start(c: Container) -> bool:
    if not c.has_been_started or c.state.running:
        return False
    policy = c.host_config.get("RestartPolicy") or {}
    name = policy.get("Name") or "no"
    if name == "always":
        return True
    if name == "unless-stopped":
        return not c.manually_stopped
    if name == "on-failure":
        limit = policy.get("MaximumRetryCount") or 0
        return c.state.exit_code != 0 and (limit == 0 or c.restart_count < limit)
    return False


async def _restart(life: Lifecycle, c: Container) -> None:
    if life.closing or c.id not in life.store.by_id or c.id in life.running:
        return
    try:
        await life.start(c)
    except Exception as exc:
        log.warning("restarting container %s at daemon start: %s", c.short_id, exc)
