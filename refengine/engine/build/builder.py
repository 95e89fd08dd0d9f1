"""`POST /build` with the classic builder: each Dockerfile step is a container committed as an image.

RUN runs its command in a container of the current image and commits it; COPY/ADD write files from
the build context (or, with --from, from an earlier stage's image) into a container's root
filesystem and commit it; the other instructions change the run config and commit a container
without a layer of changes (history `#(nop)`, as dockerd records them). The messages are dockerd's
(`Step i/n : ...`, ` ---> <id>`, the RUN output, `Successfully built/tagged`, the aux ID).

The build cache is the classic builder's: a step whose parent image already has a child committed
with the same run config and command (for COPY/ADD the command names a checksum of the sources'
contents and modes, not their times) reuses that child (` ---> Using cache`); the first miss ends the
probing for the rest of its stage; `nocache=1` skips it.

`FROM scratch` starts a stage from no image: its steps' containers have an empty root filesystem.

Not done: ADD from URLs (nothing leaves this host), --chown by name (each refused with a message, not
ignored); `cachefrom` images are not consulted (only the local cache: fewer hits, the same images).
"""

from __future__ import annotations

import asyncio
import copy
import glob
import hashlib
import json
import logging
import os
import shutil
import tarfile
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from ...images import reference as refs
from ...images.errors import InvalidArgument
from ...images.importer import CHANGE_COMMANDS, apply_changes
from ...images.store import Image
from ...images.views import container_config
from .. import filters as flt
from ..containers.lifecycle import Lifecycle
from ..containers.rootfs_files import extract, resolve
from ..containers.store import ContainerStore
from ..engine import Engine
from ..errors import InvalidParameter, NotFound
from ..system import VERSION
from .dockerfile import Instruction, env_dict, expand, instruction, parse

DEFAULT_SHELL = ["/bin/sh", "-c"]
# what a stage's config gets when its base has no PATH (dockerd's setDefaultPath, Linux)
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
USING_CACHE = {"stream": " ---> Using cache\n"}
log = logging.getLogger(__name__)
EXPANDED = ("env", "label", "expose", "user", "workdir", "volume", "stopsignal", "copy", "add", "arg", "from")


