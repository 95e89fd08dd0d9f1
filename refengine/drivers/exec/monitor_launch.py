"""The monitor's first stage: start the container through libcontainer, then become the lean monitor.

The daemon runs `python -I -S -c <boot> <root> refengine-monitor <id> <container dir> <fd>` in a new
session (monitor_client.launch); fd is the monitor's end of a SOCK_SEQPACKET socketpair. Over it:

    daemon -> monitor   a pickled LaunchSpec (the libcontainer config, stdio and log settings)
    monitor -> daemon   CREATED pid   the init waits (cgroup joined): the daemon runs its network hook
    daemon -> monitor   GO | ABORT message
    monitor -> daemon   STARTED {"pid", "monitor_pid"} | FAILED {"message", "code"}

The container's init is spawned with a fresh exec (not the daemon's fork server, which dies with the
daemon), so the payload is *this* process's child (CLONE_PARENT from the intermediate). Once it runs,
the socketpair end, the payload's pidfd and the stdio fds survive an execve into monitor.main, which
keeps serving the same daemon connection and listens on <container dir>/monitor.sock for later ones.
"""

from __future__ import annotations

import json
import os
import pickle
import socket
import subprocess
import sys
from dataclasses import dataclass
from typing import NoReturn

from ...libcontainer.config import ConfigError, ContainerConfig
from ...libcontainer.container import Container
from ...libcontainer.process import StartError
from . import monitor_proto as proto

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
_BOOT = "import sys;sys.path.insert(0,sys.argv[1]);from refengine.drivers.exec.{} import main;main(sys.argv[2:])"


@dataclass
class LaunchSpec:
    config: ContainerConfig
    tty: bool = False
    open_stdin: bool = False
    log_path: str | None = None  # None: no json-file log (LogConfig type "none")
    log_max_size: int | None = None
    log_max_file: int = 1


def argv(cid: str, cdir: str, fd: int) -> list[str]:
    """The first stage's command line (the marker and the id are what tools look for)."""
    return [sys.executable, "-I", "-S", "-c", _BOOT.format("monitor_launch"), ROOT, proto.MARKER, cid, cdir, str(fd)]


def _json(kind: bytes, obj: dict) -> bytes:
    return kind + json.dumps(obj).encode()


def _oom_files(lc: Container) -> list[str]:
    """The files whose `oom_kill` (and on v1 `under_oom`) line says the kernel OOM-killed in the cgroup."""
    cg = lc.cgroup
    if cg is None:
        return []
    if "memory" in cg.paths:
        return [os.path.join(cg.paths["memory"], "memory.oom_control")]
    if "" in cg.paths:
        return [os.path.join(cg.paths[""], "memory.events")]
    return []


def _write_init_state(cdir: str, lc: Container, cfg: ContainerConfig) -> None:
    state = {**lc.init_state(), "cgroup_name": cfg.cgroup_name, "cgroup_parent": cfg.cgroup_parent,
             "seccomp": cfg.seccomp}
    tmp = os.path.join(cdir, proto.INIT_FILE + ".tmp")
    with open(tmp, "w") as fh:
        json.dump(state, fh)
    os.replace(tmp, os.path.join(cdir, proto.INIT_FILE))


def start(chan: socket.socket, cdir: str, spec: LaunchSpec) -> tuple[Container, object, dict[str, int]]:
    """Run the container; its handle, its Process and our ends of its stdio (stdin/out/err/console)."""
    # the payload must be our child, not the daemon fork server's: fork the init from here
    os.environ["REFENGINE_FORKSERVER"] = "inline"
    ours: dict[str, int] = {}
    theirs: list[int] = []
    stdin = stdout = stderr = subprocess.DEVNULL
    if spec.open_stdin and not spec.tty:
        r, w = os.pipe()
        stdin, ours["stdin"] = r, w
        theirs.append(r)
    if not spec.tty:
        for name in ("out", "err"):
            r, w = os.pipe()
            ours[name] = r
            theirs.append(w)
        stdout, stderr = theirs[-2], theirs[-1]

    def release(pid: int) -> None:
        chan.send(proto.CREATED + str(pid).encode())
        reply = chan.recv(proto.MAX_MESSAGE)
        if not reply.startswith(proto.GO):
            raise StartError(reply[1:].decode(errors="replace") or "the daemon went away during the start")

    lc = Container(spec.config)
    try:
        proc = lc.start(stdin, stdout, stderr, before_release=release)
    finally:
        for fd in theirs:
            os.close(fd)
    if spec.tty and proc.console is not None:
        ours["console"] = proc.console  # output, and stdin when the container has OpenStdin
    return lc, proc, ours


def reexec(cid: str, cdir: str, chan: socket.socket, lc: Container, proc: object, ours: dict[str, int],
           spec: LaunchSpec) -> None:
    """Become monitor.main, keeping the fds it needs (and nothing else: close_fds semantics of exec
    do not apply, so every other fd we hold was opened O_CLOEXEC)."""
    dirfd = proto.open_dir(cdir)
    path = proto.socket_address(dirfd)
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    listener.bind(path)
    os.chmod(path, 0o600)
    listener.listen(8)
    keep = {"pid": proc.pid, "pidfd": proc.pidfd, "dirfd": dirfd, "listen": listener.detach(),  # type: ignore[attr-defined]
            "client": chan.detach(), **ours}
    for key, fd in keep.items():
        if key != "pid":
            os.set_inheritable(fd, True)
    args = [f"{k}={v}" for k, v in keep.items()] + [f"cdir={cdir}"]
    if spec.log_path:
        args += [f"log={spec.log_path}", f"max_size={spec.log_max_size or 0}", f"max_file={spec.log_max_file}"]
    args += [f"oom={p}" for p in _oom_files(lc)]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-I", "-S", "-c", _BOOT.format("monitor"), ROOT,
                              proto.MARKER, cid, *args])


def main(argv: list[str]) -> None:
    """argv: the marker, the container id, its directory, the channel fd."""
    run(argv[1], argv[2], int(argv[3]))


def run(cid: str, cdir: str, fd: int) -> NoReturn:
    """Start the container of `cdir` as the daemon asks over `fd`, then become the monitor."""
    chan = socket.socket(fileno=fd)
    os.set_inheritable(fd, False)
    try:
        data = chan.recv(1 << 22)
        if not data:
            os._exit(1)
        spec: LaunchSpec = pickle.loads(data)  # from the daemon that exec'd us, over a private socketpair
        lc, proc, ours = start(chan, cdir, spec)
    except (StartError, ConfigError) as exc:
        _fail(chan, str(exc), getattr(exc, "exit_code", 128))
    except BaseException as exc:  # noqa: BLE001 - whatever it is, the daemon must hear it
        _fail(chan, f"container monitor: {type(exc).__name__}: {exc}", 128)
    try:
        _write_init_state(cdir, lc, spec.config)
        chan.send(_json(proto.STARTED, {"pid": proc.pid, "monitor_pid": os.getpid()}))  # type: ignore[attr-defined]
        reexec(cid, cdir, chan, lc, proc, ours, spec)
    except BaseException as exc:  # noqa: BLE001 - a running container nobody monitors must not stay
        lc.destroy()
        _fail(chan, f"container monitor: {type(exc).__name__}: {exc}", 128)


def _fail(chan: socket.socket, message: str, code: int) -> NoReturn:
    try:
        chan.send(_json(proto.FAILED, {"message": message, "code": code}))
    finally:
        os._exit(1)
