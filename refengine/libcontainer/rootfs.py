"""The container's filesystem: mounts, /dev, pivot_root, read-only and masked paths.

Run by the init (single-threaded, as root of the new mount namespace) on plain dicts; imports os and
syscalls only. The order is runc's: make / a slave, bind the rootfs onto itself, mount each entry
under it (paths resolved inside the rootfs, never following a symlink out of it), create the /dev
nodes and links, pivot_root; later, after the hostname and sysctls, the read-only paths, then the
masked paths, then the read-only rootfs.
"""

from __future__ import annotations

import os
import stat

from . import syscalls as sc

# option -> (flags to set, flags to clear)
_FLAGS = {
    "ro": (sc.MS_RDONLY, 0), "rw": (0, sc.MS_RDONLY),
    "nosuid": (sc.MS_NOSUID, 0), "suid": (0, sc.MS_NOSUID),
    "nodev": (sc.MS_NODEV, 0), "dev": (0, sc.MS_NODEV),
    "noexec": (sc.MS_NOEXEC, 0), "exec": (0, sc.MS_NOEXEC),
    "sync": (sc.MS_SYNCHRONOUS, 0), "async": (0, sc.MS_SYNCHRONOUS),
    "dirsync": (sc.MS_DIRSYNC, 0), "remount": (sc.MS_REMOUNT, 0),
    "mand": (sc.MS_MANDLOCK, 0), "nomand": (0, sc.MS_MANDLOCK),
    "atime": (0, sc.MS_NOATIME), "noatime": (sc.MS_NOATIME, 0),
    "diratime": (0, sc.MS_NODIRATIME), "nodiratime": (sc.MS_NODIRATIME, 0),
    "relatime": (sc.MS_RELATIME, 0), "norelatime": (0, sc.MS_RELATIME),
    "strictatime": (sc.MS_STRICTATIME, 0), "nostrictatime": (0, sc.MS_STRICTATIME),
    "bind": (sc.MS_BIND, 0), "rbind": (sc.MS_BIND | sc.MS_REC, 0),
    "defaults": (0, 0),
}
PROPAGATION = {
    "private": sc.MS_PRIVATE, "rprivate": sc.MS_PRIVATE | sc.MS_REC,
    "shared": sc.MS_SHARED, "rshared": sc.MS_SHARED | sc.MS_REC,
    "slave": sc.MS_SLAVE, "rslave": sc.MS_SLAVE | sc.MS_REC,
    "unbindable": sc.MS_UNBINDABLE, "runbindable": sc.MS_UNBINDABLE | sc.MS_REC,
}
# statvfs f_flag bits that a bind remount must keep (the kernel refuses to clear locked ones in a userns)
_KEEP = ((os.ST_NOSUID, sc.MS_NOSUID), (os.ST_NODEV, sc.MS_NODEV), (os.ST_NOEXEC, sc.MS_NOEXEC),
         (os.ST_NOATIME, sc.MS_NOATIME), (os.ST_NODIRATIME, sc.MS_NODIRATIME), (os.ST_RELATIME, sc.MS_RELATIME))

# OCI "default devices": name -> (major, minor)
DEFAULT_DEVICES = {"null": (1, 3), "zero": (1, 5), "full": (1, 7), "random": (1, 8), "urandom": (1, 9),
                   "tty": (5, 0)}
DEV_SYMLINKS = (("/proc/self/fd", "fd"), ("/proc/self/fd/0", "stdin"), ("/proc/self/fd/1", "stdout"),
                ("/proc/self/fd/2", "stderr"))


def parse_options(options: list[str]) -> tuple[int, int, list[int], str]:
    """mount(8)-style options -> (flags, cleared flags, propagation changes, data string)."""
    flags, clear, prop, data = 0, 0, [], []
    for opt in options:
        if opt in _FLAGS:
            f, c = _FLAGS[opt]
            flags, clear = (flags | f) & ~c, clear | c
        elif opt in PROPAGATION:
            prop.append(PROPAGATION[opt])
        else:
            data.append(opt)
    return flags, clear, prop, ",".join(data)


