"""Work inside another network namespace without moving a thread of the daemon there.

`setns(CLONE_NEWNET)` changes only the calling thread, and the daemon is threaded (asyncio plus the netlink
worker): a thread left in a container's netns would open later sockets there. So each job here forks: the
child is single-threaded, enters the namespace, does one small thing (open a socket, write a sysctl) and
hands the result back over a unix socket (fds with SCM_RIGHTS), then `_exit`s. A socket keeps the netns it
was created in for its whole life, so the daemon can bind/serve it from any thread afterwards.

The child runs between fork and `_exit` only: no imports, no logging, no locks another thread might hold.
Commands (nft) go through `nsenter --net=`, an exec'd single-threaded helper.
"""

from __future__ import annotations

import ctypes
import os
import socket
from collections.abc import Callable

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)
_setns = _libc.setns  # resolved here, in the parent: dlsym in a forked child could take a loader lock
_setns.argtypes = (ctypes.c_int, ctypes.c_int)
_setns.restype = ctypes.c_int
TIMEOUT = 10.0


class NetnsError(OSError):
    pass


def netns_path(pid: int | None = None, path: str | None = None) -> str:
    """The namespace file for a container: its init's /proc/<pid>/ns/net, or a bind-mounted netns path.

    A bare name means /run/netns/<name> (what `ip netns add` and pyroute2's netns.create make).
    """
    if path:
        return path if "/" in path else f"/run/netns/{path}"
    if pid is None or pid <= 0:
        raise ValueError("a network namespace needs a pid or a path")
    return f"/proc/{pid}/ns/net"


def same_netns(a: str, b: str) -> bool:
    """Whether two netns paths name one namespace (nsfs inodes compared; /proc/<pid>/ns/net works too)."""
    sa, sb = os.stat(a), os.stat(b)
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def _in_netns(path: str, job: Callable[[], tuple[bytes, list[int]]]) -> tuple[bytes, list[int]]:
    """Run `job` in a forked child inside the netns at `path`; its (payload, fds) come back to the caller."""
    nsfd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)  # opened here so a bad path fails in the caller
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        pid = os.fork()
        if pid == 0:  # child: one thread, short-lived, always _exit
            status = 1
            try:
                ours.close()
                if _setns(nsfd, CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns({path}): {os.strerror(err)}")
                payload, fds = job()
                socket.send_fds(theirs, [b"+" + payload], fds)
                status = 0
            except BaseException as exc:  # noqa: BLE001 - everything must reach the parent as a message
                try:
                    theirs.send(b"-" + f"{type(exc).__name__}: {exc}".encode(errors="replace")[:3000])
                except BaseException:  # noqa: BLE001
                    pass
            finally:
                os._exit(status)
        theirs.close()
        ours.settimeout(TIMEOUT)
        try:
            msg, fds, _flags, _addr = socket.recv_fds(ours, 65536, 16)
        except TimeoutError:
            os.kill(pid, 9)
            raise NetnsError(f"no answer from the helper in netns {path}") from None
        finally:
            os.waitpid(pid, 0)
        if not msg:
            raise NetnsError(f"the helper in netns {path} died")
        if msg[:1] == b"-":
            for fd in fds:
                os.close(fd)
            raise NetnsError(f"in netns {path}: {msg[1:].decode(errors='replace')}")
        return msg[1:], fds
    finally:
        os.close(nsfd)
        ours.close()
        theirs.close()


def socket_in_netns(path: str, family: int = socket.AF_INET, type_: int = socket.SOCK_STREAM,
                    proto: int = 0) -> socket.socket:
    """A new socket that lives in the netns at `path` (bind/connect it from here, in any thread)."""

    def job() -> tuple[bytes, list[int]]:
        # detach: the fd must outlive the socket object, which is collected when this function returns
        return b"", [socket.socket(family, type_, proto).detach()]

    _, fds = _in_netns(path, job)
    return socket.socket(family, type_, proto, fileno=fds[0])


def write_sysctl(key: str, value: str, netns: str | None = None) -> None:
    """Write /proc/sys/<key> (dots or slashes) in the current netns or in `netns`; skipped if already set.

    /proc/sys/net resolves against the netns of the thread that opens it, hence the forked child.
    """
    path = "/proc/sys/" + key.replace(".", "/")

    def job() -> tuple[bytes, list[int]]:
        with open(path) as f:
            if f.read().strip() == value:
                return b"", []
        with open(path, "w") as f:
            f.write(value)
        return b"", []

    if netns is None:
        job()
    else:
        _in_netns(netns, job)


def read_sysctl(key: str, netns: str | None = None) -> str | None:
    path = "/proc/sys/" + key.replace(".", "/")

    def job() -> tuple[bytes, list[int]]:
        try:
            with open(path) as f:
                return f.read().strip().encode(), []
        except FileNotFoundError:
            return b"\0", []

    out = job()[0] if netns is None else _in_netns(netns, job)[0]
    return None if out == b"\0" else out.decode()


def command_in_netns(argv: list[str], netns: str | None) -> list[str]:
    """`argv` as run in `netns` (through nsenter, a single-threaded exec'd helper), or as is."""
    return argv if netns is None else ["nsenter", f"--net={netns}", "--", *argv]
