"""The probe image: Debian's busybox-static as a `docker save`-format tarball, built here.

No registry and no docker CLI: a deterministic rootfs layer (busybox, every applet as a
symlink, /etc/passwd and /etc/group) plus a small second layer, written in the layout
`POST /images/load` accepts (manifest.json, config JSON, <layer>/layer.tar, repositories).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
from dataclasses import dataclass, field

BUSYBOX_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox")
EPOCH = 1700000000  # fixed mtime so the same busybox always gives the same image ID
CREATED = "2023-11-14T22:13:20Z"
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

PASSWD = (
    "root:x:0:0:root:/root:/bin/sh\n"
    "daemon:x:1:1:daemon:/usr/sbin:/bin/false\n"
    "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
    "probe:x:1000:1000:probe user:/home/probe:/bin/sh\n"
)
GROUP = "root:x:0:\ndaemon:x:1:\nprobe:x:1000:\nnogroup:x:65534:\n"


class BusyboxNotFound(FileNotFoundError):
    pass


def find_busybox() -> str:
    for path in (os.environ.get("CONFORMANCE_BUSYBOX"), *BUSYBOX_CANDIDATES):
        if path and os.path.isfile(path):
            return path
    raise BusyboxNotFound("busybox not found; install it with `apt-get install busybox-static`")


def _check_static(path: str) -> None:
    with open(path, "rb") as fh:
        elf = fh.read(1 << 20)
    if b"ld-linux" in elf:
        raise BusyboxNotFound(f"{path} is dynamically linked; the probe image needs busybox-static")


@dataclass
class ImageSpec:
    """One image of the probe set: a name and its config on top of the shared layers."""

    name: str
    config: dict
    extra_layer: dict[str, str] = field(default_factory=dict)  # path -> file content ("" = directory)


def _tarinfo(name: str, kind: bytes, mode: int, size: int = 0, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.size, info.linkname = kind, mode, size, link
    info.mtime, info.uid, info.gid, info.uname, info.gname = EPOCH, 0, 0, "", ""
    return info


def _layer(entries: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def busybox_layer(busybox: str) -> bytes:
    _check_static(busybox)
    with open(busybox, "rb") as fh:
        binary = fh.read()
    applets = subprocess.run([busybox, "--list-full"], check=True, capture_output=True, text=True).stdout.split()
    dirs = {"bin": 0o755, "sbin": 0o755, "usr": 0o755, "usr/bin": 0o755, "usr/sbin": 0o755, "etc": 0o755,
            "root": 0o700, "home": 0o755, "home/probe": 0o755, "tmp": 0o1777, "var": 0o755, "var/tmp": 0o1777,
            "proc": 0o755, "sys": 0o755, "dev": 0o755}
    entries: list[tuple[tarfile.TarInfo, bytes | None]] = [(_tarinfo(d + "/", tarfile.DIRTYPE, m), None)
                                                           for d, m in sorted(dirs.items())]
    entries.append((_tarinfo("bin/busybox", tarfile.REGTYPE, 0o755, len(binary)), binary))
    for name in ("etc/passwd", "etc/group"):
        text = (PASSWD if name.endswith("passwd") else GROUP).encode()
        entries.append((_tarinfo(name, tarfile.REGTYPE, 0o644, len(text)), text))
    for applet in sorted(set(applets)):
        if applet != "bin/busybox" and os.path.dirname(applet) in dirs:
            entries.append((_tarinfo(applet, tarfile.SYMTYPE, 0o777, link="/bin/busybox"), None))
    return _layer(entries)


def files_layer(files: dict[str, str]) -> bytes:
    entries: list[tuple[tarfile.TarInfo, bytes | None]] = []
    for path, content in sorted(files.items()):
        if content == "":
            entries.append((_tarinfo(path.rstrip("/") + "/", tarfile.DIRTYPE, 0o755), None))
        else:
            data = content.encode()
            entries.append((_tarinfo(path, tarfile.REGTYPE, 0o644, len(data)), data))
    return _layer(entries)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def save_tar(specs: list[ImageSpec], base_layer: bytes, arch: str = "amd64") -> bytes:
    """A `docker save`-format archive holding every spec's image."""
    blobs: dict[str, bytes] = {}
    manifest = []
    repositories: dict[str, dict[str, str]] = {}
    for spec in specs:
        layers = [base_layer] + ([files_layer(spec.extra_layer)] if spec.extra_layer else [])
        diff_ids = ["sha256:" + _sha(layer) for layer in layers]
        history = [{"created": CREATED, "created_by": "conformance-harness: busybox-static rootfs"}]
        if spec.extra_layer:
            history.append({"created": CREATED, "created_by": "conformance-harness: probe files"})
        config = {
            "architecture": arch, "os": "linux", "created": CREATED,
            "config": spec.config,
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": history,
        }
        config_bytes = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
        config_name = _sha(config_bytes) + ".json"
        blobs[config_name] = config_bytes
        layer_paths = []
        parent = ""
        for layer, diff_id in zip(layers, diff_ids, strict=True):
            # Legacy layer directory IDs: stable per (parent, layer) pair.
            layer_id = _sha((parent + diff_id).encode())
            blobs[f"{layer_id}/layer.tar"] = layer
            blobs[f"{layer_id}/VERSION"] = b"1.0"
            legacy = {"id": layer_id, "created": CREATED, "os": "linux"}
            if parent:
                legacy["parent"] = parent
            blobs[f"{layer_id}/json"] = json.dumps(legacy).encode()
            layer_paths.append(f"{layer_id}/layer.tar")
            parent = layer_id
        repo, _, tag = spec.name.rpartition(":")
        manifest.append({"Config": config_name, "RepoTags": [spec.name], "Layers": layer_paths})
        repositories.setdefault(repo, {})[tag] = parent
    blobs["manifest.json"] = json.dumps(manifest).encode()
    blobs["repositories"] = json.dumps(repositories).encode()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name in sorted({os.path.dirname(n) for n in blobs if "/" in n}):
            tar.addfile(_tarinfo(name + "/", tarfile.DIRTYPE, 0o755))
        for name, data in sorted(blobs.items()):
            tar.addfile(_tarinfo(name, tarfile.REGTYPE, 0o644, len(data)), io.BytesIO(data))
    return buf.getvalue()


