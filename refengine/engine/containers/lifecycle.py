"""Running containers: start, exit, stop, kill, wait, pause, logs, attach and exec over libcontainer.

Each running container has a monitor process (drivers/exec/monitor.py) that is PID 1's parent, holds
its stdio, writes the json-file log and records the exit status; the daemon talks to it over a unix
socket (a MonitorLink) and fans its output to attached clients. Containers therefore outlive a daemon
restart: restore.py reconnects to their monitors when the daemon starts again. Execs stay in the
daemon (setns from here): they do not survive a restart.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from ...drivers.exec import monitor_client, native
from ...images.store import ImageStore
from ...libcontainer import Container as LcContainer
from ...libcontainer.config import ConfigError, ContainerConfig, HostSetupError
from ...libcontainer.process import StartError
from .. import logs as logmod
from ..engine import Engine, Job
from ..errors import Conflict, EngineError, InvalidParameter, NotFound
from . import ipc, mountpoints, starterr
from .networking import HostFilesOnly, Networking
from .record import Container, now_rfc3339
from .runtime import LayerRuntime
from .store import ContainerStore

PENDING_STDIN_MAX = 4 << 20
SIGNALS = {s.name: int(s) for s in signal.Signals}


def parse_signal(value: str | int | None, default: int = signal.SIGKILL) -> int:
    if value in (None, ""):
        return default
    text = str(value).upper()
    if text.isdigit():
        return int(text)
    name = text if text.startswith("SIG") else "SIG" + text
    if name not in SIGNALS:
        raise InvalidParameter(f"Invalid signal: {value}")
    return SIGNALS[name]


@dataclass
class Running:
    lc: LcContainer
    process: monitor_client.MonitoredProcess
    link: monitor_client.MonitorLink
    exited: asyncio.Event = field(default_factory=asyncio.Event)
    subscribers: set[asyncio.Queue[tuple[int, bytes] | None]] = field(default_factory=set)
    output_done: bool = False


@dataclass
class ExecRecord:
    id: str
    container_id: str
    config: dict[str, Any]
    running: bool = False
    exit_code: int | None = None
    pid: int = 0
    run: Any = None  # the container's Running it was created in: the exec lives as long as that run
    proc: Any = None  # the process while it runs (resize)


class Lifecycle(LayerRuntime):
    def __init__(self, images: ImageStore, store: ContainerStore, volume_dir: Callable[[str], str],
                 event: Callable[[str, Container, dict[str, str]], None],
                 new_anonymous_volume: Callable[[], str] = lambda: "",
                 networking: Networking | None = None, init: native.InitOptions | None = None) -> None:
        super().__init__(images)
        self.networking: Networking = networking or HostFilesOnly()
        self.init = init or native.InitOptions()
        self.store, self.volume_dir, self.event = store, volume_dir, event
        self.new_anonymous_volume = new_anonymous_volume
        self.running: dict[str, Running] = {}
        self.exits: dict[str, asyncio.Event] = {}  # a fresh event per container run (next-exit waiters)
        self.removed: dict[str, asyncio.Event] = {}
        self.execs: dict[str, ExecRecord] = {}
        self.pending: dict[str, set[asyncio.Queue[tuple[int, bytes] | None]]] = {}
        # stdin an attached client sent before the start (docker run -i writes, and may close, at once):
        # dockerd's stdin pipe exists from create, so the data waits for the process; here it waits here
        self.pending_stdin: dict[str, tuple[bytearray, bool]] = {}
        self.tasks: set[asyncio.Task[Any]] = set()  # exits and restarts being handled
        self.closing = False  # the daemon is shutting down: no restarts
        self.starting: dict[str, asyncio.Event] = {}  # starts in flight: a stop meanwhile waits for them

    # --- Runtime protocol (with LayerRuntime) ----------------------------------------------------
    async def kill_and_wait(self, c: Container) -> None:
        run = self.running.get(c.id)
        if run is None:
            await super().kill_and_wait(c)
            return
        run.lc.signal(signal.SIGKILL, all_processes=True)
        await asyncio.wait_for(run.exited.wait(), 30)

    async def update_resources(self, c: Container) -> None:
        from ...libcontainer import cgroups
        run = self.running.get(c.id)
        if run is not None and run.lc.cgroup is not None:
            await asyncio.to_thread(run.lc.cgroup.update, cgroups.resources_from_host_config(c.host_config))

    async def prepare(self, c: Container) -> None:
        """The writable layer, then an anonymous volume for each of Config.Volumes no bind or mount covers."""
        await super().prepare(c)
        covered = {b.split(":")[1] for b in c.host_config.get("Binds") or [] if ":" in b}
        covered |= {m.get("Target") for m in c.host_config.get("Mounts") or []}
        for dest in sorted(c.config.get("Volumes") or {}):
            if dest in covered:
                continue
            name = self.new_anonymous_volume()
            c.mounts.append({"Type": "volume", "Name": name, "Source": self.volume_dir(name), "Destination": dest,
                             "Driver": "local", "Mode": "", "RW": True, "Propagation": ""})
        c.mounts += mountpoints.records(c.host_config, self.volume_dir, self.new_anonymous_volume)

    async def cleanup(self, c: Container) -> None:
        await super().cleanup(c)
        self.removed.setdefault(c.id, asyncio.Event()).set()
        for q in self.pending.pop(c.id, set()):  # attached to a run that will never come
            q.put_nowait(None)
        self.pending_stdin.pop(c.id, None)

    # --- start and exit -------------------------------------------------------------------------
    async def start(self, c: Container, by_policy: bool = False) -> None:
        """Start `c`; a user's start clears an earlier explicit stop, a restart policy's does not (a stop
        that comes while the policy is starting it must win)."""
        if c.state.running:
            raise NotModified()
        if not by_policy:
            c.manually_stopped = False
        started = self.starting[c.id] = asyncio.Event()
        try:
            await self._start(c)
        except Exception:
            # as dockerd: an AutoRemove container whose start failed is removed (a `docker run --rm`
            # waits for its removal: the docker CLI 25+ hangs otherwise)
            if c.host_config.get("AutoRemove") and not c.state.running and c.id in self.store.by_id:
                await self._auto_remove(c)
            raise
        finally:
            if self.starting.get(c.id) is started:
                del self.starting[c.id]
            started.set()

    async def _start(self, c: Container) -> None:
        rootfs = await asyncio.to_thread(self.images.layers.mount, c.id)
        cdir = self.store.container_dir(c.id)
        etc = self.networking.etc_files(c, cdir)
        spec = native.RunSpec(rootfs=rootfs, volume_dir=self.volume_dir, etc_files=etc,
                              peer_pid=self._peer_pid,
                              anonymous=mountpoints.anonymous(c.mounts, c.host_config), init=self.init)
        try:
            spec.shm_path = ipc.shm_path(c, self.store.container_dir, self.store.get)
            cfg = native.container_config(c.id, c.config, c.host_config, spec)
            cfg.validate()  # here, so a config nothing could run is refused with its own words and status
            await asyncio.to_thread(ipc.mount_shareable, c, cdir)
        except Exception as exc:  # nothing runs: the rootfs goes again (also for a donor's Conflict)
            await asyncio.to_thread(self.images.layers.unmount, c.id)
            if isinstance(exc, NotFound):  # what the config names is not there (a donor container): the caller's
                raise self._start_failed(c, starterr.StartFailure(str(exc), 128, True)) from None
            if isinstance(exc, (ConfigError, HostSetupError, OSError)):
                # what runc would refuse: read as dockerd reads runc's refusal
                raise self._start_failed(c, starterr.classify(c.path, str(exc))) from None
            raise
        c.log_path = c.log_path or os.path.join(cdir, f"{c.id}-json.log")
        log_cfg = c.host_config.get("LogConfig") or {}
        opts = log_cfg.get("Config") or {}
        launch = monitor_client.LaunchSpec(
            cfg, tty=bool(c.config.get("Tty")), open_stdin=bool(c.config.get("OpenStdin")),
            log_path=None if (log_cfg.get("Type") or "json-file") == "none" else c.log_path,
            log_max_size=logmod.parse_size(opts.get("max-size")), log_max_file=int(opts.get("max-file") or 1))
        try:
            link = await asyncio.to_thread(monitor_client.launch, cdir, c.id, launch,
                                           lambda pid: self.networking.join(c, pid))
        except monitor_client.StartFailed as exc:
            await self.networking.leave(c)
            await asyncio.to_thread(ipc.release, cdir)
            await asyncio.to_thread(self.images.layers.unmount, c.id)
            failure = starterr.classify(c.path, f"failed to create shim task: OCI runtime create failed: {exc}")
            raise self._start_failed(c, failure) from None
        self.attach_monitor(c, cfg, link)
        st = c.state
        st.status, st.running, st.paused, st.pid, st.exit_code, st.error = "running", True, False, link.pid, 0, ""
        st.oom_killed, st.started_at = False, now_rfc3339()
        c.has_been_started = True
        self.store.save(c)
        self.event("start", c, {})

    def _start_failed(self, c: Container, failure: starterr.StartFailure) -> EngineError:
        """Record a refused start in the container's state and return the error to raise, as dockerd: the
        command's own 127/126 always, otherwise 128 only over an exit code of 0 (an earlier run's code stays);
        FinishedAt is the earlier run's. A container that ran before is exited again; one that never ran
        stays created."""
        st = c.state
        if failure.exit_code != 128 or st.exit_code == 0:
            st.exit_code = failure.exit_code
        st.error = failure.message
        st.status = "exited" if c.has_been_started else "created"
        self.store.save(c)
        return failure.error()

    def attach_monitor(self, c: Container, cfg: ContainerConfig, link: monitor_client.MonitorLink) -> Running:
        """Make `link`'s container one of ours: a libcontainer handle for exec/signals/pause/destroy,
        output to subscribers, the exit to _finish. Also used for containers found at daemon start."""
        state = monitor_client.read_init_state(self.store.container_dir(c.id)) or {"init": None}
        proc = monitor_client.MonitoredProcess(link.pid, link)
        lc = LcContainer.adopt(cfg, state, proc)
        run = Running(lc, proc, link)
        run.subscribers |= self.pending.pop(c.id, set())  # clients that attached before the start
        self.running[c.id] = run
        if self.exits.get(c.id) is None or self.exits[c.id].is_set():
            self.exits[c.id] = asyncio.Event()  # waiters of "next-exit" registered before the start keep theirs
        loop = asyncio.get_running_loop()

        def output(stream: int, data: bytes) -> None:
            for q in list(run.subscribers):
                q.put_nowait((stream, data))

        def output_eof() -> None:
            run.output_done = True
            for q in list(run.subscribers):
                q.put_nowait(None)

        def exited(rec: monitor_client.ExitRecord) -> None:
            proc.set_exit(rec.code)
            self._spawn(self._finish(c.id, run, rec))

        def lost() -> None:  # the monitor died without telling: its exit file, if it wrote one, knows
            rec = monitor_client.read_exit(self.store.container_dir(c.id))
            proc.set_exit(rec.code if rec else 255)
            self._spawn(self._finish(c.id, run, rec or monitor_client.ExitRecord(255),
                                     "" if rec else "the container monitor exited unexpectedly"))
        link.start(loop, monitor_client.Callbacks(output, output_eof, exited, lost))
        held, closed = self.pending_stdin.pop(c.id, (bytearray(), False))  # after start(): it queues sends
        if held:
            link.write_stdin(bytes(held))
        if closed:
            link.close_stdin()
        return run

    def detach_all(self) -> None:
        """Daemon exit: stop talking to the monitors; the containers keep running."""
        for run in list(self.running.values()):
            run.link.close()
        monitor_client.shutdown_zygote()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _finish(self, cid: str, run: Running, rec: monitor_client.ExitRecord, error: str = "") -> None:
        code = rec.code
        oom = rec.oom
        if not oom and run.lc.cgroup is not None:
            try:
                oom = bool(run.lc.cgroup.oom_killed())
            except Exception:
                oom = False
        if not run.output_done:
            for q in list(run.subscribers):
                q.put_nowait(None)
        await asyncio.to_thread(run.lc.destroy)
        run.link.close()
        await run.link.reap()
        c = self.store.by_id.get(cid)
        if c is not None:
            await self.networking.leave(c)
        self.running.pop(cid, None)
        c = self.store.by_id.get(cid)
        if c is not None:
            await asyncio.to_thread(ipc.release, self.store.container_dir(cid))
            await asyncio.to_thread(self.images.layers.unmount, cid)
            st = c.state
            st.status, st.running, st.paused, st.pid, st.exit_code = "exited", False, False, 0, code
            st.oom_killed, st.finished_at, st.error = oom, rec.finished_at or now_rfc3339(), error
            self.store.save(c)
            self.event("die", c, {"exitCode": str(code)})
        run.exited.set()
        self.exits.get(cid, asyncio.Event()).set()
        if c is not None and c.host_config.get("AutoRemove"):
            await self._auto_remove(c)
        elif c is not None and self._restart_wanted(c, code) and not self.closing:
            c.restart_count += 1
            self.store.save(c)
            await asyncio.sleep(0.1 * min(c.restart_count, 10))
            if c.manually_stopped or c.id not in self.store.by_id or self.closing:
                return
            try:
                await self.start(c, by_policy=True)
                self.event("restart", c, {})
            except Exception:
                pass

    async def _auto_remove(self, c: Container) -> None:
        await self.cleanup(c)
        self.store.remove(c)
        self.event("destroy", c, {})

    @staticmethod
    def _restart_wanted(c: Container, code: int) -> bool:
        policy = c.host_config.get("RestartPolicy") or {}
        name = policy.get("Name") or "no"
        if c.manually_stopped or name == "no":
            return False
        if name == "on-failure":
            limit = policy.get("MaximumRetryCount") or 0
            return code != 0 and (limit == 0 or c.restart_count < limit)
        return name in ("always", "unless-stopped")

    def _peer_pid(self, ref: str, kind: str = "") -> int:
        """The PID whose namespace a container:<ref> mode joins; a donor that is not running is
        refused with dockerd's words and status (409 for the network, 500 for the others)."""
        other = self.store.get(ref)
        if not other.state.running:
            if kind == "net":
                raise Conflict(f"cannot join network of a non running container: {other.id}")
            if kind == "ipc":
                raise EngineError(f"can't join IPC of container {other.id}: container {other.id} is not running")
            raise EngineError(f"container {other.id} is not running")
        return other.state.pid

    async def stop(self, c: Container, timeout: int | None) -> None:
        c.manually_stopped = True  # also when it is between two restarts: it must not come back
        run = self.running.get(c.id)
        if run is None and c.id in self.starting:  # a start in flight (a restart policy's): stop what it makes
            await self.starting[c.id].wait()
            run = self.running.get(c.id)
        if run is None:
            self.store.save(c)
            raise NotModified()
        if timeout is None:
            timeout = c.config.get("StopTimeout") if c.config.get("StopTimeout") is not None else 10
        if c.state.paused:
            await asyncio.to_thread(run.lc.resume)
        sig = parse_signal(c.config.get("StopSignal"), signal.SIGTERM)
        run.lc.signal(sig)
        self.event("kill", c, {"signal": str(sig)})
        try:
            await asyncio.wait_for(run.exited.wait(), max(0, timeout))
        except TimeoutError:
            run.lc.signal(signal.SIGKILL, all_processes=True)
            self.event("kill", c, {"signal": str(int(signal.SIGKILL))})
            await asyncio.wait_for(run.exited.wait(), 30)
        self.event("stop", c, {})

    async def kill(self, c: Container, sig: int) -> None:
        run = self.running.get(c.id)
        if run is None:
            raise Conflict(f"Cannot kill container: {c.id}: Container {c.id} is not running")
        if sig == signal.SIGKILL:
            c.manually_stopped = True
        run.lc.signal(sig)
        if c.state.paused and sig == signal.SIGKILL:
            await asyncio.to_thread(run.lc.resume)  # a frozen task only dies once thawed
        self.event("kill", c, {"signal": str(sig)})

    async def pause(self, c: Container, pause: bool) -> None:
        run = self.running.get(c.id)
        if run is None:
            raise Conflict(f"Container {c.id} is not running")
        if pause and c.state.paused:
            raise Conflict(f"Container {c.id} is already paused")
        if not pause and not c.state.paused:
            raise Conflict(f"Container {c.id} is not paused")
        await asyncio.to_thread(run.lc.pause if pause else run.lc.resume)
        c.state.paused = pause
        c.state.status = "paused" if pause else "running"
        self.store.save(c)
        self.event("pause" if pause else "unpause", c, {})

    async def wait(self, c: Container, condition: str) -> int:
        return await self.wait_for(c, condition)

    def wait_for(self, c: Container, condition: str) -> Awaitable[int]:
        """Register a waiter now, before anything else can happen, and return what to await for the exit
        code (so the API can answer the head at once and the client may then start or kill). As dockerd:
        not-running returns at once for a container that is not running; next-exit waits for the next
        exit even of an exited one; removed waits for removal, which also ends the other two."""
        if condition not in ("not-running", "next-exit", "removed", ""):
            raise InvalidParameter(f"invalid condition: \"{condition}\"")
        events = [self.removed.setdefault(c.id, asyncio.Event())]
        if condition in ("not-running", "") and not c.state.running:
            events = []
        elif condition != "removed":
            ev = self.exits.setdefault(c.id, asyncio.Event())
            if ev.is_set():
                ev = self.exits[c.id] = asyncio.Event()
            events.append(ev)
        return _first_of(events, lambda: c.state.exit_code)  # the record outlives removal: its last code

    # --- streams --------------------------------------------------------------------------------
    def subscribe(self, c: Container) -> asyncio.Queue[tuple[int, bytes] | None]:
        """Output of the running container, or else of its next start (docker run attaches before the
        start, `docker start -a` to an exited container): as dockerd, the stream waits for that run.
        None in the queue ends it (the run ended, or the container was removed)."""
        q: asyncio.Queue[tuple[int, bytes] | None] = asyncio.Queue()
        run = self.running.get(c.id)
        if run is not None:
            run.subscribers.add(q)
            return q
        self.pending.setdefault(c.id, set()).add(q)
        return q

    def unsubscribe(self, c: Container, q: Any) -> None:
        run = self.running.get(c.id)
        if run is not None:
            run.subscribers.discard(q)
        self.pending.get(c.id, set()).discard(q)

    async def write_stdin(self, c: Container, data: bytes) -> bool:
        if not c.config.get("OpenStdin"):
            return False
        run = self.running.get(c.id)
        if run is None:  # before the start: held for it (bounded, as a pipe would be)
            held = self.pending_stdin.setdefault(c.id, (bytearray(), False))[0]
            if len(held) + len(data) > PENDING_STDIN_MAX:
                return False
            held.extend(data)
            return True
        run.link.write_stdin(data)
        return True

    def close_stdin(self, c: Container) -> None:
        if not c.config.get("OpenStdin"):
            return
        run = self.running.get(c.id)
        if run is None:
            held, _ = self.pending_stdin.get(c.id, (bytearray(), False))
            self.pending_stdin[c.id] = (held, True)
            return
        run.link.close_stdin()

    def finished(self, c: Container) -> asyncio.Event:
        run = self.running.get(c.id)
        if run is None:
            ev = asyncio.Event()
            ev.set()
            return ev
        return run.exited

    def resize(self, c: Container, h: int, w: int) -> None:
        run = self.running.get(c.id)
        if run is None:
            raise Conflict(f"Container {c.id} is not running")
        if c.config.get("Tty"):
            run.link.resize(h, w)
        self.event("resize", c, {"height": str(h), "width": str(w)})

    # --- exec -----------------------------------------------------------------------------------
    def exec_create(self, c: Container, body: dict[str, Any]) -> str:
        if not isinstance(body.get("Cmd"), list) or not body["Cmd"]:
            raise InvalidParameter("No exec command specified")
        if c.id not in self.running:
            raise Conflict(f"Container {c.id} is not running")
        if c.state.paused:
            raise Conflict(f"Container {c.id} is paused, unpause the container before exec")
        eid = secrets.token_hex(32)
        self.execs = {k: rec for k, rec in self.execs.items() if self._exec_alive(rec)}  # drop ended runs' execs
        self.execs[eid] = ExecRecord(eid, c.id, dict(body), run=self.running[c.id])
        self.event(_exec_action("exec_create", body["Cmd"]), c, {"execID": eid})
        return eid

    def _exec_alive(self, rec: ExecRecord) -> bool:
        """dockerd forgets a container's execs when it stops: an exec belongs to one run of it."""
        return rec.run is not None and self.running.get(rec.container_id) is rec.run

    def exec_get(self, eid: str) -> ExecRecord:
        rec = self.execs.get(eid)
        if rec is None or not self._exec_alive(rec):
            self.execs.pop(eid, None)
            raise NotFound(f"No such exec instance: {eid}")
        return rec

    def exec_ids(self, c: Container) -> list[str]:
        """ExecIDs of container inspect: the execs of its current run, running or ended."""
        return [eid for eid, rec in self.execs.items() if rec.container_id == c.id and self._exec_alive(rec)]

    def exec_check(self, rec: ExecRecord) -> None:
        """What dockerd refuses before it hijacks an exec start: a container that stopped or is paused."""
        c = self.store.by_id.get(rec.container_id)
        if c is None or rec.container_id not in self.running:
            raise Conflict(f"Container {rec.container_id} is not running")
        if c.state.paused:
            raise Conflict(f"Container {rec.container_id} is paused, unpause the container before exec")

    def exec_resize(self, rec: ExecRecord, h: int, w: int) -> None:
        self.exec_check(rec)
        if rec.proc is None:
            raise Conflict(f"Exec {rec.id} is not running")
        if rec.proc.console is not None:
            rec.proc.resize(h, w)

    async def exec_run(self, rec: ExecRecord) -> tuple[Any, int, int | None, int | None]:
        """Start the exec'd process; its (process, out fd, err fd or None, stdin fd or None)."""
        self.exec_check(rec)
        run = self.running[rec.container_id]
        if rec.exit_code is not None:
            raise Conflict(f"Error: Exec command {rec.id} has already run")
        if rec.running:
            raise Conflict(f"Error: Exec command {rec.id} is already running")
        rec.running = True  # claimed before the first await: a second start meanwhile is refused
        tty = bool(rec.config.get("Tty"))
        stdin_r = stdin_w = None
        if rec.config.get("AttachStdin"):
            stdin_r, stdin_w = os.pipe()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        try:
            proc = await asyncio.to_thread(run.lc.exec, native.exec_config(rec.config),
                                           stdin_r if stdin_r is not None else subprocess.DEVNULL,
                                           subprocess.DEVNULL if tty else out_w, subprocess.DEVNULL if tty else err_w)
        except StartError as exc:
            rec.running, rec.exit_code = False, exc.exit_code
            os.write(err_w, f"{exc}\n".encode())  # the client sees why, on stderr, as with dockerd
            if stdin_w is not None:
                os.close(stdin_w)
            return None, out_r, err_r, None
        except BaseException:
            rec.running = False
            for fd in (out_r, err_r, stdin_w):
                if fd is not None:
                    os.close(fd)
            raise
        finally:
            for fd in (stdin_r, out_w, err_w):
                if fd is not None:
                    try:
                        os.close(fd)
                    except OSError:
                        pass
        rec.pid, rec.proc = proc.pid, proc
        c = self.store.by_id.get(rec.container_id)
        if c is not None:
            self.event(_exec_action("exec_start", rec.config["Cmd"]), c, {"execID": rec.id})
        if tty and proc.console is not None:
            os.close(out_r)
            os.close(err_r)
            return proc, os.dup(proc.console), None, stdin_w
        return proc, out_r, err_r, stdin_w

    async def exec_reap(self, rec: ExecRecord, proc: Any) -> None:
        code = await asyncio.to_thread(proc.wait)
        rec.proc = None  # before close: no resize of a closed console
        proc.close()
        rec.running, rec.exit_code = False, code
        c = self.store.by_id.get(rec.container_id)
        if c is not None:
            self.event("exec_die", c, {"execID": rec.id, "exitCode": str(code)})


