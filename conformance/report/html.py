"""HTML rendering: one run's page (score per area, every check) and the side-by-side matrix."""

from __future__ import annotations

import html
from typing import Any

STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin:1em 0}
td,th{border:1px solid #ccc;padding:3px 7px;text-align:left;vertical-align:top}
th{background:#f3f3f3}
.passed{background:#d9f2d9}.failed{background:#f8d0d0}.error{background:#f3b4b4}
.deviation{background:#fde9c4}.skipped{background:#eee}.disabled{background:#e0e0f0}.missing{background:#fff}
pre{white-space:pre-wrap;margin:0;font-size:12px;max-width:80em}
details summary{cursor:pointer}
.req{font-family:monospace;font-size:12px}
"""

LEGEND = ("passed: the target did what the requirement says · failed: it did not · error: the check could "
          "not run (setup/teardown broke) · deviation: a documented, known deviation of this product · "
          "skipped: not applicable to this target (reason shown) · disabled: turned off by the user")


def _e(value: Any) -> str:
    return html.escape(str(value if value is not None else ""))


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _target_name(run: dict[str, Any]) -> str:
    t = run.get("target", {})
    return t.get("label") or t.get("url") or "target"


def render_run(run: dict[str, Any]) -> str:
    t = run.get("target", {})
    cov = run.get("coverage", {})
    rows = []
    for area, c in run.get("areas", {}).items():
        rows.append(f"<tr><td>{_e(area)}</td><td>{_pct(c.get('score'))}</td>" +
                    "".join(f"<td>{c.get(k, 0)}</td>" for k in
                            ("passed", "failed", "error", "deviation", "skipped", "disabled")) + "</tr>")
    checks = []
    for c in run.get("checks", []):
        detail = ""
        if c.get("message"):
            detail = f"<pre>{_e(c['message'])}</pre>"
        if c.get("transcript"):
            ex = "\n\n".join(
                f"{x['method']} {x['path']} → {x['status']} ({x['seconds']}s)\n"
                f"request: {x['request_body'][:600]}\nresponse: {x['response_body'][:1500]}"
                for x in c["transcript"])
            detail += f"<details><summary>transcript ({len(c['transcript'])} exchanges)</summary><pre>{_e(ex)}</pre></details>"
        checks.append(f"<tr class='{_e(c['outcome'])}'><td>{_e(c['outcome'])}</td>"
                      f"<td class='req'>{_e(c['requirement'])}<br>{_e(c['check'])}</td>"
                      f"<td>{_e(c.get('statement'))}<br><small>source: {_e(c.get('source'))}</small></td>"
                      f"<td>{c.get('duration', 0):.2f}s</td><td>{detail}</td></tr>")
    leaks = "".join(f"<li>{_e(x)}</li>" for x in run.get("leaks", []))
    strays = "".join(f"<li>{_e(x)}</li>" for x in run.get("unattributed_volumes", []))
    findings = "".join(f"<tr><td>{_e(op)}</td><td>{f['checks']}</td><td><pre>{_e(chr(10).join(f['examples']))}</pre></td></tr>"
                       for op, f in run.get("schema_findings", {}).items())
    flaky = "".join(f"<li>{_e(k)}: {_e(v)}</li>" for k, v in run.get("flaky", {}).items())
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>Conformance: {_e(_target_name(run))}</title>
<style>{STYLE}</style></head><body>
<h1>Conformance report: {_e(_target_name(run))}</h1>
<p>Target <code>{_e(t.get('url'))}</code>: {_e(t.get('product'))} {_e(t.get('version'))}, API {_e(t.get('api_version'))},
{_e(t.get('os'))}/{_e(t.get('arch'))}, cgroup v{_e(t.get('cgroup_version'))} ({_e(t.get('cgroup_driver'))}), kernel {_e(t.get('kernel'))}.
Run {_e(run.get('run_id'))}, generated {_e(run.get('generated'))}, {_e(run.get('duration'))} s, repeat {_e(run.get('repeat'))}.</p>
<p>Overall score {_pct(run.get('summary', {}).get('score'))}. Schema coverage: {_e(cov.get('operations_exercised'))} of
{_e(cov.get('operations_total'))} swagger operations exercised; {_e(cov.get('validated_2xx_json'))} JSON 2xx responses
validated against {_e(cov.get('swagger'))} (API {_e(cov.get('swagger_version'))}).</p>
<table><tr><th>area</th><th>score</th><th>passed</th><th>failed</th><th>error</th><th>deviation</th><th>skipped</th><th>disabled</th></tr>
{''.join(rows)}</table>
<p><small>{_e(LEGEND)}</small></p>
{'<h2>Leaks</h2><ul>' + leaks + '</ul>' if leaks else ''}
{'<h2>Volumes that appeared without the run label</h2><p>Not removed: another client may own them; an '
 'anonymous volume of a container removed without v=1 looks like this.</p><ul>' + strays + '</ul>' if strays else ''}
{'<h2>Flaky checks</h2><ul>' + flaky + '</ul>' if flaky else ''}
{'<h2>Schema findings</h2><p>Violations in responses to calls that only set the scene for a check '
 '(creating, inspecting, waiting): they fail no check whose subject is something else.</p>'
 '<table><tr><th>operation</th><th>checks that met it</th><th>examples</th></tr>' + findings + '</table>'
 if findings else ''}
<h2>Checks</h2>
<table><tr><th>outcome</th><th>requirement / check</th><th>statement</th><th>time</th><th>detail</th></tr>
{''.join(checks)}</table></body></html>"""


def render_matrix(runs: list[dict[str, Any]]) -> str:
    """Rows are checks, columns are targets; a cell is the outcome (hover: the message)."""
    names = [_target_name(r) for r in runs]
    by_run = [{c["check"]: c for c in r.get("checks", [])} for r in runs]
    all_checks: dict[str, dict[str, Any]] = {}
    for r in runs:
        for c in r.get("checks", []):
            all_checks.setdefault(c["check"], c)
    areas = sorted({a for r in runs for a in r.get("areas", {})})
    findings = "<tr><th>schema findings</th>" + "".join(
        f"<td>{len(r.get('schema_findings', {}))} operations: "
        f"{_e(', '.join(r.get('schema_findings', {})) or 'none')}</td>" for r in runs) + "</tr>"
    score_rows = []
    for area in areas:
        cells = "".join(f"<td>{_pct(r.get('areas', {}).get(area, {}).get('score'))} "
                        f"({r.get('areas', {}).get(area, {}).get('passed', 0)} passed)</td>" for r in runs)
        score_rows.append(f"<tr><th>{_e(area)}</th>{cells}</tr>")
    cov = "".join(f"<td>{_e(r.get('coverage', {}).get('operations_exercised'))}/"
                  f"{_e(r.get('coverage', {}).get('operations_total'))} ops, "
                  f"{_e(r.get('coverage', {}).get('validated_2xx_json'))} validated</td>" for r in runs)
    body = []
    for check, first in sorted(all_checks.items(), key=lambda kv: (kv[1].get("requirement") or "", kv[0])):
        cells = []
        for idx in range(len(runs)):
            c = by_run[idx].get(check)
            if c is None:
                cells.append("<td class='missing'>—</td>")
            else:
                cells.append(f"<td class='{_e(c['outcome'])}' title='{_e(c.get('message', ''))[:600]}'>"
                             f"{_e(c['outcome'])}"
                             f"{'<br><small>' + _e(c['message'][:160]) + '</small>' if c.get('message') else ''}</td>")
        body.append(f"<tr><td class='req'>{_e(first.get('requirement'))}<br>{_e(check)}</td>"
                    f"<td>{_e(first.get('statement'))}</td>{''.join(cells)}</tr>")
    head = "".join(f"<th>{_e(n)}<br><small>{_e(r.get('target', {}).get('url'))}<br>"
                   f"{_e(r.get('generated'))}</small></th>" for n, r in zip(names, runs, strict=True))
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>Conformance matrix</title>
<style>{STYLE}</style></head><body>
<h1>Conformance matrix: {' vs '.join(_e(n) for n in names)}</h1>
<table><tr><th></th>{head}</tr>{''.join(score_rows)}<tr><th>schema coverage</th>{cov}</tr>{findings}</table>
<p><small>{_e(LEGEND)}</small></p>
<table><tr><th>requirement / check</th><th>statement</th>{''.join(f'<th>{_e(n)}</th>' for n in names)}</tr>
{''.join(body)}</table></body></html>"""
