"""Pull: manifest (v2 schema 2, OCI, or an index/list narrowed to linux/<host arch>), config,
layers verified by digest and unpacked into the image store, then tag and digest references.

The generator yields dockerd's progress messages. Its first message comes only once the manifest
is known, so a failure before that (unknown manifest, auth, connection) can still become an
HTTP error status, as with dockerd.
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Generator, Iterator
from typing import TYPE_CHECKING, Any

from ..errors import ImageConflict, ImageNotFound, InvalidArgument
from ..layers import Layer, chain_id
from ..load import host_arch
from ..reference import Reference, with_digest, with_tag
from . import metadata
from . import progress as msg
from .auth import AuthConfig
from .client import MANIFEST_LIST, OCI_INDEX, SCHEMA1_TYPES, Manifest, RegistryClient
from .endpoint import for_reference
from .errors import RegistryError

if TYPE_CHECKING:
    from ..store import Image, ImageStore

MAX_CONFIG = 8 << 20
LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
FOREIGN_TYPES = {"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"}
ZSTD_TYPES = {"application/vnd.oci.image.layer.v1.tar+zstd",
              "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"}


def is_index(manifest: Manifest) -> bool:
    return manifest.media_type in (MANIFEST_LIST, OCI_INDEX) or (
        "manifests" in manifest.document and "layers" not in manifest.document)


def select_platform(entries: list[dict[str, Any]], arch: str) -> dict[str, Any] | None:
    """The entry of a manifest list for linux/`arch` (the first one, as containerd's matcher)."""
    for entry in entries:
        platform = entry.get("platform") or {}
        if platform.get("os") == "linux" and platform.get("architecture") == arch:
            return entry
    return None


def fetch_manifest(client: RegistryClient, ref: Reference, display: str) -> Manifest:
    """The manifest (or list) the reference names."""
    manifest = client.get_manifest(ref.digest or ref.tag or "latest", display)
    if manifest.media_type in SCHEMA1_TYPES or manifest.document.get("schemaVersion") == 1:
        raise RegistryError(f"{display}: image manifest schema 1 is not supported by this engine")
    return manifest


def image_manifest(client: RegistryClient, manifest: Manifest, display: str) -> Manifest:
    """A list narrowed to linux/<host arch>; an image manifest as it is."""
    if is_index(manifest):
        entry = select_platform(list(manifest.document.get("manifests") or []), host_arch())
        if entry is None or not isinstance(entry.get("digest"), str):
            raise RegistryError(f"no matching manifest for linux/{host_arch()} in the manifest list entries")
        manifest = client.get_manifest(entry["digest"], display)
        if is_index(manifest):
            raise RegistryError(f"{display}: nested manifest lists are not supported")
    if not isinstance(manifest.document.get("config"), dict) or not isinstance(manifest.document.get("layers"),
                                                                                  list):
        raise RegistryError(f"{display}: invalid image manifest (no config or layers)")
    return manifest


def fetch_config(client: RegistryClient, descriptor: dict[str, Any]) -> bytes:
    digest = descriptor.get("digest")
    if not isinstance(digest, str):
        raise RegistryError("invalid manifest: config without a digest")
    if int(descriptor.get("size") or 0) > MAX_CONFIG:
        raise RegistryError(f"image config {digest} is too large")
    sink = io.BytesIO()
    for _ in client.fetch_blob(digest, sink):
        if sink.tell() > MAX_CONFIG:
            raise RegistryError(f"image config {digest} is too large")
    return sink.getvalue()


def _existing(store: ImageStore, config_digest: Any) -> Image | None:
    """The image with this config, if stored: then nothing needs downloading (dockerd's shortcut)."""
    if not isinstance(config_digest, str):
        return None
    try:
        return store.by_id(config_digest)
    except ImageNotFound:
        return None


def pull(store: ImageStore, ref: Reference, auth: AuthConfig | None = None) -> Iterator[dict[str, Any]]:
    """Pull `ref` into `store`, yielding progress messages. A bare repository name (no tag, no
    digest) pulls every tag the registry lists, as dockerd does for `fromImage` without `tag`."""
    client = RegistryClient(for_reference(ref), ref.path, auth, "pull")
    try:
        if ref.is_name_only:
            try:
                tags = sorted(client.tags())
            except RegistryError as exc:
                raise RegistryError(f"repository {ref.name} not found: {exc}", http_status=404) from None
            updated = False
            for tag in tags:
                updated = (yield from _pull_one(store, client, with_tag(ref, tag))) or updated
        else:
            updated = yield from _pull_one(store, client, ref)
        word = "Downloaded newer image for" if updated else "Image is up to date for"
        yield msg.status(f"Status: {word} {ref.familiar}")
    finally:
        client.close()


def _pull_one(store: ImageStore, client: RegistryClient, ref: Reference) -> Generator[dict[str, Any], None, bool]:
    """One tag or digest; returns whether the name now points to another image."""
    listed = fetch_manifest(client, ref, str(ref))
    # The digest reported is the one the name resolves to (a list's, for a list), as dockerd.
    reported_digest = listed.digest
    # The item is the tag, or for a digest pull the whole reference (dockerd's tagOrDigest).
    yield msg.status(f"Pulling from {ref.path}", str(ref) if ref.digest else ref.tag or "latest")
    manifest = image_manifest(client, listed, str(ref))
    image = _existing(store, manifest.document["config"].get("digest"))
    if image is None:
        held: list[Layer] = []
        try:
            raw = fetch_config(client, manifest.document["config"])
            yield from _pull_layers(store, client, manifest, raw, held)
            image = store.create(raw)
        finally:
            store.release(held)
            if image is None:
                store.collect_layers()  # what this failed pull registered goes again
    updated = _reference(store, ref, image.id, reported_digest)
    yield msg.status(f"Digest: {reported_digest}")
    store.on_event("pull", ref.familiar, ref.familiar)
    return updated


def _pull_layers(store: ImageStore, client: RegistryClient, manifest: Manifest, raw_config: bytes,
                 held: list[Layer]) -> Iterator[dict[str, Any]]:
    from ..store import parse_config

    document = parse_config(raw_config)
    diff_ids: list[str] = document["rootfs"].get("diff_ids") or []
    layers: list[dict[str, Any]] = manifest.document["layers"]
    if len(layers) != len(diff_ids):
        raise RegistryError(f"invalid manifest: {len(layers)} layers for {len(diff_ids)} diff IDs in the config")
    for layer in layers:
        if not isinstance(layer, dict) or not isinstance(layer.get("digest"), str):
            raise RegistryError("invalid manifest: a layer without a digest")
        if layer.get("mediaType") in FOREIGN_TYPES or layer.get("mediaType") in ZSTD_TYPES:
            raise RegistryError(f"layer {layer['digest']}: media type {layer.get('mediaType')} is not supported")
    # Layers whose chain is already stored are reused; the first missing one and all above download.
    present = 0
    parent: str | None = None
    for diff_id in diff_ids:
        chain = chain_id(parent, diff_id)
        if not store.layers.has(chain):
            break
        present += 1
        parent = chain
    for i, layer in enumerate(layers):
        yield msg.layer("Already exists" if i < present else "Pulling fs layer", msg.short(layer["digest"]))
    parent = None
    for diff_id in diff_ids[:present]:
        chain = chain_id(parent, diff_id)
        store.layers.hold(chain)
        held.append(store.layers.get(chain))
        parent = chain
    tmpdir = os.path.join(store.root, "layerdb", "tmp")
    os.makedirs(tmpdir, exist_ok=True)
    files: list[str] = []
    try:
        for layer in layers[present:]:
            item = msg.short(layer["digest"])
            fd, path = tempfile.mkstemp(prefix="pull-", dir=tmpdir)
            files.append(path)
            throttle = msg.Throttle()
            with os.fdopen(fd, "wb") as sink:
                for current, total in client.fetch_blob(layer["digest"], sink):
                    if throttle.due(current, total or int(layer.get("size") or 0)):
                        yield msg.bar("Downloading", item, current, total or int(layer.get("size") or 0))
            yield msg.layer("Verifying Checksum", item)
            yield msg.layer("Download complete", item)
        for layer, diff_id, path in zip(layers[present:], diff_ids[present:], files, strict=True):
            item = msg.short(layer["digest"])
            size = os.path.getsize(path)
            yield msg.bar("Extracting", item, size, size)
            with open(path, "rb") as fh:
                try:
                    registered = store.layers.register(fh, parent, expected_diff_id=diff_id)
                except InvalidArgument as exc:
                    raise RegistryError(f"failed to register layer {layer['digest']}: {exc}") from None
            held.append(registered)
            parent = registered.chain_id
            yield msg.layer("Pull complete", item)
    finally:
        for path in files:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
    sources = metadata.for_store(store.root)
    for layer, diff_id in zip(layers, diff_ids, strict=True):
        sources.add(diff_id, metadata.BlobSource(layer["digest"], int(layer.get("size") or 0),
                                                 str(layer.get("mediaType") or LAYER_GZIP),
                                                 client.endpoint.host, client.repository))


def _reference(store: ImageStore, ref: Reference, image_id: str, manifest_digest: str) -> bool:
    """Tag (or digest-reference) the image; True if the name now points somewhere new."""
    if ref.is_canonical:
        updated = store.lookup_reference(ref) != image_id
        store.add_reference(ref, image_id, force=True)
        return updated
    tagged = ref.with_default_tag()
    updated = store.lookup_reference(tagged) != image_id
    if updated:
        store.tag_image(image_id, tagged)
    try:
        store.add_reference(with_digest(tagged.trim(), manifest_digest), image_id, force=True)
    except ImageConflict:
        pass  # the digest names another image here already (content addressing makes this rare): keep it
    return updated

