"""refengine against the whole conformance suite: it passes every check (a skip states a host fact, as
on dockerd), so any failure, error or deviation is a regression. Every difference from dockerd is in the
README's results section with its reason.
"""

from __future__ import annotations

import pytest

AREAS = ["conformance/api", "conformance/isolation", "conformance/cgroups", "conformance/network"]


def test_refengine_passes_the_suite(refengined: str, suite) -> None:
    run = suite(f"unix://{refengined}", AREAS, "-n", "2")
    bad = [f"{c['outcome']}: {c['nodeid']}: {c['message'][-300:]}" for c in run.report["checks"]
           if c["outcome"] not in ("passed", "skipped")]
    assert not bad, f"refengine regressed on {len(bad)} check(s):\n" + "\n".join(bad)
    counts = run.report["summary"]
    assert counts["passed"] > 850, f"the run held too few checks to mean anything: {counts}"
    assert run.report["leaks"] == [], f"the run left objects behind: {run.report['leaks']}"


@pytest.mark.parametrize("url,message", [("tcp://127.0.0.1:23999", "without TLS"), ("ftp://x", "cannot listen")])
def test_daemon_refuses_bad_listeners(tmp_path, url: str, message: str) -> None:
    import subprocess
    import sys
    proc = subprocess.run([sys.executable, "-m", "refengine.daemon.main", "-H", url, "--data-root", str(tmp_path)],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2, f"refengined -H {url} exited {proc.returncode}: {proc.stderr[-500:]}"
    assert message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
