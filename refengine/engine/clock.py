"""Timestamps as dockerd prints them: RFC 3339 in UTC with nine fraction digits.

One format for the API's Created/StartedAt/FinishedAt, network Created, the archive path stat and the
json-file log's `time`. The formatter lives with the log writer (drivers/exec/jsonlog.py) because the
container monitor that writes logs may not import the engine; the engine takes it from there.
"""

from __future__ import annotations

import time

from ..drivers.exec.jsonlog import stamp


def rfc3339_nano(ns: int) -> str:
    """`ns` nanoseconds since the epoch, e.g. 2026-12-07T00:43:50.123456789Z (fixed width: sorts as time)."""
    return stamp(ns)


def now_rfc3339() -> str:
    return stamp(time.time_ns())