class BuildError(Exception):
    """A step failed: reported as the stream's last message (errorDetail), with the RUN's exit code."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.message, self.code = message, code


@dataclass
class BuildOptions:
    dockerfile: str = "Dockerfile"
    tags: list[str] = field(default_factory=list)
    buildargs: dict[str, str | None] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    rm: bool = True
    forcerm: bool = False
    quiet: bool = False
    nocache: bool = False


@dataclass
class Stage:
    image_id: str
    config: dict[str, Any]
    name: str = ""
    args: dict[str, str] = field(default_factory=dict)
    shell: list[str] = field(default_factory=lambda: list(DEFAULT_SHELL))


class Builder:
    def __init__(self, engine: Engine, store: ContainerStore, life: Lifecycle, context: str, opts: BuildOptions) -> None:
        self.engine, self.store, self.life, self.context, self.opts = engine, store, life, context, opts
        self.images = life.images
        self.stages: list[Stage] = []
        self.global_args: dict[str, str] = {}
        self.used_args: set[str] = set()
        self.cache_busted = opts.nocache  # after a stage's first miss none of its steps is looked up (dockerd)

    # --- the steps ------------------------------------------------------------------------------
    async def run(self, steps: list[Instruction]) -> AsyncIterator[dict[str, Any]]:
        tags = [self._tag_ref(t) for t in self.opts.tags]
        for i, step in enumerate(steps, 1):
            yield {"stream": f"Step {i}/{len(steps)} : {step.original}"}
            yield {"stream": "\n"}
            async for msg in self._step(step):
                yield msg
            if self.stages:
                yield {"stream": f" ---> {self._short(self.stages[-1].image_id)}\n"}
        if not self.stages or not self.stages[-1].image_id:
            raise BuildError("No image was generated. Is your Dockerfile empty?")
        unused = sorted(set(self.opts.buildargs) - self.used_args)
        if unused:
            yield {"stream": f"[Warning] One or more build-args {unused} were not consumed\n"}
        final = self.stages[-1].image_id
        yield {"aux": {"ID": final}}
        yield {"stream": f"Successfully built {self._short(final)}\n"}
        for ref in tags:
            await asyncio.to_thread(self.images.tag_image, final, ref)
            yield {"stream": f"Successfully tagged {ref.familiar}\n"}

    async def _step(self, step: Instruction) -> AsyncIterator[dict[str, Any]]:
        cmd = step.command
        if cmd == "from":
            self._from(step)
            stage = self.stages[-1]
            triggers = stage.config.pop("OnBuild", None) or []  # run here, not inherited further
            if triggers:
                yield {"stream": f"# Executing {len(triggers)} build trigger{'s' if len(triggers) > 1 else ''}\n"}
            for text in triggers:
                async for msg in self._step(instruction(text, step.line)):
                    yield msg
            return
        if cmd == "arg":
            self._arg(step)
            if not self.stages:
                return
        stage = self._stage(step)
        rest = expand(step.rest, self._env(stage)) if cmd in EXPANDED else step.rest
        if cmd == "run":
            async for msg in self._run(stage, step):
                yield msg
        elif cmd in ("copy", "add"):
            if await self._copy(stage, step, rest):
                yield USING_CACHE
        else:
            config = self._configure(stage, cmd, rest, step)
            if await self._commit_nop(stage, config, step, workdir=cmd == "workdir"):
                yield USING_CACHE

    def _stage(self, step: Instruction) -> Stage:
        if not self.stages:
            raise BuildError(f"{step.command.upper()} before the first FROM: no build stage in current context")
        return self.stages[-1]

    def _from(self, step: Instruction) -> None:
        words = expand(step.rest, self.global_args).split()
        if not words or (len(words) not in (1, 3)) or (len(words) == 3 and words[1].lower() != "as"):
            raise BuildError(f"FROM requires either one or three arguments: {step.original}")
        ref = words[0]
        named = next((s for s in self.stages if s.name and s.name == ref.lower()), None)
        if ref.lower() == "scratch":
            image_id, config = "", {}
        elif named is not None:
            image_id, config = named.image_id, copy.deepcopy(named.config)
        else:
            try:
                image = self.images.get(ref)
            except NotFound:
                raise BuildError(f"pull access denied for {ref}: refengine builds from local images only "
                                 f"(load or pull {ref} first)") from None
            image_id, config = image.id, copy.deepcopy(dict(image.config))
        if self.opts.labels:
            config["Labels"] = {**(config.get("Labels") or {}), **self.opts.labels}
        env = list(config.get("Env") or [])
        if not any(e.startswith("PATH=") for e in env):
            config["Env"] = [*env, f"PATH={DEFAULT_PATH}"]
        self.stages.append(Stage(image_id, config, words[2].lower() if len(words) == 3 else ""))
        self.cache_busted = self.opts.nocache  # each stage probes again from its own base (dockerd's prober reset)

    def _arg(self, step: Instruction) -> None:
        name, eq, default = step.rest.partition("=")
        name = name.strip()
        if not name or " " in name:
            raise BuildError(f"ARG requires exactly one argument: {step.original}")
        target = self.stages[-1].args if self.stages else self.global_args
        self.used_args.add(name)
        if self.opts.buildargs.get(name) is not None:
            target[name] = str(self.opts.buildargs[name])
        elif eq:
            target[name] = expand(default, {**self.global_args, **target})
        elif self.stages and name in self.global_args:
            target[name] = self.global_args[name]

    def _env(self, stage: Stage) -> dict[str, str]:
        """What $VAR means in this stage: build args, overridden by the config's Env."""
        return {**stage.args, **env_dict(stage.config.get("Env"))}

    def _configure(self, stage: Stage, cmd: str, rest: str, step: Instruction) -> dict[str, Any]:
        config = copy.deepcopy(stage.config)
        if cmd in CHANGE_COMMANDS or cmd == "healthcheck":
            line = f"{cmd} {rest}"
            if cmd in ("cmd", "entrypoint") and not rest.startswith("["):
                line = f"{cmd} {json.dumps([*stage.shell, rest])}"
            try:
                config = apply_changes(config, [line])
            except InvalidArgument as exc:
                raise BuildError(f"{step.original}: {exc}") from None
        elif cmd == "stopsignal":
            config["StopSignal"] = rest
        elif cmd == "shell":
            try:
                shell = json.loads(rest)
            except ValueError:
                shell = None
            if not isinstance(shell, list) or not shell or not all(isinstance(w, str) for w in shell):
                raise BuildError("SHELL requires the arguments to be in JSON form")
            stage.shell = shell
            config["Shell"] = shell
        elif cmd == "maintainer":
            stage.config.setdefault("_author", rest)
            config["_author"] = rest
        elif cmd == "arg":
            pass
        return config

    # --- containers -----------------------------------------------------------------------------
    async def _container(self, stage: Stage, cmd: list[str], env: list[str] | None = None) -> str:
        config = {k: v for k, v in stage.config.items() if not k.startswith("_")}
        body = {**config, "Image": stage.image_id, "Cmd": cmd, "Entrypoint": None,
                "Env": env if env is not None else config.get("Env"), "HostConfig": {}}
        created = await self.engine.run("container_create", body=body, scratch=not stage.image_id)
        return created["Id"]

    async def _remove(self, cid: str) -> AsyncIterator[dict[str, Any]]:
        try:
            await self.engine.run("container_remove", cid, force=True, volumes=True)
        except NotFound:
            return
        yield {"stream": f"Removing intermediate container {cid[:12]}\n"}

    async def _commit(self, stage: Stage, cid: str, config: dict[str, Any], created_by: list[str]) -> None:
        author = config.pop("_author", "") or stage.config.get("_author", "")
        clean = {k: v for k, v in config.items() if not k.startswith("_")}
        image, _ = await asyncio.to_thread(
            self.images.commit, cid, parent_image_id=stage.image_id, config=clean,
            container_cfg={**clean, "Cmd": created_by}, author=author, docker_version=VERSION)
        stage.image_id, stage.config = image.id, {**clean, **({"_author": author} if author else {})}

    async def _commit_nop(self, stage: Stage, config: dict[str, Any], step: Instruction,
                          workdir: bool = False) -> bool:
        """Commit a step that changes only the config; True when the cache had it."""
        nop = [*DEFAULT_SHELL[:1], "-c", f"#(nop) {step.original}"]
        if self._from_cache(stage, config, nop):
            return True
        cid = await self._container(stage, nop)
        try:
            if workdir and config.get("WorkingDir"):  # dockerd makes the directory in the image
                await asyncio.to_thread(self._in_rootfs, cid, lambda root: os.makedirs(
                    resolve(root, config["WorkingDir"], follow_last=True), 0o755, exist_ok=True))
            await self._commit(stage, cid, config, nop)
        finally:
            await self.engine.run("container_remove", cid, force=True, volumes=True)
        return False

    # --- the cache ------------------------------------------------------------------------------
    def _from_cache(self, stage: Stage, config: dict[str, Any], created_by: list[str]) -> bool:
        """Move `stage` to the newest child of its image committed with this run config and command, as
        dockerd's classic cache does; False (and no more probing) when there is none."""
        if self.cache_busted:
            return False
        want = _cache_key({**config, "Cmd": created_by})
        hits: list[Image] = []
        for child in self.images.children(stage.image_id):
            try:
                image = self.images.by_id(child)
            except NotFound:  # removed meanwhile
                continue
            if _cache_key(image.document.get("container_config")) == want:
                hits.append(image)
        if not hits:
            self.cache_busted = True
            return False
        image = max(hits, key=lambda i: flt.rfc3339(str(i.document.get("created") or "")) or 0.0)
        author = str(image.document.get("author") or "")
        stage.image_id = image.id
        stage.config = {**copy.deepcopy(dict(image.config)), **({"_author": author} if author else {})}
        return True

    def _in_rootfs(self, cid: str, fn: Any) -> Any:
        root = self.images.layers.mount(cid)
        try:
            return fn(root)
        finally:
            self.images.layers.unmount(cid)

    async def _run(self, stage: Stage, step: Instruction) -> AsyncIterator[dict[str, Any]]:
        rest = step.rest
        argv: list[str] | None = None
        if rest.startswith("["):
            try:
                parsed = json.loads(rest)
                if isinstance(parsed, list) and all(isinstance(w, str) for w in parsed):
                    argv = parsed
            except ValueError:
                pass
        argv = argv or [*stage.shell, rest]
        args = {k: v for k, v in stage.args.items() if k not in env_dict(stage.config.get("Env"))}
        env = [*(stage.config.get("Env") or []), *(f"{k}={v}" for k, v in args.items())]
        history = argv if not args else [f"|{len(args)}", *(f"{k}={v}" for k, v in args.items()), *argv]
        if self._from_cache(stage, stage.config, history):
            yield USING_CACHE
            return
        cid = await self._container(stage, argv, env)
        yield {"stream": f" ---> Running in {cid[:12]}\n"}
        ok = False
        try:
            c = self.store.get(cid)
            queue = self.life.subscribe(c)
            exited = asyncio.ensure_future(self.life.wait_for(c, "next-exit"))
            try:
                await self.life.start(c)
            except Exception as exc:  # noqa: BLE001 - the start's own words end the build
                exited.cancel()
                self.life.unsubscribe(c, queue)
                raise BuildError(str(exc), 127) from None
            while (item := await queue.get()) is not None:
                yield {"stream": item[1].decode(errors="replace")}
            code = await exited
            if code != 0:
                raise BuildError(f"The command '{' '.join(argv)}' returned a non-zero code: {code}", code)
            await self._commit(stage, cid, copy.deepcopy(stage.config), history)
            ok = True
        finally:
            if (ok and self.opts.rm) or self.opts.forcerm:
                async for msg in self._remove(cid):
                    yield msg

    async def _copy(self, stage: Stage, step: Instruction, rest: str) -> bool:
        """COPY/ADD as a commit of the sources' tar; True when the cache had it."""
        cmd = step.command
        words = json.loads(rest) if rest.startswith("[") else rest.split()
        if len(words) < 2:
            raise BuildError(f"{cmd.upper()} requires at least two arguments, but only one was provided. "
                             f"Destination could not be determined.")
        sources, dest = words[:-1], words[-1]
        if any(s.startswith(("http://", "https://")) for s in sources):
            raise BuildError(f"{cmd.upper()} from a URL is not supported by refengine's builder (nothing is "
                             "fetched from outside this host)")
        owner = self._chown(step.flags.get("chown"))
        if not dest.startswith("/"):
            dest = os.path.join(stage.config.get("WorkingDir") or "/", dest)
        from_stage = step.flags.get("from")
        holder = None
        try:
            if from_stage is not None:
                src_stage = self._stage_by_ref(from_stage)
                holder = await self._container(src_stage, ["true"])
                root = await asyncio.to_thread(self.images.layers.mount, holder)
            else:
                root = self.context
            data, kind = await asyncio.to_thread(self._tar_sources, root, sources, dest, owner,
                                                 cmd == "add" and from_stage is None)
        finally:
            if holder is not None:
                await asyncio.to_thread(self.images.layers.unmount, holder)
                await self.engine.run("container_remove", holder, force=True, volumes=True)
        try:
            digest = await asyncio.to_thread(_contents_digest, data)
            # dockerd's form: the sources by checksum, so a changed file misses the cache and a touched one hits
            created_by = [*DEFAULT_SHELL[:1], "-c", f"#(nop) {cmd.upper()} {kind}:{digest} in {dest} "]
            if self._from_cache(stage, stage.config, created_by):
                return True
            cid = await self._container(stage, created_by)
            try:
                await asyncio.to_thread(self._in_rootfs, cid, lambda r: extract(data, r))
                await self._commit(stage, cid, copy.deepcopy(stage.config), created_by)
            finally:
                await self.engine.run("container_remove", cid, force=True, volumes=True)
        finally:
            data.close()
        return False

    def _stage_by_ref(self, ref: str) -> Stage:
        for i, s in enumerate(self.stages[:-1]):
            if s.name == ref.lower() or str(i) == ref:
                return s
        raise BuildError(f"COPY --from={ref}: no earlier build stage of that name (images are not looked up)")

    @staticmethod
    def _chown(value: str | None) -> tuple[int, int]:
        if not value:
            return 0, 0
        user, _, group = value.partition(":")
        if not user.isdigit() or (group and not group.isdigit()):
            raise BuildError(f"--chown={value}: refengine's builder takes numeric uid[:gid] only")
        return int(user), int(group or user)

    @staticmethod
    def _tar_sources(root: str, sources: list[str], dest: str, owner: tuple[int, int], unpack: bool
                     ) -> tuple[BinaryIO, str]:
        """The sources as one tar rooted at the container's `/`: dockerd's COPY rules for a file, a
        directory (its contents) and several sources (dest must then be a directory); and what they
        are, as dockerd names them in the step's history (file, dir or multi)."""
        matched: list[str] = []
        for src in sources:
            hits = sorted(glob.glob(os.path.join(root, src.lstrip("/")))) if any(c in src for c in "*?[") else [
                resolve(root, src)]
            real = [h for h in hits if os.path.lexists(h) and os.path.realpath(h).startswith(os.path.realpath(root))]
            if not real:
                raise BuildError(f"COPY failed: file not found in build context or excluded by .dockerignore: "
                                 f"stat {src}: file does not exist")
            matched += real
        into_dir = dest.endswith("/") or len(matched) > 1 or any(os.path.isdir(m) for m in matched)
        buf = tempfile.TemporaryFile(prefix="refengine-copy-")  # the sources can be far larger than memory
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
            if into_dir:
                d = tarfile.TarInfo(dest.strip("/") or ".")
                d.type, d.mode, d.uid, d.gid = tarfile.DIRTYPE, 0o755, *owner
                tar.addfile(d)
            for path in matched:
                if unpack and os.path.isfile(path) and tarfile.is_tarfile(path):
                    with tarfile.open(path) as inner:  # ADD of a local archive: its contents
                        for member in inner.getmembers():
                            member.name = os.path.join(dest.strip("/"), member.name.lstrip("/"))
                            tar.addfile(member, inner.extractfile(member) if member.isfile() else None)
                    continue
                base = os.path.join(dest.strip("/"), os.path.basename(path)) if into_dir and not os.path.isdir(
                    path) else dest.strip("/")

                def owned(info: tarfile.TarInfo) -> tarfile.TarInfo:
                    info.uid, info.gid, info.uname, info.gname = *owner, "", ""
                    return info
                tar.add(path, arcname=base, recursive=True, filter=owned)
        buf.seek(0)
        return buf, "multi" if len(matched) > 1 else "dir" if os.path.isdir(matched[0]) else "file"

    # --- names ----------------------------------------------------------------------------------
    @staticmethod
    def _tag_ref(tag: str) -> refs.Reference:
        try:
            ref = refs.parse_normalized_named(tag)
        except refs.InvalidReference as exc:
            raise InvalidParameter(f"invalid reference format: {exc}") from None
        if ref.is_canonical:
            raise InvalidParameter("build tag cannot contain a digest")
        return ref.with_default_tag()

    @staticmethod
    def _short(image_id: str) -> str:
        return image_id.removeprefix("sha256:")[:12]


