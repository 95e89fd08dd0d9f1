"""The daemon's event log: recent events kept in memory for `since`/`until` windows, and live subscribers.

Event records have dockerd's shape (Type, Action, Actor{ID, Attributes}, scope, time, timeNano and,
for containers, the legacy status/id/from fields). Like dockerd the log is bounded (the last 1024).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from . import filters as flt
from .engine import Engine, Job
from .errors import InvalidParameter

TYPES = ("container", "image", "volume", "network", "daemon", "plugin", "node", "service", "secret", "config")
FILTERS = ("container", "daemon", "event", "image", "label", "network", "node", "plugin", "scope", "type",
           "volume", "config", "secret", "service")
KEEP = 1024


@dataclass(frozen=True)
class Event:
    type: str
    action: str
    actor_id: str
    attributes: dict[str, str]
    time_nano: int
    scope: str = "local"

    def api(self) -> dict[str, Any]:
        out: dict[str, Any] = {"Type": self.type, "Action": self.action,
                               "Actor": {"ID": self.actor_id, "Attributes": dict(self.attributes)},
                               "scope": self.scope, "time": self.time_nano // 1_000_000_000, "timeNano": self.time_nano}
        if self.type in ("container", "image"):  # the pre-1.22 fields docker clients still read
            out["status"] = self.action
            out["id"] = self.actor_id
            if self.type == "container" and "image" in self.attributes:
                out["from"] = self.attributes["image"]
        return out


def parse_time(value: str | None, name: str) -> int | None:
    """`since`/`until`: Unix seconds with an optional fraction (what clients send) → nanoseconds."""
    if value is None or value == "":
        return None
    try:
        sec, _, frac = value.partition(".")
        return int(sec) * 1_000_000_000 + int((frac + "000000000")[:9])
    except ValueError:
        raise InvalidParameter(f"invalid value for {name}: {value!r} is not a Unix timestamp") from None


class EventLog:
    def __init__(self) -> None:
        self.recent: deque[Event] = deque(maxlen=KEEP)
        self.subscribers: set[asyncio.Queue[Event]] = set()

    def emit(self, type_: str, action: str, actor_id: str, attributes: dict[str, str] | None = None) -> Event:
        ev = Event(type_, action, actor_id, dict(attributes or {}), time.time_ns())
        self.recent.append(ev)
        for q in list(self.subscribers):
            q.put_nowait(ev)
        return ev

    def matches(self, ev: Event, f: flt.Filters) -> bool:
        """Values of one key are OR'ed, keys are AND'ed (dockerd's event filter)."""
        if "type" in f and ev.type not in f["type"]:
            return False
        if "event" in f and not any(ev.action == e or ev.action.split(":")[0] == e for e in f["event"]):
            return False
        if "scope" in f and ev.scope not in f["scope"]:
            return False
        for key in ("container", "image", "volume", "network", "daemon"):
            if key in f:
                if ev.type != key and not (key == "image" and ev.type == "container"):
                    return False
                if key == "image" and ev.type == "container":
                    names = {ev.attributes.get("image", "")}
                else:
                    names = {ev.actor_id, ev.actor_id[:12], ev.attributes.get("name", "")}
                if not any(v in names or (len(v) >= 12 and ev.actor_id.startswith(v)) for v in f[key]):
                    return False
        if "label" in f and not flt.match_labels(ev.attributes, f["label"]):
            return False
        return True

    async def stream(self, f: flt.Filters, since: int | None, until: int | None) -> AsyncIterator[bytes]:
        """Past events in the window, then (if `until` is not past) live ones until `until`."""
        queue: asyncio.Queue[Event] = asyncio.Queue()
        self.subscribers.add(queue)  # subscribe first: nothing emitted meanwhile is lost
        try:
            last = 0
            if since is not None or until is not None:  # until alone: the recent events up to it (as dockerd)
                for ev in list(self.recent):
                    if (since is not None and ev.time_nano < since) or (until is not None and ev.time_nano > until):
                        continue
                    if self.matches(ev, f):
                        last = ev.time_nano
                        yield _line(ev)
            while True:
                timeout = None
                if until is not None:
                    timeout = (until - time.time_ns()) / 1e9
                    if timeout <= 0:
                        return
                try:
                    ev = await asyncio.wait_for(queue.get(), timeout)
                except TimeoutError:
                    return
                if ev.time_nano <= last or (since is not None and ev.time_nano < since):
                    continue
                if until is not None and ev.time_nano > until:
                    return
                if self.matches(ev, f):
                    yield _line(ev)
        finally:
            self.subscribers.discard(queue)


def _line(ev: Event) -> bytes:
    return json.dumps(ev.api()).encode() + b"\n"


def register(engine: Engine, log: EventLog) -> None:
    def events(job: Job) -> AsyncIterator[bytes]:
        f = flt.parse(job.getenv("filters"), FILTERS)
        for t in f.get("type", []):
            if t not in TYPES:
                raise InvalidParameter(f"Invalid filter 'type={t}'")
        since = parse_time(job.getenv("since"), "since")
        until = parse_time(job.getenv("until"), "until")
        if since is not None and until is not None and since > until:
            raise InvalidParameter("`since` time must be before `until` time")
        return log.stream(f, since, until)

    engine.register("events", events)
