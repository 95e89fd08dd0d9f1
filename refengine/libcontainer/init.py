"""The container init: a fresh single-threaded interpreter that becomes the container's process.

Started by process.py as `sys.executable -I -S -c <boot> <root> <fd>` (the `-m` form cannot find the
package under -I, which drops cwd and PYTHONPATH from sys.path; the boot line puts our root first):
fd is one end of a SOCK_SEQPACKET socketpair, the other end is the parent's. Protocol (JSON messages):

    parent -> init   the config (a plain dict built by process.build_init)
    init -> parent   {"type": "userns"}      (new user namespace made; parent writes uid/gid maps)
    parent -> init   {"type": "userns-ok"}
    init -> parent   {"type": "pid", "pid"}  (the payload forked; its parent is our parent: CLONE_PARENT;
                                              this intermediate process exits at once)
    parent -> payload {"type": "go", "cgroup_dirs"}  (it has our pid: build the rootfs meanwhile)
    parent -> payload {"type": "run"}        (after cgroup add, network hook, oom_score_adj: see stage2)
    payload -> parent {"type": "console"} + SCM_RIGHTS master fd   (tty only)
    payload -> parent {"type": "exec"}       (about to execve; the socket is CLOEXEC: EOF = exec done)
    any -> parent     {"type": "error", "message", "code"}  then exit(code): 127 not found, 126 cannot
                                              execute / permission, 128 any other failure (as dockerd)

Everything the payload imports is imported up front: after pivot_root (or setns into a container's
mount namespace) the host's Python library is out of reach. Only os, ctypes, _socket, _json,
binascii, fcntl, resource and _signal: no json/re/enum (each fresh start pays for every import).
"""

from __future__ import annotations

import _json
import _signal as signal  # the C module: `signal` imports enum (milliseconds per start)
import _socket
import binascii
import fcntl
import os
import resource
import sys

from . import capabilities, rootfs
from . import syscalls as sc

EXIT_CANNOT_INVOKE = 126
EXIT_NOT_FOUND = 127
EXIT_FAILED = 128
RECV_MAX = 1 << 22


class InitError(Exception):
    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.message, self.code = message, code


# -- wire format without the json package (it imports re and enum: milliseconds per start)


class _Ctx:
    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = float
    memo: dict = {}


_scan = _json.make_scanner(_Ctx())


def loads(data: bytes) -> dict:
    obj, _end = _scan(data.decode("utf-8"), 0)
    return obj


def dumps(msg: dict) -> bytes:
    out = []
    for k, v in msg.items():
        if isinstance(v, str):
            val = _json.encode_basestring_ascii(v)
        elif v is None:
            val = "null"
        elif v is True or v is False:
            val = "true" if v else "false"
        else:
            val = str(int(v))
        out.append(_json.encode_basestring_ascii(k) + ":" + val)
    return ("{" + ",".join(out) + "}").encode()


class Channel:
    def __init__(self, fd: int) -> None:
        os.set_inheritable(fd, False)  # closes on execve: EOF tells the parent the exec happened
        self.fd = fd
        self.sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_SEQPACKET, 0, fd)

    def send(self, msg: dict, fds: list[int] | None = None) -> None:
        if fds:
            anc = [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, b"".join(f.to_bytes(4, sys.byteorder) for f in fds))]
            self.sock.sendmsg([dumps(msg)], anc)
        else:
            self.sock.send(dumps(msg))

    def recv(self) -> bytes:
        return self.sock.recv(RECV_MAX)

    def expect(self, kind: str) -> dict:
        data = self.recv()
        msg = loads(data) if data.startswith(b"{") else None
        if not isinstance(msg, dict) or msg.get("type") != kind:
            # the parent went away (EOF) or refused: nothing to report to
            os._exit(EXIT_FAILED)
        return msg

    released = False

    def await_run(self) -> None:
        """Block until the parent says the payload may run (cgroup joined, network hook done). Idempotent."""
        if not self.released:
            self.expect("run")
            self.released = True

    def error(self, message: str, code: int) -> None:
        try:
            self.send({"type": "error", "message": message, "code": code})
        except OSError:
            pass


# -- stage 1: the intermediate process (namespaces, then fork the payload)


