"""/containers/{id}/start|stop|restart|kill|wait|pause|unpause|logs|attach|resize and /exec endpoints.

The streaming ones (logs, attach, exec start) are thin too: the engine's Lifecycle owns the
processes and their output; these handlers frame bytes onto the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import select
from collections.abc import AsyncIterator
from typing import Any

from ...engine import Engine
from ...engine import logs as logmod
from ...engine.containers.lifecycle import Lifecycle, read_fd
from ...engine.containers.store import ContainerStore
from ...engine.errors import Conflict, InvalidParameter
from ...engine.events import parse_time
from .. import detachkeys
from ..http import (
    RAW_STREAM,
    HijackResponse,
    RawStream,
    Request,
    Response,
    StreamResponse,
    empty,
    json_response,
)
from ..router import Router


class NotImplementedByDriver(Exception):
    http_status = 501


def register(router: Router, engine: Engine, store: ContainerStore, life: Lifecycle) -> None:
    def simple(job: str, status: int = 204):
        async def handler(request: Request) -> Response:
            await engine.run(job, request.params["id"], t=request.qint("t"), signal=request.q("signal"))
            return empty(status)
        return handler

    async def wait(request: Request) -> Response | StreamResponse:
        # As dockerd (API >= 1.30): the 200 head goes out as soon as the wait is registered, so a client
        # (docker run) can start or kill the container after it and not miss the exit; the body follows.
        registered = asyncio.Event()
        job = asyncio.ensure_future(engine.run("container_wait", request.params["id"],
                                               condition=request.q("condition"), registered=registered))
        signal = asyncio.ensure_future(registered.wait())
        await asyncio.wait({job, signal}, return_when=asyncio.FIRST_COMPLETED)
        signal.cancel()
        if job.done():  # failed (404, 400) or already answered: an ordinary response
            return json_response(job.result())
        return StreamResponse(_wait_body(job), content_type="application/json")

    async def logs(request: Request) -> StreamResponse:
        c = store.get(request.params["id"])
        out, err = request.qbool("stdout"), request.qbool("stderr")
        if not out and not err:
            raise InvalidParameter("Bad parameters: you must choose at least one stream")
        if ((c.host_config.get("LogConfig") or {}).get("Type") or "json-file") == "none":
            raise NotImplementedByDriver('configured logging driver does not support reading')
        tail = request.q("tail", "all")
        try:
            tail_n = None if tail in ("all", "", None) else int(tail)
        except ValueError:
            tail_n = None
        opts = logmod.ReadOptions(stdout=out, stderr=err, since=parse_time(request.q("since"), "since") or None,
                                  until=parse_time(request.q("until"), "until") or None, tail=tail_n,
                                  timestamps=request.qbool("timestamps"), follow=request.qbool("follow"),
                                  tty=bool(c.config.get("Tty")), details=request.qbool("details"))
        if not c.log_path:
            async def nothing() -> AsyncIterator[bytes]:
                if False:
                    yield b""
            return StreamResponse(nothing(), content_type=RAW_STREAM)
        opened = logmod.open_files(c.log_path)  # before the head: the container may be removed meanwhile
        return StreamResponse(logmod.read(c.log_path, opts, life.finished(c), opened), content_type=RAW_STREAM)

    async def attach(request: Request) -> HijackResponse:
        c = store.get(request.params["id"])
        tty = bool(c.config.get("Tty"))
        want = {1: request.qbool("stdout"), 2: request.qbool("stderr")}
        use_stdin, stream, replay = request.qbool("stdin"), request.qbool("stream"), request.qbool("logs")
        try:
            keys = detachkeys.parse(request.q("detachKeys"))
        except detachkeys.InvalidDetachKeys as exc:
            raise InvalidParameter(str(exc)) from None
        queue = life.subscribe(c) if stream else None

        def frame(stream_no: int, data: bytes) -> bytes:
            return data if tty else logmod.frame(stream_no, data)

        async def run(raw: RawStream) -> None:
            try:
                if replay and c.log_path:
                    opts = logmod.ReadOptions(stdout=want[1], stderr=want[2], tty=tty)
                    async for chunk in logmod.read(c.log_path, opts):
                        await raw.write(chunk)
                pump = asyncio.ensure_future(_stdin_pump(raw, c)) if use_stdin else None
                if queue is not None:
                    while (item := await queue.get()) is not None:
                        if want[item[0]]:
                            await raw.write(frame(*item))
                if pump is not None:
                    pump.cancel()
            except (ConnectionError, OSError):
                pass
            finally:
                if queue is not None:
                    life.unsubscribe(c, queue)
                raw.close_write()

        async def _stdin_pump(raw: RawStream, c=c) -> None:
            watcher = detachkeys.Watcher(keys) if tty else None  # as dockerd: only a TTY attach detaches
            while data := await raw.read():
                detached = False
                if watcher is not None:
                    data, detached = watcher.feed(data)
                if data:
                    await life.write_stdin(c, data)
                if detached:  # end this attach; the container keeps running (and its stdin open)
                    if queue is not None:
                        queue.put_nowait(None)
                    return
            if c.config.get("StdinOnce") and not tty:  # as dockerd: a TTY's stdin stays open for the next attach
                life.close_stdin(c)

        return HijackResponse(run, content_type=RAW_STREAM)  # 1.41: raw-stream even when framed (1.42 changed it)

    async def resize(request: Request) -> Response:
        c = store.get(request.params["id"])
        life.resize(c, request.qint("h", 0) or 0, request.qint("w", 0) or 0)
        return Response(200)

    async def exec_create(request: Request) -> Response:
        c = store.get(request.params["id"])
        body = await request.json(required=True)
        return json_response({"Id": life.exec_create(c, body)}, 201)

    async def exec_inspect(request: Request) -> Response:
        rec = life.exec_get(request.params["id"])
        cfg = rec.config
        return json_response({
            "CanRemove": False, "ContainerID": rec.container_id, "DetachKeys": "",
            "ExitCode": rec.exit_code,  # null until it ended, as dockerd: docker-py reads the key at once
            "ID": rec.id, "OpenStderr": bool(cfg.get("AttachStderr")), "OpenStdin": bool(cfg.get("AttachStdin")),
            "OpenStdout": bool(cfg.get("AttachStdout")), "Running": rec.running, "Pid": rec.pid,
            "ProcessConfig": {"arguments": list(cfg["Cmd"][1:]), "entrypoint": cfg["Cmd"][0],
                              "privileged": bool(cfg.get("Privileged")), "tty": bool(cfg.get("Tty")),
                              "user": cfg.get("User") or ""}})

    async def exec_start(request: Request) -> Response | HijackResponse:
        rec = life.exec_get(request.params["id"])
        body = await request.json() or {}
        life.exec_check(rec)  # a paused container: 409 before any hijack, as dockerd
        tty = bool(rec.config.get("Tty"))
        if body.get("Detach"):
            proc, out_fd, err_fd, stdin_fd = await life.exec_run(rec)
            if proc is not None:
                asyncio.ensure_future(life.exec_reap(rec, proc))
            for fd in (out_fd, err_fd, stdin_fd):
                if fd is not None:
                    with contextlib.suppress(OSError):
                        os.close(fd)
            return Response(200)

        async def run(raw: RawStream) -> None:
            # As dockerd, the process starts only after the hijack head went out: output that arrived
            # with the head would land in the client's HTTP buffer, where docker-py never reads it.
            try:
                proc, out_fd, err_fd, stdin_fd = await life.exec_run(rec)
            except Conflict as exc:
                # dockerd hijacks first and writes why the exec cannot start (already run) into the stream
                line = f"{exc}\r\n".encode()
                with contextlib.suppress(ConnectionError, OSError):
                    await raw.write(line if tty else logmod.frame(1, line))
                raw.close_write()
                return
            reaper = asyncio.ensure_future(life.exec_reap(rec, proc)) if proc is not None else None
            if tty and stdin_fd is not None and getattr(proc, "console", None) is not None:
                # a TTY exec reads the pty slave, not the stdin pipe: what the client types goes to the console
                os.close(stdin_fd)
                stdin_fd = os.dup(out_fd)
            queue: asyncio.Queue[tuple[int, bytes] | None] = asyncio.Queue()

            async def drain(fd: int, no: int) -> None:
                async for data in read_fd(fd):
                    await queue.put((no, data))
                await queue.put(None)

            readers = [asyncio.ensure_future(drain(out_fd, 1))]
            if err_fd is not None:
                readers.append(asyncio.ensure_future(drain(err_fd, 2)))

            async def stdin_pump(fd: int) -> None:
                while data := await raw.read():
                    await asyncio.to_thread(_write_all, fd, data)
                os.close(fd)
            pump = asyncio.ensure_future(stdin_pump(stdin_fd)) if stdin_fd is not None else None
            open_streams = len(readers)
            try:
                while open_streams:
                    item = await queue.get()
                    if item is None:
                        open_streams -= 1
                        continue
                    if not rec.config.get("AttachStdout" if item[0] == 1 else "AttachStderr", True):
                        continue
                    await raw.write(item[1] if tty else logmod.frame(*item))
                if reaper is not None:
                    await reaper
            except (ConnectionError, OSError):
                pass
            finally:
                if pump is not None:
                    pump.cancel()
                raw.close_write()
        return HijackResponse(run, content_type=RAW_STREAM)

    async def exec_resize(request: Request) -> Response:
        h, w = _atoi(request.q("h")), _atoi(request.q("w"))  # both required, as dockerd
        rec = life.exec_get(request.params["id"])
        await _until_started(rec)
        life.exec_resize(rec, h, w)
        return Response(200)

    for verb, job in (("start", "container_start"), ("stop", "container_stop"), ("restart", "container_restart"),
                      ("kill", "container_kill"), ("pause", "container_pause"), ("unpause", "container_unpause")):
        router.add("POST", f"/containers/{{id}}/{verb}", simple(job))
    router.add("POST", "/containers/{id}/wait", wait)
    router.add("GET", "/containers/{id}/logs", logs)
    router.add("POST", "/containers/{id}/attach", attach)
    router.add("POST", "/containers/{id}/resize", resize)
    router.add("POST", "/containers/{id}/exec", exec_create)
    router.add("GET", "/exec/{id}/json", exec_inspect)
    router.add("POST", "/exec/{id}/start", exec_start)
    router.add("POST", "/exec/{id}/resize", exec_resize)


_GO_INT = re.compile(r"[+-]?[0-9]+")


def _atoi(value: str | None) -> int:
    """Go's strconv.Atoi, with its error text: dockerd parses resize sizes so and answers 400."""
    text = value or ""
    if not _GO_INT.fullmatch(text):
        raise InvalidParameter(f'strconv.Atoi: parsing "{text}": invalid syntax')
    return int(text)


async def _wait_body(job: asyncio.Future[Any]) -> AsyncIterator[bytes]:
    """The wait response's body once the job ends; the job is dropped if the client goes away."""
    try:
        try:
            body = await job
        except Exception as exc:  # after the head only the body can carry an error (dockerd's Error field)
            cause = getattr(exc, "cause", exc)
            body = {"StatusCode": -1, "Error": {"Message": str(cause)}}
        yield (json.dumps(body) + "\n").encode()
    finally:
        job.cancel()


async def _until_started(rec: Any, limit: float = 10.0) -> None:
    """Wait while an exec is claimed but its process not spawned yet: the process starts after the
    hijack head, and a client resizes as soon as it has that head (dockerd waits too, up to 10 s)."""
    deadline = asyncio.get_running_loop().time() + limit
    while rec.running and rec.proc is None and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.01)


def _write_all(fd: int, data: bytes) -> None:
    """Write every byte, also to a non-blocking fd (a TTY exec's console shares the reader's O_NONBLOCK)."""
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view):]
        except BlockingIOError:
            select.select([], [fd], [], 1.0)

