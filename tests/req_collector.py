"""A pytest plugin for test_catalogue: writes the requirement IDs of the collected checks to $REQ_COLLECTOR_OUT."""

from __future__ import annotations

import json
import os

import pytest


def pytest_collection_finish(session: pytest.Session) -> None:
    ids = sorted({m.args[0] for item in session.items for m in item.iter_markers("req") if m.args})
    with open(os.environ["REQ_COLLECTOR_OUT"], "w") as fh:
        json.dump(ids, fh)
