"""Results, the terminal table and the JSON report (reports/bench/bench-<timestamp>.json and latest.json)."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import shutil
from dataclasses import asdict, dataclass, field
from typing import Any

from .stats import Summary

FORMAT = "bench/1"
LOWER, HIGHER, INFO = "lower", "higher", "info"  # which way is better; INFO: a fact, no ratio verdict


@dataclass
class Figure:
    """One measured figure of one target; `not_measured` holds the reason when there is no value."""

    key: str
    section: str
    label: str
    unit: str
    better: str = LOWER
    value: float | None = None  # the headline: a median, a rate, a wall time
    p90: float | None = None
    samples: int | None = None
    note: str = ""
    not_measured: str | None = None

    def set(self, value: float, *, p90: float | None = None, samples: int | None = None, note: str = "") -> None:
        self.value, self.p90, self.samples, self.note, self.not_measured = value, p90, samples, note, None

    def set_summary(self, s: Summary, scale: float = 1.0, note: str = "") -> None:
        self.set(s.median * scale, p90=s.p90 * scale, samples=s.count, note=note)

    def skip(self, reason: str) -> None:
        if self.value is None and self.not_measured is None:
            self.not_measured = reason


class Figures:
    """The figures of one section, by key, declared before measuring (so a failure names them all)."""

    def __init__(self, section: str, specs: list[tuple[str, str, str, str]]) -> None:
        self.items = [Figure(key=k, section=section, label=lbl, unit=u, better=b) for k, lbl, u, b in specs]

    def __getitem__(self, key: str) -> Figure:
        for fig in self.items:
            if fig.key == key:
                return fig
        raise KeyError(key)

    def skip_rest(self, reason: str) -> None:
        for fig in self.items:
            fig.skip(reason)


@dataclass
class TargetResult:
    name: str
    url: str
    reference: bool = False
    not_measured: str | None = None
    version: dict[str, Any] = field(default_factory=dict)
    daemon: dict[str, Any] = field(default_factory=dict)  # pid, command, what the RSS figures include
    figures: list[Figure] = field(default_factory=list)
    suite: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    cleanup_problems: list[str] = field(default_factory=list)

    def figure(self, key: str) -> Figure | None:
        return next((f for f in self.figures if f.key == key), None)


# -- formatting ------------------------------------------------------------------------------------

def format_number(value: float | None) -> str:
    """Three significant-ish digits without exponent: 12345 -> '12,345', 31.26 -> '31.3', 0.1234 -> '0.123'."""
    if value is None:
        return "—"
    mag = abs(value)
    if mag >= 100:
        return f"{value:,.0f}"
    if mag >= 10:
        return f"{value:.1f}"
    if mag >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def ratio(value: float | None, reference: float | None) -> float | None:
    """value / reference, None when either is missing or the reference is zero."""
    if value is None or reference is None or reference == 0:
        return None
    return value / reference


def format_ratio(r: float | None, better: str = LOWER) -> str:
    """'×1.42' with a verdict mark: '+' when better than the reference, '-' when worse, none when level."""
    if r is None:
        return "—"
    text = f"×{r:.2f}" if r < 100 else f"×{r:,.0f}"
    if better == INFO or abs(r - 1) < 0.05:
        return text
    good = r < 1 if better == LOWER else r > 1
    return text + (" +" if good else " -")


def cell(fig: Figure | None, ref: Figure | None, is_ref: bool) -> str:
    if fig is None:
        return "—"
    if fig.value is None:
        return "not measured"
    text = format_number(fig.value)
    if fig.p90 is not None:
        text += f" (p90 {format_number(fig.p90)})"
    if not is_ref:
        text += "  " + format_ratio(ratio(fig.value, ref.value if ref else None), fig.better)
    return text


# -- the terminal table ------------------------------------------------------------------------------

def render_table(results: list[TargetResult], reference: str) -> str:
    """Sections of rows (figure, unit) by columns (targets); other targets show ×ratio against the reference."""
    ref = next((r for r in results if r.name == reference), None)
    order: list[tuple[str, str, str, str]] = []  # section, key, label, unit — first target that has it wins
    seen: set[str] = set()
    for res in results:
        for fig in res.figures:
            if fig.key not in seen:
                seen.add(fig.key)
                order.append((fig.section, fig.key, fig.label, fig.unit))
    headers = ["figure", "unit"] + [r.name + (" (ref)" if r.name == reference else "") for r in results]
    rows: list[list[str] | str] = []
    section = None
    for sec, key, label, unit in order:
        if sec != section:
            rows.append(f"[{sec}]")
            section = sec
        ref_fig = ref.figure(key) if ref else None
        rows.append([label, unit] + [
            ("not measured" if r.not_measured else cell(r.figure(key), ref_fig, r.name == reference))
            for r in results])
    widths = [len(h) for h in headers]
    for row in rows:
        if isinstance(row, list):
            widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    out = [line, "-" * len(line)]
    for row in rows:
        if isinstance(row, str):
            out.append(row)
        else:
            out.append("  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in
                                 enumerate(zip(row, widths, strict=True))).rstrip())
    legend = (f"ratio = target / {reference}; '+' better, '-' worse than {reference} (lower is better for ms, s, "
              "µs of CPU and MB; higher for req/s and MB/s).")
    out += ["", legend]
    for res in results:
        if res.not_measured:
            out.append(f"{res.name}: not measured: {res.not_measured}")
            continue
        out += [f"{res.name}: {n}" for n in res.notes]
        for reason, figs in group_unmeasured(res.figures).items():
            names = ", ".join(f.key for f in figs) if len(figs) <= 3 else \
                f"{len(figs)} figures of {', '.join(dict.fromkeys(f.section for f in figs))}"
            out.append(f"{res.name}: not measured ({names}): {reason}")
        out += [f"{res.name}: LEFT BEHIND: {p}" for p in res.cleanup_problems]
    return "\n".join(out)


def group_unmeasured(figures: list[Figure]) -> dict[str, list[Figure]]:
    """Unmeasured figures by reason, in order of first appearance."""
    out: dict[str, list[Figure]] = {}
    for fig in figures:
        if fig.value is None:
            out.setdefault(fig.not_measured or "no value", []).append(fig)
    return out


def suite_cell(run: dict[str, Any] | None, ref: dict[str, Any] | None) -> str:
    """'139.0 s [187 passed, 2 failed]' (+ ×ratio of the wall time against the reference's run)."""
    if run is None:
        return "—"
    counts = run.get("counts") or {}
    shown = ", ".join(f"{v} {k}" for k, v in counts.items() if v)
    text = f"{run['seconds']:.1f} s [{shown or run.get('error') or 'exit ' + str(run.get('returncode'))}]"
    if run.get("outside_checks") is not None:
        text += f" ({run['outside_checks']:.1f} s outside checks)"
    if not counts.get("passed"):
        return text + "  (no ratio: nothing passed, the time measures no run of the checks)"
    if ref is not None and ref is not run:
        text += "  " + format_ratio(ratio(run["seconds"], ref["seconds"]), LOWER)
    return text


def render_suite(results: list[TargetResult], reference: str) -> str:
    """Wall time of each conformance area and worker count, by target."""
    runs = {(r.name, run["area"], run["workers"]): run for r in results for run in r.suite}
    keys = list(dict.fromkeys((area, workers) for _n, area, workers in runs))
    if not keys:
        return ""
    names = [r.name for r in results if r.suite]
    rows = [[SUITE_LABELS.get(area, f"conformance/{area}"), f"-n {workers}"] +
            [suite_cell(runs.get((n, area, workers)), runs.get((reference, area, workers))) for n in names]
            for area, workers in keys]
    headers = ["suite area", "workers"] + names
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(headers)]
    hows = {run.get("how", "process") for _r in results for run in _r.suite}
    title = ("conformance suite, wall time (each area in a pytest run of its own):" if hows == {"process"} else
             "conformance suite, wall time (one session per worker count; an area: first check's start to its "
             "last check's end):")
    out = [title, "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    out += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    errors = [f"{n}: {SUITE_LABELS.get(a, 'conformance/' + a)} -n {w}: {run['error']}"
              for (n, a, w), run in runs.items() if run.get("error")]
    return "\n".join(out + errors)