def stage1(cfg: dict, ch: Channel) -> None:
    fds = []
    for kind, path in cfg.get("join") or []:  # opened before any setns: paths are host paths
        try:
            fds.append((kind, os.open(path, os.O_RDONLY | os.O_CLOEXEC)))
        except OSError as e:
            raise InitError(f"cannot open the {kind} namespace {path}: {e.strerror}") from None
    for kind, fd in fds:  # user first (the parent orders them), then the others
        try:
            sc.setns(fd, sc.NS_FLAGS[kind], kind)
        except OSError as e:
            raise InitError(f"cannot join the {kind} namespace: {e.strerror}") from None
        os.close(fd)
    if cfg.get("userns"):
        try:
            sc.unshare(sc.CLONE_NEWUSER)
        except OSError as e:
            raise InitError(f"cannot create a user namespace: {e.strerror}") from None
        ch.send({"type": "userns"})
        ch.expect("userns-ok")
        # become root of the new namespace (uid/gid 0 mapped by the parent)
        os.setresgid(0, 0, 0)
        os.setresuid(0, 0, 0)
        os.setgroups([])
    flags = cfg.get("unshare", 0)
    if flags:
        try:
            sc.unshare(flags)
        except OSError as e:
            raise InitError(f"cannot create namespaces ({flags:#x}): {e.strerror}") from None
    pid = sc.clone_parent()
    if pid:
        ch.send({"type": "pid", "pid": pid})
        os._exit(0)
    stage2(cfg, ch)


# -- stage 2: the payload-to-be (PID 1 of a new PID namespace when there is one)


def stage2(cfg: dict, ch: Channel) -> None:
    """The payload-to-be. Two releases from the parent: "go" (it has our pid; carries our cgroup's
    directories) lets us build the rootfs while it moves us into our cgroup and runs its network hook
    -- a cgroup migration waits for an RCU grace period, milliseconds we overlap with the mounts --
    and "run" (all that done) must come before anything that depends on it: the cgroup namespace,
    sysctls (after the network hook, as runc's prestart hooks), and the payload itself."""
    go = ch.expect("go")
    os.setsid()
    if cfg.get("cgroupns"):
        ch.await_run()  # our cgroup becomes the namespace's root: be in it first
        sc.unshare(sc.CLONE_NEWCGROUP)
    mode = cfg.get("mode", "create")
    if mode == "create":
        setup_rootfs(cfg, ch, go.get("cgroup_dirs") or [])
    else:
        if cfg.get("chroot"):  # the container has no mount namespace of its own: its root is a chroot
            rootfs.chroot_into(cfg["chroot"])
        if cfg.get("tty"):
            setup_console(ch, None)
    ch.await_run()
    finalize(cfg, ch)


def setup_rootfs(cfg: dict, ch: Channel, cgroup_dirs: list[str]) -> None:
    root = cfg["rootfs"]
    mntns = cfg.get("mntns", "new")
    userns = bool(cfg.get("in_userns"))
    if mntns != "join":
        step = "preparing the rootfs"
        try:
            if mntns == "new":
                rootfs.prepare_root(root, cfg.get("propagation", "rslave"))
            for m in cfg.get("mounts") or []:
                step = f"mounting {m.get('type')} on {m['destination']}"
                if m.get("type") == "cgroup":
                    rootfs.mount_cgroup(root, m, bool(cfg.get("cgroupns")), cgroup_dirs)
                else:
                    rootfs.mount_entry(root, m, userns)
            if cfg.get("dev"):
                step = "creating device nodes"
                rootfs.create_devices(root, cfg.get("devices") or [], userns)
                rootfs.setup_dev_links(root)
            step = "changing root"
            if mntns == "new":
                rootfs.pivot(root)
            else:
                rootfs.chroot_into(root)
        except OSError as e:
            raise InitError(f"{step}: {e.strerror or e}") from None
    if cfg.get("tty"):
        setup_console(ch, "/dev/console" if cfg.get("dev") else None)
    try:
        if cfg.get("hostname") is not None:
            sc.sethostname(cfg["hostname"])
        if cfg.get("domainname") is not None:
            sc.setdomainname(cfg["domainname"])
        if cfg.get("sysctl"):
            ch.await_run()  # after the network hook (as runc's prestart hooks), before /proc/sys turns ro
        for key, value in (cfg.get("sysctl") or {}).items():
            with open("/proc/sys/" + key.replace(".", "/"), "wb") as fh:
                fh.write(value.encode())
        for p in cfg.get("readonly_paths") or []:
            rootfs.readonly_path(p)
        for p in cfg.get("masked_paths") or []:
            rootfs.mask_path(p)
        if cfg.get("readonly_rootfs"):
            rootfs.readonly_root()
    except OSError as e:
        raise InitError(f"finishing the rootfs: {e.strerror or e} ({e.filename or ''})".replace(" ()", "")) from None
    cwd = cfg.get("cwd") or "/"
    if not os.path.isdir(cwd):
        try:
            os.makedirs(cwd, 0o755, exist_ok=True)  # runc creates a missing working directory
        except OSError:
            pass


