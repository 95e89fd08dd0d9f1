"""A refengined started for the test session, on a temporary socket and state directory."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator

import pytest

from .daemons import start_refengined, stop
from .test_netdriver_lab import Lab, need_root


@pytest.fixture(scope="session")
def refengined() -> Iterator[str]:
    """The socket path of a refengined this session started (and stops, by PID)."""
    root = tempfile.mkdtemp(prefix="refengine-test-")
    try:
        sock, proc = start_refengined(root, "--stop-containers-on-exit")
        try:
            yield sock
        finally:
            stop(proc)
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def lab() -> Iterator[Lab]:
    """A network lab (namespaces, a driver on its own state) that must leave nothing behind."""
    need_root()
    lab = Lab()
    try:
        yield lab
    finally:
        lab.close()
    assert lab.leftovers() == []
