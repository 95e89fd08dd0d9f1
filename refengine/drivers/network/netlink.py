"""All pyroute2 calls run on one worker thread.

pyroute2 0.9's synchronous `IPRoute` drives a private asyncio loop with `run_until_complete`, which fails
with "This event loop is already running" when called from the daemon's event-loop thread (where sync job
handlers run). A dedicated thread has no running loop, so the sync API works there; one thread also
serialises link changes (no two joins racing for the same ethN).

Sockets in another netns are opened by `nsutil.socket_in_netns` (fork, setns, pass the fd back) and handed
to pyroute2 with `fileno=`: no thread of ours ever changes netns, and it is faster than `IPRoute(netns=)`
here (median 11 ms vs 15.5 ms including a dump; a plain fork+exit of the daemon costs ~4.7 ms).
Every socket is opened with groups=0: no multicast subscriptions, so a long-lived one never queues events.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, TypeVar

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from .nsutil import socket_in_netns

T = TypeVar("T")
ENOENT, EEXIST, ENODEV = 2, 17, 19
NETLINK_ROUTE = 0

__all__ = ["NetlinkError", "NetlinkWorker", "iproute", "open_iproute", "ENOENT", "EEXIST", "ENODEV"]


def open_iproute(netns: str | None = None) -> IPRoute:
    """An rtnetlink socket in the current netns, or in the netns at path `netns` (never created here)."""
    if netns is None:
        return IPRoute(groups=0)
    sock = socket_in_netns(netns, socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_ROUTE)
    return IPRoute(fileno=sock.detach(), groups=0)


@contextmanager
def iproute(netns: str | None = None) -> Iterator[IPRoute]:
    ipr = open_iproute(netns)
    try:
        yield ipr
    finally:
        ipr.close()


class NetlinkWorker:
    """The thread for pyroute2. `host()` is its long-lived socket in the bridges' netns (worker thread only)."""

    def __init__(self, host_netns: str | None = None) -> None:
        self.host_netns = host_netns
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="refengine-netlink")
        self._ident: int | None = None
        self._host: IPRoute | None = None

    def host(self) -> IPRoute:
        assert threading.get_ident() == self._ident, "pyroute2 sockets belong to the netlink worker thread"
        if self._host is None:
            self._host = open_iproute(self.host_netns)
        return self._host

    def _wrap(self, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
        self._ident = threading.get_ident()
        try:
            return fn(*args, **kw)
        except (OSError, NetlinkError) as exc:
            if not isinstance(exc, NetlinkError) and self._host is not None:
                self._drop_host()  # a broken socket must not poison every later call
            raise

    def _drop_host(self) -> None:
        if self._host is not None:
            try:
                self._host.close()
            finally:
                self._host = None

    def call(self, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
        """Run `fn` on the worker and wait (blocks the caller for the few ms a link change takes)."""
        if threading.get_ident() == self._ident:  # already on the worker: a nested call
            return fn(*args, **kw)
        return self._pool.submit(self._wrap, fn, *args, **kw).result()

    async def acall(self, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
        """Same, without blocking the event loop."""
        return await asyncio.wrap_future(self._pool.submit(self._wrap, fn, *args, **kw))

    def close(self) -> None:
        try:
            self._pool.submit(self._drop_host).result()
        except RuntimeError:
            pass  # already shut down
        self._pool.shutdown(wait=True)