def secure_join(root: str, unsafe: str) -> str:
    """root + unsafe with every symlink resolved as if root were / (never escaping it)."""
    parts = [p for p in unsafe.split("/") if p]
    resolved: list[str] = []
    links = 0
    while parts:
        part = parts.pop(0)
        if part == ".":
            continue
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        full = root + "/" + "/".join(resolved + [part])
        try:
            st = os.lstat(full)
        except FileNotFoundError:
            resolved.append(part)
            continue
        if stat.S_ISLNK(st.st_mode):
            links += 1
            if links > 255:
                raise OSError(40, f"too many levels of symbolic links resolving {unsafe} in the rootfs")
            target = os.readlink(full)
            if target.startswith("/"):
                resolved = []
            parts = [p for p in target.split("/") if p] + parts
        else:
            resolved.append(part)
    return root.rstrip("/") + "/" + "/".join(resolved)


def _kept_flags(path: str) -> int:
    try:
        f = os.statvfs(path).f_flag
    except OSError:
        return 0
    return sum(ms for st_flag, ms in _KEEP if f & st_flag)


def _ensure(path: str, is_dir: bool) -> None:
    if is_dir:
        os.makedirs(path, 0o755, exist_ok=True)
        return
    os.makedirs(os.path.dirname(path), 0o755, exist_ok=True)
    if not os.path.lexists(path):
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o644))


def prepare_root(rootfs: str, propagation: str) -> None:
    """/ gets the configured propagation (rslave by default), the rootfs's parent mount is made private
    if it is shared (pivot_root refuses a shared parent), and the rootfs is bound onto itself so it is a
    mount point of its own."""
    flags = PROPAGATION.get(propagation or "rslave", sc.MS_SLAVE | sc.MS_REC)
    sc.mount(None, "/", None, flags)
    if flags & sc.MS_SHARED or not flags & sc.MS_REC:
        # only then can the rootfs's parent still be shared (reading mountinfo costs ~ms on busy hosts)
        parent = _mount_point_of(rootfs)
        if parent is not None and parent[1]:
            sc.mount(None, parent[0], None, sc.MS_PRIVATE)
    sc.mount(rootfs, rootfs, None, sc.MS_BIND | sc.MS_REC)


def _mount_point_of(path: str) -> tuple[str, bool] | None:
    """(mount point, shared?) of the mount holding `path`, from /proc/self/mountinfo."""
    best: tuple[str, bool] | None = None
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            fields = line.split()
            mp = fields[4].replace("\\040", " ")
            if (path == mp or path.startswith(mp.rstrip("/") + "/")) and (best is None or len(mp) >= len(best[0])):
                best = (mp, any(f.startswith("shared:") for f in fields[6:fields.index("-")]))
    return best


def mount_entry(rootfs: str, m: dict, userns: bool) -> None:
    """One Mount (as a dict: destination, type, source, options) under the rootfs."""
    dest = secure_join(rootfs, m["destination"])
    kind = m.get("type") or "bind"
    flags, _clear, prop, data = parse_options(m.get("options") or [])
    if kind == "bind" or flags & sc.MS_BIND:
        src = m["source"]
        _ensure(dest, os.path.isdir(src))
        sc.mount(src, dest, None, sc.MS_BIND | (flags & sc.MS_REC))
        extra = flags & ~(sc.MS_BIND | sc.MS_REC | sc.MS_REMOUNT)
        if extra:
            sc.mount(src, dest, None, sc.MS_BIND | sc.MS_REMOUNT | extra | _kept_flags(dest))
    else:
        _ensure(dest, True)
        source = m.get("source") or kind
        try:
            sc.mount(source, dest, kind, flags, data)
        except OSError as e:
            if kind == "sysfs" and e.errno in (1, 13):
                # a user namespace that does not own the network namespace may not mount sysfs: bind the
                # host's read-only, as runc does
                sc.mount("/sys", dest, None, sc.MS_BIND | sc.MS_REC)
                sc.mount("/sys", dest, None, sc.MS_BIND | sc.MS_REMOUNT | sc.MS_RDONLY | _kept_flags(dest))
            elif kind == "devpts" and e.errno == 22 and "gid=" in data:
                # gid 5 (tty) unmapped in the user namespace: mount without the gid/mode options
                data = ",".join(o for o in data.split(",") if not o.startswith(("gid=", "mode=")))
                sc.mount(source, dest, kind, flags, data)
            else:
                raise
    for p in prop:
        sc.mount(None, dest, None, p)


def _cgroup_mounts() -> list[tuple[str, str, str, str]]:
    """(fstype, mount point, mount root, super options) of every cgroup/cgroup2 mount we see."""
    out = []
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            fields = line.split()
            sep = fields.index("-")
            fstype = fields[sep + 1]
            if fstype in ("cgroup", "cgroup2"):
                out.append((fstype, fields[4], fields[3], fields[sep + 3]))
    return out