async def build(engine: Engine, store: ContainerStore, life: Lifecycle, context_tar: str,
                opts: BuildOptions) -> AsyncIterator[bytes]:
    """The build as dockerd's JSON lines. A context or Dockerfile that cannot be read raises before
    the first line (a 4xx); a failing step ends the stream with its errorDetail."""
    workdir = tempfile.mkdtemp(prefix="refengine-build-")
    try:
        context = os.path.join(workdir, "context")
        os.makedirs(context)
        await asyncio.to_thread(_unpack_context, context_tar, context)
        path = resolve(context, opts.dockerfile)
        if not os.path.isfile(path):
            raise InvalidParameter(f"Cannot locate specified Dockerfile: {opts.dockerfile}")
        with open(path, encoding="utf-8", errors="replace") as fh:
            steps = parse(fh.read())
        for t in opts.tags:
            Builder._tag_ref(t)
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise

    async def lines() -> AsyncIterator[bytes]:
        builder = Builder(engine, store, life, context, opts)
        try:
            async for msg in builder.run(steps):
                if opts.quiet and "stream" in msg:
                    continue
                yield (json.dumps(msg) + "\r\n").encode()
            if opts.quiet:
                yield (json.dumps({"stream": builder.stages[-1].image_id + "\n"}) + "\r\n").encode()
        except Exception as exc:  # noqa: BLE001 - after the first line, every failure is the last message
            if not isinstance(exc, (BuildError, InvalidParameter, InvalidArgument, NotFound)):
                log.exception("build failed")
            message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
            detail: dict[str, Any] = {"message": message}
            if getattr(exc, "code", None) is not None:
                detail["code"] = exc.code  # type: ignore[attr-defined]
            yield (json.dumps({"errorDetail": detail, "error": message}) + "\r\n").encode()
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    return lines()


