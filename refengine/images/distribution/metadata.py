"""Which registry blobs hold which layers (dockerd's v2 metadata service, simplified).

A pulled layer's compressed blob is remembered by diff ID with its registry and repository; a
push to the same registry can then find it there (HEAD) or mount it from the repository it came
from, and the pushed manifest names the same blobs: pushing back what was pulled gives the same
manifest digest, as with dockerd. Kept in one JSON file next to the image store.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import asdict, dataclass

from ..layers import atomic_write

MAX_PER_LAYER = 16  # the most recent sources are enough


@dataclass(frozen=True)
class BlobSource:
    digest: str
    size: int
    media_type: str
    host: str  # registry host as in references
    repository: str  # path within it


class BlobMetadata:
    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()

    def _read(self) -> dict[str, list[dict[str, object]]]:
        try:
            with open(self.path) as fh:
                data = json.load(fh)
            return data if isinstance(data, dict) else {}
        except (FileNotFoundError, ValueError):
            return {}

    def sources(self, diff_id: str, host: str) -> list[BlobSource]:
        with self._lock:
            entries = self._read().get(diff_id) or []
        out = []
        for entry in entries:
            try:
                source = BlobSource(**entry)  # type: ignore[arg-type]
            except TypeError:
                continue
            if source.host == host:
                out.append(source)
        return out

    def add(self, diff_id: str, source: BlobSource) -> None:
        with self._lock:
            data = self._read()
            entries = [e for e in data.get(diff_id) or [] if e != asdict(source)]
            data[diff_id] = ([asdict(source)] + entries)[:MAX_PER_LAYER]
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            atomic_write(self.path, json.dumps(data).encode())


_instances: dict[str, BlobMetadata] = {}
_instances_lock = threading.Lock()


def for_store(root: str) -> BlobMetadata:
    """One instance per file, so concurrent pulls and pushes share its lock."""
    path = os.path.join(root, "distribution", "v2metadata.json")
    with _instances_lock:
        return _instances.setdefault(path, BlobMetadata(path))