def _own_cgroups() -> dict[str, str]:
    """/proc/self/cgroup as {controller list ('' for v2): path}."""
    out = {}
    with open("/proc/self/cgroup") as fh:
        for line in fh:
            _hid, ctrls, path = line.rstrip("\n").split(":", 2)
            out[ctrls] = path
    return out


def mount_cgroup(rootfs: str, m: dict, private_ns: bool, own_dirs: list[str] | None = None) -> None:
    """Docker's /sys/fs/cgroup: the container's own cgroup, as runc mounts it.

    cgroup v2 (unified host): a cgroup2 mount in a private cgroup namespace (its root is our cgroup),
    else a bind of our cgroup's directory. v1: a tmpfs with one directory per hierarchy, each either
    a fresh cgroup mount of that hierarchy (private namespace: it shows the namespace root, our cgroup)
    or a bind of our cgroup's directory in it; co-mounted controllers get symlinks (cpu -> cpu,cpuacct).
    Read-only (the tmpfs too) when the options say ro. `own_dirs` are our cgroup's directories as the
    parent made them (so this need not wait for the parent to have moved us there); without them,
    /proc/self/cgroup says where we are.
    """
    dest = secure_join(rootfs, m["destination"])
    flags, _clear, _prop, _data = parse_options(m.get("options") or [])
    ro = flags & sc.MS_RDONLY
    base = flags & ~sc.MS_RDONLY
    mounts = _cgroup_mounts()
    own = _own_cgroups()
    _ensure(dest, True)
    unified = [x for x in mounts if x[0] == "cgroup2" and x[1] == "/sys/fs/cgroup"]
    if unified:
        if private_ns:
            sc.mount("cgroup2", dest, "cgroup2", flags)
        else:
            given = next((d for d in own_dirs or [] if d.startswith("/sys/fs/cgroup/")), None)
            _bind_cgroup(unified[0], given[len("/sys/fs/cgroup"):] if given else own.get("", "/"), dest, flags)
        return
    sc.mount("tmpfs", dest, "tmpfs", base, "mode=755")
    for fstype, mp, root, opts in mounts:
        if fstype != "cgroup" or os.path.dirname(mp) != "/sys/fs/cgroup":
            continue
        ctrls = [o for o in opts.split(",") if o not in ("rw", "ro") and not o.startswith("release_agent")]
        name = os.path.basename(mp)
        sub = os.path.join(dest, name)
        os.makedirs(sub, 0o755, exist_ok=True)
        key = next((k for k in own if set(k.split(",")) == set(ctrls)), None)
        given = next((d for d in own_dirs or [] if d.startswith(mp.rstrip("/") + "/")), None)
        path = given[len(mp.rstrip("/")):] if given else own.get(key or "", "/")
        if given and root != "/":
            path = root.rstrip("/") + path  # _bind_cgroup strips the mount's root again
        try:
            if private_ns:
                sc.mount("cgroup", sub, "cgroup", flags, ",".join(ctrls))
            else:
                _bind_cgroup((fstype, mp, root, opts), path, sub, flags)
        except OSError as e:
            if e.errno not in (1, 13) or not private_ns:
                raise
            _bind_cgroup((fstype, mp, root, opts), path, sub, flags)  # userns: bind instead
        if "," in name:
            for part in name.split(","):
                link = os.path.join(dest, part)
                if not os.path.lexists(link):
                    os.symlink(name, link)
    if ro:
        sc.mount("tmpfs", dest, None, sc.MS_REMOUNT | base | sc.MS_RDONLY, "mode=755")


def _bind_cgroup(mount: tuple[str, str, str, str], own_path: str, dest: str, flags: int) -> None:
    _fstype, mp, root, _opts = mount
    rel = own_path[len(root):] if root != "/" and own_path.startswith(root) else own_path
    src = mp.rstrip("/") + "/" + rel.lstrip("/")
    sc.mount(src, dest, None, sc.MS_BIND | sc.MS_REC)
    sc.mount(src, dest, None, sc.MS_BIND | sc.MS_REMOUNT | (flags & ~sc.MS_REC) | _kept_flags(dest))


