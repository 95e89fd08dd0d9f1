"""Wall time of the conformance suite's areas against a target, with 1 and 2 xdist workers (--suite).

By default all areas run in one pytest session per worker count, and an area's time is the span from
its first check's start to its last check's end (the report's per-check `start`/`stop`): the
session's own start-up (schema, probe image, capability probes) and end (leak check) are counted
once, in the session's row, not once per area. Under -n 2 two neighbouring areas overlap for the
moment one worker finishes an area while the other has begun the next, so the areas' times add up
to a little more than the session's checks took. `per_area=True` runs each area in a pytest process
of its own instead (exact stand-alone wall times, start-up included, at the cost of repeating it).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from typing import Any

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
AREAS = ("api", "isolation", "cgroups", "network")
SESSION = "all"  # the area name of a session's own row


def available_areas(root: str = REPO) -> list[str]:
    """The areas of conformance/ that exist and hold checks (test_*.py)."""
    out = []
    for area in AREAS:
        path = os.path.join(root, "conformance", area)
        if os.path.isdir(path) and any(n.startswith("test_") and n.endswith(".py") for n in os.listdir(path)):
            out.append(area)
    return out


@dataclass
class SuiteRun:
    area: str  # an area, or SESSION for the whole session's wall time
    workers: int
    seconds: float
    returncode: int | None
    counts: dict[str, int] = field(default_factory=dict)
    error: str = ""
    how: str = "session"  # "session": the area's span inside one session; "process": a pytest run of its own
    outside_checks: float | None = None  # the session row: its seconds before the first and after the last check

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def command(areas: list[str], workers: int, url: str, report_dir: str) -> list[str]:
    return [sys.executable, "-m", "pytest", *(f"conformance/{a}" for a in areas), "-p", "no:cacheprovider",
            "-n", str(workers), "--target", url, "--report-dir", report_dir, "--report-name", "run", "-q"]


def run_session(areas: list[str], workers: int, url: str, timeout: float) -> list[SuiteRun]:
    """All `areas` in one pytest session: a row per area (its span) and one for the session."""
    seconds, returncode, error, report = _pytest(areas, workers, url, timeout)
    checks = [c for c in report.get("checks") or [] if c.get("start") and c.get("stop")]
    outside = None
    if checks:
        outside = round(max(0.0, seconds - (max(c["stop"] for c in checks) - min(c["start"] for c in checks))), 2)
    rows = [SuiteRun(SESSION, workers, round(seconds, 2), returncode, _counts(report.get("summary")), error,
                     outside_checks=outside)]
    for area in areas:
        mine = [c for c in checks if c.get("area") == area]
        counts = _counts((report.get("areas") or {}).get(area))
        if not mine:
            rows.append(SuiteRun(area, workers, 0.0, returncode, counts, error or "no check of this area ran"))
            continue
        span = max(c["stop"] for c in mine) - min(c["start"] for c in mine)
        rows.append(SuiteRun(area, workers, round(span, 2), returncode, counts, error))
    return rows


def run_area(area: str, workers: int, url: str, timeout: float) -> SuiteRun:
    """One area in a pytest process of its own: its wall time, start-up and leak check included."""
    seconds, returncode, error, report = _pytest([area], workers, url, timeout)
    return SuiteRun(area, workers, round(seconds, 2), returncode, _counts(report.get("summary")), error, "process")


def _counts(summary: Any) -> dict[str, int]:
    if not isinstance(summary, dict):
        return {}
    return {k: int(v) for k, v in summary.items() if isinstance(v, int) and k != "score"}


def _pytest(areas: list[str], workers: int, url: str, timeout: float) -> tuple[float, int | None, str, dict[str, Any]]:
    """Run pytest on the areas; (wall seconds, return code, error, the run's JSON report or {}).

    On Ctrl-C the run is interrupted (SIGINT, so it cleans up what it created) and waited for.
    """
    env = {k: v for k, v in os.environ.items() if k not in ("DOCKER_HOST", "CONFORMANCE_TARGET")}
    with tempfile.TemporaryDirectory(prefix="bench-suite-") as tmp:
        log_path = os.path.join(tmp, "pytest.log")
        with open(log_path, "wb") as log:
            t0 = time.perf_counter()
            proc = subprocess.Popen(command(areas, workers, url, tmp), cwd=REPO, env=env, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)
            try:
                returncode = proc.wait(timeout)
                error = ""
            except subprocess.TimeoutExpired:
                _interrupt(proc)
                returncode, error = proc.returncode, f"timed out after {timeout:.0f} s"
            except BaseException:
                _interrupt(proc)
                raise
            seconds = time.perf_counter() - t0
        report: dict[str, Any] = {}
        try:
            with open(os.path.join(tmp, "run.json")) as fh:
                report = json.load(fh)
        except (OSError, ValueError):
            error = error or "no report: " + _tail(log_path)
    return seconds, returncode, error, report


def _interrupt(proc: subprocess.Popen[bytes]) -> None:
    """SIGINT to the pytest process group we started (it removes what it created), then SIGKILL after 60 s."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass


def _tail(path: str) -> str:
    try:
        with open(path, "rb") as fh:
            return fh.read()[-400:].decode(errors="replace").strip().replace("\n", " | ")
    except OSError:
        return "(no output)"
