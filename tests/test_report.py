"""Reports: distinct outcomes in a real run, the matrix renderer and the `conformance report` CLI."""

from __future__ import annotations

import json

import pytest

from conformance.cli import main
from conformance.report.build import base_check, flakiness, score

SYSTEM = "conformance/api/test_system.py"


def test_outcomes_are_distinct(dockerd_socket: str, suite) -> None:
    """passed, deviation (documented), disabled (by the user) and skipped are told apart."""
    run = suite(f"unix://{dockerd_socket}", [SYSTEM], "--disable", "api.ping.head-ok")
    assert run.outcome("test_ping_get") == "passed"
    assert run.outcome("test_ping_head") == "disabled"
    assert run.outcome("test_version_too_old_json") == "deviation"
    summary = run.report["summary"]
    assert summary["disabled"] == 1 and summary["failed"] == 0
    assert run.report["coverage"]["operations_total"] > 90
    assert run.report["coverage"]["validated_2xx_json"] > 0
    assert run.report["leaks"] == []
    # bench/suite.py takes per-area wall times from these: setup start to teardown end, in epoch seconds
    for check in run.report["checks"]:
        assert 0 < check["start"] <= check["stop"], check
        assert check["stop"] - check["start"] >= check["duration"] - 0.01, check


def test_repeat_mode_counts_runs(dockerd_socket: str, suite) -> None:
    run = suite(f"unix://{dockerd_socket}", [SYSTEM + "::test_ping_get"], "--repeat", "3")
    assert run.report["repeat"] == 3
    assert [c["check"] for c in run.report["checks"]] == [f"{SYSTEM}::test_ping_get"] * 3
    assert run.report["flaky"] == {}


def test_helpers() -> None:
    assert base_check("a.py::t[x-rep2]") == "a.py::t[x]"
    assert base_check("a.py::t[rep0]") == "a.py::t"
    assert flakiness([{"check": "c", "outcome": "passed"}, {"check": "c", "outcome": "failed"}]) == {
        "c": {"passed": 1, "failed": 1}}
    assert score({"passed": 3, "failed": 1}) == 0.75
    assert score({"skipped": 2}) is None


def _run(label: str, outcome: str) -> dict:
    return {"format": "conformance-report/1", "target": {"label": label, "url": "unix:///x"},
            "areas": {"api": {"score": 1.0 if outcome == "passed" else 0.0, "passed": int(outcome == "passed")}},
            "coverage": {}, "checks": [{"check": "c1", "requirement": "api.ping.get-ok", "statement": "s",
                                        "outcome": outcome, "message": "why <b>", "source": "schema"}]}


def test_matrix_cli(tmp_path) -> None:
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(_run("docker-1", "passed")))
    b.write_text(json.dumps(_run("podman-2", "failed")))
    out = tmp_path / "m.html"
    assert main(["report", str(a), str(b), "-o", str(out)]) == 0
    page = out.read_text()
    assert "docker-1" in page and "podman-2" in page
    assert "class='passed'" in page and "class='failed'" in page
    assert "why &lt;b&gt;" in page  # messages are escaped


def test_cli_refuses_other_files(tmp_path) -> None:
    bad = tmp_path / "x.json"
    bad.write_text("{}")
    with pytest.raises(SystemExit, match="not a conformance report"):
        main(["report", str(bad)])
    with pytest.raises(SystemExit, match="cannot read"):
        main(["report", str(tmp_path / "missing.json")])
