"""What this host's block I/O controller can do, as dockerd's sysinfo reads it at start-up.

The engine asks before it accepts a limit: one the kernel cannot apply is discarded with a warning
(dockerd's behaviour) instead of failing the container's start.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

from .mounts import detect_layout


@dataclass(frozen=True)
class BlkioSupport:
    weight: bool          # blkio.weight (CFQ) or blkio.bfq.weight; v2 io.weight
    weight_device: bool   # the per-device weight files
    throttle: bool        # blkio.throttle.* (v1) or io.max (v2)


def _any(d: str, *names: str) -> bool:
    return any(os.path.exists(os.path.join(d, n)) for n in names)


@functools.lru_cache(maxsize=1)
def blkio_support() -> BlkioSupport:
    """Read once: the files the kernel offers at a hierarchy's root do not change while it runs."""
    try:
        layout = detect_layout()
    except Exception:
        return BlkioSupport(False, False, False)
    if layout.mode == "v2" and layout.unified:
        try:
            with open(os.path.join(layout.unified, "cgroup.controllers")) as fh:
                has_io = "io" in fh.read().split()
        except OSError:
            has_io = False
        return BlkioSupport(has_io, has_io, has_io)
    root = layout.v1.get("blkio")
    if root is None:
        return BlkioSupport(False, False, False)
    return BlkioSupport(weight=_any(root, "blkio.weight", "blkio.bfq.weight"),
                        weight_device=_any(root, "blkio.weight_device", "blkio.bfq.weight_device"),
                        throttle=_any(root, "blkio.throttle.read_bps_device"))
