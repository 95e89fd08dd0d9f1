"""Which daemons are measured, whether they answer, and the per-target session.

A target is NAME=URL. The defaults are dockerd (unix:///var/run/docker.sock, the reference), podman's
compat API when --podman is given, and refengine at refengined's default socket: a target whose socket
does not answer is reported as "not measured: <reason>", never guessed. `--refengine embedded` starts
refengined on a temporary socket for the run (conformance.embedded) and stops it after.

The session loads the harness's busybox probe image (POST /images/load), labels every container it
creates with org.conformance.bench=<run id>, and removes containers and images at the end.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from typing import Any

from conformance.probe_image import ProbeImages
from conformance.target import Target, TargetError, parse_target

from . import BENCH_LABEL
from .client import Api, ApiError, Reply, parallel

REFERENCE_NAME = "dockerd"
DOCKERD_URL = "unix:///var/run/docker.sock"
REFENGINE_URL = "unix:///run/refengine.sock"  # refengined's default listener (refengine.daemon.server)
EMBEDDED = "embedded"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class NotMeasured(Exception):
    """A target or a figure that could not be measured; the message is the reason shown."""


@dataclass(frozen=True)
class TargetSpec:
    name: str
    url: str  # a daemon URL, or "embedded" (refengined started for the run)


def parse_target_arg(text: str) -> TargetSpec:
    """`NAME=URL` from the command line."""
    name, sep, url = text.partition("=")
    if not sep or not name or not url:
        raise ValueError(f"--target wants NAME=URL, got {text!r}")
    if not NAME_RE.match(name):
        raise ValueError(f"target name {name!r}: use letters, digits, '_', '.', '-'")
    if url != EMBEDDED:
        try:
            parse_target(url)
        except TargetError as exc:
            raise ValueError(str(exc)) from None
    return TargetSpec(name, url)


def choose_targets(explicit: list[TargetSpec], podman: str | None, refengine: str | None) -> list[TargetSpec]:
    """The targets of a run: the explicit ones (else dockerd), then podman and refengine when asked for.

    With no --target and no --refengine, refengine is tried at its default socket; `--refengine none`
    leaves it out.
    """
    specs = list(explicit) or [TargetSpec(REFERENCE_NAME, DOCKERD_URL)]
    if podman:
        specs.append(TargetSpec("podman", podman))
    if refengine is None and not explicit:
        refengine = REFENGINE_URL
    if refengine and refengine != "none":
        specs.append(TargetSpec("refengine", refengine))
    names = [s.name for s in specs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"target names must be unique: {', '.join(dupes)}")
    return specs


def reference_of(specs: list[TargetSpec], wanted: str | None) -> str:
    """The target the ratios are taken against: `wanted`, else dockerd, else the first target."""
    names = [s.name for s in specs]
    if wanted:
        if wanted not in names:
            raise ValueError(f"reference {wanted!r} is not one of the targets {names}")
        return wanted
    return REFERENCE_NAME if REFERENCE_NAME in names else names[0]


def reach(url: str, timeout: float = 5.0) -> tuple[Target, dict[str, Any]]:
    """Parse and ping a target; its /version. Raises NotMeasured with the reason when it does not answer."""
    try:
        target = parse_target(url)
    except TargetError as exc:
        raise NotMeasured(str(exc)) from None
    if not target.is_local:
        raise NotMeasured(f"{url} is not local: only unix sockets and loopback TCP are measured")
    api = Api(target, timeout=timeout)
    try:
        ping = api.get("/_ping")
        if ping.status != 200:
            raise NotMeasured(f"{url} answers GET /_ping with {ping.status} {ping.body[:100]!r}")
        version = api.get("/version").expect("GET /version", 200).json()
    except FileNotFoundError:
        raise NotMeasured(f"no socket at {target.path} (daemon not running)") from None
    except (OSError, ApiError, ValueError) as exc:
        raise NotMeasured(f"{url} does not answer: {exc}") from None
    finally:
        api.close()
    return target, version


def version_summary(version: dict[str, Any]) -> dict[str, Any]:
    """The parts of /version a report shows: product version, API version, components."""
    comps = {c.get("Name"): c.get("Version") for c in version.get("Components") or [] if c.get("Name")}
    return {"Version": version.get("Version"), "ApiVersion": version.get("ApiVersion"),
            "MinAPIVersion": version.get("MinAPIVersion"), "Os": version.get("Os"), "Arch": version.get("Arch"),
            "KernelVersion": version.get("KernelVersion"), "Platform": (version.get("Platform") or {}).get("Name"),
            "Components": comps}


@dataclass
class Session:
    """One target during the run: its probe image and every container created, for the cleanup."""

    name: str
    target: Target
    run_id: str
    version: dict[str, Any]
    api: Api = field(init=False)
    image: str | None = None
    image_error: str | None = None
    images: list[str] = field(default_factory=list)
    containers: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.api = Api(self.target)

    @property
    def label(self) -> str:
        return f"{BENCH_LABEL}={self.run_id}"

    # -- the probe image ------------------------------------------------------------------------
    def load_probe(self, names: ProbeImages, tar: bytes) -> None:
        """POST /images/load of the harness's busybox probe tar; the base image is what containers run."""
        resp = self.api.post("/images/load", params={"quiet": 1}, data=tar,
                             headers={"Content-Type": "application/x-tar"})
        self.images.extend(names.all)
        if resp.status != 200 or b'"error' in resp.body:
            raise NotMeasured(f"loading the probe image failed: {resp.status} {resp.body[:300]!r}")
        self.api.get(f"/images/{names.base}/json").expect(f"inspecting the loaded probe image {names.base}", 200)
        self.image = names.base

    # -- containers -----------------------------------------------------------------------------
    def config(self, cmd: list[str], **extra: Any) -> dict[str, Any]:
        if not self.image:
            raise NotMeasured(self.image_error or "no probe image on this target")
        labels = {**(extra.pop("Labels", None) or {}), BENCH_LABEL: self.run_id}
        return {"Image": self.image, "Cmd": cmd, "Labels": labels, **extra}

    def create(self, api: Api, cmd: list[str], **extra: Any) -> str:
        resp = api.post("/containers/create", self.config(cmd, **extra)).expect("creating a container", 201)
        cid = str(resp.json()["Id"])
        with self._lock:
            self.containers.add(cid)
        return cid

    def start(self, api: Api, cid: str) -> None:
        api.post(f"/containers/{cid}/start").expect(f"starting {cid[:12]}", 204)

    def wait(self, api: Api, cid: str) -> int:
        return int(api.post(f"/containers/{cid}/wait").expect(f"waiting for {cid[:12]}", 200).json()["StatusCode"])

    def stop(self, api: Api, cid: str, timeout: int = 10) -> None:
        api.post(f"/containers/{cid}/stop", params={"t": timeout}).expect(f"stopping {cid[:12]}", 204, 304)

    def remove(self, api: Api, cid: str, force: bool = False) -> None:
        params = {"v": 1, **({"force": 1} if force else {})}
        api.delete(f"/containers/{cid}", params=params).expect(f"removing {cid[:12]}", 204)
        with self._lock:
            self.containers.discard(cid)

    def inspect(self, api: Api, cid: str) -> dict[str, Any]:
        return api.get(f"/containers/{cid}/json").expect(f"inspecting {cid[:12]}", 200).json()

    def remove_all(self, cids: list[str], workers: int = 8) -> None:
        """Force-remove containers (concurrently); a 404 counts as removed."""
        def rm(api: Api, cid: str) -> None:
            resp = api.delete(f"/containers/{cid}", params={"force": 1, "v": 1})
            if resp.status in (204, 404):
                with self._lock:
                    self.containers.discard(cid)
        parallel(self.target, rm, cids, workers)

    def labelled(self) -> list[str]:
        """IDs of every container carrying this run's label (the daemon's view)."""
        resp = self.api.get("/containers/json", params={"all": 1, "filters": {"label": [self.label]}})
        if resp.status != 200:
            return []
        return [str(c["Id"]) for c in resp.json()]

    def cleanup(self) -> list[str]:
        """Remove every container and image of the run; what could not be removed, as messages."""
        problems: list[str] = []
        try:
            cids = sorted(self.containers | set(self.labelled()))
            self.remove_all(cids)
            left = sorted(self.containers | set(self.labelled()))
            problems += [f"container {cid[:12]} could not be removed" for cid in left]
        except (OSError, ApiError, ValueError) as exc:
            problems.append(f"removing containers: {exc}")
        for ref in self.images:
            try:
                resp: Reply = self.api.delete(f"/images/{ref}")
                if resp.status not in (200, 404):
                    problems.append(f"image {ref}: {resp.status} {resp.body[:200]!r}")
            except OSError as exc:
                problems.append(f"image {ref}: {exc}")
        self.images.clear()
        self.api.close()
        return problems
