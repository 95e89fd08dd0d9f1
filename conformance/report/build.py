"""Turn pytest's reports into the run's JSON report (and its HTML page)."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
from dataclasses import dataclass, field
from typing import Any

import pytest

from ..capabilities import Capabilities
from ..catalogue import Requirement
from ..schema import EngineSchema
from ..target import Target
from .html import render_run

FORMAT = "conformance-report/1"
OUTCOMES = ("passed", "failed", "error", "deviation", "skipped", "disabled")


@dataclass
class CheckResult:
    nodeid: str
    requirement: str | None = None
    outcome: str = "passed"
    duration: float = 0.0
    start: float = 0.0  # epoch seconds: the start of its setup and the end of its teardown (per-area wall times)
    stop: float = 0.0
    message: str = ""
    transcript: list[dict[str, Any]] = field(default_factory=list)
    operations: list[str] = field(default_factory=list)
    validated_2xx: int = 0
    forgiven: dict[str, int] = field(default_factory=dict)
    findings: dict[str, list[str]] = field(default_factory=dict)


def _props(report: pytest.TestReport) -> dict[str, Any]:
    return {k: v for k, v in report.user_properties}


def _skip_reason(report: pytest.TestReport) -> str:
    if isinstance(report.longrepr, tuple) and len(report.longrepr) == 3:
        return str(report.longrepr[2]).removeprefix("Skipped: ")
    return str(report.longrepr or "")


def _failure_text(report: pytest.TestReport) -> str:
    text = report.longreprtext or ""
    lines = [ln for ln in text.splitlines() if ln.startswith("E ")] or text.splitlines()[-15:]
    return "\n".join(ln[2:].rstrip() if ln.startswith("E ") else ln for ln in lines)[-4000:]


def base_check(nodeid: str) -> str:
    """The check a --repeat copy belongs to: test_x[a-rep3] → test_x[a], test_x[rep3] → test_x."""
    return re.sub(r"\[\]$", "", re.sub(r"-?rep\d+\]$", "]", nodeid))


def flakiness(checks: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Per check run more than once: how many runs ended in each outcome, where they disagree."""
    seen: dict[str, dict[str, int]] = {}
    for c in checks:
        counts = seen.setdefault(c["check"], {})
        counts[c["outcome"]] = counts.get(c["outcome"], 0) + 1
    return {k: v for k, v in seen.items() if len(v) > 1}


