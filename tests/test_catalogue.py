"""The requirement catalogue is well formed, and every requirement has a check."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conformance.catalogue import CatalogueError, load_catalogue

from .conftest import REPO


def test_catalogue_loads() -> None:
    cat = load_catalogue()
    assert len(cat) > 20
    assert all(r.id.startswith(r.area + ".") for r in cat.values())


def test_every_requirement_has_a_check(tmp_path) -> None:
    """Every catalogue ID is the `req` marker of at least one collected check (markers read after collection,
    so IDs built in parametrize marks count)."""
    out_file = tmp_path / "ids.json"
    out = subprocess.run([sys.executable, "-m", "pytest", "conformance", "--collect-only", "-q",
                          "-p", "no:cacheprovider", "-p", "tests.req_collector", "--target", "unix:///nonexistent"],
                         cwd=REPO, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "REQ_COLLECTOR_OUT": str(out_file)})
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    used = set(json.loads(out_file.read_text()))
    unused = sorted(set(load_catalogue()) - used)
    assert not unused, f"catalogue requirements with no check: {unused}"


@pytest.mark.parametrize("text,problem", [
    ("api.x:\n  must: does a thing\n  source: schema\n", "MUST"),
    ("api.x:\n  must: it MUST work\n  source: folklore\n", "source"),
    ("other.x:\n  must: it MUST work\n  source: schema\n", "start with"),
    ("api.x: [\n", "YAML"),
])
def test_bad_catalogue_is_refused(tmp_path, text: str, problem: str) -> None:
    (tmp_path / "api-bad.yaml").write_text(text)
    with pytest.raises(CatalogueError, match=problem):
        load_catalogue(str(tmp_path))
