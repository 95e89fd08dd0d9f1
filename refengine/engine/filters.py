"""The `filters` query parameter shared by list/prune endpoints: parsing, validation and label matching."""

from __future__ import annotations

import json
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
