"""The harness's Engine API client: requests (+ requests-unixsocket), every exchange recorded.

Each response with a JSON body is validated against the swagger as it arrives; a violation
raises SchemaViolation (an AssertionError), so the check fails with the place and the reason.
Calls a check makes only to set the scene (the factories in resources.py) validate with
`validate=RECORD`: their violations are recorded per operation for the report's schema table
instead of failing a check whose subject is something else.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import requests
import requests_unixsocket

from .schema import EngineSchema, Violation
from .target import Target

BODY_LIMIT = 4096
DEFAULT_TIMEOUT = 60.0


class SchemaViolation(AssertionError):
    def __init__(self, method: str, path: str, violations: list[Violation]) -> None:
        lines = "\n  ".join(str(v) for v in violations[:10])
        more = f"\n  … and {len(violations) - 10} more" if len(violations) > 10 else ""
        super().__init__(f"response to {method} {path} violates the Engine API schema:\n  {lines}{more}")
        self.violations = violations


@dataclass
class Exchange:
    """One request and its response, as the report shows them."""

    method: str
    path: str
    status: int | None
    request_headers: dict[str, str]
    request_body: str
    response_headers: dict[str, str]
    response_body: str
    seconds: float
    operation_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _clip(data: bytes | str | None) -> str:
    if data is None:
        return ""
    if isinstance(data, bytes):
        text = data[:BODY_LIMIT].decode("utf-8", "replace")
        more = len(data) - BODY_LIMIT
    else:
        text, more = data[:BODY_LIMIT], len(data) - BODY_LIMIT
    return text + (f"… ({more} more bytes)" if more > 0 else "")


@dataclass
class Recorder:
    """Collects a check's exchanges and the schema coverage it produced."""

    exchanges: list[Exchange] = field(default_factory=list)
    operations: set[str] = field(default_factory=set)
    validated_2xx: int = 0
    forgiven: dict[str, int] = field(default_factory=dict)  # documented schema deviations seen
    findings: dict[str, list[str]] = field(default_factory=dict)  # operationId -> violations met in RECORD mode

    def note(self, operation_id: str, messages: list[str]) -> None:
        kept = self.findings.setdefault(operation_id, [])
        kept.extend(m for m in messages[:FINDINGS_PER_OP - len(kept)] if m not in kept)

    def reset(self) -> None:
        self.findings.clear()
        self.forgiven.clear()
        self.exchanges.clear()
        self.operations.clear()
        self.validated_2xx = 0


RECORD = "record"  # validate, but record violations instead of raising (scene-setting calls)
FINDINGS_PER_OP = 5


