"""The seam between running containers and the network driver.

Lifecycle calls it at three points of a container's run: `etc_files` before the start (the files
bind-mounted at /etc/hostname, /etc/hosts and /etc/resolv.conf), `join` while the container's init
waits in its new namespaces (the place for the veth handshake), and `leave` once PID 1 has exited
(or the start failed). `HostFilesOnly` is the behaviour without a network driver.
"""

from __future__ import annotations

import os
from typing import Protocol

from .record import Container


class Networking(Protocol):
    def etc_files(self, c: Container, cdir: str) -> dict[str, str]: ...

    def join(self, c: Container, pid: int) -> None:
        """Runs in a worker thread while the init waits; an exception aborts the start."""

    async def leave(self, c: Container) -> None: ...


class HostFilesOnly:
    """/etc/hostname and /etc/hosts written per container as dockerd does; resolv.conf from the host's."""

    def etc_files(self, c: Container, cdir: str) -> dict[str, str]:
        if (c.host_config.get("NetworkMode") or "").startswith("container:"):
            return {}
        hostname = c.config.get("Hostname") or c.id[:12]
        paths = {"/etc/hostname": os.path.join(cdir, "hostname"), "/etc/hosts": os.path.join(cdir, "hosts")}
        with open(paths["/etc/hostname"], "w") as fh:
            fh.write(hostname + "\n")
        lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
        lines += [f"{h.split(':', 1)[1]}\t{h.split(':', 1)[0]}" for h in c.host_config.get("ExtraHosts") or []
                  if ":" in h]
        with open(paths["/etc/hosts"], "w") as fh:
            fh.write("\n".join(lines) + "\n")
        c.hostname_path, c.hosts_path = paths["/etc/hostname"], paths["/etc/hosts"]
        if os.path.exists("/etc/resolv.conf"):
            resolv = os.path.join(cdir, "resolv.conf")
            with open("/etc/resolv.conf") as src, open(resolv, "w") as dst:
                dst.write("".join(line for line in src if not line.startswith("nameserver 127.")))
            paths["/etc/resolv.conf"] = c.resolv_conf_path = resolv
        return paths

    def join(self, c: Container, pid: int) -> None:
        return None

    async def leave(self, c: Container) -> None:
        return None
