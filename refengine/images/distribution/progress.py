"""Progress messages in the shape dockerd's JSON stream formatter writes them."""

from __future__ import annotations

from typing import Any

from ..load import progress_item


def status(text: str, item_id: str | None = None) -> dict[str, Any]:
    """A plain status line: `{"status": "Pulling from hc/probe", "id": "v1"}`."""
    return {"status": text, "id": item_id} if item_id is not None else {"status": text}


def layer(text: str, item_id: str) -> dict[str, Any]:
    """A per-layer event without numbers: `Pulling fs layer`, `Pushed`, `Already exists`..."""
    return {"status": text, "progressDetail": {}, "id": item_id}


def bar(action: str, item_id: str, current: int, total: int) -> dict[str, Any]:
    """`Downloading`/`Extracting`/`Pushing` with a progress bar."""
    return progress_item(action, item_id, current, total)


def aux(data: dict[str, Any]) -> dict[str, Any]:
    return {"progressDetail": {}, "aux": data}


def short(digest: str) -> str:
    return digest.partition(":")[2][:12] if ":" in digest else digest[:12]


class Throttle:
    """Emit a bar at most every `step` bytes, and always at the end (keeps streams small)."""

    def __init__(self, step: int = 512 * 1024) -> None:
        self.step, self.last = step, -1

    def due(self, current: int, total: int) -> bool:
        if self.last < 0 or current - self.last >= self.step or (total and current >= total):
            self.last = current
            return True
        return False
