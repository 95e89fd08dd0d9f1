"""Fixtures of the isolation area (shared by the namespace, hardening and escape checks)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest

from conformance.client import ApiClient
from conformance.host import Host


@pytest.fixture(scope="session")
def engine_info(_session_api: ApiClient) -> dict[str, Any]:
    """GET /info of the target, read once per worker (SecurityOptions, Name, CgroupVersion ...)."""
    resp = _session_api.get("/info")
    if resp.status_code != 200:
        pytest.fail(f"GET /info answered {resp.status_code} {resp.text[:200]!r}", pytrace=False)
    return resp.json()


@pytest.fixture(scope="session")
def userns_remapped(engine_info: dict[str, Any]) -> bool:
    """Whether the daemon runs containers in a remapped user namespace (`name=userns` in SecurityOptions)."""
    return any(str(opt).startswith("name=userns") for opt in engine_info.get("SecurityOptions") or [])


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
