"""`docker save` (`GET /images/get`, `GET /images/{name}/get`): images → a docker-save tar.

The layout is dockerd 20.10's, so its `POST /images/load` (and any docker-save reader) takes it:

    <v1 id>/VERSION, <v1 id>/json, <v1 id>/layer.tar   one directory per layer of each image
    <config hex>.json                                  each image config, byte for byte
    manifest.json                                      [{"Config", "RepoTags", "Layers"[, "Parent"]}]
    repositories                                       {"busybox": {"latest": "<top v1 id>"}} if tagged

A layer already written for another image is a symlink to that first copy, as dockerd writes it.
The v1 IDs only name directories (loaders read manifest.json); they are derived from the chain
ID, the parent and, for an image's top layer, its image ID, so they are stable and distinct.

Naming errors are raised by `plan` before a byte is written, so the daemon can still answer
with a status code; `write` streams the tar.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, BinaryIO

from ..drivers.graph.changes import open_tar_writer
from . import reference as refs
from .errors import ImageNotFound, InvalidArgument
from .layers import chain_ids
from .reference import DigestReference, Reference
from .views import ZERO_TIME, container_config, parse_time

if TYPE_CHECKING:
    from .store import Image, ImageStore

EPOCH_CREATED = "1970-01-01T00:00:00Z"


@dataclass
class SaveEntry:
    image: Image
    refs: list[Reference] = field(default_factory=list)


def plan(store: ImageStore, names: list[str]) -> list[SaveEntry]:
    """Resolve the names as dockerd's parseNames: a bare repository saves all its tags, an ID or
    digest saves the image untagged, `name:tag` that tag."""
    entries: dict[str, SaveEntry] = {}

    def add(image: Image, ref: Reference | None) -> None:
        entry = entries.setdefault(image.id, SaveEntry(image))
        if ref is not None and not ref.is_canonical:
            tagged = ref.with_default_tag()
            if all(str(tagged) != str(r) for r in entry.refs):
                entry.refs.append(tagged)

    for name in names:
        ref = refs.parse_any_reference(name)
        if isinstance(ref, DigestReference):
            add(store.get(ref.digest), None)
            continue
        if ref.familiar_name == "sha256":
            add(store.get(name), None)
            continue
        if ref.is_name_only:
            matches = [(image, r) for image in store.images() for r in store.references(image.id)
                       if r.name == ref.name]
            for image, r in matches:
                add(image, r)
            if not matches:
                add(store.get(name), None)
            continue
        image_id = store.lookup_reference(ref)
        if image_id is None:
            raise ImageNotFound(ref.with_default_tag().familiar)
        add(store.by_id(image_id), ref)
    for entry in entries.values():
        if not entry.image.diff_ids:
            raise InvalidArgument("empty export - not implemented")
    return list(entries.values())


def _tarinfo(name: str, kind: bytes, size: int = 0, mtime: int = 0, mode: int = 0o644,
             link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.size, info.mtime, info.mode, info.linkname = kind, size, mtime, mode, link
    info.uname = info.gname = ""
    return info


def _v1_id(chain: str, parent: str, image_id: str | None) -> str:
    seed = json.dumps({"layer_id": chain, "parent": parent, "image": image_id or ""}, sort_keys=True)
    return hashlib.sha256(seed.encode()).hexdigest()


def _v1_json(v1_id: str, parent: str, image: Image | None) -> bytes:
    """The legacy per-layer `json` (dockerd writes the image's V1Image for the top layer)."""
    doc: dict[str, Any] = {"id": v1_id}
    if parent:
        doc["parent"] = parent
    if image is None:
        doc.update({"created": EPOCH_CREATED, "container_config": container_config(None), "os": "linux"})
    else:
        d = image.document
        for key in ("comment", "created", "container"):
            if d.get(key):
                doc[key] = d[key]
        doc.setdefault("created", d.get("created") or ZERO_TIME)
        doc["container_config"] = container_config(d.get("container_config"))
        for key in ("docker_version", "author"):
            if d.get(key):
                doc[key] = d[key]
        if d.get("config") is not None:
            doc["config"] = container_config(d["config"])
        for key in ("architecture", "variant", "os"):
            if d.get(key):
                doc[key] = d[key]
    return json.dumps(doc, separators=(",", ":")).encode()


def write(store: ImageStore, entries: list[SaveEntry], out: BinaryIO) -> None:
    """Stream the archive of a `plan`."""
    files: dict[str, tuple[tarfile.TarInfo, bytes | str | None]] = {}  # name → (header, bytes | layer path)
    saved_diffs: dict[str, str] = {}
    manifest: list[dict[str, Any]] = []
    repositories: dict[str, dict[str, str]] = {}
    ids = {entry.image.id for entry in entries}
    for entry in entries:
        image = entry.image
        created = parse_time(image.document.get("created"))
        mtime = created[0] if created else 0
        layer_names = []
        parent_v1 = ""
        chains = chain_ids(image.diff_ids)
        for index, chain in enumerate(chains):
            top = index == len(chains) - 1
            v1 = _v1_id(chain, parent_v1, image.id if top else None)
            layer = store.layers.get(chain)
            if f"{v1}/" not in files:
                files[f"{v1}/"] = (_tarinfo(f"{v1}/", tarfile.DIRTYPE, mtime=mtime, mode=0o755), None)
                files[f"{v1}/VERSION"] = (_tarinfo(f"{v1}/VERSION", tarfile.REGTYPE, 3, mtime), b"1.0")
                meta = _v1_json(v1, parent_v1, image if top else None)
                files[f"{v1}/json"] = (_tarinfo(f"{v1}/json", tarfile.REGTYPE, len(meta), mtime), meta)
                name = f"{v1}/layer.tar"
                if layer.diff_id in saved_diffs:
                    target = f"../{saved_diffs[layer.diff_id]}"
                    files[name] = (_tarinfo(name, tarfile.SYMTYPE, mtime=mtime, mode=0o777, link=target), None)
                else:
                    files[name] = (_tarinfo(name, tarfile.REGTYPE, layer.tar_size, mtime),
                                   store.layers.tar_path(chain))
                    saved_diffs[layer.diff_id] = name
            layer_names.append(f"{v1}/layer.tar")
            parent_v1 = v1
        config_name = image.id.partition(":")[2] + ".json"
        files[config_name] = (_tarinfo(config_name, tarfile.REGTYPE, len(image.raw), mtime), image.raw)
        item: dict[str, Any] = {"Config": config_name,
                                "RepoTags": [r.familiar for r in entry.refs] or None, "Layers": layer_names}
        if image.parent and image.parent in ids:
            item["Parent"] = image.parent
        manifest.append(item)
        for r in entry.refs:
            repositories.setdefault(r.familiar_name, {})[r.tag or refs.DEFAULT_TAG] = parent_v1
    data = (json.dumps(manifest, separators=(",", ":")) + "\n").encode()
    files["manifest.json"] = (_tarinfo("manifest.json", tarfile.REGTYPE, len(data)), data)
    if repositories:
        data = (json.dumps(repositories, separators=(",", ":")) + "\n").encode()
        files["repositories"] = (_tarinfo("repositories", tarfile.REGTYPE, len(data)), data)
    with open_tar_writer(out) as tar:
        for name in sorted(files, key=lambda n: n.rstrip("/")):
            info, content = files[name]
            if isinstance(content, bytes):
                tar.addfile(info, io.BytesIO(content))
            elif isinstance(content, str):
                with open(content, "rb") as fh:
                    tar.addfile(info, fh)
            else:
                tar.addfile(info)
    for entry in entries:
        store.on_event("save", entry.image.id, entry.image.id)


def save(store: ImageStore, names: list[str], out: BinaryIO) -> None:
    write(store, plan(store, names), out)
