"""Image jobs over the image store: load, list, inspect, history, tag, delete, save, import, prune.

Store operations touch the disk (unpacking layers, hashing): they run in a worker thread so the
daemon keeps answering other requests meanwhile.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
from collections.abc import AsyncIterator, Callable
from typing import Any

from ..images import distribution
from ..images import reference as refs
from ..images.store import ImageStore
from . import filters as flt
from . import progress_stream
from .containers.jobs import ResolvedImage
from .engine import Engine, Job
from .errors import InvalidParameter

LIST_FILTERS = ("dangling", "label", "before", "since", "reference")


class StoreLookup:
    """The containers' view of images: a reference or ID → (ID, config)."""

    def __init__(self, store: ImageStore) -> None:
        self.store = store

    def resolve(self, ref: str) -> ResolvedImage:
        image = self.store.get(ref)
        return ResolvedImage(image.id, dict(image.config), ref)


async def _spool(chunks: AsyncIterator[bytes], limit: int = 64 << 30) -> str:
    """An uploaded body into a temp file (archives can be far larger than memory should hold)."""
    fd, path = tempfile.mkstemp(prefix="refengine-upload-")
    size = 0
    try:
        with os.fdopen(fd, "wb") as fh:
            async for chunk in chunks:
                size += len(chunk)
                if size > limit:
                    raise InvalidParameter("upload too large")
                await asyncio.to_thread(fh.write, chunk)
    except BaseException:
        os.unlink(path)
        raise
    return path


def register(engine: Engine, store: ImageStore, container_count: Callable[[str], int] = lambda image_id: 0) -> None:
    async def load(job: Job) -> list[dict[str, Any]]:
        path = await _spool(job.getenv("body"))
        try:
            def run() -> list[dict[str, Any]]:
                with open(path, "rb") as fh:
                    return list(store.load(fh, quiet=bool(job.getenv("quiet"))))
            return await asyncio.to_thread(run)
        finally:
            os.unlink(path)

    async def listing(job: Job) -> list[dict[str, Any]]:
        f = flt.parse(job.getenv("filters"), LIST_FILTERS)
        return await asyncio.to_thread(store.summaries, bool(job.getenv("all")), f, container_count=container_count)

    async def inspect(job: Job) -> dict[str, Any]:
        return await asyncio.to_thread(store.inspect, job.args[0])

    async def history(job: Job) -> list[dict[str, Any]]:
        return await asyncio.to_thread(store.history, job.args[0])

    async def tag(job: Job) -> None:
        repo = job.getenv("repo") or ""
        if not repo:
            raise InvalidParameter("repository name must have at least one component")
        await asyncio.to_thread(store.tag, job.args[0], repo, job.getenv("tag") or "")

    async def delete(job: Job) -> list[dict[str, str]]:
        return await asyncio.to_thread(store.delete, job.args[0], bool(job.getenv("force")),
                                       not job.getenv("noprune"))

    async def save(job: Job) -> str:
        """The archive of `names` in a temp file (raises before writing for unknown names); the caller streams it."""
        names = list(job.args)
        fd, path = tempfile.mkstemp(prefix="refengine-save-")
        try:
            with os.fdopen(fd, "wb") as fh:
                await asyncio.to_thread(store.save, names, fh)
        except BaseException:
            os.unlink(path)
            raise
        return path

    async def import_(job: Job) -> list[dict[str, Any]]:
        path = await _spool(job.getenv("body"))
        try:
            def run() -> list[dict[str, Any]]:
                with open(path, "rb") as fh:
                    return list(store.import_image(fh, repo=job.getenv("repo") or "", tag=job.getenv("tag") or "",
                                                   message=job.getenv("message") or "",
                                                   changes=job.getenv("changes") or []))
            return await asyncio.to_thread(run)
        finally:
            os.unlink(path)

    async def prune(job: Job) -> dict[str, Any]:
        f = flt.parse(job.getenv("filters"), ("dangling", "label", "label!", "until"))
        dangling_only = flt.boolean(f, "dangling")
        if "dangling" in f and dangling_only is None:
            raise InvalidParameter(f"Invalid filter 'dangling={f['dangling'][-1]}'")
        return await asyncio.to_thread(prune_images, store, f, True if dangling_only is None else dangling_only)

    async def pull(job: Job) -> AsyncIterator[bytes]:
        """`POST /images/create?fromImage=`: progress lines; errors before the first one raise."""
        ref = pull_reference(job.args[0], job.getenv("tag") or "")
        auth = job.getenv("auth")
        return await progress_stream.start(lambda: distribution.pull(store, ref, auth))

    async def push(job: Job) -> AsyncIterator[bytes]:
        """`POST /images/{name}/push`: every failure after the name parses is reported in the stream."""
        ref = refs.parse_normalized_named(job.args[0])
        if job.getenv("tag"):
            ref = refs.with_tag(ref, job.getenv("tag"))
        auth = job.getenv("auth")
        return await progress_stream.start(lambda: distribution.push(store, ref, auth))

    async def auth(job: Job) -> dict[str, str]:
        """`POST /auth`: the credentials checked against the registry."""
        config = job.getenv("config")
        return await asyncio.to_thread(distribution.login, config)

    async def distribution_inspect(job: Job) -> dict[str, Any]:
        """`GET /distribution/{name}/json`: the registry's manifest descriptor and platforms for a reference
        (a name alone means :latest, as dockerd)."""
        ref = refs.parse_normalized_named(job.args[0])
        if ref.is_name_only:
            ref = ref.with_default_tag()
        return await asyncio.to_thread(distribution.inspect, ref, job.getenv("auth"))

    for name, fn in (("image_load", load), ("image_list", listing), ("image_inspect", inspect),
                     ("image_history", history), ("image_tag", tag), ("image_delete", delete), ("image_save", save),
                     ("image_import", import_), ("image_prune", prune), ("image_pull", pull),
                     ("image_push", push), ("auth", auth), ("distribution_inspect", distribution_inspect)):
        engine.register(name, fn)


