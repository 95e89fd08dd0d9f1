"""The registry's errors as dockerd 20.10 reports them (same texts, same HTTP statuses)."""

from __future__ import annotations

from typing import Any

import requests

from ...engine.errors import EngineError, NotFound


class RegistryError(EngineError):
    """A failed registry call; 500 unless a subclass says otherwise (dockerd's default)."""

    def __init__(self, message: str, http_status: int = 500) -> None:
        super().__init__(message)
        self.http_status = http_status


class ManifestUnknown(RegistryError, NotFound):
    def __init__(self, message: str, registry_text: str = "") -> None:
        super().__init__(message, http_status=404)
        self.registry_text = registry_text or message  # the registry's own words (`manifest unknown: …`)


def _code_text(code: str) -> str:
    return code.lower().replace("_", " ")


def registry_message(resp: requests.Response) -> str:
    """errcode.Errors' text: `manifest unknown: manifest unknown`; a bare status otherwise."""
    try:
        body: Any = resp.json()
    except ValueError:
        body = None
    errors = body.get("errors") if isinstance(body, dict) else None
    if isinstance(errors, list) and errors:
        texts = [f"{_code_text(str(e.get('code', 'unknown')))}: {e.get('message', '')}"
                 for e in errors if isinstance(e, dict)]
        if len(texts) == 1:
            return texts[0]
        return "errors:\n" + "".join(t + "\n" for t in texts)
    if resp.status_code == 401:
        return "unauthorized: authentication required"
    return f"received unexpected HTTP status: {resp.status_code} {resp.reason}"


def error_codes(resp: requests.Response) -> set[str]:
    try:
        body = resp.json()
    except ValueError:
        return set()
    errors = body.get("errors") if isinstance(body, dict) else None
    return {str(e.get("code")) for e in errors or [] if isinstance(e, dict)}


def transport_error(method: str, url: str, exc: BaseException) -> RegistryError:
    """Go's `Get "url": dial tcp host: connect: connection refused` shape."""
    text = str(exc)
    if isinstance(exc, requests.ConnectionError) and "refused" in text.lower():
        host = url.split("://", 1)[-1].split("/", 1)[0]
        text = f"dial tcp {host}: connect: connection refused"
    elif isinstance(exc, requests.Timeout):
        text = "net/http: request canceled (Client.Timeout exceeded)"
    return RegistryError(f'{method} "{url}": {text}')
