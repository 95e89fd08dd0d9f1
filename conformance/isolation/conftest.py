"""Fixtures of the isolation area (shared by the namespace, hardening and escape checks)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from conformance.client import RECORD, ApiClient
from conformance.host import Host, peer_pid
from conformance.target import Target


@pytest.fixture(scope="session")
def engine_info(_session_api: ApiClient) -> dict[str, Any]:
    """GET /info of the target, read once per worker (SecurityOptions, Name, CgroupVersion ...)."""
    resp = _session_api.get("/info", validate=RECORD)  # scene-setting: /info is the api checks' subject
    if resp.status_code != 200:
        pytest.fail(f"GET /info answered {resp.status_code} {resp.text[:200]!r}", pytrace=False)
    return resp.json()


@pytest.fixture(scope="session")
def userns_remapped(engine_info: dict[str, Any]) -> bool:
    """Whether the daemon runs containers in a remapped user namespace (`name=userns` in SecurityOptions)."""
    return any(str(opt).startswith("name=userns") for opt in engine_info.get("SecurityOptions") or [])


@pytest.fixture(scope="session")
def daemon_pid(target: Target) -> int | None:
    """The PID of the daemon serving the target's unix socket, None for TCP targets."""
    return peer_pid(target)


@pytest.fixture
def host_ns(hostside: Host, daemon_pid: int | None) -> Callable[[str], str]:
    """The host's namespace of a kind, e.g. host_ns("pid") -> 'pid:[4026531836]'.

    "The host" is where the daemon itself runs: the process serving its unix socket, or this
    process for a local TCP target. (/proc/1 may belong to a process this harness may not inspect.)
    """
    def ns(kind: str) -> str:
        if daemon_pid:
            try:
                return hostside.ns(daemon_pid, kind)
            except OSError:
                pass
        return hostside.ns("self", kind)
    return ns


@pytest.fixture
def host_tmpdir(hostside: Host) -> Iterator[str]:
    """A fresh empty directory on the daemon's host (local targets only), removed afterwards."""
    path = tempfile.mkdtemp(prefix="conf-iso-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def shared_mount(hostside: Host) -> Iterator[str]:
    """A host directory that is a tmpfs mount point with *shared* propagation, for bind-propagation checks.

    `/` is a private mount on some hosts, and dockerd refuses rshared/rslave binds whose source is not
    on a shared (or slave) mount; a shared tmpfs of our own makes propagation testable anywhere. Any
    mounts that propagate back onto it are unmounted with it (lazily, recursively), then the directory goes.
    """
    path = tempfile.mkdtemp(prefix="conf-iso-prop-")
    res = hostside.run("mount", "-t", "tmpfs", "-o", "size=1m", "conf-iso-prop", path)
    if res.rc != 0:
        os.rmdir(path)
        pytest.skip(f"cannot mount a tmpfs on the host for a bind source: {res.stderr.strip()}")
    try:
        res = hostside.run("mount", "--make-shared", path)
        assert res.rc == 0, f"mount --make-shared {path} failed: {res.stderr.strip()}"
        yield path
    finally:
        hostside.run("umount", "-R", "-l", path)
        try:
            os.rmdir(path)
        except OSError:
            pass
