"""/dev/shm for the IPC modes that share it, as dockerd does.

IpcMode shareable: the daemon mounts a tmpfs of ShmSize at <container dir>/mounts/shm on the host
and binds it on the container's /dev/shm, so that containers joining with container:<ref> get
the same files (the IPC namespace alone shares SysV objects, not /dev/shm). host: the host's
/dev/shm. A private, none or default mode has no host side (the container mounts its own tmpfs).
The tmpfs lives from the start to the container's exit.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from ...libcontainer import syscalls as sc
from ...libcontainer.config import HostSetupError
from .record import Container

NON_SHAREABLE = "non-shareable IPC (hint: use IpcMode:shareable for the donor container)"


def shm_dir(cdir: str) -> str:
    return os.path.join(cdir, "mounts", "shm")


def shm_path(c: Container, container_dir: Callable[[str], str], lookup: Callable[[str], Container]) -> str | None:
    """The host directory the container's /dev/shm is bound from (None: a tmpfs of its own or none).
    Joining needs a running donor whose /dev/shm is shareable (dockerd's getIpcContainer)."""
    mode = c.host_config.get("IpcMode") or ""
    if mode == "host":
        if not os.path.isdir("/dev/shm"):
            raise HostSetupError("/dev/shm is not mounted, but must be for --ipc=host")
        return "/dev/shm"
    if mode == "shareable":
        return shm_dir(container_dir(c.id))
    if not mode.startswith("container:"):
        return None
    donor = lookup(mode.split(":", 1)[1])
    if not donor.state.running:
        raise HostSetupError(f"can't join IPC of container {donor.id}: container {donor.id} is not running")
    donor_mode = donor.host_config.get("IpcMode") or ""
    if donor_mode not in ("shareable", "host") and not donor_mode.startswith("container:"):
        raise HostSetupError(f"can't join IPC of container {donor.id}: {NON_SHAREABLE}")
    path = shm_path(donor, container_dir, lookup)
    if path is None or not os.path.isdir(path):
        raise HostSetupError(f"can't join IPC of container {donor.id}: {NON_SHAREABLE}")
    return path


def mount_shareable(c: Container, cdir: str) -> None:
    """The shareable container's tmpfs (a stale one, left by a crash, is replaced)."""
    if (c.host_config.get("IpcMode") or "") != "shareable":
        return
    path = shm_dir(cdir)
    os.makedirs(path, 0o700, exist_ok=True)
    if os.path.ismount(path):
        sc.umount2(path, sc.MNT_DETACH)
    size = c.host_config.get("ShmSize") or 64 << 20
    sc.mount("shm", path, "tmpfs", sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC, f"mode=1777,size={size}")


def release(cdir: str) -> None:
    """Unmount a shareable container's tmpfs at its exit (no-op for the other modes)."""
    path = shm_dir(cdir)
    if os.path.ismount(path):
        sc.umount2(path, sc.MNT_DETACH)