def create_devices(rootfs: str, devices: list[dict], userns: bool) -> None:
    """The default nodes plus configured ones in the container's /dev (a tmpfs). In a user namespace
    mknod is refused, so the host's node is bound onto an empty file instead."""
    old = os.umask(0)
    try:
        for dev in devices:
            path = secure_join(rootfs, dev["path"])
            os.makedirs(os.path.dirname(path), 0o755, exist_ok=True)
            kind = {"c": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}[dev.get("type", "c")]
            if userns:
                host = dev.get("host_path") or dev["path"]
                _ensure(path, False)
                sc.mount(host, path, None, sc.MS_BIND)
                continue
            if os.path.lexists(path):
                os.unlink(path)
            os.mknod(path, kind | (dev.get("file_mode", 0o666) & 0o7777),
                     os.makedev(dev.get("major", 0), dev.get("minor", 0)))
            os.chown(path, dev.get("uid", 0), dev.get("gid", 0))
    finally:
        os.umask(old)


def default_devices() -> list[dict]:
    return [{"path": "/dev/" + name, "type": "c", "major": ma, "minor": mi, "file_mode": 0o666}
            for name, (ma, mi) in DEFAULT_DEVICES.items()]


def setup_dev_links(rootfs: str) -> None:
    dev = secure_join(rootfs, "/dev")
    links = list(DEV_SYMLINKS) + [("pts/ptmx", "ptmx")]
    if os.path.exists("/proc/kcore"):
        links.append(("/proc/kcore", "core"))
    for target, name in links:
        path = os.path.join(dev, name)
        if os.path.lexists(path):
            if name == "ptmx":
                os.unlink(path)
            else:
                continue
        os.symlink(target, path)


def pivot(rootfs: str) -> None:
    """pivot_root(".", ".") as runc does: no put_old directory needed; the old root is stacked under the
    new one, made a slave (so the unmount does not propagate to the host) and detached."""
    old_root = os.open("/", os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
    new_root = os.open(rootfs, os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fchdir(new_root)
        sc.pivot_root(".", ".")
        os.fchdir(old_root)
        sc.mount(None, ".", None, sc.MS_SLAVE | sc.MS_REC)
        sc.umount2(".", sc.MNT_DETACH)
        os.chdir("/")
    finally:
        os.close(old_root)
        os.close(new_root)


def chroot_into(rootfs: str) -> None:
    """Without a mount namespace of our own (a host mount namespace): chroot, never pivot_root, which
    would move the root of every host process."""
    os.chdir(rootfs)
    os.chroot(".")
    os.chdir("/")


def readonly_path(path: str) -> None:
    try:
        sc.mount(path, path, None, sc.MS_BIND | sc.MS_REC)
    except FileNotFoundError:
        return
    sc.mount(path, path, None, sc.MS_BIND | sc.MS_REMOUNT | sc.MS_RDONLY | sc.MS_REC | _kept_flags(path))


def mask_path(path: str) -> None:
    """Files get /dev/null bound over them, directories an empty read-only tmpfs."""
    try:
        sc.mount("/dev/null", path, None, sc.MS_BIND)
    except FileNotFoundError:
        return
    except NotADirectoryError:
        sc.mount("tmpfs", path, "tmpfs", sc.MS_RDONLY)
    except OSError as e:
        if e.errno != 20:  # ENOTDIR: the path is a directory (bind of a file onto it)
            raise
        sc.mount("tmpfs", path, "tmpfs", sc.MS_RDONLY)


def readonly_root() -> None:
    sc.mount("/", "/", None, sc.MS_BIND | sc.MS_REMOUNT | sc.MS_RDONLY | _kept_flags("/"))


def host_devices(root: str = "/dev") -> list[dict]:
    """Every char/block device node under the host's /dev (a privileged container's /dev), as dicts."""
    skip = {"pts", "shm", "mqueue", "console", "ptmx", "fd", "core", "stdin", "stdout", "stderr"}
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        if rel == ".":
            dirnames[:] = [d for d in dirnames if d not in skip]
        for name in filenames:
            if rel == "." and name in skip:
                continue
            path = os.path.join(dirpath, name)
            try:
                st = os.lstat(path)
            except OSError:
                continue
            if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                out.append({"path": "/dev/" + os.path.relpath(path, root), "host_path": path,
                            "type": "c" if stat.S_ISCHR(st.st_mode) else "b",
                            "major": os.major(st.st_rdev), "minor": os.minor(st.st_rdev),
                            "file_mode": st.st_mode & 0o7777, "uid": st.st_uid, "gid": st.st_gid})
    return out
