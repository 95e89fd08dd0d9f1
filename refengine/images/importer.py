"""Images made here rather than loaded: `docker import` (`POST /images/create?fromSrc=-`) and the
image half of `docker commit`, plus the `changes` (Dockerfile instructions) both accept.

Config JSON is written as dockerd marshals `image.Image`: top-level keys sorted (its MarshalJSON
goes through a map), container configs in Go's field order.
"""

from __future__ import annotations

import copy
import json
import posixpath
import re
import shlex
import tempfile
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, BinaryIO

from ..drivers.graph.changes import EMPTY_TAR_DIGEST
from . import reference as refs
from .errors import InvalidArgument
from .load import host_arch
from .views import container_config, now_rfc3339nano

if TYPE_CHECKING:
    from .store import Image, ImageStore

# dockerd's validCommitCommands (20.10): STOPSIGNAL, ARG, RUN... are refused.
CHANGE_COMMANDS = ("cmd", "entrypoint", "healthcheck", "env", "expose", "label", "onbuild", "user",
                   "volume", "workdir")
_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_DURATION_UNITS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 10**9, "m": 60 * 10**9,
                   "h": 3600 * 10**9}


def _duration(text: str, flag: str) -> int:
    """Go's time.ParseDuration, as HEALTHCHECK's flags take it (nanoseconds)."""
    pos, total = 0, 0
    for m in _DURATION_RE.finditer(text):
        if m.start() != pos:
            break
        total += int(float(m.group(1)) * _DURATION_UNITS[m.group(2)])
        pos = m.end()
    if pos != len(text) or not text:
        raise InvalidArgument(f"Error parsing {flag}: time: invalid duration \"{text}\"")
    return total


def _json_or_shell(rest: str) -> list[str]:
    """CMD/ENTRYPOINT/VOLUME arguments: a JSON array, else the shell form."""
    if rest.startswith("["):
        try:
            value = json.loads(rest)
            if isinstance(value, list) and all(isinstance(v, str) for v in value):
                return value
        except ValueError:
            pass
    return ["/bin/sh", "-c", rest]


def _pairs(instruction: str, rest: str) -> list[tuple[str, str]]:
    """`k=v k2="v 2"` (or the legacy `k v w` for ENV/LABEL)."""
    try:
        words = shlex.split(rest, posix=True)
    except ValueError as exc:
        raise InvalidArgument(f"{instruction.upper()}: {exc}") from None
    if not words:
        raise InvalidArgument(f"{instruction.upper()} requires at least one argument")
    if "=" not in words[0]:
        key, _, value = rest.strip().partition(" ")
        if not value.strip():
            raise InvalidArgument(f"{instruction.upper()} names can not be blank" if not key else
                                  f"{instruction.upper()} must have two arguments")
        return [(key, value.strip())]
    out = []
    for word in words:
        key, eq, value = word.partition("=")
        if not eq or not key:
            raise InvalidArgument(f"Syntax error - can't find = in \"{word}\". Must be of the form: name=value")
        out.append((key, value))
    return out


def apply_changes(config: dict[str, Any] | None, changes: Iterable[str]) -> dict[str, Any]:
    """dockerd's BuildFromConfig for `changes` (import, commit): a new run config.

    Variable expansion (`$VAR`) is not done; dockerd's builder would expand from the config's Env.
    """
    cfg = copy.deepcopy(config or {})
    cmd_set = False
    for line in changes:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, rest = line.partition(" ")
        instruction, rest = instruction.lower(), rest.strip()
        if instruction not in CHANGE_COMMANDS:
            raise InvalidArgument(f"{instruction} is not a valid change command")
        if instruction == "cmd":
            cfg["Cmd"], cmd_set = _json_or_shell(rest), True
        elif instruction == "entrypoint":
            cfg["Entrypoint"] = _json_or_shell(rest) if rest else None
            if not cmd_set:
                cfg["Cmd"] = None  # dockerd: a new entrypoint drops an inherited Cmd
        elif instruction == "env":
            env = list(cfg.get("Env") or [])
            for key, value in _pairs(instruction, rest):
                env = [e for e in env if e.partition("=")[0] != key] + [f"{key}={value}"]
            cfg["Env"] = env
        elif instruction == "label":
            cfg["Labels"] = {**(cfg.get("Labels") or {}), **dict(_pairs(instruction, rest))}
        elif instruction == "expose":
            ports = dict(cfg.get("ExposedPorts") or {})
            for port in rest.split():
                number, _, proto = port.partition("/")
                if not re.fullmatch(r"\d+(-\d+)?", number):
                    raise InvalidArgument(f"Invalid containerPort: {number}")
                ports[f"{number}/{proto or 'tcp'}"] = {}
            cfg["ExposedPorts"] = ports
        elif instruction == "user":
            cfg["User"] = rest
        elif instruction == "workdir":
            if not rest:
                raise InvalidArgument("WORKDIR requires exactly one argument")
            cfg["WorkingDir"] = posixpath.normpath(posixpath.join("/", cfg.get("WorkingDir") or "/", rest))
        elif instruction == "volume":
            paths = _json_or_shell(rest) if rest.startswith("[") else rest.split()
            if not paths or any(not p for p in paths):
                raise InvalidArgument("VOLUME specified can not be an empty string")
            cfg["Volumes"] = {**(cfg.get("Volumes") or {}), **{p: {} for p in paths}}
        elif instruction == "onbuild":
            trigger = rest.partition(" ")[0].lower()
            if trigger in ("onbuild", "from", "maintainer"):
                raise InvalidArgument(f"{trigger.upper()} isn't allowed as an ONBUILD trigger")
            cfg["OnBuild"] = [*(cfg.get("OnBuild") or []), rest]
        elif instruction == "healthcheck":
            cfg["Healthcheck"] = _healthcheck(rest)
    return cfg


