"""The `filters` query parameter shared by list/prune endpoints: parsing, validation and label matching."""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from collections.abc import Iterable, Mapping

from .errors import InvalidParameter

Filters = dict[str, list[str]]


def parse(raw: str | None, allowed: Iterable[str]) -> Filters:
    """`{"label": ["a=b"]}` (or the older `{"label": {"a=b": true}}`) → {key: [values]}.

    Unknown keys and malformed JSON are invalid parameters (400), as dockerd treats them.
    """
    if raw is None or raw.strip() == "":
        return {}
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise InvalidParameter(f"invalid filters: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidParameter("invalid filters: expected a JSON object")
    out: Filters = {}
    allowed = set(allowed)
    for key, value in data.items():
        if key not in allowed:
            raise InvalidParameter(f"Invalid filter '{key}'")
        if isinstance(value, dict):
            values = [k for k, v in value.items() if v]
        elif isinstance(value, list) and all(isinstance(v, str) for v in value):
            values = list(value)
        else:
            raise InvalidParameter(f"invalid filters: values of {key!r} must be a list of strings")
        out[key] = values
    return out


def match_labels(labels: Mapping[str, str] | None, wanted: list[str]) -> bool:
    """Every `key` or `key=value` in `wanted` holds (an AND, as dockerd's label filter)."""
    labels = labels or {}
    for item in wanted:
        key, eq, value = item.partition("=")
        if key not in labels or (eq and labels[key] != value):
            return False
    return True


def match_no_labels(labels: Mapping[str, str] | None, unwanted: list[str]) -> bool:
    """`label!=`: none of `key` / `key=value` holds."""
    labels = labels or {}
    for item in unwanted:
        key, eq, value = item.partition("=")
        if key in labels and (not eq or labels[key] == value):
            return False
    return True


def boolean(filters: Filters, key: str) -> bool | None:
    """A true/false filter value (`dangling=true`, `dangling=1`); None when the filter is absent."""
    values = filters.get(key)
    if not values:
        return None
    value = values[-1].lower()
    if value in ("true", "1"):
        return True
    if value in ("false", "0"):
        return False
    raise InvalidParameter(f"Invalid filter '{key}={values[-1]}'")


# Go's time.ParseDuration units, as dockerd reads a relative `until` ("10m", "1h30m", "1.5h")
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
# the layouts dockerd's timestamp reading tries (RFC3339 with or without zone, down to a date)
_LAYOUTS = ("%Y-%m-%dT%H:%M:%S.%f", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H", "%Y-%m-%d")


def timestamp(value: str, now: float | None = None) -> float | None:
    """A filter's point in time as Unix seconds: Unix seconds (with a fraction), a Go duration before
    `now`, or an RFC 3339 time or date (without a zone: the daemon's local time). None if unreadable."""
    now = time.time() if now is None else now
    if re.fullmatch(r"-?\d+(\.\d+)?", value):
        return float(value)
    span = duration(value)
    if span is not None:
        return now - span
    text = value[:-1] + "+00:00" if value.endswith(("Z", "z")) else value
    zone = re.search(r"[+-]\d{2}:\d{2}$", text)
    body, tz = text, None
    if zone:
        try:
            body, tz = text[:zone.start()], dt.datetime.strptime(zone.group().replace(":", ""), "%z").tzinfo
        except ValueError:  # an offset no clock has (+99:99)
            return None
    body = re.sub(r"(\.\d{6})\d+$", r"\1", body)  # nanoseconds: strptime reads six digits
    for layout in _LAYOUTS:
        try:
            parsed = dt.datetime.strptime(body, layout)
        except ValueError:
            continue
        return (parsed.replace(tzinfo=tz) if tz else parsed.astimezone()).timestamp()
    return None


def duration(value: str) -> float | None:
    """A Go duration ("10m", "1h30m", "1.5h") in seconds; None if it is not one."""
    if not re.fullmatch(r"(?:" + _DURATION.pattern + r")+", value):
        return None
    return sum(float(n) * _DURATION_UNITS[u] for n, u in _DURATION.findall(value))


def rfc3339(text: str) -> float | None:
    """An object's own time (Created, as the daemon writes it: RFC 3339 with a zone) in Unix seconds."""
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}T[\d:.]+(Z|z|[+-]\d{2}:\d{2})", text or ""):
        return None
    return timestamp(text)


def created_after(created: str, point: float) -> bool:
    """dockerd's `Created.After(until)`: what a prune's `until` keeps. A time that cannot be read is kept."""
    seconds = rfc3339(created)
    return seconds is None or seconds > point


def prune_selects(f: Filters, until: float | None, labels: Mapping[str, str] | None, created: str = "") -> bool:
    """Whether a prune's filters pick an object: every `label` holds, no `label!` does, and (with `until`, read
    once per prune by until()) it was created no later than `until`."""
    if "label" in f and not match_labels(labels, f["label"]):
        return False
    if "label!" in f and not match_no_labels(labels, f["label!"]):
        return False
    return until is None or not created_after(created, until)


def until(filters: Filters, now: float | None = None) -> float | None:
    """The prune filter `until` as Unix seconds (None when absent); unreadable or given twice is a 400
    (dockerd's words; it answers 500)."""
    values = filters.get("until")
    if not values:
        return None
    if len(values) > 1:
        raise InvalidParameter("more than one until filter specified")
    point = timestamp(values[-1], now)
    if point is None:
        raise InvalidParameter(f"invalid filter 'until={values[-1]}'")
    return point