def _merge_counts(dicts: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for d in dicts:
        for k, v in d.items():
            out[k] = out.get(k, 0) + v
    return dict(sorted(out.items()))


def score(counts: dict[str, int]) -> float | None:
    """Passed over everything that ran to a verdict (deviations count as not passed)."""
    applicable = sum(counts.get(k, 0) for k in ("passed", "failed", "error", "deviation"))
    return round(counts.get("passed", 0) / applicable, 4) if applicable else None


class ReportBuilder:
    def __init__(self, catalogue: dict[str, Requirement]) -> None:
        self.catalogue = catalogue
        self.results: dict[str, CheckResult] = {}
        self.started = 0.0

    @property
    def has_checks(self) -> bool:
        return bool(self.results)

    def add(self, report: pytest.TestReport) -> None:
        props = _props(report)
        rid = props.get("conformance.requirement")
        if rid is None:
            return
        res = self.results.setdefault(report.nodeid, CheckResult(report.nodeid, rid))
        res.duration += report.duration
        if report.start:
            res.start = min(res.start, report.start) if res.start else report.start
        res.stop = max(res.stop, report.stop)
        if "conformance.transcript" in props:
            res.transcript = props["conformance.transcript"]
        if "conformance.operations" in props:
            res.operations = list(props["conformance.operations"])
            res.validated_2xx = int(props.get("conformance.validated_2xx", 0))
            res.forgiven = dict(props.get("conformance.forgiven") or {})
            res.findings = dict(props.get("conformance.findings") or {})
        if report.when == "call" or (report.when == "setup" and not report.passed):
            if getattr(report, "wasxfail", None) is not None and report.skipped:
                res.outcome, res.message = "deviation", str(report.wasxfail)
            elif report.skipped:
                reason = _skip_reason(report)
                res.outcome = "disabled" if reason.startswith("disabled:") else "skipped"
                res.message = reason
            elif report.failed:
                res.outcome = "error" if report.when == "setup" else "failed"
                res.message = _failure_text(report)
            else:
                res.outcome = "passed"
        elif report.when == "teardown" and report.failed and res.outcome == "passed":
            res.outcome, res.message = "error", "teardown: " + _failure_text(report)

    def counts(self, area: str | None = None) -> dict[str, int]:
        out = dict.fromkeys(OUTCOMES, 0)
        for res in self.results.values():
            req = self.catalogue.get(res.requirement or "")
            if area is None or (req and req.area == area):
                out[res.outcome] += 1
        return out

    def areas(self) -> dict[str, dict[str, Any]]:
        names = sorted({self.catalogue[r.requirement].area for r in self.results.values()
                        if r.requirement in self.catalogue})
        return {a: {**self.counts(a), "score": score(self.counts(a))} for a in names}

    def summary_lines(self) -> list[str]:
        out = []
        for area, c in self.areas().items():
            pct = "n/a" if c["score"] is None else f"{100 * c['score']:.1f}%"
            out.append(f"conformance {area}: score {pct}  " +
                       "  ".join(f"{k} {c[k]}" for k in OUTCOMES if c[k]))
        findings = self.schema_findings()
        if findings:
            out.append(f"conformance schema findings (scene-setting calls): {', '.join(findings)}")
        return out

    def as_dict(self, target: Target, caps: Capabilities | None, schema: EngineSchema | None, run_id: str,
                leaks: list[str], repeat: int, unattributed: list[str] | None = None) -> dict[str, Any]:
        exercised = sorted({op for r in self.results.values() for op in r.operations})
        checks = []
        for res in sorted(self.results.values(), key=lambda r: r.nodeid):
            req = self.catalogue.get(res.requirement or "")
            checks.append({
                "nodeid": res.nodeid,
                "check": base_check(res.nodeid),
                "requirement": res.requirement,
                "area": req.area if req else None,
                "source": req.source if req else None,
                "statement": req.statement if req else None,
                "outcome": res.outcome,
                "duration": round(res.duration, 4),
                "start": round(res.start, 3),
                "stop": round(res.stop, 3),
                "message": res.message,
                "transcript": res.transcript if res.outcome in ("failed", "error") else [],
            })
        return {
            "format": FORMAT,
            "run_id": run_id,
            "generated": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "duration": round(max(0.0, dt.datetime.now().timestamp() - self.started), 2) if self.started else None,
            "repeat": repeat,
            "target": {"url": target.url, **(caps.as_dict() if caps else {}), "label": caps.label if caps else None},
            "summary": {**self.counts(), "score": score(self.counts())},
            "areas": self.areas(),
            "coverage": {
                "swagger": schema.path if schema else None,
                "swagger_version": schema.version if schema else None,
                "operations_total": len(schema.operation_ids) if schema else None,
                "operations_exercised": len(exercised),
                "exercised": exercised,
                "validated_2xx_json": sum(r.validated_2xx for r in self.results.values()),
                # documented schema deviations of this product (conformance/deviations.py), and how often seen
                "forgiven": _merge_counts(r.forgiven for r in self.results.values()),
            },
            # schema violations met by scene-setting calls (resources.py), per operation: they fail no
            # check whose subject is something else, but they are this target's schema findings
            "schema_findings": self.schema_findings(),
            "leaks": leaks,
            # volumes that appeared during the run without the run's label (anonymous volumes of containers
            # removed without v=1, for one): reported, never removed, since another client may own them
            "unattributed_volumes": unattributed or [],
            "flaky": flakiness(checks) if repeat > 1 else {},
            "checks": checks,
        }

    def schema_findings(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for res in sorted(self.results.values(), key=lambda r: r.nodeid):
            for op, messages in res.findings.items():
                entry = out.setdefault(op, {"checks": 0, "examples": []})
                entry["checks"] += 1
                entry["examples"].extend(m for m in messages if m not in entry["examples"])
                entry["examples"] = entry["examples"][:8]
        return dict(sorted(out.items()))

    def write(self, directory: str, name: str | None, target: Target, caps: Capabilities | None,
              schema: EngineSchema | None, run_id: str, leaks: list[str], repeat: int,
              unattributed: list[str] | None = None) -> list[str]:
        data = self.as_dict(target, caps, schema, run_id, leaks, repeat, unattributed)
        stem = name or (caps.label if caps else "target")
        os.makedirs(directory, exist_ok=True)
        json_path = os.path.join(directory, f"{stem}.json")
        html_path = os.path.join(directory, f"{stem}.html")
        for path, text in ((json_path, json.dumps(data, indent=1, sort_keys=False)), (html_path, render_run(data))):
            tmp = path + ".tmp"
            with open(tmp, "w") as fh:
                fh.write(text + "\n")
            os.replace(tmp, path)
        return [json_path, html_path]
