"""Named jobs with args, env, stdio and a status: the seam between the API server and the subsystems.

The server never calls a subsystem directly: a handler makes a job (`engine.job("container_create",
args, env)`), wires its stdio, runs it and turns its status, output or error into HTTP. Subsystems
register handlers at start-up. This keeps handlers thin and lets a job be run without HTTP at all
(the tests and the client's embedded mode do).
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

# Status codes a job ends with; 0 is success, like a process.
OK, FAILED, NOT_FOUND = 0, 1, 127


class JobNotFound(LookupError):
    """No handler is registered under this job name."""


class JobError(Exception):
    """A job that failed: `status` is its exit status, `cause` the exception its handler raised."""

    def __init__(self, job: Job, cause: BaseException) -> None:
        super().__init__(f"job {job.name}: {cause}")
        self.job, self.cause = job, cause


class Output:
    """A job's stdout/stderr: chunks are kept and, if a sink is attached, forwarded as they come."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.sinks: list[Callable[[bytes], Awaitable[None] | None]] = []

    def add_sink(self, sink: Callable[[bytes], Awaitable[None] | None]) -> None:
        self.sinks.append(sink)

    async def write(self, data: bytes) -> None:
        self.chunks.append(data)
        for sink in self.sinks:
            res = sink(data)
            if inspect.isawaitable(res):
                await res

    def getvalue(self) -> bytes:
        return b"".join(self.chunks)


@dataclass
class Job:
    """One unit of work: a name, positional args, an environment of named values, stdio and a status."""

    engine: Engine
    name: str
    args: list[str] = field(default_factory=list)
    env: dict[str, Any] = field(default_factory=dict)
    stdin: asyncio.StreamReader | None = None
    stdout: Output = field(default_factory=Output)
    stderr: Output = field(default_factory=Output)
    status: int | None = None  # None until it has run
    result: Any = None  # what the handler returned (a record the server can serialise)
    started: float = 0.0
    ended: float = 0.0

    def getenv(self, key: str, default: Any = None) -> Any:
        return self.env.get(key, default)

    async def run(self) -> Any:
        """Run the job's handler; its return value becomes `result`. Raises JobError on failure."""
        handler = self.engine.handler(self.name)
        self.started = time.monotonic()
        try:
            res = handler(self)
            self.result = await res if inspect.isawaitable(res) else res
            self.status = OK
            return self.result
        except BaseException as exc:
            self.status = FAILED
            if isinstance(exc, (asyncio.CancelledError, KeyboardInterrupt)):
                raise
            raise JobError(self, exc) from exc
        finally:
            self.ended = time.monotonic()


Handler = Callable[[Job], Any]


class Engine:
    """The registry of job handlers; the one object every subsystem registers with at start-up."""

    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}

    def register(self, name: str, handler: Handler) -> None:
        if name in self._handlers:
            raise ValueError(f"job {name!r} is already registered")
        self._handlers[name] = handler

    def handler(self, name: str) -> Handler:
        try:
            return self._handlers[name]
        except KeyError:
            raise JobNotFound(f"no such job: {name}") from None

    def job(self, job_name: str, /, *args: str, **env: Any) -> Job:
        """A new job (not yet run). Unknown names fail here, before anything was started."""
        self.handler(job_name)
        return Job(self, job_name, list(args), dict(env))

    async def run(self, job_name: str, /, *args: str, **env: Any) -> Any:
        """Make and run a job; its result."""
        return await self.job(job_name, *args, **env).run()

    @property
    def jobs(self) -> list[str]:
        return sorted(self._handlers)
