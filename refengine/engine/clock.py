"""Timestamps as dockerd prints them: RFC 3339 in UTC with nine fraction digits.

One place for the format the API's Created/StartedAt/FinishedAt, network Created and the archive
path stat carry. (The json-file log writes the same format from drivers/exec/jsonlog.py: the
container monitor that uses it may not import the engine.)
"""

from __future__ import annotations

import time


def rfc3339_nano(ns: int) -> str:
    """`ns` nanoseconds since the epoch, e.g. 2026-12-07T00:43:50.123456789Z (fixed width: sorts as time)."""
    sec, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)) + f".{frac:09d}Z"


def now_rfc3339() -> str:
    return rfc3339_nano(time.time_ns())
