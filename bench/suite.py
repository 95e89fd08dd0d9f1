"""Wall time of the conformance suite's areas against a target, with 1 and 2 xdist workers (--suite)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
AREAS = ("api", "isolation", "cgroups", "network")


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
    area: str
    workers: int
    seconds: float
    returncode: int | None
    counts: dict[str, int] = field(default_factory=dict)
    error: str = ""

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def command(area: str, workers: int, url: str, report_dir: str) -> list[str]:
    return [sys.executable, "-m", "pytest", f"conformance/{area}", "-p", "no:cacheprovider", "-n", str(workers),
            "--target", url, "--report-dir", report_dir, "--report-name", "run", "-q"]


def run_area(area: str, workers: int, url: str, timeout: float) -> SuiteRun:
    """One area's run in a pytest process of its own; its wall time and outcome counts (from its JSON report).

    On Ctrl-C the run is interrupted (SIGINT, so it cleans up what it created) and waited for.
    """
    env = {k: v for k, v in os.environ.items() if k not in ("DOCKER_HOST", "CONFORMANCE_TARGET")}
    with tempfile.TemporaryDirectory(prefix="bench-suite-") as tmp:
        log_path = os.path.join(tmp, "pytest.log")
        with open(log_path, "wb") as log:
            t0 = time.perf_counter()
            proc = subprocess.Popen(command(area, workers, url, tmp), cwd=REPO, env=env, stdout=log,
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
        counts: dict[str, int] = {}
        try:
            with open(os.path.join(tmp, "run.json")) as fh:
                summary = json.load(fh).get("summary") or {}
            counts = {k: int(v) for k, v in summary.items() if isinstance(v, int) and k != "score"}
        except (OSError, ValueError):
            error = error or "no report: " + _tail(log_path)
    return SuiteRun(area, workers, round(seconds, 2), returncode, counts, error)


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