class ApiClient:
    """Versioned Engine API calls against one target."""

    def __init__(self, target: Target, *, version: str | None = None, schema: EngineSchema | None = None,
                 recorder: Recorder | None = None,
                 allowance: Callable[[Violation], bool] | None = None) -> None:
        self.target = target
        self.version = version
        self.schema = schema
        self.recorder = recorder or Recorder()
        self.allowance = allowance
        self.session = requests_unixsocket.Session() if target.scheme == "unix" else requests.Session()
        if target.tls:
            self.session.verify = target.tls.cacert if (target.tls.verify and target.tls.cacert) else target.tls.verify
            if target.tls.cert:
                self.session.cert = (target.tls.cert, target.tls.key)

    def url(self, path: str, versioned: bool = True) -> str:
        prefix = f"/v{self.version}" if (versioned and self.version) else ""
        return self.target.base_url + prefix + path

    def request(self, method: str, path: str, *, params: dict[str, Any] | None = None, json_body: Any = None,
                data: bytes | str | None = None, headers: dict[str, str] | None = None, stream: bool = False,
                timeout: float | None = DEFAULT_TIMEOUT, versioned: bool = True,
                validate: bool | str = True) -> requests.Response:
        """Send one request; record it; validate a JSON response against the schema (see RECORD)."""
        hdrs = dict(headers or {})
        body: bytes | str | None = data
        if json_body is not None:
            body = json.dumps(json_body)
            hdrs.setdefault("Content-Type", "application/json")
        if params:
            params = {k: (json.dumps(v) if isinstance(v, dict) else v) for k, v in params.items()}
        started = time.monotonic()
        resp = self.session.request(method, self.url(path, versioned), params=params, data=body, headers=hdrs,
                                    stream=stream, timeout=timeout)
        elapsed = time.monotonic() - started
        shown_path = resp.request.path_url if resp.request else path
        op = self.schema.match(method, path) if self.schema else None
        exchange = Exchange(
            method=method, path=shown_path, status=resp.status_code,
            request_headers={k: v for k, v in resp.request.headers.items()} if resp.request else hdrs,
            request_body=_clip(body) if not isinstance(body, bytes) or len(body) < BODY_LIMIT else
            f"<{len(body)} bytes>",
            response_headers=dict(resp.headers),
            response_body="<streamed>" if stream else _clip(resp.content),
            seconds=round(elapsed, 4), operation_id=op.operation_id if op else None)
        self.recorder.exchanges.append(exchange)
        if op:
            self.recorder.operations.add(op.operation_id)
        if validate and op and not stream and self.schema and _is_json(resp):
            try:
                payloads = [resp.json()]
            except ValueError:
                # Progress endpoints (load, pull, push, events) send a stream of JSON documents.
                try:
                    payloads = json_lines(resp.content)
                except ValueError:
                    problem = (f"{method} {shown_path} answered Content-Type {resp.headers.get('Content-Type')!r} "
                               f"but the body is not JSON: {_clip(resp.content)[:200]!r}")
                    if validate == RECORD:
                        self.recorder.note(op.operation_id, [problem])
                        return resp
                    raise AssertionError(problem) from None
            if self.schema.has_schema(op, resp.status_code):
                violations = []
                for payload in payloads:
                    for v in self.schema.validate(op, resp.status_code, payload):
                        if self.allowance and self.allowance(v):
                            key = f"{v.operation_id} {v.path}"
                            self.recorder.forgiven[key] = self.recorder.forgiven.get(key, 0) + 1
                        else:
                            violations.append(v)
                if violations and validate == RECORD:
                    self.recorder.note(op.operation_id, [f"{v.status} at {v.path}: {v.message}" for v in violations])
                elif violations:
                    raise SchemaViolation(method, shown_path, violations)
                if 200 <= resp.status_code < 300:
                    self.recorder.validated_2xx += 1
        return resp

    def exercised(self, method: str, path: str) -> None:
        """Count an operation a check drove over a raw connection (a hijacked attach) in the schema coverage;
        `path` unversioned, as for request()."""
        op = self.schema.match(method, path) if self.schema else None
        if op:
            self.recorder.operations.add(op.operation_id)

    def get(self, path: str, **kw: Any) -> requests.Response:
        return self.request("GET", path, **kw)

    def head(self, path: str, **kw: Any) -> requests.Response:
        return self.request("HEAD", path, **kw)

    def post(self, path: str, body: Any = None, **kw: Any) -> requests.Response:
        return self.request("POST", path, json_body=body, **kw)

    def put(self, path: str, **kw: Any) -> requests.Response:
        return self.request("PUT", path, **kw)

    def delete(self, path: str, **kw: Any) -> requests.Response:
        return self.request("DELETE", path, **kw)

    def close(self) -> None:
        self.session.close()


def _is_json(resp: requests.Response) -> bool:
    ctype = resp.headers.get("Content-Type", "")
    return ctype.split(";")[0].strip() == "application/json" and bool(resp.content)


def json_lines(data: bytes) -> list[Any]:
    """A stream of JSON documents (one per line, as progress endpoints send them)."""
    text = data.decode("utf-8")
    decoder = json.JSONDecoder()
    out, pos = [], 0
    while True:
        while pos < len(text) and text[pos] in " \t\r\n":
            pos += 1
        if pos >= len(text):
            return out
        obj, pos = decoder.raw_decode(text, pos)
        out.append(obj)


def error_message(resp: requests.Response) -> str | None:
    """The `message` of a JSON error body, or None when the body is not `{"message": str}`."""
    try:
        body = resp.json()
    except ValueError:
        return None
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return body["message"]
    return None


def daemon_now(api: ApiClient) -> float:
    """The daemon's clock (Unix seconds) from /info SystemTime: since/until filters are read on its clock."""
    stamp = api.get("/info", validate=RECORD).json()["SystemTime"]  # the daemon clock: scene-setting
    m = re.fullmatch(r"(.+T\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", stamp)
    assert m, f"/info SystemTime {stamp!r} is not an RFC 3339 time"
    whole = datetime.fromisoformat(m[1] + ("+00:00" if m[3] == "Z" else m[3]))
    return whole.timestamp() + (float("0." + m[2]) if m[2] else 0.0)
