"""OOM detection: counters to read after the fact, and notifiers to wait on (fileno() for an event loop).

v1: memory.oom_control has ``oom_kill N`` (kernel >= 4.13) and ``under_oom``; the notifier is an
    eventfd registered on memory.oom_control through cgroup.event_control (what containerd does).
v2: memory.events ``oom_kill N``; the notifier is inotify IN_MODIFY on memory.events (as runc).
"""

from __future__ import annotations

import ctypes
import os
import select
import time

from . import fs

IN_MODIFY = 0x00000002
IN_CLOEXEC = 0o2000000
IN_NONBLOCK = 0o4000

_libc = ctypes.CDLL(None, use_errno=True)


def v1_oom_kills(memory_dir: str) -> int:
    st = fs.read_keyed(memory_dir, "memory.oom_control")
    return st.get("oom_kill", 0)


def v1_under_oom(memory_dir: str) -> bool:
    return fs.read_keyed(memory_dir, "memory.oom_control").get("under_oom", 0) == 1


def v2_oom_kills(cgroup_dir: str) -> int:
    return fs.read_keyed(cgroup_dir, "memory.events").get("oom_kill", 0)


class OOMNotifier:
    """Base: fileno() becomes readable on an event; wait() says whether it was an OOM."""

    _fd: int = -1

    def fileno(self) -> int:
        return self._fd

    def wait(self, timeout: float | None = None) -> bool:
        """Block up to ``timeout`` seconds; True once an OOM event is seen, False on timeout/removal."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._fd >= 0:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([self._fd], [], [], left)
            if ready and self.check():
                return True
            if not ready or (deadline is not None and time.monotonic() >= deadline):
                return False
        return False

    def check(self) -> bool:
        """Consume pending events without blocking; True if an OOM happened."""
        raise NotImplementedError

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> OOMNotifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EventfdOOMNotifier(OOMNotifier):
    """v1: the kernel signals the eventfd on OOM in the cgroup, and once more when the cgroup is removed."""

    def __init__(self, memory_dir: str) -> None:
        self._dir = memory_dir
        self._fd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        try:
            cfd = os.open(os.path.join(memory_dir, "memory.oom_control"), os.O_RDONLY | os.O_CLOEXEC)
        except OSError as e:
            self.close()
            raise fs.CgroupError(f"cannot open {memory_dir}/memory.oom_control: {e.strerror}", e.errno) from None
        try:
            # the kernel keeps its own references; our fd on oom_control can be closed afterwards
            fs.write(memory_dir, "cgroup.event_control", f"{self._fd} {cfd}")
        except fs.CgroupError:
            self.close()
            raise
        finally:
            os.close(cfd)

    def check(self) -> bool:
        try:
            os.eventfd_read(self._fd)
        except BlockingIOError:
            return False
        if not os.path.exists(os.path.join(self._dir, "memory.oom_control")):
            self.close()   # the cgroup went away: that signal is not an OOM
            return False
        return True


class InotifyOOMNotifier(OOMNotifier):
    """v2: memory.events changes are notified with IN_MODIFY; an OOM is an increase of oom_kill."""

    def __init__(self, cgroup_dir: str) -> None:
        self._dir = cgroup_dir
        fd = _libc.inotify_init1(IN_CLOEXEC | IN_NONBLOCK)
        if fd < 0:
            e = ctypes.get_errno()
            raise fs.CgroupError(f"inotify_init1: {os.strerror(e)}", e)
        self._fd = fd
        path = os.path.join(cgroup_dir, "memory.events").encode()
        if _libc.inotify_add_watch(fd, path, IN_MODIFY) < 0:
            e = ctypes.get_errno()
            self.close()
            raise fs.CgroupError(f"inotify_add_watch {path.decode()}: {os.strerror(e)}", e)
        self._seen = v2_oom_kills(cgroup_dir)

    def check(self) -> bool:
        try:
            while os.read(self._fd, 4096):
                pass
        except BlockingIOError:
            pass
        try:
            now = v2_oom_kills(self._dir)
        except fs.CgroupError:
            self.close()
            return False
        if now > self._seen:
            self._seen = now
            return True
        return False