def setup_console(ch: Channel, console: str | None) -> None:
    """A pty from the container's own devpts: the master goes to the parent (SCM_RIGHTS), the slave
    becomes our controlling terminal and stdio (and is bound on /dev/console)."""
    try:
        master = os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
        fcntl.ioctl(master, sc.TIOCSPTLCK, b"\0\0\0\0")
        n = int.from_bytes(fcntl.ioctl(master, sc.TIOCGPTN, b"\0\0\0\0"), sys.byteorder)
        slave_path = f"/dev/pts/{n}"
        slave = os.open(slave_path, os.O_RDWR | os.O_NOCTTY)
        if console:
            if not os.path.lexists(console):
                os.close(os.open(console, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o600))
            sc.mount(slave_path, console, None, sc.MS_BIND)
        ch.send({"type": "console"}, [master])
        os.close(master)
        fcntl.ioctl(slave, sc.TIOCSCTTY, 0)
        for fd in (0, 1, 2):
            os.dup2(slave, fd)
        if slave > 2:
            os.close(slave)
    except OSError as e:
        raise InitError(f"setting up the terminal: {e.strerror or e}") from None


# -- users


def _read_db(path: str) -> list[list[str]]:
    try:
        with open(path, "rb") as fh:
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return []
    return [line.split(":") for line in text.splitlines() if line and not line.startswith("#")]


def _num(s: str) -> int | None:
    return int(s) if s.isdigit() else None


def resolve_user(spec: str, additional: list[str]) -> tuple[int, int, list[int], str]:
    """runc's GetExecUser + GetAdditionalGroups: (uid, gid, supplementary gids, home) from the
    container's /etc/passwd and /etc/group; numeric ids need no entry."""
    user, _, group = (spec or "0").partition(":")
    user = user or "0"
    passwd = [e for e in _read_db("/etc/passwd") if len(e) >= 7]
    groups = [e for e in _read_db("/etc/group") if len(e) >= 4]
    uid, gid, home, name = 0, 0, "/", None
    n = _num(user)
    entry = next((e for e in passwd if (e[0] == user if n is None else _num(e[2]) == n)), None)
    if entry is not None:
        uid, gid, home, name = int(entry[2]), int(entry[3]), entry[5] or "/", entry[0]
    elif n is not None:
        uid = n
    else:
        raise InitError(f"unable to find user {user}: no matching entries in passwd file")
    sgids: list[int] = []
    if group:
        gn = _num(group)
        g = next((e for e in groups if (e[0] == group if gn is None else _num(e[2]) == gn)), None)
        if g is not None:
            gid = int(g[2])
        elif gn is not None:
            gid = gn
        else:
            raise InitError(f"unable to find group {group}: no matching entries in group file")
    elif name is not None:
        sgids = [int(e[2]) for e in groups if name in e[3].split(",")]
    for add in additional or []:
        an = _num(add)
        g = next((e for e in groups if (e[0] == add if an is None else _num(e[2]) == an)), None)
        if g is not None:
            sgids.append(int(g[2]))
        elif an is not None:
            sgids.append(an)
        else:
            raise InitError(f"Unable to find group {add}: no matching entries in group file")
    if uid >= 1 << 31 or gid >= 1 << 31:
        raise InitError(f"user {spec!r}: uid/gid out of range")
    return uid, gid, list(dict.fromkeys(sgids)), home


# -- executable lookup (Go's exec.LookPath, as runc uses it)


def _check_executable(path: str) -> None:
    st = os.stat(path)
    if (st.st_mode & 0o170000) == 0o040000 or not st.st_mode & 0o111:
        raise PermissionError(13, "permission denied")


def _go_error(e: OSError) -> str:
    msg = e.strerror or str(e)
    return msg[:1].lower() + msg[1:]


def lookup(name: str, env: list[str]) -> str:
    if "/" in name:
        try:
            _check_executable(name)
        except OSError as e:
            code = EXIT_NOT_FOUND if e.errno == 2 else EXIT_CANNOT_INVOKE
            raise InitError(f'exec: "{name}": {_go_error(e)}', code) from None
        return name
    path = next((e[5:] for e in reversed(env) if e.startswith("PATH=")), "")
    for d in path.split(":"):
        candidate = (d or ".") + "/" + name
        try:
            _check_executable(candidate)
        except OSError:
            continue
        return candidate
    raise InitError(f'exec: "{name}": executable file not found in $PATH', EXIT_NOT_FOUND)


