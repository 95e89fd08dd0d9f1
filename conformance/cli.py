"""`conformance`: render reports. `conformance report A.json B.json -o matrix.html`."""

from __future__ import annotations

import argparse
import json
import os
import sys

from .report.build import FORMAT
from .report.html import render_matrix, render_run


def _load(path: str) -> dict:
    try:
        with open(path) as fh:
            data = json.load(fh)
    except OSError as exc:
        raise SystemExit(f"conformance: cannot read {path}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise SystemExit(f"conformance: {path} is not JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise SystemExit(f"conformance: {path} is not a conformance report (format {FORMAT})")
    return data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="conformance", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    rep = sub.add_parser("report", help="render one report's page, or a side-by-side matrix of several")
    rep.add_argument("reports", nargs="+", help="JSON reports written by a conformance run")
    rep.add_argument("-o", "--output", help="HTML file to write (default: reports/matrix.html, or stdout with -)")
    args = parser.parse_args(argv)
    runs = [_load(p) for p in args.reports]
    page = render_run(runs[0]) if len(runs) == 1 else render_matrix(runs)
    out = args.output or os.path.join("reports", "matrix.html")
    if out == "-":
        sys.stdout.write(page)
        return 0
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    with open(out, "w") as fh:
        fh.write(page)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