def pull_reference(image: str, tag: str) -> refs.Reference:
    """dockerd's postImagesCreate: `tag` may be a tag or a digest; with neither here nor in
    `image`, the bare name (every tag of the repository is pulled)."""
    ref = refs.parse_normalized_named(image)
    if tag:
        try:
            ref = refs.with_digest(ref.trim(), refs.validate_digest(tag))
        except refs.InvalidReference:
            ref = refs.with_tag(ref, tag)
    return ref


def progress_lines(messages: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(m).encode() + b"\r\n" for m in messages)


def prune_images(store: ImageStore, f: flt.Filters, dangling_only: bool) -> dict[str, Any]:
    """dockerd's ImagesPrune: of the images without children (all images with dangling=false), an untagged
    one that has children is left to its child's removal; `until` and the labels pick; a dangling-only
    prune deletes no tagged image; an image a container uses is a conflict and stays. SpaceReclaimed is
    the size of the candidates' own layers that went with them."""
    until = flt.until(f)
    images = store.images()
    parents = {image.parent for image in images if image.parent}
    candidates = [image for image in images if not dangling_only or image.id not in parents]
    sizes = {layer.chain_id: layer.size for layer in store.layers.all()}  # before any goes
    own_sizes = {image.top_layer: sizes.get(image.top_layer, 0) for image in candidates if image.top_layer}
    deleted: list[dict[str, str]] = []
    for image in candidates:
        refs_of = store.references(image.id)
        if not refs_of and image.id in parents:
            continue
        if not flt.prune_selects(f, until, image.config.get("Labels"), str(image.document.get("created") or "")):
            continue
        if refs_of:
            if dangling_only and any(r.is_tagged for r in refs_of):
                continue
            names = [r.familiar for r in refs_of]
        else:
            names = [image.id]
        for name in names:
            try:
                deleted += store.delete(name, False, True)
            except Exception as exc:  # in use, or gone meanwhile: not pruned, as dockerd
                if getattr(exc, "http_status", 500) not in (404, 409):
                    raise
    reclaimed = sum(own_sizes.get(item.get("Deleted", ""), 0) for item in deleted)
    return {"ImagesDeleted": deleted, "SpaceReclaimed": reclaimed}  # [] where dockerd sends null: the schema has an array
