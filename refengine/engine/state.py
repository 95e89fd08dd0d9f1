"""Persisting the daemon's records: JSON written atomically, so a crash leaves the old or the new file."""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any


def write_json(path: str, data: Any) -> None:
    """Write `data` to `path` via a temp file in the same directory, fsync, rename, fsync the directory."""
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    dfd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def read_json(path: str) -> Any:
    with open(path) as fh:
        return json.load(fh)
