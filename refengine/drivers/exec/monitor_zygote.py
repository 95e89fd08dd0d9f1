"""A pre-warmed parent for container monitors: saves each start the interpreter and its imports.

A fresh `python -I -S` importing libcontainer costs well over 100 ms on this kind of machine; the
container start waits for it. The zygote is that interpreter, started once per daemon with
monitor_launch (and so libcontainer) imported, single-threaded, waiting on a SOCK_SEQPACKET socket.
For each container it gets the ids (JSON) and two fds (SCM_RIGHTS: the monitor's end of the daemon's
channel, its log file), clones a child with CLONE_PARENT -- so the monitor is the daemon's child,
which reaps it -- and answers its pid. The child makes its own session (a signal to the daemon's
process group must not reach it), puts the fds in place and runs monitor_launch.run_split: a
throwaway child starts the container, this one becomes the monitor without an exec. The monitors
thereby share the zygote's pages (interpreter, imports, frozen objects) instead of each holding a
fresh interpreter's heap.

The zygote exits when the daemon closes its end; monitors it made are separate processes and stay.
It is spawned with only the daemon's REFENGINE_* variables (fault injection must reach the monitors).
"""

from __future__ import annotations

import gc
import json
import os
import socket
import sys

from ...libcontainer import syscalls as sc
from ...libcontainer.helper import HelperProcess
from . import monitor_launch

NAME = "refengine-launcher"  # not the monitor marker: tools that count monitors must not count this
_BOOT = "import sys;sys.path.insert(0,sys.argv[1]);from refengine.drivers.exec.monitor_zygote import serve;serve(int(sys.argv[3]))"


def _warm() -> None:
    """Fill the per-process caches every start needs, once, before forking: the default seccomp
    program (libseccomp loaded, the filter compiled) and the cgroup driver (mount table read)."""
    from ...libcontainer import capabilities, cgroups, container, seccomp
    try:
        caps = capabilities.resolve([], [], False, base=None, available=capabilities.bounding_set())
        seccomp.program_for("default", caps)
        container._driver(cgroups.DEFAULT_PARENT)
    except Exception:  # noqa: BLE001 - only a head start: each monitor does it again if needed
        pass


def serve(fd: int) -> None:
    """The zygote's loop (in the zygote process)."""
    sock = socket.socket(fileno=fd)
    os.set_inheritable(fd, False)
    _warm()
    # what every monitor runs, imported and then frozen out of the collector's reach: the monitors
    # share these pages with us instead of copying them when a collection touches the objects
    from . import monitor  # noqa: F401
    gc.collect()
    gc.freeze()
    while True:
        try:
            data, fds, _flags, _addr = socket.recv_fds(sock, 1 << 16, 4)
        except InterruptedError:
            continue
        if not data:
            os._exit(0)  # the daemon went away
        try:
            req = json.loads(data)
            if len(fds) != 2:
                raise ValueError(f"expected 2 fds, got {len(fds)}")
            pid = sc.clone_parent()
        except (OSError, ValueError) as e:
            for f in fds:
                os.close(f)
            sock.send(json.dumps({"error": str(e)}).encode())
            continue
        if pid == 0:
            _child(sock, req, fds)
        for f in fds:
            os.close(f)
        sock.send(json.dumps({"pid": pid}).encode())


def _child(server: socket.socket, req: dict, fds: list[int]) -> None:
    try:
        server.close()
        chan, log = fds
        os.setsid()
        null = os.open(os.devnull, os.O_RDWR)
        os.dup2(null, 0)
        os.dup2(null, 1)
        os.dup2(log, 2)
        os.close(null)
        os.close(log)
        monitor_launch.run_split(req["cid"], req["cdir"], chan)
    finally:
        os._exit(1)


class Zygote(HelperProcess):
    """The daemon's handle on its zygote: started lazily, restarted once if it died."""

    what = "monitor zygote"
    cwd = "/"

    def argv(self, fd: int) -> list[str]:
        return [sys.executable, "-I", "-S", "-c", _BOOT, monitor_launch.ROOT, NAME, str(fd)]

    def env(self) -> dict[str, str]:
        return {k: v for k, v in os.environ.items() if k.startswith("REFENGINE_")}  # faults and switches

    def launch(self, cid: str, cdir: str, chan: int, log: int) -> int:
        """A new monitor for the container (our child); its pid. OSError if the zygote cannot."""
        return self.request(json.dumps({"cid": cid, "cdir": cdir}).encode(), [chan, log])
