"""Push: for each layer, a blob the registry already has (known from an earlier pull or push,
see `metadata`: found by HEAD, or mounted from another repository), else the layer gzip-compressed
(deterministically, so a second push finds the same blob) and uploaded in chunks; then the config
and a v2 schema 2 manifest under the tag. A repository without a tag pushes all its local tags,
as dockerd.

The first message (`The push refers to repository [...]`) comes before anything can fail, so
every failure of a push is reported in the stream (dockerd does the same).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..reference import Reference, with_digest, with_tag
from . import metadata
from . import progress as msg
from .auth import AuthConfig
from .client import CHUNK, MANIFEST_V2, RegistryClient, sha256_digest
from .endpoint import for_reference
from .errors import RegistryError

if TYPE_CHECKING:
    from ..store import ImageStore

CONFIG_TYPE = "application/vnd.docker.container.image.v1+json"
LAYER_TYPE = "application/vnd.docker.image.rootfs.diff.tar.gzip"
GZIP_TYPES = {LAYER_TYPE, "application/vnd.oci.image.layer.v1.tar+gzip"}


@dataclass(frozen=True)
class Blob:
    digest: str
    size: int
    path: str  # "" for a blob known only from the metadata (not compressed here)
    media_type: str = LAYER_TYPE


def _targets(store: ImageStore, ref: Reference) -> list[tuple[str, str]]:
    """(tag, image ID) pairs to push: the repository's local tags, or the one asked for."""
    found: list[tuple[str, str]] = []
    for image in store.images():
        found += [(r.tag, image.id) for r in store.references(image.id)
                  if r.tag is not None and not r.is_canonical and r.name == ref.name]
    if not found:
        raise RegistryError(f"An image does not exist locally with the tag: {ref.familiar_name}")
    if ref.tag is not None:
        found = [(tag, image_id) for tag, image_id in found if tag == ref.tag]
        if not found:
            raise RegistryError(f"tag does not exist: {ref.familiar}")
    return sorted(found)


def _known_blob(client: RegistryClient, sources: list[metadata.BlobSource]) -> tuple[Blob | None, str]:
    """A blob this layer already has in the target registry: in the repository itself, or
    mountable from another one (dockerd's `Mounted from`). Only gzip blobs: the manifest says gzip."""
    sources = [source for source in sources if source.media_type in GZIP_TYPES]
    for source in sources:
        if source.repository == client.repository and client.blob_exists(source.digest):
            return Blob(source.digest, source.size, ""), "Layer already exists"
    for source in sources:
        if source.repository != client.repository and client.mount_blob(source.digest, source.repository):
            return Blob(source.digest, source.size, ""), f"Mounted from {source.repository}"
    return None, ""


def compress(src: str, directory: str) -> Blob:
    """gzip a layer tar with a fixed header (no name, mtime 0): same input, same digest."""
    fd, path = tempfile.mkstemp(prefix="push-", dir=directory)
    with os.fdopen(fd, "wb") as raw, open(src, "rb") as tar:
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6) as gz:
            shutil.copyfileobj(tar, gz, CHUNK)
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
    return Blob("sha256:" + h.hexdigest(), os.path.getsize(path), path)


def manifest_bytes(config: bytes, layers: list[Blob]) -> bytes:
    """A v2 schema 2 manifest, indented as dockerd writes it."""
    document = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_V2,
        "config": {"mediaType": CONFIG_TYPE, "size": len(config), "digest": sha256_digest(config)},
        "layers": [{"mediaType": b.media_type, "size": b.size, "digest": b.digest} for b in layers],
    }
    return json.dumps(document, indent=3).encode()


def push(store: ImageStore, ref: Reference, auth: AuthConfig | None = None) -> Iterator[dict[str, Any]]:
    yield msg.status(f"The push refers to repository [{ref.name}]")
    targets = _targets(store, ref)
    client = RegistryClient(for_reference(ref), ref.path, auth, "pull,push")
    tmpdir = tempfile.mkdtemp(prefix="refengine-push-", dir=os.path.join(store.root, "layerdb", "tmp"))
    blobs: dict[str, Blob] = {}  # diff ID → compressed blob, shared by the tags of this push
    try:
        for tag, image_id in targets:
            yield from _push_image(store, client, ref, tag, image_id, blobs, tmpdir)
    finally:
        client.close()
        shutil.rmtree(tmpdir, ignore_errors=True)


def _push_image(store: ImageStore, client: RegistryClient, ref: Reference, tag: str, image_id: str,
                blobs: dict[str, Blob], tmpdir: str) -> Iterator[dict[str, Any]]:
    image = store.by_id(image_id)
    layers = store.layers.chain(image.top_layer)
    for layer in reversed(layers):
        yield msg.layer("Preparing", msg.short(layer.diff_id))
    pushed: list[Blob] = []
    sources = metadata.for_store(store.root)
    for layer in layers:
        item = msg.short(layer.diff_id)
        blob, status = _known_blob(client, sources.sources(layer.diff_id, client.endpoint.host))
        if blob is None:
            blob = blobs.get(layer.diff_id)
            if blob is None:
                blob = blobs[layer.diff_id] = compress(store.layers.tar_path(layer.chain_id), tmpdir)
            if client.blob_exists(blob.digest):
                status = "Layer already exists"
            else:
                throttle = msg.Throttle()
                for sent, total in client.upload_blob(blob.path, blob.digest):
                    if throttle.due(sent, total):
                        yield msg.bar("Pushing", item, sent, total)
                status = "Pushed"
        yield msg.layer(status, item)
        sources.add(layer.diff_id, metadata.BlobSource(blob.digest, blob.size, blob.media_type,
                                                       client.endpoint.host, client.repository))
        pushed.append(blob)
    config_digest = sha256_digest(image.raw)
    if not client.blob_exists(config_digest):
        path = os.path.join(tmpdir, "config.json")
        with open(path, "wb") as fh:
            fh.write(image.raw)
        for _ in client.upload_blob(path, config_digest):
            pass
    raw = manifest_bytes(image.raw, pushed)
    digest = client.put_manifest(tag, raw, MANIFEST_V2)
    if digest != sha256_digest(raw):
        raise RegistryError(f"registry answered digest {digest} for a manifest whose digest is {sha256_digest(raw)}")
    tagged = with_tag(ref.trim(), tag)
    store.add_reference(with_digest(ref.trim(), digest), image_id, force=True)
    store.on_event("push", tagged.familiar, tagged.familiar)
    yield msg.status(f"{tag}: digest: {digest} size: {len(raw)}")
    yield msg.aux({"Tag": tag, "Digest": digest, "Size": len(raw)})
