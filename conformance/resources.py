"""Factories for what checks create on the target: every object labelled with the run, removed after.

All containers, networks and volumes carry the label `org.conformance.run=<run id>` so the
end-of-run leak check can find anything a check forgot; image tags carry the run id in their name.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from typing import Any

from .client import RECORD, ApiClient
from .probe_image import ProbeImages

RUN_LABEL = "org.conformance.run"
# A container command's step that waits (20 s at most) until Containers.let_go: a check can then act on the
# container at a known point (attach in place, a first line read) instead of sleeping.
AWAIT_GO = "i=0; while [ ! -e /tmp/go ] && [ $i -lt 400 ]; do sleep 0.05; i=$((i+1)); done"


@dataclass
class Names:
    """Unique, valid object names for one run: conf-<run>-<what>-<n>."""

    run_id: str
    worker: str = "gw0"
    _counter: itertools.count = field(default_factory=itertools.count)

    def __call__(self, what: str = "obj") -> str:
        return f"conf-{self.run_id}-{self.worker}-{what}-{next(self._counter)}"


@dataclass
class Result:
    """What a command run in a container (or exec'd into one) did."""

    cid: str
    exit_code: int
    stdout: str
    stderr: str

    def describe(self) -> str:
        """For assertion messages: exit code and both streams, clipped."""
        return f"exit {self.exit_code}, stdout {self.stdout[-400:]!r}, stderr {self.stderr[-400:]!r}"


def _expect(resp: Any, status: int | tuple[int, ...], what: str) -> None:
    wanted = (status,) if isinstance(status, int) else status
    assert resp.status_code in wanted, (
        f"{what}: the daemon answered {resp.status_code} {resp.text[:300]!r}, expected {wanted}")


class Containers:
    """Create/run containers from the probe image; force-removes them (and their volumes) after."""

    def __init__(self, api: ApiClient, probe: ProbeImages, run_id: str) -> None:
        self.api, self.probe, self.run_id = api, probe, run_id
        self.created: list[str] = []

    def config(self, cmd: list[str] | None = None, image: str | None = None, **extra: Any) -> dict[str, Any]:
        cfg: dict[str, Any] = {"Image": image or self.probe.base}
        if cmd is not None:
            cfg["Cmd"] = cmd
        labels = dict(extra.pop("Labels", {}) or {})
        labels[RUN_LABEL] = self.run_id
        cfg["Labels"] = labels
        cfg.update(extra)
        return cfg

    def create(self, cmd: list[str] | None = None, *, name: str | None = None, image: str | None = None,
               **extra: Any) -> str:
        """Create (not start) a container; returns its ID."""
        params = {"name": name} if name else None
        resp = self.api.post("/containers/create", self.config(cmd, image, **extra), params=params, validate=RECORD)
        _expect(resp, 201, f"creating a container from {image or self.probe.base}")
        cid = resp.json()["Id"]
        self.created.append(cid)
        return cid

    def adopt(self, cid: str) -> str:
        """Remember a container created by hand so it is removed too."""
        self.created.append(cid)
        return cid

    def start(self, cid: str) -> None:
        _expect(self.api.post(f"/containers/{cid}/start", validate=RECORD), 204, f"starting {cid[:12]}")

    def run(self, cmd: list[str] | None = None, **kw: Any) -> str:
        """Create and start; returns the ID."""
        cid = self.create(cmd, **kw)
        self.start(cid)
        return cid

    def run_long(self, **kw: Any) -> str:
        """A running container that stays up (sleeps) until the check stops it."""
        return self.run(["sleep", "3600"], **kw)

    def wait(self, cid: str, timeout: float = 60) -> int:
        resp = self.api.post(f"/containers/{cid}/wait", timeout=timeout, validate=RECORD)
        _expect(resp, 200, f"waiting for {cid[:12]}")
        return int(resp.json()["StatusCode"])

    def run_to_exit(self, cmd: list[str], **kw: Any) -> tuple[str, int]:
        cid = self.run(cmd, **kw)
        return cid, self.wait(cid)

    def inspect(self, cid: str) -> dict[str, Any]:
        resp = self.api.get(f"/containers/{cid}/json", validate=RECORD)
        _expect(resp, 200, f"inspecting {cid[:12]}")
        return resp.json()

    def wait_for_state(self, cid: str, key: str, value: Any, timeout: float = 20) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            state = self.inspect(cid)["State"]
            if state.get(key) == value or time.monotonic() > deadline:
                return state
            time.sleep(0.1)

    def output(self, cid: str) -> str:
        """stdout+stderr of a finished non-TTY container, demultiplexed."""
        from .streams import demux
        resp = self.api.get(f"/containers/{cid}/logs", params={"stdout": 1, "stderr": 1}, validate=RECORD)
        _expect(resp, 200, f"reading logs of {cid[:12]}")
        parts = demux(resp.content)
        return (parts.get(1, b"") + parts.get(2, b"")).decode()

    def run_output(self, cmd: list[str] | None, timeout: float = 60, **kw: Any) -> Result:
        """Run a command to its end; its exit code and demultiplexed stdout/stderr."""
        from .streams import demux
        cid = self.run(cmd, **kw)
        code = self.wait(cid, timeout=timeout)
        resp = self.api.get(f"/containers/{cid}/logs", params={"stdout": 1, "stderr": 1}, validate=RECORD)
        _expect(resp, 200, f"reading logs of {cid[:12]}")
        parts = demux(resp.content)
        return Result(cid, code, parts.get(1, b"").decode(errors="replace"), parts.get(2, b"").decode(errors="replace"))

    def exec(self, cid: str, cmd: list[str], timeout: float = 30, **cfg: Any) -> Result:
        """Run a command in a running container through exec (the setns path) and wait for its exit code.

        `cfg` goes into the exec config as is (User, Privileged, Env, WorkingDir ...).
        """
        from .streams import demux, hijack
        body = {"Cmd": cmd, "AttachStdout": True, "AttachStderr": True, **cfg}
        resp = self.api.post(f"/containers/{cid}/exec", body, validate=RECORD)
        _expect(resp, 201, f"creating an exec in {cid[:12]}")
        eid = resp.json()["Id"]
        prefix = f"/v{self.api.version}" if self.api.version else ""
        conn = hijack(self.api.target, "POST", f"{prefix}/exec/{eid}/start", {"Detach": False, "Tty": False})
        try:
            assert conn.response.status in (101, 200), (
                f"starting exec {cmd!r} answered {conn.response.status} {conn.response.body[:200]!r}")
            parts = demux(conn.read_all(timeout=timeout))
        finally:
            conn.close()
        deadline = time.monotonic() + 10
        while True:  # the stream can close a moment before the daemon records the exit code
            info = self.api.get(f"/exec/{eid}/json", validate=RECORD).json()
            if not info.get("Running") and info.get("ExitCode") is not None:
                break
            assert time.monotonic() < deadline, f"exec {cmd!r} still running {timeout + 10:.0f} s after its output ended"
            time.sleep(0.05)
        return Result(cid, int(info["ExitCode"]), parts.get(1, b"").decode(errors="replace"),
                      parts.get(2, b"").decode(errors="replace"))

    def let_go(self, cid: str) -> None:
        """Let a container waiting in AWAIT_GO go on: a detached exec, as the container may exit before an
        attached one could report its exit code."""
        resp = self.api.post(f"/containers/{cid}/exec", {"Cmd": ["touch", "/tmp/go"]}, validate=RECORD)
        assert resp.status_code == 201, f"creating the exec that lets the container go on answered {resp.status_code}"
        resp = self.api.post(f"/exec/{resp.json()['Id']}/start", {"Detach": True}, validate=RECORD)
        assert resp.status_code == 200, f"starting the exec that lets the container go on answered {resp.status_code}"

    def cleanup(self) -> None:
        for cid in reversed(self.created):
            self.api.delete(f"/containers/{cid}", params={"force": 1, "v": 1}, validate=RECORD)
        self.created.clear()


class Volumes:
    def __init__(self, api: ApiClient, names: Names, run_id: str) -> None:
        self.api, self.names, self.run_id = api, names, run_id
        self.created: list[str] = []

    def create(self, name: str | None = None, labels: dict[str, str] | None = None, **extra: Any) -> dict:
        body = {"Name": name or self.names("vol"), "Labels": {**(labels or {}), RUN_LABEL: self.run_id}, **extra}
        resp = self.api.post("/volumes/create", body, validate=RECORD)
        _expect(resp, (200, 201), "creating a volume")
        vol = resp.json()
        self.created.append(vol["Name"])
        return vol

    def adopt(self, name: str) -> str:
        self.created.append(name)
        return name

    def cleanup(self) -> None:
        for name in reversed(self.created):
            self.api.delete(f"/volumes/{name}", params={"force": 1}, validate=RECORD)
        self.created.clear()


class Networks:
    def __init__(self, api: ApiClient, names: Names, run_id: str) -> None:
        self.api, self.names, self.run_id = api, names, run_id
        self.created: list[str] = []

    def create(self, name: str | None = None, labels: dict[str, str] | None = None, **extra: Any) -> str:
        body = {"Name": name or self.names("net"), "CheckDuplicate": True,
                "Labels": {**(labels or {}), RUN_LABEL: self.run_id}, **extra}
        resp = self.api.post("/networks/create", body, validate=RECORD)
        _expect(resp, 201, "creating a network")
        nid = resp.json()["Id"]
        self.created.append(nid)
        return nid

    def adopt(self, nid: str) -> str:
        self.created.append(nid)
        return nid

    def cleanup(self) -> None:
        for nid in reversed(self.created):
            self.api.delete(f"/networks/{nid}", validate=RECORD)
        self.created.clear()


class Images:
    """Tags made by checks: names carry the run id; removed after the check."""

    def __init__(self, api: ApiClient, names: Names) -> None:
        self.api, self.names = api, names
        self.created: list[str] = []

    def new_ref(self, what: str = "img", tag: str = "t") -> tuple[str, str]:
        repo = self.names(what)
        self.created.append(f"{repo}:{tag}")
        return repo, tag

    def adopt(self, ref: str) -> str:
        self.created.append(ref)
        return ref

    def cleanup(self) -> None:
        for ref in reversed(self.created):
            self.api.delete(f"/images/{ref}", params={"force": 1}, validate=RECORD)
        self.created.clear()
