"""Can a bind source carry shared or slave propagation? (dockerd's ensureShared / ensureSharedOrSlave)

A shared bind only sends mounts back to the host if the source's host mount is itself shared, and a
slave bind only receives if it is shared or a slave: on a private mount the mode would silently do
nothing, so the start is refused with the reason, as dockerd does. Read in the daemon's own mount
namespace (the view the container's mounts are copied from).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from .config import HostSetupError


@dataclass(frozen=True)
class HostMount:
    mountpoint: str
    tags: tuple[str, ...]  # mountinfo's optional fields: shared:N, master:N, propagate_from:N, unbindable

    @property
    def shared(self) -> bool:
        return any(t.startswith("shared:") for t in self.tags)

    @property
    def slave(self) -> bool:
        return any(t.startswith("master:") for t in self.tags)


def _unescape(field: str) -> str:
    return field.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")


def mount_of(path: str, mountinfo: str = "/proc/self/mountinfo") -> HostMount:
    """The mount holding `path` (symlinks resolved): the last-mounted of the longest matching mount points."""
    real = os.path.realpath(path)
    best: HostMount | None = None
    with open(mountinfo) as fh:
        for line in fh:
            fields = line.split()
            if "-" not in fields:
                continue
            point = _unescape(fields[4])
            inside = real == point or real.startswith(point.rstrip("/") + "/")
            if inside and (best is None or len(point) >= len(best.mountpoint)):
                best = HostMount(point, tuple(fields[6:fields.index("-")]))
    return best or HostMount("/", ())


def require(path: str, shared_only: bool, mountinfo: str = "/proc/self/mountinfo") -> None:
    """HostSetupError unless `path`'s mount is shared (or, if not shared_only, a slave)."""
    m = mount_of(path, mountinfo)
    if m.shared or (not shared_only and m.slave):
        return
    what = "a shared mount" if shared_only else "a shared or slave mount"
    raise HostSetupError(f"path {path} is mounted on {m.mountpoint} but it is not {what}")