SUITE_LABELS = {"all": "whole session"}


# -- the machine and the JSON report ------------------------------------------------------------------

def machine_info() -> dict[str, Any]:
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem_kb = None
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    mem_kb = int(line.split()[1])
    except OSError:
        pass
    return {"cpu_model": cpu, "cores": os.cpu_count(), "kernel": platform.release(),
            "memory_mb": round(mem_kb / 1024) if mem_kb else None, "python": platform.python_version(),
            "os": _os_release()}


def _os_release() -> str | None:
    try:
        with open("/etc/os-release") as fh:
            for line in fh:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return None


def loadavg() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def build_report(results: list[TargetResult], reference: str, *, started: dt.datetime, finished: dt.datetime,
                 mode: str, parameters: dict[str, Any], machine: dict[str, Any], load: dict[str, list[float]],
                 interrupted: bool) -> dict[str, Any]:
    ref = next((r for r in results if r.name == reference), None)
    ratios: dict[str, dict[str, float | None]] = {}
    for res in results:
        if res.name == reference or res.not_measured:
            continue
        ratios[res.name] = {f.key: (round(r, 4) if (r := ratio(f.value, (ref.figure(f.key).value
                                                                      if ref and ref.figure(f.key) else None)))
                                   is not None else None) for f in res.figures}
    return {
        "format": FORMAT,
        "started": started.isoformat(timespec="seconds"),
        "finished": finished.isoformat(timespec="seconds"),
        "seconds": round((finished - started).total_seconds(), 1),
        "mode": mode,
        "interrupted": interrupted,
        "reference": reference,
        "machine": {**machine, "loadavg": load},
        "parameters": parameters,
        "targets": [_target_dict(r) for r in results],
        "ratios": ratios,
    }


