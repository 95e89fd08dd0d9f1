"""engine.filters.timestamp/until: the points in time dockerd's prune filters accept."""

from __future__ import annotations

import pytest

from refengine.engine import filters as flt
from refengine.engine.errors import InvalidParameter

NOW = 1_800_000_000.0


@pytest.mark.parametrize("value,expected", [
    ("978307200", 978307200.0),
    ("978307200.25", 978307200.25),
    ("1h", NOW - 3600),
    ("1h30m", NOW - 5400),
    ("1.5h", NOW - 5400),
    ("0s", NOW),
    ("250ms", NOW - 0.25),
    ("2001-01-01T00:00:00Z", 978307200.0),
    ("2001-01-01T01:00:00+01:00", 978307200.0),
    ("2001-01-01T00:00:00.123456789Z", 978307200.123456),
])
def test_timestamp(value: str, expected: float) -> None:
    assert flt.timestamp(value, NOW) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("value", ["yesterday", "1d", "", "2001-13-01"])
def test_unreadable(value: str) -> None:
    assert flt.timestamp(value, NOW) is None


def test_until_filter() -> None:
    assert flt.until({}) is None
    assert flt.until({"until": ["10m"]}, NOW) == NOW - 600
    with pytest.raises(InvalidParameter, match="until=soon"):
        flt.until({"until": ["soon"]})
