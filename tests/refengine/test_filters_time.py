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


def test_bad_zone_is_unreadable_not_an_error() -> None:
    assert flt.timestamp("2024-01-01T00:00:00+99:99", NOW) is None
    with pytest.raises(InvalidParameter):
        flt.until({"until": ["2024-01-01T00:00:00+99:99"]})


def test_until_given_twice() -> None:
    with pytest.raises(InvalidParameter, match="more than one until filter specified"):
        flt.until({"until": ["10m", "1h"]})


def test_created_after() -> None:
    """dockerd's Created.After(until): strictly later is kept; only the daemon's own RFC 3339 times count."""
    assert flt.created_after("2001-01-01T00:00:01Z", 978307200.0)
    assert not flt.created_after("2001-01-01T00:00:00Z", 978307200.0)
    assert not flt.created_after("2000-12-31T23:59:59.999999999Z", 978307200.0)
    assert flt.created_after("1h", 978307200.0)  # not a creation time: kept, never pruned by mistake


def test_duration() -> None:
    assert flt.duration("1h30m") == 5400 and flt.duration("24h") == 86400
    assert flt.duration("2001-01-01") is None and flt.duration("") is None


def test_prune_selects() -> None:
    """The prunes' one reading of label, label! and until."""
    f = {"label": ["a=1"], "label!": ["b"]}
    assert flt.prune_selects(f, None, {"a": "1"})
    assert not flt.prune_selects(f, None, {"a": "2"})
    assert not flt.prune_selects(f, None, {"a": "1", "b": "x"})
    assert flt.prune_selects({}, 978307200.0, None, "2000-01-01T00:00:00Z")
    assert not flt.prune_selects({}, 978307200.0, None, "2001-01-01T00:00:01Z")