def _target_dict(res: TargetResult) -> dict[str, Any]:
    return {
        "name": res.name, "url": res.url, "reference": res.reference, "measured": res.not_measured is None,
        "not_measured": res.not_measured, "version": res.version, "daemon": res.daemon,
        "figures": {f.key: {k: v for k, v in asdict(f).items() if k != "key"} for f in res.figures},
        "suite": res.suite, "notes": res.notes, "cleanup_problems": res.cleanup_problems,
    }


def results_from_report(report: dict[str, Any]) -> list[TargetResult]:
    """The results of a saved report (to print its table again)."""
    out = []
    for t in report.get("targets", []):
        res = TargetResult(name=t["name"], url=t["url"], reference=t.get("reference", False),
                           not_measured=t.get("not_measured"), version=t.get("version") or {},
                           daemon=t.get("daemon") or {}, suite=t.get("suite") or [], notes=t.get("notes") or [],
                           cleanup_problems=t.get("cleanup_problems") or [])
        res.figures = [Figure(key=k, **v) for k, v in (t.get("figures") or {}).items()]
        out.append(res)
    return out


def write_report(report: dict[str, Any], directory: str, stamp: str) -> tuple[str, str]:
    """bench-<stamp>.json and a copy as latest.json; both paths."""
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, f"bench-{stamp}.json")
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(report, fh, indent=1)
        fh.write("\n")
    os.replace(tmp, path)
    latest = os.path.join(directory, "latest.json")
    shutil.copyfile(path, latest + ".tmp")
    os.replace(latest + ".tmp", latest)
    return path, latest
