"""Requests sent ahead of their check, for answers a daemon takes long to give.

dockerd looks for a legacy plugin for ~15 s before it answers that a volume or network driver is
unknown: two such checks in a row were 30 s of a single-worker run. Sending those requests when the
area starts lets the wait overlap the other checks; the check then reads the answer, and what was
sent and received joins its own transcript as if it had sent it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import requests

from .client import ApiClient, Recorder


@dataclass
class EarlyRequest:
    method: str
    path: str
    body: Any = None
    undo: Callable[[ApiClient, requests.Response], None] | None = None  # removes what a 2xx answer created
    timeout: float = 90


@dataclass
class _Pending:
    spec: EarlyRequest
    recorder: Recorder
    response: requests.Response | None = None
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)


class EarlyRequests:
    """Each request on a thread with a client of its own (requests' sessions are not thread-safe)."""

    def __init__(self, like: ApiClient) -> None:
        self.like = like
        self.specs: dict[str, EarlyRequest] = {}
        self.pending: dict[str, _Pending] = {}
        self.answered: list[tuple[EarlyRequest, requests.Response]] = []

    def define(self, key: str, spec: EarlyRequest, send_now: bool) -> None:
        """Know how to send `key`; send it at once if its check is going to run here."""
        self.specs[key] = spec
        if send_now:
            self._send(key)

    def _send(self, key: str) -> None:
        spec = self.specs[key]
        item = _Pending(spec, Recorder())
        client = ApiClient(self.like.target, version=self.like.version, schema=self.like.schema,
                           recorder=item.recorder, allowance=self.like.allowance)

        def run() -> None:
            try:
                item.response = client.request(spec.method, spec.path, json_body=spec.body, timeout=spec.timeout)
            except BaseException as exc:  # handed to the check that reads the answer
                item.error = exc
            finally:
                client.close()
                item.done.set()

        self.pending[key] = item
        threading.Thread(target=run, name=f"early-{key}", daemon=True).start()

    def answer(self, key: str, api: ApiClient) -> requests.Response:
        """The answer to `key`, sent ahead or (a second read, e.g. under --repeat) now; the exchange goes
        into `api`'s recorder, the check's transcript."""
        if key not in self.pending:
            self._send(key)
        item = self.pending.pop(key)
        limit = item.spec.timeout + 30
        assert item.done.wait(limit), f"{item.spec.method} {item.spec.path} had no answer after {limit:.0f} s"
        api.recorder.exchanges += item.recorder.exchanges
        api.recorder.operations |= item.recorder.operations
        api.recorder.validated_2xx += item.recorder.validated_2xx
        for k, v in item.recorder.forgiven.items():
            api.recorder.forgiven[k] = api.recorder.forgiven.get(k, 0) + v
        for k, v in item.recorder.findings.items():
            api.recorder.note(k, v)
        if item.response is not None:
            self.answered.append((item.spec, item.response))
        if item.error is not None:
            raise item.error
        assert item.response is not None
        return item.response

    def close(self, api: ApiClient) -> None:
        """Wait for requests no check read (another xdist worker ran it), then undo what any 2xx created."""
        for item in self.pending.values():
            if item.done.wait(item.spec.timeout + 30) and item.response is not None:
                self.answered.append((item.spec, item.response))
        self.pending.clear()
        for spec, resp in self.answered:
            if resp.status_code < 300 and spec.undo is not None:
                spec.undo(api, resp)
        self.answered.clear()
