"""`docker load` (`POST /images/load`): docker-save archives and OCI image layouts.

The archive (optionally gzip/bzip2/xz-compressed, as dockerd accepts) is spooled to a private
temp dir, regular files and symlinks only: `docker save` links duplicate layers
(`<id>/layer.tar -> ../<other>/layer.tar`), and those links are followed inside the archive only.
Then:

- `manifest.json` present: dockerd's tarexport.Load (what 20.10 reads);
- else `oci-layout` + `index.json`: an OCI image layout (blobs verified against their digests;
  an index picks linux/<host arch>); names come from `io.containerd.image.name` or a full
  reference in `org.opencontainers.image.ref.name`; a bare tag there names nothing;
- else an error. The pre-1.10 layout (`repositories` and per-layer `json` only) is refused.

Messages are dockerd's JSON stream items: `{"stream": "Loaded image: x:y\\n"}` per tag, and
`{"stream": "Loaded image ID: sha256:...\\n"}` lines when the last image had no tag (dockerd's
rule); `Loading layer` progress items unless `quiet`.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO

from ..drivers.graph.extract import CHUNK, LayerError, clean_name, decompress
from . import reference as refs
from .errors import InvalidArgument, InvalidReference, LoadError, short_id
from .layers import Layer, chain_id

if TYPE_CHECKING:
    from .store import Image, ImageStore

MAX_LINK_HOPS = 40
INDEX_TYPES = {"application/vnd.oci.image.index.v1+json",
               "application/vnd.docker.distribution.manifest.list.v2+json"}
MANIFEST_TYPES = {"application/vnd.oci.image.manifest.v1+json",
                  "application/vnd.docker.distribution.manifest.v2+json"}
ZSTD_LAYER_TYPES = {"application/vnd.oci.image.layer.v1.tar+zstd",
                    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"}
CONTAINERD_NAME = "io.containerd.image.name"
OCI_REF_NAME = "org.opencontainers.image.ref.name"


def host_arch() -> str:
    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386"}.get(machine, machine)


def human_size(size: float) -> str:
    """go-units HumanSize: 4 significant digits, decimal units."""
    units = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"]
    i = 0
    while size >= 1000 and i < len(units) - 1:
        size /= 1000.0
        i += 1
    return f"{size:.4g}{units[i]}"


def progress_item(action: str, item_id: str, current: int, total: int) -> dict[str, Any]:
    """A JSON progress message as dockerd's stream formatter writes it (200 columns wide)."""
    percent = min(int(current / total * 100) // 2, 50) if total > 0 else 50
    bar = f"[{'=' * percent}>{' ' * (50 - percent)}] "
    return {"status": action, "progressDetail": {"current": current, "total": total},
            "progress": f"{bar}{human_size(current):>8}/{human_size(total)}", "id": item_id}


class Archive:
    """The spooled archive: member name → file on disk, symlinks resolved within the archive."""

    def __init__(self, directory: str) -> None:
        self.dir = directory
        self.files: dict[str, str] = {}
        self.links: dict[str, str] = {}
        self.dirs: set[str] = set()

    def spool(self, stream: BinaryIO) -> None:
        try:
            source = decompress(stream)
            if not source.peek(1):  # type: ignore[attr-defined]
                return  # an empty body is an empty archive, as Go's tar reader sees it
            with tarfile.open(fileobj=source, mode="r|") as tar:
                for info in tar:
                    self._member(tar, info)
        except LayerError as exc:
            raise LoadError(f"Error processing tar file: {exc}") from None
        except (tarfile.TarError, EOFError, OSError) as exc:
            if isinstance(exc, OSError) and exc.errno is not None:
                raise
            raise LoadError(f"Error processing tar file: {exc or 'unexpected EOF'}") from None

    def _member(self, tar: tarfile.TarFile, info: tarfile.TarInfo) -> None:
        name = clean_name(info.name)
        if name == ".":
            return
        if info.isdir():
            self.dirs.add(name)
        elif info.issym():
            self.links[name] = info.linkname
        elif info.islnk():
            self.links[name] = "/" + clean_name(info.linkname)  # hardlink names are archive-absolute
        elif info.isreg():
            path = os.path.join(self.dir, f"{len(self.files):06d}")
            src = tar.extractfile(info)
            with open(path, "wb") as out:
                if src is not None:
                    shutil.copyfileobj(src, out, CHUNK)
            self.files[name] = path

    def resolve(self, name: str) -> str | None:
        """The archive member a name leads to (dockerd's safePath: links stay in the archive)."""
        parts = [p for p in name.split("/") if p not in ("", ".")]
        real: list[str] = []
        hops = 0
        while parts:
            part = parts.pop(0)
            if part == "..":
                if real:
                    real.pop()
                continue
            candidate = "/".join([*real, part])
            if candidate in self.links:
                hops += 1
                if hops > MAX_LINK_HOPS:
                    return None
                target = self.links[candidate]
                if target.startswith("/"):
                    real = []
                parts[:0] = [p for p in target.split("/") if p not in ("", ".")]
                continue
            real.append(part)
        return "/".join(real)

    def path(self, name: str) -> str:
        resolved = self.resolve(name)
        if resolved is None or resolved not in self.files:
            raise LoadError(f"open {name}: no such file or directory")
        return self.files[resolved]

    def has(self, name: str) -> bool:
        resolved = self.resolve(name)
        return resolved is not None and resolved in self.files

    def read(self, name: str) -> bytes:
        with open(self.path(name), "rb") as fh:
            return fh.read()

    def json(self, name: str) -> Any:
        try:
            return json.loads(self.read(name))
        except ValueError as exc:
            raise LoadError(f"invalid JSON in {name}: {exc}") from None


@dataclass
class LoadItem:
    """One image to load: its config, its layers (archive member, diff ID), its names."""

    config: bytes
    layers: list[tuple[str, str]]
    tags: list[str]
    parent: str = ""


def load(store: ImageStore, stream: BinaryIO, quiet: bool = False) -> Iterator[dict[str, Any]]:
    """Load every image of the archive; yields dockerd's progress/stream messages as it goes."""
    tmp = tempfile.mkdtemp(prefix="refengine-load-", dir=os.path.join(store.root, "layerdb", "tmp"))
    try:
        archive = Archive(tmp)
        archive.spool(stream)
        if archive.has("manifest.json"):
            items = _docker_save_items(archive)
        elif archive.has("index.json") or archive.has("oci-layout"):
            items = _oci_items(archive)
        elif archive.has("repositories"):
            raise LoadError("this archive is in the legacy (pre-1.10) docker save format, which this engine "
                            "does not load: it has `repositories` but no manifest.json")
        else:
            raise LoadError("open repositories: no such file or directory (the archive holds neither a "
                            "docker save manifest.json nor an OCI image layout)")
        yield from _load_items(store, archive, items, quiet)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _docker_save_items(archive: Archive) -> list[LoadItem]:
    manifest = archive.json("manifest.json")
    if not isinstance(manifest, list):
        raise LoadError("invalid manifest.json: expected a JSON array")
    items = []
    for entry in manifest:
        if not isinstance(entry, dict) or not isinstance(entry.get("Config"), str):
            raise LoadError("invalid manifest.json: an entry without Config")
        config = archive.read(entry["Config"])
        document = _config(config)
        diff_ids = document["rootfs"].get("diff_ids") or []
        layers = entry.get("Layers") or []
        if len(layers) != len(diff_ids):
            raise LoadError(f"invalid manifest, layers length mismatch: expected {len(layers)}, got {len(diff_ids)}")
        items.append(LoadItem(config, list(zip(layers, diff_ids, strict=True)), list(entry.get("RepoTags") or []),
                              entry.get("Parent") or ""))
    return items


def _config(raw: bytes) -> dict[str, Any]:
    from .store import parse_config

    try:
        return parse_config(raw)
    except InvalidArgument as exc:
        raise LoadError(str(exc)) from None


def _blob(archive: Archive, descriptor: Any) -> str:
    """The archive path of a verified blob (OCI: `blobs/<alg>/<hex>`, checked against its digest)."""
    if not isinstance(descriptor, dict) or not isinstance(descriptor.get("digest"), str):
        raise LoadError("invalid OCI descriptor: no digest")
    digest = descriptor["digest"]
    try:
        refs.validate_digest(digest)
    except InvalidReference as exc:
        raise LoadError(f"invalid OCI descriptor digest {digest!r}: {exc}") from None
    algo, _, encoded = digest.partition(":")
    name = f"blobs/{algo}/{encoded}"
    path = archive.path(name)
    h = hashlib.new(algo)
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
            size += len(chunk)
    if h.hexdigest() != encoded:
        raise LoadError(f"blob {digest} does not match its digest (got {algo}:{h.hexdigest()})")
    if isinstance(descriptor.get("size"), int) and descriptor["size"] != size:
        raise LoadError(f"blob {digest}: size {size} does not match the descriptor's {descriptor['size']}")
    return name


def _select_manifest(archive: Archive, descriptor: dict[str, Any], depth: int = 0) -> dict[str, Any]:
    """Follow image indexes down to one image manifest for linux/<host arch>."""
    if depth > 4:
        raise LoadError("OCI index nesting is too deep")
    document = json.loads(archive.read(_blob(archive, descriptor)))
    media_type = descriptor.get("mediaType") or document.get("mediaType") or ""
    if media_type in INDEX_TYPES or ("manifests" in document and "layers" not in document):
        manifests = document.get("manifests") or []
        wanted = [m for m in manifests if (m.get("platform") or {}).get("os", "linux") == "linux"
                  and (m.get("platform") or {}).get("architecture", host_arch()) == host_arch()]
        if not wanted and len(manifests) == 1:
            wanted = manifests
        if not wanted:
            raise LoadError(f"no image in the OCI index matches linux/{host_arch()}")
        return _select_manifest(archive, wanted[0], depth + 1)
    if media_type and media_type not in MANIFEST_TYPES:
        raise LoadError(f"unsupported OCI manifest media type {media_type!r}")
    return document


def _oci_names(descriptor: dict[str, Any]) -> list[str]:
    annotations = descriptor.get("annotations") or {}
    for key in (CONTAINERD_NAME, OCI_REF_NAME):
        name = annotations.get(key)
        if not isinstance(name, str) or not name:
            continue
        if key == OCI_REF_NAME and refs.TAG_RE.match(name) and "/" not in name:
            return []  # a bare tag: no repository to put it in
        try:
            ref = refs.parse_normalized_named(name)
        except InvalidReference as exc:
            raise LoadError(f"invalid image name {name!r} in the OCI index: {exc}") from None
        return [ref.with_default_tag().familiar] if not ref.is_canonical else []
    return []


def _oci_items(archive: Archive) -> list[LoadItem]:
    if not archive.has("oci-layout"):
        raise LoadError("open oci-layout: no such file or directory")
    layout = archive.json("oci-layout")
    if not isinstance(layout, dict) or not layout.get("imageLayoutVersion"):
        raise LoadError("invalid oci-layout: no imageLayoutVersion")
    index = archive.json("index.json")
    if not isinstance(index, dict) or not isinstance(index.get("manifests"), list):
        raise LoadError("invalid OCI index.json: no manifests")
    items = []
    for descriptor in index["manifests"]:
        manifest = _select_manifest(archive, descriptor)
        config = archive.read(_blob(archive, manifest.get("config")))
        document = _config(config)
        diff_ids = document["rootfs"].get("diff_ids") or []
        layers = manifest.get("layers") or []
        if len(layers) != len(diff_ids):
            raise LoadError(f"invalid manifest, layers length mismatch: expected {len(layers)}, got {len(diff_ids)}")
        for layer in layers:
            if layer.get("mediaType") in ZSTD_LAYER_TYPES:
                raise LoadError(f"layer {layer.get('digest')}: zstd-compressed layers are not supported")
        items.append(LoadItem(config, [(_blob(archive, layer), diff_id) for layer, diff_id
                                       in zip(layers, diff_ids, strict=True)], _oci_names(descriptor)))
    return items


def _load_items(store: ImageStore, archive: Archive, items: list[LoadItem],
                quiet: bool) -> Iterator[dict[str, Any]]:
    ids_text = ""
    ref_count = 0
    loaded: list[tuple[Image, str]] = []
    for item in items:
        # Names are checked before anything is stored, so a bad tag loads nothing of its image.
        tags = []
        for text in item.tags:
            try:
                ref = refs.parse_normalized_named(text)
            except InvalidReference as exc:
                raise LoadError(str(exc)) from None
            if not ref.is_tagged or ref.is_canonical:
                raise LoadError(f"invalid tag {text!r}")
            tags.append(ref)
        with ExitStack() as stack:
            held: list[Layer] = []
            stack.callback(store.release, held)
            parent: str | None = None
            for index, (member, diff_id) in enumerate(item.layers):
                chain = chain_id(parent, diff_id)
                if store.layers.has(chain):
                    store.layers.hold(chain)
                    layer = store.layers.get(chain)
                else:
                    with open(archive.path(member), "rb") as fh:
                        try:
                            layer = store.layers.register(fh, parent)
                        except InvalidArgument as exc:
                            raise LoadError(f"layer {index} ({member}): {exc}") from None
                    if layer.diff_id != diff_id:
                        store.layers.release(layer.chain_id)
                        store.collect_layers()
                        raise LoadError(f"invalid diffID for layer {index}: expected {diff_id!r}, "
                                        f"got {layer.diff_id!r}")
                    if not quiet:
                        yield progress_item("Loading layer", short_id(diff_id), layer.tar_size, layer.tar_size)
                held.append(layer)
                parent = layer.chain_id
            image = store.create(item.config)
        ids_text += f"Loaded image ID: {image.id}\n"
        ref_count = 0
        for ref in tags:
            previous = store.lookup_reference(ref)
            if previous and previous != image.id:
                yield {"stream": f"The image {ref.familiar} already exists, renaming the old one with ID "
                                 f"{previous} to empty string\n"}
            store.add_reference(ref, image.id, force=True)
            yield {"stream": f"Loaded image: {ref.familiar}\n"}
            ref_count += 1
        loaded.append((image, item.parent))
        store.on_event("load", image.id, image.id)
    ids = {image.id for image, _ in loaded}
    for image, parent in loaded:
        # dockerd keeps a manifest's Parent only if that parent came in the same archive.
        if parent and parent in ids and parent != image.id:
            store.set_parent(image.id, parent)
    if ref_count == 0 and ids_text:
        yield {"stream": ids_text}

