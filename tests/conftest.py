"""Fixtures for the harness's own tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from conformance.client import ApiClient
from conformance.target import parse_target

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="session")
def dockerd_socket() -> str:
    """The real dockerd the fault-injection tests sit in front of ($CONFORMANCE_DOCKERD or the default)."""
    path = os.environ.get("CONFORMANCE_DOCKERD", "/var/run/docker.sock")
    if not os.path.exists(path):
        pytest.skip(f"no dockerd socket at {path}: these tests need a real dockerd (start it, or set CONFORMANCE_DOCKERD)")
    client = ApiClient(parse_target(f"unix://{path}"))
    try:
        if client.get("/_ping", timeout=5).text != "OK":
            pytest.skip(f"{path} does not answer /_ping with OK")
    finally:
        client.close()
    return path


@dataclass
class SuiteRun:
    returncode: int
    report: dict
    output: str

    def outcome(self, nodeid_suffix: str) -> str:
        found = [c for c in self.report["checks"] if c["nodeid"].endswith(nodeid_suffix)]
        assert found, f"{nodeid_suffix} was not in the run; checks were {[c['nodeid'] for c in self.report['checks']]}"
        return found[0]["outcome"]


def run_suite(target: str, selection: list[str], tmp_path: str, *extra: str) -> SuiteRun:
    """Run the conformance suite in a fresh pytest process and read its JSON report."""
    cmd = [sys.executable, "-m", "pytest", *selection, "--target", target, "--report-dir", tmp_path,
           "--report-name", "run", "-p", "no:cacheprovider", "-q", *extra]
    env = {k: v for k, v in os.environ.items() if k not in ("DOCKER_HOST", "CONFORMANCE_TARGET")}
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600, env=env)
    path = os.path.join(tmp_path, "run.json")
    assert os.path.exists(path), f"the run wrote no report:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    with open(path) as fh:
        return SuiteRun(proc.returncode, json.load(fh), proc.stdout + proc.stderr)


@pytest.fixture
def suite(tmp_path) -> Iterator:
    yield lambda target, selection, *extra: run_suite(target, selection, str(tmp_path), *extra)