def _cache_key(config: dict[str, Any] | None) -> str:
    """A committed step's run config as the cache compares it: Go's shape, without the fields a container
    sets for itself (dockerd's compare skips Image and Hostname)."""
    shaped = container_config({k: v for k, v in (config or {}).items() if not k.startswith("_")})
    for name in ("Image", "Hostname", "Domainname"):
        shaped.pop(name, None)
    return json.dumps(shaped, sort_keys=True)


def _contents_digest(tar: BinaryIO) -> str:
    """sha256 over the sources' names, types, modes, owners, link targets and bytes (not their times)."""
    digest = hashlib.sha256()
    tar.seek(0)
    with tarfile.open(fileobj=tar, mode="r:") as archive:
        for member in archive:
            digest.update(json.dumps([member.name, member.type.decode(), member.mode, member.uid, member.gid,
                                      member.linkname, member.size]).encode())
            if member.isfile():
                src = archive.extractfile(member)
                while src is not None and (piece := src.read(1 << 16)):
                    digest.update(piece)
    tar.seek(0)
    return digest.hexdigest()


def _unpack_context(tar_path: str, dest: str) -> None:
    try:
        with open(tar_path, "rb") as fh:  # plain or compressed: extract's tarfile.open reads either
            extract(fh, dest)
    except tarfile.TarError as exc:
        raise InvalidParameter(f"the build context is not a tar archive: {exc}") from None