def _healthcheck(rest: str) -> dict[str, Any]:
    words = rest.split()
    if words and words[0].upper() == "NONE":
        return {"Test": ["NONE"]}
    check: dict[str, Any] = {}
    while words and words[0].startswith("--"):
        flag, _, value = words.pop(0)[2:].partition("=")
        if flag in ("interval", "timeout", "start-period"):
            check[{"interval": "Interval", "timeout": "Timeout", "start-period": "StartPeriod"}[flag]] = \
                _duration(value, f"--{flag}")
        elif flag == "retries":
            if not value.isdigit():
                raise InvalidArgument(f"invalid --retries value {value!r}")
            check["Retries"] = int(value)
        else:
            raise InvalidArgument(f"Unknown flag: {flag}")
    if not words or words[0].upper() != "CMD":
        raise InvalidArgument("Unknown type \"\" in HEALTHCHECK (try CMD)" if not words else
                              f"Unknown type \"{words[0].upper()}\" in HEALTHCHECK (try CMD)")
    command = rest[rest.upper().index("CMD") + 3:].strip()
    args = _json_or_shell(command)
    test = ["CMD", *args] if command.startswith("[") else ["CMD-SHELL", command]
    return {"Test": test, **check}


def image_json(fields: dict[str, Any]) -> bytes:
    """Config bytes as dockerd marshals an image: keys sorted, empty optional fields omitted."""
    return json.dumps({k: fields[k] for k in sorted(fields) if fields[k] not in (None, "")},
                      separators=(",", ":")).encode()


def target_reference(repo: str, tag: str = "", what: str = "import") -> refs.Reference | None:
    """The `repo`/`tag` query pair as a reference to tag the new image with (None: untagged)."""
    if not repo:
        return None
    ref = refs.parse_normalized_named(repo)
    if ref.is_canonical:
        raise InvalidArgument(f"cannot {what} digest reference")
    return refs.with_tag(ref, tag) if tag else ref


def import_image(store: ImageStore, stream: BinaryIO, *, repo: str = "", tag: str = "", message: str = "",
                 changes: Iterable[str] = (), config: dict[str, Any] | None = None, src: str = "-",
                 docker_version: str = "", platform_os: str = "linux") -> Iterator[dict[str, Any]]:
    """`docker import`: the tar (optionally compressed) becomes a one-layer image. Yields dockerd's
    final status item, `{"status": "sha256:..."}`."""
    if platform_os not in ("", "linux"):
        raise InvalidArgument(f"operating system is not supported: {platform_os}")
    ref = target_reference(repo, tag)
    run_config = apply_changes(config, changes)
    layer = store.layers.register(stream, None)
    try:
        created = now_rfc3339nano()
        comment = message or f"Imported from {src}"
        raw = image_json({
            "architecture": host_arch(), "comment": comment, "config": container_config(run_config),
            "container_config": container_config(None), "created": created, "docker_version": docker_version,
            "history": [{"created": created, "comment": comment}], "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [layer.diff_id]},
        })
        image = store.create(raw)
    finally:
        store.layers.release(layer.chain_id)
    if ref is not None:
        store.tag_image(image.id, ref)
    store.on_event("import", image.id, image.id)
    yield {"status": image.id}


def commit_image(store: ImageStore, container_id: str, *, parent_image_id: str, config: dict[str, Any],
                 container_cfg: dict[str, Any], author: str = "", comment: str = "", docker_version: str = "",
                 repo: str = "", tag: str = "") -> tuple[Image, str]:
    """The image half of `docker commit` (dockerd's CommitImage + NewChildImage): the container's
    RW layer on top of its image. `config` is the new run config (changes already applied),
    `container_cfg` the container's own. Returns the image and the reference it was tagged with."""
    ref = target_reference(repo, tag, "commit")
    parent = store.by_id(parent_image_id) if parent_image_id else None
    parent_top = parent.top_layer if parent else None
    with tempfile.TemporaryFile(dir=store.layers.root) as spool:
        store.layers.diff(container_id, spool)  # type: ignore[arg-type]
        spool.seek(0)
        layer = store.layers.register(spool, parent_top)  # type: ignore[arg-type]
    try:
        empty = layer.diff_id == EMPTY_TAR_DIGEST
        created = now_rfc3339nano()
        document = parent.document if parent else {}
        diff_ids = list((document.get("rootfs") or {}).get("diff_ids") or [])
        if not empty:
            diff_ids.append(layer.diff_id)
        history_item: dict[str, Any] = {"created": created}
        if author:
            history_item["author"] = author
        created_by = " ".join(container_cfg.get("Cmd") or [])
        if created_by:
            history_item["created_by"] = created_by
        if comment:
            history_item["comment"] = comment
        if empty:
            history_item["empty_layer"] = True
        fields: dict[str, Any] = {
            "architecture": document.get("architecture") or host_arch(), "author": author,
            "config": container_config(config), "container": container_id,
            "container_config": container_config(container_cfg), "created": created,
            "docker_version": docker_version, "history": [*(document.get("history") or []), history_item],
            "os": "linux", "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "variant": document.get("variant"), "os.version": document.get("os.version"),
        }
        image = store.create(image_json(fields), parent=parent.id if parent else "")
    finally:
        store.layers.release(layer.chain_id)
        if empty:
            store.collect_layers()
    tagged = ""
    if ref is not None:
        store.tag_image(image.id, ref)
        tagged = ref.with_default_tag().familiar
    return image, tagged
