"""HTTP calls of the distribution API v2 for one repository, authorization included.

Every call goes through `_request`: it adds the `Authorization` header the registry's challenge
asks for (learnt from the `/v2/` ping, as the Go client does), and on a 401 with a new challenge
tries once more.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO
from urllib.parse import urljoin

import requests

from .auth import AuthConfig, Authorizer, parse_challenges, repository_scope
from .endpoint import Endpoint
from .errors import ManifestUnknown, RegistryError, error_codes, registry_message, transport_error

CONNECT_TIMEOUT = 15
READ_TIMEOUT = 300
CHUNK = 1 << 20
UPLOAD_CHUNK = 8 << 20

MANIFEST_V2 = "application/vnd.docker.distribution.manifest.v2+json"
MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
SCHEMA1_TYPES = {"application/vnd.docker.distribution.manifest.v1+json",
                 "application/vnd.docker.distribution.manifest.v1+prettyjws"}
ACCEPT = ", ".join([MANIFEST_V2, MANIFEST_LIST, OCI_MANIFEST, OCI_INDEX])


@dataclass(frozen=True)
class Manifest:
    raw: bytes
    media_type: str
    digest: str  # sha256 of `raw`
    document: dict[str, Any]


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class RegistryClient:
    def __init__(self, endpoint: Endpoint, repository: str, config: AuthConfig | None = None,
                 actions: str = "pull") -> None:
        self.endpoint = endpoint
        self.repository = repository
        self.session = requests.Session()
        self.session.trust_env = False  # no proxies from the environment: registries are addressed directly
        self.session.headers["User-Agent"] = "refengine/0.1 (distribution client)"
        self.auth = Authorizer(self.session, config or AuthConfig())
        self.scope = repository_scope(repository, actions)
        self._pinged = False

    def close(self) -> None:
        self.session.close()

    # --- plumbing ---------------------------------------------------------------------------------

    def ping(self) -> requests.Response:
        """`GET /v2/`: learns the challenge. Connection failures surface here, as with dockerd."""
        url = self.endpoint.url("/v2/")
        try:
            resp = self.session.get(url, timeout=(CONNECT_TIMEOUT, READ_TIMEOUT))
        except requests.RequestException as exc:
            raise transport_error("Get", url, exc) from None
        if resp.status_code == 401:
            challenges = parse_challenges(resp.headers.get("WWW-Authenticate", ""))
            self.auth.challenge = next((c for c in challenges if c.scheme in ("bearer", "basic")), None)
        elif resp.status_code >= 500 or resp.status_code == 404:
            raise RegistryError(f"registry {self.endpoint.host} does not speak the v2 API: "
                                f"{resp.status_code} {resp.reason}")
        self._pinged = True
        return resp

    def _request(self, method: str, url: str, *, scope: str | None = None, ok: tuple[int, ...] = (200,),
                 **kwargs: Any) -> requests.Response:
        if not self._pinged:
            self.ping()
        url = urljoin(self.endpoint.base_url + "/", url)
        for attempt in (0, 1):
            headers = dict(kwargs.pop("headers", None) or {})
            try:
                authz = self.auth.header(self.scope if scope is None else scope)
            except RegistryError:
                raise
            if self.auth.challenge and self.auth.challenge.scheme == "basic" and authz is None:
                raise RegistryError(f'{method.title()} "{url}": no basic auth credentials')
            if authz:
                headers["Authorization"] = authz
            data = kwargs.get("data")
            if attempt and hasattr(data, "seek"):
                data.seek(0)
            try:
                resp = self.session.request(method, url, headers=headers, timeout=(CONNECT_TIMEOUT, READ_TIMEOUT),
                                            allow_redirects=True, **kwargs)
            except requests.RequestException as exc:
                raise transport_error(method.title(), url, exc) from None
            kwargs["headers"] = headers
            if resp.status_code == 401 and attempt == 0:
                fresh = next((c for c in parse_challenges(resp.headers.get("WWW-Authenticate", ""))
                              if c.scheme in ("bearer", "basic")), None)
                if fresh and fresh != self.auth.challenge:
                    self.auth.challenge = fresh
                    resp.close()
                    continue
            if resp.status_code in ok:
                return resp
            return self._fail(resp)
        raise AssertionError("unreachable")

    @staticmethod
    def _fail(resp: requests.Response) -> requests.Response:
        message = registry_message(resp)
        resp.close()
        raise RegistryError(message)

    # --- manifests --------------------------------------------------------------------------------

    def get_manifest(self, reference: str, display: str) -> Manifest:
        """A manifest by tag or digest; `display` names it in dockerd's not-found message."""
        url = f"/v2/{self.repository}/manifests/{reference}"
        try:
            resp = self._request("GET", url, headers={"Accept": ACCEPT}, ok=(200,))
        except RegistryError as exc:
            if "manifest unknown" in str(exc) or "name unknown" in str(exc) or str(exc).startswith(
                    "received unexpected HTTP status: 404"):
                raise ManifestUnknown(f"manifest for {display} not found: {exc}", str(exc)) from None
            raise
        raw = resp.content
        digest = sha256_digest(raw)
        if reference.startswith("sha256:") and digest != reference:
            raise RegistryError(f"manifest verification failed for digest {reference}")
        media_type = resp.headers.get("Content-Type", "").split(";")[0].strip()
        try:
            document = resp.json()
        except ValueError:
            raise RegistryError(f"invalid manifest for {display}: not JSON") from None
        if not isinstance(document, dict):
            raise RegistryError(f"invalid manifest for {display}: not a JSON object")
        return Manifest(raw, document.get("mediaType") or media_type, digest, document)

    def put_manifest(self, tag: str, raw: bytes, media_type: str) -> str:
        resp = self._request("PUT", f"/v2/{self.repository}/manifests/{tag}", data=raw,
                             headers={"Content-Type": media_type}, ok=(201, 200, 202))
        return resp.headers.get("Docker-Content-Digest") or sha256_digest(raw)

    # --- blobs ------------------------------------------------------------------------------------

    def blob_exists(self, digest: str) -> bool:
        try:
            resp = self._request("HEAD", f"/v2/{self.repository}/blobs/{digest}", ok=(200, 404))
        except RegistryError:
            return False  # dockerd treats a failed stat as "not there" and uploads
        return resp.status_code == 200

    def fetch_blob(self, digest: str, sink: BinaryIO) -> Iterator[tuple[int, int]]:
        """Download a blob into `sink`, yielding (bytes so far, total); verifies the digest at the end."""
        resp = self._request("GET", f"/v2/{self.repository}/blobs/{digest}", stream=True)
        total = int(resp.headers.get("Content-Length") or 0)
        algo, _, expected = digest.partition(":")
        h = hashlib.new(algo)
        size = 0
        try:
            for chunk in resp.iter_content(CHUNK):
                h.update(chunk)
                sink.write(chunk)
                size += len(chunk)
                yield size, total
        except requests.RequestException as exc:
            raise RegistryError(f"error pulling blob {digest}: {exc}") from None
        finally:
            resp.close()
        if h.hexdigest() != expected:
            raise RegistryError(f"filesystem layer verification failed for digest {digest}")

    def upload_blob(self, path: str, digest: str) -> Iterator[tuple[int, int]]:
        """Upload a blob in PATCH chunks, yielding (bytes sent, total) after each, then close the
        session with `PUT ?digest=` (the registry checks the digest)."""
        resp = self._request("POST", f"/v2/{self.repository}/blobs/uploads/", ok=(202,))
        location = self._location(resp)
        total = os.path.getsize(path)
        sent = 0
        with open(path, "rb") as fh:
            while chunk := fh.read(UPLOAD_CHUNK):
                resp = self._request("PATCH", location, data=chunk, ok=(202,), headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Range": f"{sent}-{sent + len(chunk) - 1}"})
                location = self._location(resp)
                sent += len(chunk)
                yield sent, total
        sep = "&" if "?" in location else "?"
        self._request("PUT", f"{location}{sep}digest={digest}", data=b"", ok=(201, 204),
                      headers={"Content-Type": "application/octet-stream"}).close()

    def mount_blob(self, digest: str, source_repository: str) -> bool:
        """Cross-repository mount (`POST ...uploads/?mount=&from=`): True if the registry linked it."""
        try:
            resp = self._request("POST", f"/v2/{self.repository}/blobs/uploads/", ok=(201, 202),
                                 params={"mount": digest, "from": source_repository},
                                 scope=f"{self.scope} {repository_scope(source_repository, 'pull')}")
        except RegistryError:
            return False
        mounted = resp.status_code == 201
        if not mounted and resp.headers.get("Location"):
            # The registry opened an upload session instead: cancel it.
            try:
                self._request("DELETE", self._location(resp), ok=(204, 404)).close()
            except RegistryError:
                pass
        resp.close()
        return mounted

    @staticmethod
    def _location(resp: requests.Response) -> str:
        location = resp.headers.get("Location")
        resp.close()
        if not location:
            raise RegistryError("registry did not return an upload location")
        return location

    def tags(self) -> list[str]:
        resp = self._request("GET", f"/v2/{self.repository}/tags/list")
        try:
            return list(resp.json().get("tags") or [])
        except (ValueError, AttributeError):
            return []


__all__ = ["ACCEPT", "MANIFEST_LIST", "MANIFEST_V2", "OCI_INDEX", "OCI_MANIFEST", "SCHEMA1_TYPES", "Manifest",
           "RegistryClient", "error_codes", "sha256_digest"]