class NotModified(Exception):
    http_status = 304


async def _first_of(events: list[asyncio.Event], result: Callable[[], int]) -> int:
    """result() once any of `events` is set (at once when there are none)."""
    waiters = [asyncio.ensure_future(ev.wait()) for ev in events]
    try:
        if waiters:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()
    return result()


async def read_fd(fd: int) -> AsyncIterator[bytes]:
    loop = asyncio.get_running_loop()
    os.set_blocking(fd, False)
    queue: asyncio.Queue[bytes] = asyncio.Queue()

    def readable() -> None:
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        queue.put_nowait(data)
        if not data:
            loop.remove_reader(fd)
    loop.add_reader(fd, readable)
    try:
        while True:
            data = await queue.get()
            if not data:
                return
            yield data
    finally:
        try:
            loop.remove_reader(fd)
        except (ValueError, OSError):
            pass
        try:
            os.close(fd)
        except OSError:
            pass


def register(engine: Engine, store: ContainerStore, life: Lifecycle) -> None:
    async def start(job: Job) -> None:
        c = store.get(job.args[0])
        if c.state.paused:
            raise Conflict("cannot start a paused container, try unpause instead")
        await life.start(c)

    async def stop(job: Job) -> None:
        c = store.get(job.args[0])
        await life.stop(c, job.getenv("t"))

    async def restart(job: Job) -> None:
        c = store.get(job.args[0])
        if c.id in life.running:
            await life.stop(c, job.getenv("t"))
        await life.start(c)
        life.event("restart", c, {})

    async def kill(job: Job) -> None:
        c = store.get(job.args[0])
        await life.kill(c, parse_signal(job.getenv("signal")))

    async def wait(job: Job) -> dict[str, Any]:
        """env `registered` (an asyncio.Event, optional) is set once the waiter is in place."""
        c = store.get(job.args[0])
        waiter = life.wait_for(c, job.getenv("condition") or "not-running")
        if job.getenv("registered") is not None:
            job.getenv("registered").set()
        return {"StatusCode": await waiter}

    async def pause(job: Job) -> None:
        await life.pause(store.get(job.args[0]), True)

    async def unpause(job: Job) -> None:
        await life.pause(store.get(job.args[0]), False)

    for name, fn in (("container_start", start), ("container_stop", stop), ("container_restart", restart),
                     ("container_kill", kill), ("container_wait", wait), ("container_pause", pause),
                     ("container_unpause", unpause)):
        engine.register(name, fn)


def _exec_action(kind: str, cmd: list[str]) -> str:
    """dockerd's action text: `<kind>: <entrypoint> <args joined>`, so a bare command keeps a trailing space."""
    return f"{kind}: {cmd[0]} {' '.join(cmd[1:])}"