@dataclass(frozen=True)
class ProbeImages:
    """Names of the images a run loads: `base` (sh) and `config` (a rich image config)."""

    base: str
    config: str

    @property
    def all(self) -> list[str]:
        return [self.base, self.config]


def probe_specs(run_id: str) -> tuple[ProbeImages, list[ImageSpec]]:
    names = ProbeImages(base=f"conformance-probe-{run_id}:latest", config=f"conformance-probe-{run_id}:config")
    base = ImageSpec(names.base, {"Env": [PATH_ENV], "Cmd": ["sh"],
                                  "Labels": {"org.conformance.probe": "base"}})
    rich = ImageSpec(names.config, {
        "Env": [PATH_ENV, "PROBE_ENV=from-image"],
        "Entrypoint": ["/bin/echo", "entrypoint"],
        "Cmd": ["default-cmd"],
        "WorkingDir": "/srv",
        "ExposedPorts": {"8080/tcp": {}},
        "Volumes": {"/data": {}},
        "StopSignal": "SIGUSR1",
        "Labels": {"org.conformance.probe": "config", "org.conformance.variant": "rich"},
    }, extra_layer={"srv/": "", "data/": "", "srv/hello.txt": "hello from the probe image\n"})
    return names, [base, rich]


def build_probe_tar(run_id: str, arch: str = "amd64", cache_dir: str | None = None) -> tuple[ProbeImages, bytes]:
    """The probe images' names and the tar to upload to `POST /images/load`."""
    names, specs = probe_specs(run_id)
    busybox = find_busybox()
    base = busybox_layer(busybox)
    data = save_tar(specs, base, arch)
    if cache_dir:
        os.makedirs(cache_dir, exist_ok=True)
        path = os.path.join(cache_dir, f"probe-{run_id}.tar")
        tmp = path + ".tmp"
        with open(tmp, "wb") as fh:
            fh.write(data)
        shutil.move(tmp, path)
    return names, data
