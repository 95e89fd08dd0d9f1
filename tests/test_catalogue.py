"""The requirement catalogue is well formed, and every requirement has a check."""

from __future__ import annotations

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


def test_every_requirement_has_a_check() -> None:
    out = subprocess.run([sys.executable, "-m", "pytest", "conformance", "--collect-only", "-q",
                          "-p", "no:cacheprovider", "--target", "unix:///nonexistent"],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    used = set()
    for path, _, files in os.walk(os.path.join(REPO, "conformance")):
        for f in files:
            if f.startswith("test_") and f.endswith(".py"):
                with open(os.path.join(path, f)) as fh:
                    text = fh.read()
                used |= {rid for rid in load_catalogue() if f'"{rid}"' in text}
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