def _exec_code(errno_: int) -> int:
    if errno_ == 2:
        return EXIT_NOT_FOUND
    if errno_ in (1, 8, 13, 21, 26):  # EPERM ENOEXEC EACCES EISDIR ETXTBSY: found but cannot run
        return EXIT_CANNOT_INVOKE
    return EXIT_FAILED


# -- the last steps before execve (shared by start and exec)


def finalize(cfg: dict, ch: Channel) -> None:
    for num, soft, hard in cfg.get("rlimits") or []:
        try:
            resource.setrlimit(num, (soft, hard))
        except (OSError, ValueError) as e:
            raise InitError(f"setting rlimit {num} to {soft}:{hard}: {e}") from None
    if cfg.get("nnp"):
        sc.prctl(sc.PR_SET_NO_NEW_PRIVS, 1)
    uid, gid, groups, home = resolve_user(cfg.get("user") or "", cfg.get("groups") or [])
    env = list(cfg.get("env") or [])
    if not any(e.startswith("HOME=") for e in env):
        env.append("HOME=" + home)
    bpf = binascii.a2b_base64(cfg["seccomp"]) if cfg.get("seccomp") else None
    if bpf is not None and not cfg.get("nnp"):
        # without no_new_privs the filter can only be installed while we hold CAP_SYS_ADMIN: before the
        # capabilities are dropped (runc does the same; the profile must allow chdir, capset, setuid...,
        # close_range, rt_sigaction, sendmsg and execve, as Docker's does)
        _load_seccomp(bpf)
    cwd = cfg.get("cwd") or "/"
    try:
        os.chdir(cwd)
    except OSError as e:
        raise InitError(f"chdir to cwd ({cwd!r}) set in config.json failed: {_go_error(e)}",
                        EXIT_NOT_FOUND if e.errno == 2 else EXIT_FAILED) from None
    caps = cfg.get("caps", 0)
    try:
        capabilities.drop_bounding(cfg.get("bounding", caps), cfg.get("last_cap", 40))
        sc.prctl(sc.PR_SET_KEEPCAPS, 1)
        os.setgroups(groups)
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)
        sc.prctl(sc.PR_SET_KEEPCAPS, 0)
        capabilities.apply_sets(caps)
    except OSError as e:
        raise InitError(f"setting user {uid}:{gid} and capabilities: {e.strerror or e}") from None
    args = cfg["args"]
    exe = lookup(args[0], env)
    # stray fds: everything but stdio and our (CLOEXEC) channel
    os.closerange(3, ch.fd)
    os.closerange(ch.fd + 1, 1 << 20)
    # CPython ignores SIGPIPE and SIGXFSZ; ignored signals survive execve
    for s in range(1, signal.NSIG):
        if s in (signal.SIGKILL, signal.SIGSTOP):
            continue
        try:
            if s in (signal.SIGPIPE, signal.SIGXFSZ) or signal.getsignal(s) == signal.SIG_IGN:
                signal.signal(s, signal.SIG_DFL)
        except (OSError, ValueError):
            pass
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    if bpf is not None and cfg.get("nnp"):
        _load_seccomp(bpf)  # as close to execve as possible
    ch.send({"type": "exec"})
    try:
        os.execve(exe, args, dict(e.split("=", 1) for e in env))
    except OSError as e:
        ch.error(f'exec: "{exe}": {_go_error(e)}', _exec_code(e.errno or 0))
        os._exit(_exec_code(e.errno or 0))


def _load_seccomp(bpf: bytes) -> None:
    try:
        sc.seccomp_set_filter(bpf)
    except OSError as e:
        raise InitError(f"loading the seccomp filter: {e.strerror or e}") from None


def main(fd: int | None = None) -> None:
    """Entry point of a freshly exec'd init (fd: our end of the channel)."""
    if fd is None:
        fd = int(sys.argv[-1])
    prepare_process()
    run(fd)


def prepare_process() -> None:
    try:
        sc.prctl(sc.PR_SET_DUMPABLE, 0)  # /proc/<pid>/exe of the host interpreter stays hidden until execve
    except OSError:
        pass
    os.umask(0o022)


def run(fd: int) -> None:
    """Read the config from the channel and run the stages; never returns (exec or _exit)."""
    ch = Channel(fd)
    try:
        cfg = loads(ch.recv())
        stage1(cfg, ch)
    except InitError as e:
        ch.error(e.message, e.code)
        os._exit(e.code)
    except BaseException as e:  # whatever it is, the parent must hear about it
        ch.error(f"container init failed: {type(e).__name__}: {e}", EXIT_FAILED)
        os._exit(EXIT_FAILED)
    os._exit(EXIT_FAILED)


if __name__ == "__main__":
    main()
