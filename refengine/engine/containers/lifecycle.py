"""Running containers: start, exit, stop, kill, wait, pause, logs, attach and exec over libcontainer.

The daemon holds each running container's stdio: output goes to the json-file log and to attached
clients; the pidfd tells the event loop when PID 1 exits. (A per-container monitor process that
would let containers outlive a daemon restart is not built yet: on restart, containers that were
running are marked exited with the error "daemon restarted".)
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from ...drivers.exec import native
from ...images.store import ImageStore
from ...libcontainer import Container as LcContainer
from ...libcontainer.config import ConfigError
from ...libcontainer.process import StartError
from .. import logs as logmod
from ..engine import Engine, Job
from ..errors import Conflict, InvalidParameter, NotFound
from .networking import HostFilesOnly, Networking
from .record import Container, now_rfc3339
from .runtime import LayerRuntime
from .store import ContainerStore

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
    process: Any
    writer: logmod.JsonFileWriter | None
    stdin_fd: int | None
    exited: asyncio.Event = field(default_factory=asyncio.Event)
    subscribers: set[asyncio.Queue[tuple[int, bytes] | None]] = field(default_factory=set)
    open_streams: int = 0


@dataclass
class ExecRecord:
    id: str
    container_id: str
    config: dict[str, Any]
    running: bool = False
    exit_code: int | None = None
    pid: int = 0


class Lifecycle(LayerRuntime):
    def __init__(self, images: ImageStore, store: ContainerStore, volume_dir: Callable[[str], str],
                 event: Callable[[str, Container, dict[str, str]], None],
                 new_anonymous_volume: Callable[[], str] = lambda: "",
                 networking: Networking | None = None) -> None:
        super().__init__(images)
        self.networking: Networking = networking or HostFilesOnly()
        self.store, self.volume_dir, self.event = store, volume_dir, event
        self.new_anonymous_volume = new_anonymous_volume
        self.running: dict[str, Running] = {}
        self.exits: dict[str, asyncio.Event] = {}  # a fresh event per container run (next-exit waiters)
        self.removed: dict[str, asyncio.Event] = {}
        self.execs: dict[str, ExecRecord] = {}
        self.pending: dict[str, set[asyncio.Queue[tuple[int, bytes] | None]]] = {}

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

    async def cleanup(self, c: Container) -> None:
        await super().cleanup(c)
        self.removed.setdefault(c.id, asyncio.Event()).set()

    # --- start and exit -------------------------------------------------------------------------
    async def start(self, c: Container) -> None:
        if c.state.running:
            raise NotModified()
        rootfs = await asyncio.to_thread(self.images.layers.mount, c.id)
        cdir = self.store.container_dir(c.id)
        etc = self.networking.etc_files(c, cdir)
        spec = native.RunSpec(rootfs=rootfs, volume_dir=self.volume_dir, etc_files=etc,
                              peer_pid=lambda ref: self._peer_pid(ref),
                              anonymous=[(m["Destination"], m["Source"]) for m in c.mounts
                                         if m.get("Type") == "volume" and m.get("Name")])
        try:
            cfg = native.container_config(c.id, c.config, c.host_config, spec)
        except ConfigError as exc:
            await asyncio.to_thread(self.images.layers.unmount, c.id)
            raise InvalidParameter(str(exc)) from None
        tty = bool(c.config.get("Tty"))
        stdin_r = stdin_w = None
        if c.config.get("OpenStdin"):
            stdin_r, stdin_w = os.pipe()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        c.log_path = c.log_path or os.path.join(cdir, f"{c.id}-json.log")
        lc = LcContainer(cfg)
        try:
            # Never None: that would hand the daemon's own stdio to the container
            process = await asyncio.to_thread(
                lc.start, stdin_r if stdin_r is not None else subprocess.DEVNULL,
                subprocess.DEVNULL if tty else out_w, subprocess.DEVNULL if tty else err_w,
                lambda pid: self.networking.join(c, pid))
        except (StartError, ConfigError) as exc:
            for fd in (stdin_r, stdin_w, out_r, out_w, err_r, err_w):
                if fd is not None:
                    os.close(fd)
            await self.networking.leave(c)
            await asyncio.to_thread(self.images.layers.unmount, c.id)
            code = getattr(exc, "exit_code", 128)
            c.state.exit_code, c.state.error, c.state.status = code, str(exc), "exited" if c.has_been_started \
                else "created"
            c.state.finished_at = now_rfc3339() if c.has_been_started else c.state.finished_at
            self.store.save(c)
            raise InvalidParameter(f"failed to create shim task: OCI runtime create failed: {exc}") from None
        for fd in (stdin_r, out_w, err_w):
            if fd is not None:
                os.close(fd)
        opts = (c.host_config.get("LogConfig") or {}).get("Config") or {}
        writer = None
        if ((c.host_config.get("LogConfig") or {}).get("Type") or "json-file") != "none":
            writer = logmod.JsonFileWriter(c.log_path, logmod.parse_size(opts.get("max-size")),
                                           int(opts.get("max-file") or 1))
        run = Running(lc, process, writer, stdin_w)
        run.subscribers |= self.pending.pop(c.id, set())  # clients that attached before the start
        self.running[c.id] = run
        if self.exits.get(c.id) is None or self.exits[c.id].is_set():
            self.exits[c.id] = asyncio.Event()  # waiters of "next-exit" registered before the start keep theirs
        loop = asyncio.get_running_loop()
        if tty and process.console is not None:
            self._pump(loop, run, os.dup(process.console), 1)
            os.close(out_r)
            os.close(err_r)
        else:
            self._pump(loop, run, out_r, 1)
            self._pump(loop, run, err_r, 2)
        loop.add_reader(process.fileno(), self._on_exit, c.id)
        st = c.state
        st.status, st.running, st.paused, st.pid, st.exit_code, st.error = "running", True, False, process.pid, 0, ""
        st.oom_killed, st.started_at = False, now_rfc3339()
        c.has_been_started, c.manually_stopped = True, False
        self.store.save(c)
        self.event("start", c, {})

    def _pump(self, loop: asyncio.AbstractEventLoop, run: Running, fd: int, stream: int) -> None:
        os.set_blocking(fd, False)
        run.open_streams += 1
        name = "stdout" if stream == 1 else "stderr"

        def readable() -> None:
            try:
                data = os.read(fd, 65536)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                loop.remove_reader(fd)
                os.close(fd)
                run.open_streams -= 1
                if run.open_streams == 0:
                    for q in list(run.subscribers):
                        q.put_nowait(None)
                return
            if run.writer is not None:
                run.writer.write(name, data)
            for q in list(run.subscribers):
                q.put_nowait((stream, data))
        loop.add_reader(fd, readable)

    def _on_exit(self, cid: str) -> None:
        run = self.running.get(cid)
        if run is None:
            return
        code = run.process.poll()
        if code is None:
            return
        loop = asyncio.get_running_loop()
        loop.remove_reader(run.process.fileno())
        loop.create_task(self._finish(cid, run, code))

    async def _finish(self, cid: str, run: Running, code: int) -> None:
        deadline = time.monotonic() + 2
        while run.open_streams and time.monotonic() < deadline:  # let the pumps drain the pipes
            await asyncio.sleep(0.01)
        oom = False
        if run.lc.cgroup is not None:
            try:
                oom = bool(run.lc.cgroup.oom_killed())
            except Exception:
                oom = False
        await asyncio.to_thread(run.lc.destroy)
        c = self.store.by_id.get(cid)
        if c is not None:
            await self.networking.leave(c)
        if run.writer is not None:
            run.writer.close()
        if run.stdin_fd is not None:
            try:
                os.close(run.stdin_fd)
            except OSError:
                pass
        self.running.pop(cid, None)
        c = self.store.by_id.get(cid)
        if c is not None:
            await asyncio.to_thread(self.images.layers.unmount, cid)
            st = c.state
            st.status, st.running, st.paused, st.pid, st.exit_code = "exited", False, False, 0, code
            st.oom_killed, st.finished_at = oom, now_rfc3339()
            self.store.save(c)
            self.event("die", c, {"exitCode": str(code)})
        run.exited.set()
        self.exits.get(cid, asyncio.Event()).set()
        if c is not None and c.host_config.get("AutoRemove"):
            await self.cleanup(c)
            self.store.remove(c)
            self.event("destroy", c, {})
        elif c is not None and self._restart_wanted(c, code):
            c.restart_count += 1
            self.store.save(c)
            await asyncio.sleep(0.1 * min(c.restart_count, 10))
            if c.manually_stopped or c.id not in self.store.by_id:
                return
            try:
                await self.start(c)
                self.event("restart", c, {})
            except Exception:
                pass

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

    def _peer_pid(self, ref: str) -> int:
        other = self.store.get(ref)
        if not other.state.running:
            raise Conflict(f"cannot join the namespaces of container {other.id}: it is not running")
        return other.state.pid

    async def stop(self, c: Container, timeout: int | None) -> None:
        c.manually_stopped = True  # also when it is between two restarts: it must not come back
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
        if condition not in ("not-running", "next-exit", "removed", ""):
            raise InvalidParameter(f"invalid condition: \"{condition}\"")
        if condition == "removed":
            await self.removed.setdefault(c.id, asyncio.Event()).wait()
            return c.state.exit_code  # the record outlives the store entry: its last exit code
        if condition in ("not-running", "") and not c.state.running:
            return c.state.exit_code
        ev = self.exits.setdefault(c.id, asyncio.Event())
        if ev.is_set():
            ev = self.exits[c.id] = asyncio.Event()
        await ev.wait()
        return c.state.exit_code

    # --- streams --------------------------------------------------------------------------------
    def subscribe(self, c: Container) -> asyncio.Queue[tuple[int, bytes] | None] | None:
        """Output of the running container, or of its next start if it is only created (docker run
        attaches before it starts); None for a container that ran and ended."""
        q: asyncio.Queue[tuple[int, bytes] | None] = asyncio.Queue()
        run = self.running.get(c.id)
        if run is not None:
            run.subscribers.add(q)
            return q
        if c.state.status == "created":
            self.pending.setdefault(c.id, set()).add(q)
            return q
        return None

    def unsubscribe(self, c: Container, q: Any) -> None:
        run = self.running.get(c.id)
        if run is not None:
            run.subscribers.discard(q)
        self.pending.get(c.id, set()).discard(q)

    async def write_stdin(self, c: Container, data: bytes) -> bool:
        run = self.running.get(c.id)
        if run is None or run.stdin_fd is None:
            return False
        try:
            await asyncio.to_thread(os.write, run.stdin_fd, data)
            return True
        except OSError:
            return False

    def close_stdin(self, c: Container) -> None:
        run = self.running.get(c.id)
        if run is not None and run.stdin_fd is not None:
            try:
                os.close(run.stdin_fd)
            except OSError:
                pass
            run.stdin_fd = None

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
        if run.process.console is not None:
            run.process.resize(h, w)

    # --- exec -----------------------------------------------------------------------------------
    def exec_create(self, c: Container, body: dict[str, Any]) -> str:
        if not isinstance(body.get("Cmd"), list) or not body["Cmd"]:
            raise InvalidParameter("No exec command specified")
        if c.id not in self.running:
            raise Conflict(f"Container {c.id} is not running")
        if c.state.paused:
            raise Conflict(f"Container {c.id} is paused, unpause the container before exec")
        eid = secrets.token_hex(32)
        self.execs[eid] = ExecRecord(eid, c.id, dict(body))
        self.event("exec_create: " + " ".join(body["Cmd"]), c, {"execID": eid})
        return eid

    def exec_get(self, eid: str) -> ExecRecord:
        try:
            return self.execs[eid]
        except KeyError:
            raise NotFound(f"No such exec instance: {eid}") from None

    async def exec_run(self, rec: ExecRecord) -> tuple[Any, int, int | None, int | None]:
        """Start the exec'd process; its (process, out fd, err fd or None, stdin fd or None)."""
        run = self.running.get(rec.container_id)
        if run is None:
            raise Conflict(f"Container {rec.container_id} is not running")
        if rec.running or rec.exit_code is not None:
            raise Conflict(f"Error: Exec command {rec.id} has already run")
        tty = bool(rec.config.get("Tty"))
        stdin_r = stdin_w = None
        if rec.config.get("AttachStdin"):
            stdin_r, stdin_w = os.pipe()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        try:
            proc = await asyncio.to_thread(run.lc.exec, native.exec_config(rec.config),
                                           stdin_r if stdin_r is not None else subprocess.DEVNULL,
                                           subprocess.DEVNULL if tty else out_w, subprocess.DEVNULL if tty else err_w,
                lambda pid: self.networking.join(c, pid))
        except StartError as exc:
            rec.exit_code = exc.exit_code
            os.write(err_w, f"{exc}\n".encode())  # the client sees why, on stderr, as with dockerd
            if stdin_w is not None:
                os.close(stdin_w)
            return None, out_r, err_r, None
        finally:
            for fd in (stdin_r, out_w, err_w):
                if fd is not None:
                    try:
                        os.close(fd)
                    except OSError:
                        pass
        rec.running, rec.pid = True, proc.pid
        c = self.store.by_id.get(rec.container_id)
        if c is not None:
            self.event("exec_start: " + " ".join(rec.config["Cmd"]), c, {"execID": rec.id})
        if tty and proc.console is not None:
            os.close(out_r)
            os.close(err_r)
            return proc, os.dup(proc.console), None, stdin_w
        return proc, out_r, err_r, stdin_w

    async def exec_reap(self, rec: ExecRecord, proc: Any) -> None:
        code = await asyncio.to_thread(proc.wait)
        proc.close()
        rec.running, rec.exit_code = False, code
        c = self.store.by_id.get(rec.container_id)
        if c is not None:
            self.event("exec_die", c, {"execID": rec.id, "exitCode": str(code)})


class NotModified(Exception):
    http_status = 304


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
        c = store.get(job.args[0])
        code = await life.wait(c, job.getenv("condition") or "not-running")
        return {"StatusCode": code}

    async def pause(job: Job) -> None:
        await life.pause(store.get(job.args[0]), True)

    async def unpause(job: Job) -> None:
        await life.pause(store.get(job.args[0]), False)

    for name, fn in (("container_start", start), ("container_stop", stop), ("container_restart", restart),
                     ("container_kill", kill), ("container_wait", wait), ("container_pause", pause),
                     ("container_unpause", unpause)):
        engine.register(name, fn)
