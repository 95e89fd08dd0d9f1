"""The layer store: content-addressed read-only layers and containers' RW layers over a graph driver.

A layer is known by its chain ID (`diff_id` for a base layer, else sha256 of
`"<parent chain ID> <diff_id>"`, as dockerd), stored in the driver under a random cache ID. The
uncompressed tar a layer came from is kept next to its record: `docker save` must reproduce the
exact bytes whose sha256 is the diff ID, and keeping them is simpler than dockerd's tar-split.

On disk, under `root`:

    layers/<chain hex>/layer.json, layer.tar   one directory per layer, renamed into place whole
    mounts/<container id>.json                 a container's RW layer (mount ID, init ID, parent)
    tmp/                                       partial registrations (emptied at start)

A layer is removed when nothing holds it: no image lists it (the image store says which),
no child layer, no RW layer, no registration still in progress.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import lzma
import os
import secrets
import shutil
import threading
import zlib
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import BinaryIO

from ..drivers.graph import GraphDriver
from ..drivers.graph.changes import Change, write_tree
from ..drivers.graph.extract import DigestReader, LayerError, decompress
from .errors import InvalidArgument, LayerNotFound


def atomic_write(path: str, data: bytes) -> None:
    """Write temp + fsync + rename + fsync the directory: a crash leaves the old or the new file."""
    directory = os.path.dirname(path)
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.rename(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    fsync_dir(directory)


def fsync_dir(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def chain_id(parent: str | None, diff_id: str) -> str:
    if not parent:
        return diff_id
    return "sha256:" + hashlib.sha256(f"{parent} {diff_id}".encode()).hexdigest()


def chain_ids(diff_ids: Iterable[str]) -> list[str]:
    """The chain ID of every prefix of an image's layer list, bottom first."""
    out: list[str] = []
    for diff_id in diff_ids:
        out.append(chain_id(out[-1] if out else None, diff_id))
    return out


def _hex(digest: str) -> str:
    return digest.partition(":")[2] or digest


@dataclass(frozen=True)
class Layer:
    chain_id: str
    diff_id: str
    parent: str | None
    cache_id: str  # the graph driver's ID
    size: int  # bytes this layer adds (dockerd's DiffSize)
    tar_size: int  # bytes of the uncompressed tar kept for save


@dataclass(frozen=True)
class RWLayer:
    """A container's writable layer: `mount_id` over `init_id` (dockerd's `<id>-init`) over `parent`."""

    name: str
    mount_id: str
    init_id: str | None
    parent: str | None  # chain ID of the image's top layer


# dockerd's initlayer.Setup: what every container's rootfs has whatever the image holds.
INIT_LAYER_ENTRIES: tuple[tuple[str, str], ...] = (
    ("/dev/pts", "dir"), ("/dev/shm", "dir"), ("/proc", "dir"), ("/sys", "dir"),
    ("/.dockerenv", "file"), ("/etc/resolv.conf", "file"), ("/etc/hosts", "file"),
    ("/etc/hostname", "file"), ("/dev/console", "file"), ("/etc/mtab", "/proc/mounts"),
)


def setup_init_layer(root: str) -> None:
    """Populate a mounted init layer: non-directories in the way are unlinked first, so a symlink
    in the image can't redirect these writes (unlink removes the link itself)."""
    for path, kind in INIT_LAYER_ENTRIES:
        parts = path.strip("/").split("/")
        for i in range(1, len(parts) + 1):
            try:
                os.unlink(os.path.join(root, *parts[:i]))
            except (IsADirectoryError, FileNotFoundError, NotADirectoryError):
                pass
            except PermissionError:  # unlink(2) on a directory is EISDIR on Linux, EPERM elsewhere
                pass
        full = os.path.join(root, *parts)
        if os.path.lexists(full):
            continue
        os.makedirs(os.path.dirname(full), mode=0o755, exist_ok=True)
        if kind == "dir":
            os.makedirs(full, mode=0o755, exist_ok=True)
        elif kind == "file":
            os.close(os.open(full, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o755))
        else:
            os.symlink(kind, full)


