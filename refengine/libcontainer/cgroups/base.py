"""The interface both drivers implement, and the behaviour they share (signalling, waiting)."""

from __future__ import annotations

import errno
import os
import signal
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Protocol, runtime_checkable

from .fs import CgroupError
from .oom import OOMNotifier
from .resources import Resources
from .stats import CgroupStats

DEFAULT_PARENT = "refengine"


@runtime_checkable
class CgroupHandle(Protocol):
    """One container's cgroup (in every v1 hierarchy, or one v2 directory)."""

    name: str
    path: str                  # cgroup path as /proc/<pid>/cgroup shows it, e.g. "/refengine/<name>"
    paths: dict[str, str]      # absolute directories: v1 controller -> dir; v2 {"": dir}

    def add(self, pid: int) -> None: ...
    def update(self, r: Resources) -> None: ...
    def pids(self) -> list[int]: ...
    def freeze(self, timeout: float = ...) -> None: ...
    def thaw(self) -> None: ...
    def frozen(self) -> bool: ...
    def kill_all(self, sig: int = signal.SIGKILL) -> None: ...
    def stats(self) -> CgroupStats: ...
    def oom_killed(self) -> bool: ...
    def oom_kill_count(self) -> int: ...
    def oom_notifier(self) -> OOMNotifier: ...
    def exists(self) -> bool: ...
    def destroy(self) -> None: ...


class CgroupDriver(ABC):
    version: int
    parent: str

    @abstractmethod
    def create(self, name: str, resources: Resources | None = None) -> CgroupHandle:
        """Make <parent>/<name> (the parent too if needed), apply resources; refuses an existing one."""

    @abstractmethod
    def load(self, name: str) -> CgroupHandle:
        """An existing cgroup under our parent (daemon restart); CgroupNotFound if absent."""

    @abstractmethod
    def list(self) -> list[str]:
        """Names of the cgroups under our parent."""

    @abstractmethod
    def remove_parent(self) -> None:
        """rmdir our parent cgroup(s) if they are empty (engine shutdown, tests)."""

    def exists(self, name: str) -> bool:
        return name in self.list()


def signal_pids(pids: list[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def wait_until(pred, timeout: float, what: str) -> None:
    """Poll ``pred`` with a short, growing sleep; raise CgroupError naming ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    delay = 0.0005
    while not pred():
        if time.monotonic() > deadline:
            raise CgroupError(f"timed out after {timeout:g}s waiting for {what}", errno.ETIMEDOUT)
        time.sleep(delay)
        delay = min(delay * 2, 0.02)


# kill_all freezes only briefly: a task the freezer cannot reach (uninterruptible sleep, e.g. in the
# memcg OOM handler with the OOM killer off) keeps the cgroup FREEZING, and it dies of SIGKILL anyway
KILL_FREEZE_TIMEOUT = 0.25
FREEZE_TIMEOUT = 5.0


def thaw_and_wait(write: Callable[[], None], pred: Callable[[], bool], what: str) -> None:
    """Thaw (`write`) and wait for it to take effect. A task with a SIGKILL pending dies the moment it
    thaws (on v2 even while frozen), and its owner may remove the emptied cgroup before the write or
    before the state is read back: a cgroup that is gone is thawed."""
    try:
        write()
        wait_until(pred, FREEZE_TIMEOUT, what)
    except CgroupError as e:
        if e.errno != errno.ENOENT:
            raise


def kill_until_empty(pids: Callable[[], list[int]], kill_all: Callable[[int], None], where: str,
                     timeout: float = 5.0) -> None:
    """SIGKILL what is in a cgroup until it is empty (tasks leave a cgroup a little after they die);
    the step before rmdir for both hierarchies."""
    deadline = time.monotonic() + timeout
    while pids():
        kill_all(signal.SIGKILL)
        try:
            wait_until(lambda: not pids(), 0.5, "tasks to exit")
        except CgroupError:
            if time.monotonic() > deadline:
                raise CgroupError(f"cannot destroy {where}: tasks {pids()} survive SIGKILL") from None
