"""The image store: image configs by content, the tag/digest reference store, and the rules dockerd
applies to lookups, tags and deletes (daemon/images, reference/store.go).

An image ID is the sha256 of its config JSON, kept byte for byte. Under `root`:

    imagedb/<id hex>/config.json   the config (immutable)
    imagedb/<id hex>/meta.json     parent image ID, last tag time (atomic rewrites)
    repositories.json              dockerd's format: {"Repositories": {"busybox": {"busybox:latest": "sha256:..."}}}
    layerdb/                       the layer store (layers.py)

Containers live elsewhere: the daemon fills in `containers_using` (or the simpler `in_use`) so
deletes can refuse images containers use, and `on_event` to emit image events.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from ..drivers.graph import GraphDriver
from ..engine import filters as flt
from . import reference as refs
from . import views
from .errors import (
    DeleteConflict,
    ImageConflict,
    ImageNotFound,
    InvalidArgument,
    InvalidReference,
    ReferenceInUse,
    short_id,
)
from .layers import Layer, LayerStore, atomic_write, chain_id, chain_ids
from .reference import DigestReference, Reference

IMAGE_FILTERS = ("dangling", "label", "before", "since", "reference")


@dataclass
class Image:
    id: str  # sha256:<hex> of `raw`
    raw: bytes
    document: dict[str, Any]
    parent: str = ""
    last_tag_time: str = ""

    @property
    def config(self) -> dict[str, Any]:
        """The run config (Env, Cmd, Entrypoint...) containers start from."""
        return self.document.get("config") or {}

    @property
    def diff_ids(self) -> list[str]:
        return list((self.document.get("rootfs") or {}).get("diff_ids") or [])

    @property
    def top_layer(self) -> str | None:
        chains = chain_ids(self.diff_ids)
        return chains[-1] if chains else None

    @property
    def os(self) -> str:
        return self.document.get("os") or "linux"

    @property
    def created(self) -> int:
        return views.created_unix(self.document.get("created"))


@dataclass(frozen=True)
class ContainerUse:
    container_id: str
    running: bool


def parse_config(raw: bytes) -> dict[str, Any]:
    """An image config as dockerd's `image.NewFromJSON` accepts it."""
    try:
        document = json.loads(raw)
    except ValueError as exc:
        raise InvalidArgument(f"invalid image config: {exc}") from None
    if not isinstance(document, dict):
        raise InvalidArgument("invalid image config: not a JSON object")
    rootfs = document.get("rootfs")
    if not isinstance(rootfs, dict):
        raise InvalidArgument("invalid image JSON, no RootFS key")
    if rootfs.get("type") != "layers":
        raise InvalidArgument(f"rootfs type {rootfs.get('type')!r} is not supported")
    diff_ids = rootfs.get("diff_ids") or []
    if not isinstance(diff_ids, list) or not all(isinstance(d, str) for d in diff_ids):
        raise InvalidArgument("invalid image config: rootfs.diff_ids must be a list of digests")
    for diff_id in diff_ids:
        refs.validate_digest(diff_id)
    if (document.get("os") or "linux") != "linux":
        raise InvalidArgument(f"cannot load {document.get('os')} image on linux")
    return document


def _used_by(use: ContainerUse, state: str) -> str:
    if use.container_id:
        return f"image is being used by {state} container {short_id(use.container_id)}"
    return f"image is being used by a {state} container"  # only the boolean `in_use` hook was given


@dataclass
class _Conflict:
    message: str
    hard: bool
    used: bool = False


@dataclass
class DeleteResult:
    records: list[dict[str, str]] = field(default_factory=list)

    def untagged(self, ref: Reference) -> None:
        self.records.append({"Untagged": ref.familiar})

    def deleted(self, what: str) -> None:
        self.records.append({"Deleted": what})


