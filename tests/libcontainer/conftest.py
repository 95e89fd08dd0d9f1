"""Fixtures for the libcontainer tests: a busybox rootfs, a test cgroup parent, and a container
factory that destroys what it made and checks nothing leaked (processes, mounts, cgroups).

Real namespaces and cgroups: these tests run as root. The rootfs is Debian's busybox-static with
every applet linked and /etc/passwd, /etc/group as the conformance probe image has them
(conformance.probe_image.busybox_layer), extracted once per session and copied per test.
"""

from __future__ import annotations

import io
import os
import secrets
import shutil
import subprocess
import tarfile
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from conformance.probe_image import BusyboxNotFound, busybox_layer, find_busybox


def _root_only() -> None:
    if os.geteuid() != 0:
        pytest.skip("libcontainer tests need root (real namespaces, mounts and cgroups)")


@pytest.fixture(scope="session")
def busybox_tree(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The busybox rootfs, extracted once (do not write to it: use `rootfs`)."""
    _root_only()
    try:
        layer = busybox_layer(find_busybox())
    except BusyboxNotFound as e:
        pytest.skip(str(e))
    path = str(tmp_path_factory.mktemp("busybox") / "rootfs")
    os.mkdir(path)
    with tarfile.open(fileobj=io.BytesIO(layer)) as tar:
        # our own layer: symlinks to /bin/busybox on purpose (no `filter` keyword before Python 3.11.4)
        tar.extractall(path, **({"filter": "fully_trusted"} if hasattr(tarfile, "data_filter") else {}))
    return path


@pytest.fixture
def rootfs(busybox_tree: str, tmp_path: Any) -> str:
    """A private copy of the busybox rootfs for one test."""
    path = str(tmp_path / "rootfs")
    shutil.copytree(busybox_tree, path, symlinks=True)
    return path


@pytest.fixture(scope="session")
def cgroup_parent() -> Iterator[str]:
    """A refengine-test-<random> parent cgroup, removed at the end of the session."""
    _root_only()
    from refengine.libcontainer import cgroups

    name = "refengine-test-" + secrets.token_hex(4)
    yield name
    driver = cgroups.detect(name)
    for child in driver.list():  # everything under our test parent is ours
        try:
            driver.load(child).destroy()
        except cgroups.CgroupError:
            pass
    try:
        driver.remove_parent()
    except Exception:  # noqa: BLE001 - nothing was created, or it is already gone
        pass


def children_of(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                stat = fh.read()
        except OSError:
            continue
        fields = stat.rpartition(")")[2].split()
        if int(fields[1]) == pid:
            out.append(int(entry))
    return out


def mounts_under(path: str) -> list[str]:
    path = os.path.realpath(path)
    with open("/proc/self/mountinfo") as fh:
        return [line.split()[4] for line in fh if line.split()[4].startswith(path)]


class Factory:
    """make(args, **config) -> Container (not started); run(args, **config) -> (rc, output)."""

    def __init__(self, rootfs: str, cgroup_parent: str) -> None:
        self.rootfs, self.cgroup_parent = rootfs, cgroup_parent
        self.made: list[Any] = []

    def config(self, args: list[str], **kw: Any) -> Any:
        from refengine.libcontainer import ContainerConfig

        kw.setdefault("rootfs", self.rootfs)
        if kw.pop("cgroup", False):
            kw.setdefault("cgroup_name", "c-" + secrets.token_hex(4))
            kw.setdefault("cgroup_parent", self.cgroup_parent)
        return ContainerConfig(args=args, **kw)

    def make(self, args: list[str], **kw: Any) -> Any:
        from refengine.libcontainer import Container

        c = Container(self.config(args, **kw))
        self.made.append(c)
        return c

    def start(self, args: list[str], **kw: Any) -> Any:
        c = self.make(args, **kw)
        c.start(stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        return c

    def run(self, args: list[str] | str, timeout: float = 30, **kw: Any) -> tuple[int, str]:
        if isinstance(args, str):
            args = ["sh", "-c", args]
        c = self.make(args, **kw)
        p = c.start(stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        out = p.stdout.read().decode()
        return c.wait(timeout), out

    def destroy_all(self) -> None:
        for c in self.made:
            c.destroy()


@pytest.fixture
def lc(rootfs: str, cgroup_parent: str) -> Iterator[Factory]:
    """Container factory; at teardown every container is destroyed and leaks are checked."""
    from refengine.libcontainer import cgroups

    before = set(children_of(os.getpid()))
    f = Factory(rootfs, cgroup_parent)
    yield f
    f.destroy_all()
    from refengine.libcontainer.process import _forkserver

    left = set(children_of(os.getpid())) - before - {_forkserver.pid}
    assert not left, f"processes left behind: {sorted(left)}"
    assert not mounts_under(rootfs), f"mounts left under the rootfs: {mounts_under(rootfs)}"
    names = [c.config.cgroup_name for c in f.made if c.config.cgroup_name]
    if names:
        driver = cgroups.detect(cgroup_parent)
        still = sorted(set(names) & set(driver.list()))
        assert not still, f"cgroups left behind: {still}"


def ns_inode(pid: int | str, kind: str) -> int:
    return os.stat(f"/proc/{pid}/ns/{kind}").st_ino


@pytest.fixture
def fault_env(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """fault_env("no-pidns", ...): turn faults on for this test (REFENGINE_ALLOW_FAULTS=1)."""
    def set_faults(*names: str) -> None:
        monkeypatch.setenv("REFENGINE_ALLOW_FAULTS", "1")
        monkeypatch.setenv("REFENGINE_FAULTS", ",".join(names))
    monkeypatch.delenv("REFENGINE_FAULTS", raising=False)
    monkeypatch.delenv("REFENGINE_ALLOW_FAULTS", raising=False)
    return set_faults
