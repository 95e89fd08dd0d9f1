"""`GET /distribution/{name}/json`: what a registry holds for a reference, without pulling it (dockerd's
distribution inspect): the manifest's descriptor and the platforms it covers."""

from __future__ import annotations

import json
from typing import Any

from ..reference import Reference
from .auth import AuthConfig
from .client import RegistryClient
from .endpoint import for_reference
from .errors import ManifestUnknown, RegistryError
from .pull import fetch_config, fetch_manifest, is_index


def inspect(ref: Reference, auth: AuthConfig | None = None) -> dict[str, Any]:
    """{"Descriptor": {mediaType, digest, size}, "Platforms": [...]}: an index's entries' platforms, or
    for an image manifest the os/architecture its config names (the config blob is fetched, as dockerd)."""
    client = RegistryClient(for_reference(ref), ref.path, auth, "pull")
    try:
        try:
            manifest = fetch_manifest(client, ref, str(ref))
        except ManifestUnknown as exc:
            raise ManifestUnknown(exc.registry_text) from None  # dockerd answers the registry's words alone
        platforms: list[dict[str, Any]] = []
        if is_index(manifest):
            for entry in manifest.document.get("manifests") or []:
                if isinstance(entry, dict) and isinstance(entry.get("platform"), dict):
                    platforms.append(_platform(entry["platform"]))
        else:
            config = manifest.document.get("config")
            if not isinstance(config, dict):
                raise RegistryError(f"{ref}: invalid image manifest (no config)")
            try:
                document = json.loads(fetch_config(client, config))
            except ValueError:
                document = None
            if not isinstance(document, dict):
                raise RegistryError(f"{ref}: the image config is not a JSON object")
            platforms.append(_platform(document))
        return {"Descriptor": {"mediaType": manifest.media_type, "digest": manifest.digest, "size": len(manifest.raw)},
                "Platforms": platforms}
    finally:
        client.close()


def _platform(doc: dict[str, Any]) -> dict[str, Any]:
    """OCI's platform fields, named as the OCI spec names them (dockerd answers them so)."""
    out: dict[str, Any] = {"architecture": str(doc.get("architecture") or ""), "os": str(doc.get("os") or "")}
    for key in ("os.version", "os.features", "variant"):
        if doc.get(key):
            out[key] = doc[key]
    return out
