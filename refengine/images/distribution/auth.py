"""Registry credentials and the two ways a registry asks for them (distribution's token spec).

A registry answers 401 with `WWW-Authenticate: Basic realm=...` (send the user's credentials with
every request) or `Bearer realm=...,service=...,scope=...` (get a token from `realm` for the
scope, with the credentials or anonymously, then send `Authorization: Bearer <token>`).
An `identitytoken` from a previous login is a refresh token: it is exchanged with a POST
(`grant_type=refresh_token`), as the Go client does.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import requests

from .errors import RegistryError, transport_error

TOKEN_TIMEOUT = 30
_PARAM_RE = re.compile(r'\s*([A-Za-z0-9_.-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^,\s]*)\s*,?')
_SCHEME_RE = re.compile(r"\s*([A-Za-z][A-Za-z0-9_-]*)(?:\s+|$)")


@dataclass
class AuthConfig:
    """dockerd's types.AuthConfig: what `X-Registry-Auth` and `POST /auth` carry."""

    username: str = ""
    password: str = ""
    serveraddress: str = ""
    identitytoken: str = ""
    registrytoken: str = ""

    @classmethod
    def from_json(cls, data: Any) -> AuthConfig:
        if not isinstance(data, dict):
            raise ValueError("auth config is not a JSON object")
        fields = {k.lower(): v for k, v in data.items() if isinstance(v, str)}
        config = cls(**{name: fields.get(name, "") for name in
                        ("username", "password", "serveraddress", "identitytoken", "registrytoken")})
        if not config.username and fields.get("auth"):
            # The legacy `auth` field: base64("user:password").
            user, _, password = base64.b64decode(fields["auth"]).decode().partition(":")
            config.username, config.password = user, password
        return config

    @property
    def has_basic(self) -> bool:
        return bool(self.username or self.password)


def decode_auth_header(value: str) -> AuthConfig:
    """`X-Registry-Auth`: base64url JSON (padding optional; clients differ). Raises ValueError."""
    text = value.strip()
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        return AuthConfig.from_json(json.loads(raw))
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise ValueError(str(exc) or "invalid auth header") from None


@dataclass(frozen=True)
class Challenge:
    scheme: str  # lower case: "basic", "bearer"
    params: dict[str, str] = field(default_factory=dict)


def parse_challenges(header: str) -> list[Challenge]:
    """RFC 7235 challenges, several possibly joined by commas (requests merges repeated headers)."""
    out: list[Challenge] = []
    pos = 0
    while pos < len(header):
        m = _SCHEME_RE.match(header, pos)
        if not m:
            break
        scheme, pos = m.group(1).lower(), m.end()
        params: dict[str, str] = {}
        while pos < len(header):
            p = _PARAM_RE.match(header, pos)
            if not p:
                break
            # A word followed by a space (not `=`) starts the next challenge.
            name, raw = p.group(1), p.group(2)
            if raw.startswith('"'):
                raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
            params[name.lower()] = raw
            pos = p.end()
        out.append(Challenge(scheme, params))
    return out


@dataclass
class _Token:
    value: str
    expires: float


class Authorizer:
    """The `Authorization` header for requests to one registry, for one scope set."""

    def __init__(self, session: requests.Session, config: AuthConfig) -> None:
        self.session = session
        self.config = config
        self.challenge: Challenge | None = None
        self._tokens: dict[str, _Token] = {}
        self._lock = threading.Lock()

    def header(self, scope: str) -> str | None:
        """The header value for a request needing `scope` (space-separated repository scopes, or "")."""
        ch = self.challenge
        if ch is None:
            return None
        if ch.scheme == "basic":
            if not self.config.has_basic:
                return None
            raw = f"{self.config.username}:{self.config.password}".encode()
            return "Basic " + base64.b64encode(raw).decode()
        if ch.scheme == "bearer":
            if self.config.registrytoken:
                return "Bearer " + self.config.registrytoken
            return "Bearer " + self.token(scope)
        return None

    def token(self, scope: str, offline: bool = False) -> str:
        with self._lock:
            cached = self._tokens.get(scope)
            if cached and cached.expires > time.monotonic():
                return cached.value
        token, expires_in, refresh = self._fetch(scope, offline)
        with self._lock:
            self._tokens[scope] = _Token(token, time.monotonic() + max(expires_in - 5, 1))
        if refresh:
            self.config.identitytoken = refresh
        return token

    def _fetch(self, scope: str, offline: bool) -> tuple[str, int, str]:
        assert self.challenge is not None
        realm = self.challenge.params.get("realm", "")
        if not realm:
            raise RegistryError("bearer challenge without a realm")
        service = self.challenge.params.get("service", "")
        try:
            if self.config.identitytoken:
                form = {"grant_type": "refresh_token", "refresh_token": self.config.identitytoken,
                        "service": service, "client_id": "refengine", "access_type": "offline"}
                if scope:
                    form["scope"] = scope  # the POST form takes several scopes space-separated
                resp = self.session.post(realm, data=form, timeout=TOKEN_TIMEOUT)
            else:
                params: dict[str, Any] = {"service": service, "client_id": "refengine"}
                if scope:
                    params["scope"] = scope.split(" ")  # one `scope` parameter per scope
                if offline:
                    params["offline_token"] = "true"
                auth = (self.config.username, self.config.password) if self.config.has_basic else None
                resp = self.session.get(realm, params=params, auth=auth, timeout=TOKEN_TIMEOUT)
        except requests.RequestException as exc:
            raise transport_error("Get", realm, exc) from None
        if resp.status_code == 401:
            raise RegistryError("unauthorized: authentication required", http_status=500)
        if resp.status_code != 200:
            raise RegistryError(f"token auth attempt for registry: {realm}: {resp.status_code} "
                                f"{resp.reason} request")
        try:
            body = resp.json()
        except ValueError:
            raise RegistryError(f"token server {realm} answered with no JSON") from None
        token = body.get("token") or body.get("access_token") or ""
        if not token:
            raise RegistryError("authorization server did not include a token in the response")
        return token, int(body.get("expires_in") or 60), body.get("refresh_token") or ""


def repository_scope(path: str, actions: str) -> str:
    return f"repository:{path}:{actions}"