class ImageStore:
    def __init__(self, root: str, driver: GraphDriver) -> None:
        self.root = os.path.abspath(root)
        self.driver = driver
        self.layers = LayerStore(os.path.join(self.root, "layerdb"), driver)
        self._lock = threading.RLock()
        self._images: dict[str, Image] = {}
        self._refs: dict[str, tuple[Reference, str]] = {}  # familiar string → (reference, image ID)
        # Hooks the daemon fills in.
        self.in_use: Callable[[str], bool] = lambda image_id: False
        self.containers_using: Callable[[str], list[ContainerUse]] | None = None
        self.on_event: Callable[[str, str, str], None] = lambda action, image_id, name: None
        os.makedirs(os.path.join(self.root, "imagedb"), mode=0o700, exist_ok=True)
        self._reload()

    # --- persistence ---------------------------------------------------------------------------

    def _reload(self) -> None:
        imagedb = os.path.join(self.root, "imagedb")
        for entry in os.listdir(imagedb):
            path = os.path.join(imagedb, entry)
            try:
                with open(os.path.join(path, "config.json"), "rb") as fh:
                    raw = fh.read()
                if hashlib.sha256(raw).hexdigest() != entry:
                    raise ValueError("content does not match its ID")
                meta: dict[str, str] = {}
                if os.path.exists(os.path.join(path, "meta.json")):
                    with open(os.path.join(path, "meta.json")) as fh:
                        meta = json.load(fh)
                image = Image("sha256:" + entry, raw, json.loads(raw), meta.get("parent", ""),
                              meta.get("last_tag_time", ""))
            except (OSError, ValueError):
                shutil.rmtree(path, ignore_errors=True)  # half-written by a crash: never reported as created
                continue
            if image.top_layer and not self.layers.has(image.top_layer):
                shutil.rmtree(path, ignore_errors=True)
                continue
            self._images[image.id] = image
        try:
            with open(os.path.join(self.root, "repositories.json")) as fh:
                repositories = json.load(fh).get("Repositories") or {}
        except FileNotFoundError:
            repositories = {}
        for tags in repositories.values():
            for text, image_id in tags.items():
                if image_id in self._images:
                    ref = refs.parse_normalized_named(text)
                    self._refs[ref.familiar] = (ref, image_id)
        self.layers.collect(self._tops())

    def _save_refs(self) -> None:
        repositories: dict[str, dict[str, str]] = {}
        for key, (ref, image_id) in sorted(self._refs.items()):
            repositories.setdefault(ref.familiar_name, {})[key] = image_id
        atomic_write(os.path.join(self.root, "repositories.json"),
                     json.dumps({"Repositories": repositories}).encode())

    def _save_meta(self, image: Image) -> None:
        atomic_write(os.path.join(self._image_dir(image.id), "meta.json"),
                     json.dumps({"parent": image.parent, "last_tag_time": image.last_tag_time}).encode())

    def _image_dir(self, image_id: str) -> str:
        return os.path.join(self.root, "imagedb", image_id.partition(":")[2])

    def _tops(self) -> list[str]:
        return [top for image in self._images.values() if (top := image.top_layer)]

    # --- lookups -------------------------------------------------------------------------------

    def images(self) -> list[Image]:
        with self._lock:
            return list(self._images.values())

    def by_id(self, image_id: str) -> Image:
        try:
            return self._images[image_id]
        except KeyError:
            raise ImageNotFound(image_id) from None

    def _search(self, term: str) -> Image | None:
        """dockerd's digest-set lookup: a unique prefix of an ID, with or without `sha256:`."""
        prefix = term.removeprefix("sha256:")
        if not prefix or any(c not in "0123456789abcdef" for c in prefix):
            return None
        found = [image for image_id, image in self._images.items() if image_id[7:].startswith(prefix)]
        return found[0] if len(found) == 1 else None

    def get(self, ref_or_id: str) -> Image:
        """dockerd's GetImage: an ID, a reference, or a unique ID prefix."""
        ref = refs.parse_any_reference(ref_or_id)
        with self._lock:
            if isinstance(ref, DigestReference):
                if ref.digest in self._images:
                    return self._images[ref.digest]
                raise ImageNotFound(ref.digest)
            entry = self._refs.get(ref.store_key().familiar)
            if entry and entry[1] in self._images:
                return self._images[entry[1]]
            found = self._search(ref_or_id)
            if found:
                return found
        raise ImageNotFound(ref.with_default_tag().familiar)

    resolve = get

    def references(self, image_id: str) -> list[Reference]:
        """Tags and digests of an image, sorted as dockerd sorts them (by familiar string)."""
        with self._lock:
            return sorted((ref for ref, target in self._refs.values() if target == image_id),
                          key=lambda r: r.familiar)

    def repo_tags(self, image_id: str) -> list[str]:
        return [r.familiar for r in self.references(image_id) if r.is_tagged]

    def repo_digests(self, image_id: str) -> list[str]:
        return [r.familiar for r in self.references(image_id) if r.is_canonical]

    def children(self, image_id: str) -> list[str]:
        with self._lock:
            return [image.id for image in self._images.values() if image.parent == image_id]

    def lookup_reference(self, ref: Reference) -> str | None:
        entry = self._refs.get(ref.store_key().familiar)
        return entry[1] if entry else None

    # --- creation ------------------------------------------------------------------------------

    def create(self, raw: bytes, parent: str = "") -> Image:
        """Store an image config whose layers are registered; returns the existing one if present."""
        document = parse_config(raw)
        image_id = "sha256:" + hashlib.sha256(raw).hexdigest()
        with self._lock:
            if image_id in self._images:
                return self._images[image_id]
            top = chain_ids(document["rootfs"].get("diff_ids") or [])
            if top and not self.layers.has(top[-1]):
                raise InvalidArgument(f"failed to get layer {top[-1]}: layer does not exist")
            image = Image(image_id, raw, document, parent)
            directory = self._image_dir(image_id)
            os.makedirs(directory, mode=0o700, exist_ok=True)
            self._save_meta(image)
            atomic_write(os.path.join(directory, "config.json"), raw)  # last: its presence makes the image
            self._images[image_id] = image
            return image

    def register_layers(self, layer_streams: Iterable[tuple[BinaryIO | None, str]]) -> list[Layer]:
        """Register an image's layers bottom first: each item is (stream, expected diff ID), the
        stream None if a layer with that chain ID already exists. All come back held."""
        held: list[Layer] = []
        parent: str | None = None
        try:
            for stream, diff_id in layer_streams:
                chain = chain_id(parent, diff_id)
                if self.layers.has(chain):
                    self.layers.hold(chain)
                    layer = self.layers.get(chain)
                elif stream is None:
                    raise InvalidArgument(f"layer {diff_id} is missing")
                else:
                    layer = self.layers.register(stream, parent, expected_diff_id=diff_id)
                held.append(layer)
                parent = layer.chain_id
        except BaseException:
            self.release(held)
            raise
        return held

    def release(self, held: Iterable[Layer]) -> None:
        for layer in held:
            self.layers.release(layer.chain_id)

    def set_parent(self, image_id: str, parent_id: str) -> None:
        with self._lock:
            image = self.by_id(image_id)
            self.by_id(parent_id)
            image.parent = parent_id
            self._save_meta(image)

    # --- references ----------------------------------------------------------------------------

    def add_reference(self, ref: Reference, image_id: str, force: bool = True) -> None:
        """dockerd's reference store addReference (AddTag when `ref` has no digest)."""
        key_ref = ref.store_key()
        if key_ref.familiar_name == "sha256":
            raise InvalidArgument("refusing to create an ambiguous tag using digest algorithm as name")
        with self._lock:
            self.by_id(image_id)
            key = key_ref.familiar
            old = self._refs.get(key)
            if old and old[1] == image_id:
                return
            if old:
                if key_ref.is_canonical:
                    raise ImageConflict(f"Cannot overwrite digest {key_ref.digest}")
                if not force:
                    raise ImageConflict(f"Conflict: Tag {key} is already set to image {old[1]}, "
                                        "if you want to replace it, please use the force option")
            self._refs[key] = (key_ref, image_id)
            self._save_refs()

    def tag(self, source: str, repo: str, tag: str = "") -> str:
        """`POST /images/{name}/tag`: returns the new reference's familiar string."""
        image = self.get(source)
        ref = refs.parse_tagged(repo, tag)
        if ref.is_canonical:
            raise InvalidArgument("refusing to create a tag with a digest reference")
        self.tag_image(image.id, ref)
        return ref.with_default_tag().familiar

    def tag_image(self, image_id: str, ref: Reference) -> None:
        """Tag by ID (load, import, commit): sets LastTagTime and emits the `tag` event."""
        self.add_reference(ref, image_id, force=True)
        with self._lock:
            image = self.by_id(image_id)
            image.last_tag_time = views.now_rfc3339nano()
            self._save_meta(image)
        self.on_event("tag", image_id, ref.with_default_tag().familiar)

    def remove_reference(self, ref: Reference) -> bool:
        with self._lock:
            if self._refs.pop(ref.store_key().familiar, None) is None:
                return False
            self._save_refs()
            return True

    # --- deletion ------------------------------------------------------------------------------

    def _users(self, image_id: str) -> list[ContainerUse]:
        if self.containers_using is not None:
            return self.containers_using(image_id)
        return [ContainerUse("", running=False)] if self.in_use(image_id) else []

    def _conflict(self, image_id: str, hard_only: bool, active_refs: bool = True) -> _Conflict | None:
        """dockerd's checkImageDeleteConflict, in its order: children, running, tags, stopped."""
        if self.children(image_id):
            return _Conflict("image has dependent child images", hard=True)
        users = self._users(image_id)
        running = [u for u in users if u.running]
        if running:
            return _Conflict(_used_by(running[0], "running"), hard=True, used=True)
        if hard_only:
            return None
        if active_refs and self.references(image_id):
            return _Conflict("image is referenced in multiple repositories", hard=False)
        stopped = [u for u in users if not u.running]
        if stopped:
            return _Conflict(_used_by(stopped[0], "stopped"), hard=False, used=True)
        return None

    @staticmethod
    def _single_reference(repo_refs: list[Reference]) -> bool:
        """All references in one repository with at most one tag (dockerd's isSingleReference)."""
        if len(repo_refs) <= 1:
            return len(repo_refs) == 1
        tags = [r for r in repo_refs if not r.is_canonical]
        if len(tags) > 1:
            return False
        canonical_names = {r.name for r in repo_refs if r.is_canonical}
        single = tags[0] if tags else repo_refs[0]
        return len(canonical_names) == 1 and single.name in canonical_names

    def delete(self, ref_or_id: str, force: bool = False, prune: bool = True) -> list[dict[str, str]]:
        """`DELETE /images/{name}`: the Untagged/Deleted records dockerd returns."""
        with self._lock:
            image = self.get(ref_or_id)
            image_id = image.id
            result = DeleteResult()
            repo_refs = self.references(image_id)
            removed_repo_ref = False
            hex_id = image_id.partition(":")[2]
            if not (image_id.startswith(ref_or_id) or hex_id.startswith(ref_or_id)):
                # A name was given: untag it. The last reference of an image a container uses
                # needs force, or the image would be left dangling under the container.
                if not force and self._single_reference(repo_refs):
                    users = self._users(image_id)
                    if users:
                        raise ReferenceInUse(ref_or_id, users[0].container_id, image_id)
                parsed = refs.parse_normalized_named(ref_or_id).with_default_tag()
                self.remove_reference(parsed)
                result.untagged(parsed.store_key())
                self.on_event("untag", image_id, image_id)
                repo_refs = self.references(image_id)
                if not parsed.is_canonical and not any(not r.is_canonical and r.name == parsed.name
                                                       for r in repo_refs):
                    # No tag of that repository is left: its digests go too.
                    remaining = []
                    for r in repo_refs:
                        if r.is_canonical and r.name == parsed.name:
                            self.remove_reference(r)
                            result.untagged(r)
                        else:
                            remaining.append(r)
                    repo_refs = remaining
                if repo_refs:
                    return result.records
                removed_repo_ref = True
            elif self._single_reference(repo_refs):
                conflict = self._conflict(image_id, hard_only=force, active_refs=False)
                if conflict:
                    raise DeleteConflict(image_id, conflict.message, hard=conflict.hard, used=conflict.used)
                for r in repo_refs:
                    self.remove_reference(r)
                    result.untagged(r)
                    self.on_event("untag", image_id, image_id)
            self._delete_image(image_id, result, force=force, prune=prune, quiet=removed_repo_ref)
            return result.records

    def _delete_image(self, image_id: str, result: DeleteResult, *, force: bool, prune: bool, quiet: bool) -> None:
        conflict = self._conflict(image_id, hard_only=force)
        if conflict:
            dangling = not self.references(image_id) and not self.children(image_id)
            if quiet and (not dangling or conflict.used):
                return  # pruning a parent, or the untag already did what was asked
            raise DeleteConflict(image_id, conflict.message, hard=conflict.hard, used=conflict.used)
        image = self._images[image_id]
        for r in self.references(image_id):
            self.remove_reference(r)
            result.untagged(r)
            self.on_event("untag", image_id, image_id)
        # The config goes first: an image without it is gone even if the rest of the removal fails.
        os.unlink(os.path.join(self._image_dir(image_id), "config.json"))
        shutil.rmtree(self._image_dir(image_id), ignore_errors=True)
        del self._images[image_id]
        self.on_event("delete", image_id, image_id)
        result.deleted(image_id)
        for layer in self.layers.collect(self._tops()):
            result.deleted(layer.chain_id)
        if prune and image.parent and image.parent in self._images:
            self._delete_image(image.parent, result, force=False, prune=True, quiet=True)

    def collect_layers(self) -> list[Layer]:
        """Drop layers nothing uses any more (after a container's RW layer went)."""
        with self._lock:
            return self.layers.collect(self._tops())

    # --- views ---------------------------------------------------------------------------------

    def size(self, image: Image) -> int:
        return self.layers.size(image.top_layer)

    def inspect(self, name: str) -> dict[str, Any]:
        """`GET /images/{name}/json`."""
        try:
            image = self.get(name)
        except ImageNotFound as exc:  # dockerd wraps the lookup error here (and only here)
            raise ImageNotFound(exc.ref, message=f"no such image: {name}: {exc}") from None
        except InvalidReference as exc:
            raise InvalidReference(f"no such image: {name}: {exc}") from None
        top = image.top_layer
        return views.inspect_view(
            image.id, image.document, repo_tags=self.repo_tags(image.id), repo_digests=self.repo_digests(image.id),
            parent=image.parent, size=self.size(image), driver_name=self.driver.name,
            driver_data=self.driver.metadata(self.layers.get(top).cache_id) if top else None,
            last_tag_time=image.last_tag_time)

    def history(self, name: str) -> list[dict[str, Any]]:
        """`GET /images/{name}/history`."""
        image = self.get(name)
        sizes = [layer.size for layer in self.layers.chain(image.top_layer)]
        lineage: list[tuple[str, list[str] | None]] = []
        current: Image | None = image
        while current is not None:
            lineage.append((current.id, self.repo_tags(current.id) or None))
            current = self._images.get(current.parent) if current.parent else None
        try:
            return views.history_view(image.document, sizes, lineage)
        except ValueError as exc:
            raise InvalidArgument(str(exc)) from None

    def summaries(self, all: bool = False, filters: flt.Filters | None = None, *, shared_size: bool = False,
                  container_count: Callable[[str], int] | None = None) -> list[dict[str, Any]]:
        """`GET /images/json` (dockerd's Images). `shared_size`/`container_count` are what
        `system df` asks for; without them dockerd reports -1."""
        filters = filters or {}
        for key in filters:
            if key not in IMAGE_FILTERS:
                raise InvalidArgument(f"Invalid filter '{key}'")
        dangling_only = False
        if "dangling" in filters:
            values = {v.lower() for v in filters["dangling"]}
            if values == {"true"} or values == {"1"}:
                dangling_only = True
            elif not (values == {"false"} or values == {"0"}):
                raise InvalidArgument(f"Invalid filter 'dangling=[{' '.join(filters['dangling'])}]'")
        before = [self.get(v).created for v in filters.get("before", [])]
        since = [self.get(v).created for v in filters.get("since", [])]
        with self._lock:
            candidates = list(self._images.values())
            has_children = {image.parent for image in candidates if image.parent}
            layer_refs: dict[str, int] = {}
            for image in candidates:
                for chain in chain_ids(image.diff_ids):
                    layer_refs[chain] = layer_refs.get(chain, 0) + 1
            out: list[dict[str, Any]] = []
            for image in candidates:
                if dangling_only and image.id in has_children:
                    continue
                if any(image.created >= b for b in before) or any(image.created <= s for s in since):
                    continue
                if "label" in filters:
                    labels = {k.lower(): v for k, v in image.config.items()}.get("labels")
                    if not flt.match_labels(labels, filters["label"]):
                        continue
                tags: list[str] | None = None
                digests: list[str] | None = None
                for r in self.references(image.id):
                    if "reference" in filters and not any(refs.familiar_match(p, r) for p in filters["reference"]):
                        continue
                    if r.is_canonical:
                        digests = (digests or []) + [r.familiar]
                    if r.is_tagged:
                        tags = (tags or []) + [r.familiar]
                if tags is None and digests is None:
                    if not (all or image.id not in has_children):
                        continue
                    if ("dangling" in filters and not dangling_only) or "reference" in filters:
                        continue
                    tags, digests = ["<none>:<none>"], ["<none>@<none>"]
                elif dangling_only and tags:
                    continue
                shared = -1
                if shared_size:
                    shared = sum(layer.size for layer in self.layers.chain(image.top_layer)
                                 if layer_refs.get(layer.chain_id, 0) > 1)
                out.append(views.summary_view(
                    image.id, image.document, parent=image.parent, repo_tags=tags, repo_digests=digests,
                    size=self.size(image), shared_size=shared,
                    containers=container_count(image.id) if container_count else -1))
        out.sort(key=lambda item: (item["Created"], item["Id"]), reverse=True)
        return out

    # --- archives (see load.py, save.py, importer.py) ------------------------------------------

    def load(self, stream: BinaryIO, quiet: bool = False) -> Iterable[dict[str, Any]]:
        from .load import load

        return load(self, stream, quiet=quiet)

    def save(self, names: list[str], out: BinaryIO) -> None:
        """Resolve `names` (raising before any output), then stream the archive."""
        from .save import save

        save(self, names, out)

    def import_image(self, stream: BinaryIO, **options: Any) -> Iterable[dict[str, Any]]:
        """`POST /images/create?fromSrc=-`; options as `importer.import_image`."""
        from .importer import import_image

        return import_image(self, stream, **options)

    def commit(self, container_id: str, **options: Any) -> tuple[Image, str]:
        """The image half of `POST /commit`; options as `importer.commit_image`."""
        from .importer import commit_image

        return commit_image(self, container_id, **options)

