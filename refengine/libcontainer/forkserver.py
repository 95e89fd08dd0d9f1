"""A pre-warmed fork server for the container init (a "zygote"): saves the interpreter start.

Starting a fresh `python -I -S` and importing the init costs ~15-20 ms; a `true` container needs a
few. The fork server is that same fresh, single-threaded init interpreter, started once per engine
process, with everything imported, waiting on a SOCK_SEQPACKET socket. For each container it gets
the stdio fds and the init's channel (SCM_RIGHTS), clones a child with CLONE_PARENT -- so the child
is the *engine's* child, exactly like an init the engine spawned itself -- and answers its pid. The
child puts the fds in place and runs the ordinary init (init.run). Forking is safe because the
server never has a second thread.

What the children inherit from the server is what the server inherited from the engine when it
started (rlimits, cgroup, environment is empty anyway): the engine moves each payload to its own
cgroup and sets rlimits per container, so nothing of the server's state reaches a container except
what a fresh init would also have had. The server exits when the engine closes its end (EOF), so it
never outlives the engine. Disable with REFENGINE_FORKSERVER=0 (then each init is a fresh exec).
"""

from __future__ import annotations

import os
import sys

from . import init
from . import syscalls as sc


def serve(fd: int) -> None:
    """The server loop (in the fork server process)."""
    import _socket

    init.prepare_process()
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_SEQPACKET, 0, fd)
    os.set_inheritable(fd, False)
    while True:
        try:
            _data, anc, _flags, _addr = sock.recvmsg(64, _socket.CMSG_SPACE(4 * 4))
        except InterruptedError:
            continue
        fds = []
        for level, kind, payload in anc:
            if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
                fds += [int.from_bytes(payload[i:i + 4], sys.byteorder) for i in range(0, len(payload) - 3, 4)]
        if not _data:
            os._exit(0)  # the engine went away
        if len(fds) != 4:
            for f in fds:
                os.close(f)
            sock.send(init.dumps({"error": f"expected 4 fds, got {len(fds)}"}))
            continue
        try:
            pid = sc.clone_parent()
        except OSError as e:
            for f in fds:
                os.close(f)
            sock.send(init.dumps({"error": str(e)}))
            continue
        if pid == 0:
            _child(sock, fds)
        for f in fds:
            os.close(f)
        sock.send(init.dumps({"pid": pid}))


def _child(server_sock: object | None, fds: list[int]) -> None:
    try:
        if server_sock is not None:  # None: forked inline by a monitor (process._fork_inline)
            server_sock.close()  # type: ignore[attr-defined]
        stdin, stdout, stderr, chan = fds
        # move the channel out of the way of 0-2 first, then put stdio in place
        chan2 = os.dup(chan) if chan <= 2 else chan
        for src, dst in ((stdin, 0), (stdout, 1), (stderr, 2)):
            os.dup2(src, dst, inheritable=True)
        for f in {stdin, stdout, stderr, chan} - {0, 1, 2, chan2}:
            os.close(f)
    except BaseException:  # noqa: BLE001 - nothing to report to yet but the exit status
        os._exit(init.EXIT_FAILED)
    init.run(chan2)


if __name__ == "__main__":
    serve(int(sys.argv[-1]))