class LayerStore:
    def __init__(self, root: str, driver: GraphDriver) -> None:
        self.root = os.path.abspath(root)
        self.driver = driver
        self._lock = threading.RLock()
        self._layers: dict[str, Layer] = {}
        self._mounts: dict[str, RWLayer] = {}
        self._holds: Counter[str] = Counter()
        for sub in ("layers", "mounts", "tmp"):
            os.makedirs(os.path.join(self.root, sub), mode=0o700, exist_ok=True)
        self._reload()

    # --- persistence ---------------------------------------------------------------------------

    def _reload(self) -> None:
        shutil.rmtree(os.path.join(self.root, "tmp"), ignore_errors=True)
        os.makedirs(os.path.join(self.root, "tmp"), mode=0o700, exist_ok=True)
        layers_dir = os.path.join(self.root, "layers")
        for entry in os.listdir(layers_dir):
            path = os.path.join(layers_dir, entry)
            try:
                with open(os.path.join(path, "layer.json")) as fh:
                    layer = Layer(**json.load(fh))
            except (OSError, ValueError, TypeError):
                shutil.rmtree(path, ignore_errors=True)  # a registration a crash interrupted
                continue
            self._layers[layer.chain_id] = layer
        mounts_dir = os.path.join(self.root, "mounts")
        for entry in os.listdir(mounts_dir):
            if not entry.endswith(".json"):
                os.unlink(os.path.join(mounts_dir, entry))
                continue
            with open(os.path.join(mounts_dir, entry)) as fh:
                rw = RWLayer(**json.load(fh))
            self._mounts[rw.name] = rw
        # Driver layers with no record belong to nobody (a crash between create and record).
        known = {layer.cache_id for layer in self._layers.values()}
        for rw in self._mounts.values():
            known.update(x for x in (rw.mount_id, rw.init_id) if x)
        for cache_id in self.driver.ids():
            if cache_id not in known and not cache_id.startswith("probe-"):
                self.driver.remove(cache_id)

    def _layer_dir(self, chain: str) -> str:
        return os.path.join(self.root, "layers", _hex(chain))

    # --- read-only layers ----------------------------------------------------------------------

    def get(self, chain: str) -> Layer:
        try:
            return self._layers[chain]
        except KeyError:
            raise LayerNotFound(chain) from None

    def has(self, chain: str) -> bool:
        return chain in self._layers

    def all(self) -> list[Layer]:
        with self._lock:
            return list(self._layers.values())

    def chain(self, top: str | None) -> list[Layer]:
        """The layers from the base to `top`."""
        out: list[Layer] = []
        while top:
            layer = self.get(top)
            out.append(layer)
            top = layer.parent
        return out[::-1]

    def size(self, top: str | None) -> int:
        return sum(layer.size for layer in self.chain(top))

    def tar_path(self, chain: str) -> str:
        self.get(chain)
        return os.path.join(self._layer_dir(chain), "layer.tar")

    def register(self, stream: BinaryIO, parent: str | None, expected_diff_id: str | None = None) -> Layer:
        """Unpack a (possibly compressed) layer tar on top of `parent`. The layer comes back held:
        call `release` once an image lists it, or a concurrent delete may collect it."""
        parent_layer = self.get(parent) if parent else None
        cache_id = secrets.token_hex(32)
        tmp = os.path.join(self.root, "tmp", secrets.token_hex(8))
        os.mkdir(tmp, 0o700)
        created = False
        try:
            self.driver.create(cache_id, parent_layer.cache_id if parent_layer else None)
            created = True
            with open(os.path.join(tmp, "layer.tar"), "wb") as sink:
                try:
                    reader = DigestReader(decompress(stream), sink)
                    stats = self.driver.apply_diff(cache_id, parent_layer.cache_id if parent_layer else None,
                                                   reader)
                except LayerError as exc:
                    raise InvalidArgument(str(exc)) from None
                except (EOFError, zlib.error, lzma.LZMAError, gzip.BadGzipFile) as exc:
                    raise InvalidArgument(f"invalid layer data: {exc or 'unexpected end of data'}") from None
                sink.flush()
                os.fsync(sink.fileno())
            diff_id = reader.digest
            if expected_diff_id and expected_diff_id != diff_id:
                raise InvalidArgument(f"layer diff ID mismatch: expected {expected_diff_id!r}, got {diff_id!r}")
            layer = Layer(chain_id(parent, diff_id), diff_id, parent, cache_id, stats.size, reader.count)
            with self._lock:
                if layer.chain_id in self._layers:  # registered meanwhile (or before): keep that one
                    self._holds[layer.chain_id] += 1
                    existing = self._layers[layer.chain_id]
                else:
                    with open(os.path.join(tmp, "layer.json"), "w") as fh:
                        json.dump(asdict(layer), fh)
                        fh.flush()
                        os.fsync(fh.fileno())
                    os.rename(tmp, self._layer_dir(layer.chain_id))
                    fsync_dir(os.path.join(self.root, "layers"))
                    self._layers[layer.chain_id] = layer
                    self._holds[layer.chain_id] += 1
                    return layer
            self.driver.remove(cache_id)
            return existing
        except BaseException:
            if created:
                self.driver.remove(cache_id)
            raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def hold(self, chain: str) -> None:
        with self._lock:
            self.get(chain)
            self._holds[chain] += 1

    def release(self, chain: str) -> None:
        with self._lock:
            self._holds[chain] -= 1
            if self._holds[chain] <= 0:
                del self._holds[chain]

    def collect(self, image_tops: Iterable[str]) -> list[Layer]:
        """Remove every layer no image (`image_tops`), RW layer or hold reaches; top-down."""
        with self._lock:
            live: set[str] = set()
            roots = [*image_tops, *self._holds, *(rw.parent for rw in self._mounts.values() if rw.parent)]
            for top in roots:
                while top and top not in live and top in self._layers:
                    live.add(top)
                    top = self._layers[top].parent
            dead = [layer for chain, layer in self._layers.items() if chain not in live]
            depth = {layer.chain_id: len(self.chain(layer.chain_id)) for layer in dead}
            dead.sort(key=lambda layer: -depth[layer.chain_id])
            for layer in dead:
                shutil.rmtree(self._layer_dir(layer.chain_id), ignore_errors=True)
                self.driver.remove(layer.cache_id)
                del self._layers[layer.chain_id]
            return dead

    # --- RW layers -----------------------------------------------------------------------------

    def create_rw(self, name: str, parent: str | None,
                  init: Callable[[str], None] | None = setup_init_layer) -> RWLayer:
        """A container's RW layer on the image's top layer (`parent`), with an init layer between
        them when `init` is given (it is called with the init layer's mounted path)."""
        with self._lock:
            if name in self._mounts:
                raise InvalidArgument(f"RW layer {name} already exists")
            parent_cache = self.get(parent).cache_id if parent else None
            mount_id = secrets.token_hex(32)
            rw = RWLayer(name, mount_id, mount_id + "-init" if init else None, parent)
            self._mounts[name] = rw  # holds the parent against a concurrent collect
        try:
            below = parent_cache
            if rw.init_id and init:
                self.driver.create(rw.init_id, parent_cache, rw=True)
                path = self.driver.get(rw.init_id)
                try:
                    init(path)
                finally:
                    self.driver.put(rw.init_id)
                below = rw.init_id
            self.driver.create(mount_id, below, rw=True)
            atomic_write(os.path.join(self.root, "mounts", f"{name}.json"), json.dumps(asdict(rw)).encode())
        except BaseException:
            with self._lock:
                self._mounts.pop(name, None)
            for cache_id in (mount_id, rw.init_id):
                if cache_id and self.driver.exists(cache_id):
                    self.driver.remove(cache_id)
            raise
        return rw

    def get_rw(self, name: str) -> RWLayer:
        try:
            return self._mounts[name]
        except KeyError:
            raise LayerNotFound(f"RW layer {name}") from None

    def rw_layers(self) -> list[RWLayer]:
        with self._lock:
            return list(self._mounts.values())

    def mount(self, name: str) -> str:
        """The container's root filesystem path (mounted); pair with `unmount`."""
        return self.driver.get(self.get_rw(name).mount_id)

    def unmount(self, name: str) -> None:
        self.driver.put(self.get_rw(name).mount_id)

    def remove_rw(self, name: str) -> None:
        """Delete a container's RW and init layers; the image layers stay until collected."""
        rw = self.get_rw(name)
        self.driver.remove(rw.mount_id)
        if rw.init_id:
            self.driver.remove(rw.init_id)
        with self._lock:
            try:
                os.unlink(os.path.join(self.root, "mounts", f"{name}.json"))
            except FileNotFoundError:
                pass
            self._mounts.pop(name, None)

    def changes(self, name: str) -> list[Change]:
        """`GET /containers/{id}/changes`, relative to the image plus the init layer."""
        rw = self.get_rw(name)
        return self.driver.changes(rw.mount_id, rw.init_id or self._cache(rw.parent))

    def diff(self, name: str, out: BinaryIO) -> None:
        """The container's changes as a layer tar (commit)."""
        rw = self.get_rw(name)
        self.driver.diff(rw.mount_id, rw.init_id or self._cache(rw.parent), out)

    def export(self, name: str, out: BinaryIO) -> None:
        """`docker export`: the container's whole filesystem as a tar."""
        path = self.mount(name)
        try:
            write_tree(out, path)
        finally:
            self.unmount(name)

    def rw_size(self, name: str) -> tuple[int, int]:
        """(SizeRw, SizeRootFs) of container inspect/list with `size=1`."""
        rw = self.get_rw(name)
        size_rw = self.driver.diff_size(rw.mount_id, rw.init_id or self._cache(rw.parent))
        return size_rw, self.size(rw.parent) + size_rw

    def _cache(self, chain: str | None) -> str | None:
        return self.get(chain).cache_id if chain else None
