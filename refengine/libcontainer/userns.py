"""User namespaces: uid/gid maps, written by the parent after the init unshares CLONE_NEWUSER.

The init unshares the user namespace first (before the other namespaces, so they are owned by it),
tells the parent, and waits; the parent (root on the host) writes /proc/<init>/uid_map and gid_map,
then releases it and the init becomes uid/gid 0 of the new namespace.

What works rootless: nothing here. The engine runs as root; a rootless engine would need
newuidmap/newgidmap (setuid helpers) for ranges beyond its own id, could not create cgroups outside a
delegated subtree, could not mknod (devices are bound, which init does in any user namespace) and
would need slirp-style networking. None of that is built or tested: every test runs as real root.
What is tested: remapped containers (container root = an unprivileged host id), mounts, /dev binds,
/proc and sysfs inside them, and exec joining the user namespace first.
"""

from __future__ import annotations

import os

from .config import ConfigError, IDMap


def format_map(maps: list[IDMap]) -> str:
    return "".join(f"{m.container_id} {m.host_id} {m.size}\n" for m in maps)


def validate(maps: list[IDMap], what: str) -> None:
    if not maps:
        raise ConfigError(f"a user namespace needs a {what} mapping")
    if len(maps) > 340:
        raise ConfigError(f"too many {what} mappings ({len(maps)}; the kernel takes 340)")
    spans = sorted((m.container_id, m.container_id + m.size) for m in maps)
    for (_a0, a1), (b0, _b1) in zip(spans, spans[1:], strict=False):
        if b0 < a1:
            raise ConfigError(f"overlapping {what} mappings")
    for m in maps:
        if m.size <= 0 or m.container_id < 0 or m.host_id < 0 or m.host_id + m.size > 1 << 32:
            raise ConfigError(f"invalid {what} mapping {m}")


def write_maps(pid: int, uid_maps: list[IDMap], gid_maps: list[IDMap]) -> None:
    """Write the maps of the user namespace process `pid` is in (once only: the kernel refuses rewrites)."""
    for name, maps in (("uid_map", uid_maps), ("gid_map", gid_maps)):
        path = f"/proc/{pid}/{name}"
        try:
            with open(path, "w") as fh:
                fh.write(format_map(maps))
        except OSError as e:
            raise OSError(e.errno, f"writing {path}: {e.strerror}") from None


def to_host(maps: list[IDMap], container_id: int) -> int | None:
    """The host id that container id maps to, None if unmapped."""
    for m in maps:
        if m.container_id <= container_id < m.container_id + m.size:
            return m.host_id + container_id - m.container_id
    return None


def chown_tree(path: str, uid_maps: list[IDMap], gid_maps: list[IDMap]) -> None:
    """Shift a rootfs's ownership into the mapped range (what dockerd's userns-remap does to layers)."""
    for dirpath, dirnames, filenames in os.walk(path):
        for name in [*dirnames, *filenames, *([None] if dirpath == path else [])]:
            p = dirpath if name is None else os.path.join(dirpath, name)
            st = os.lstat(p)
            uid, gid = to_host(uid_maps, st.st_uid), to_host(gid_maps, st.st_gid)
            if uid is None or gid is None:
                raise ConfigError(f"{p} is owned by {st.st_uid}:{st.st_gid}, which the mapping leaves out")
            os.lchown(p, uid, gid)
            if st.st_mode & 0o6000 and not os.path.islink(p):
                os.chmod(p, st.st_mode & 0o7777)  # chown cleared setuid/setgid bits
