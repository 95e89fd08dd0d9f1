"""Mount namespace isolation and bind-mount propagation.

A mount made inside a container stays in its mount namespace; bind mounts carry the propagation
mode asked for (Binds `src:dst:<mode>`, Mounts BindOptions.Propagation; rprivate by default).
Propagation is checked in both directions on a host tmpfs with shared propagation that the
`shared_mount` fixture creates: `/` is a private mount on some hosts (dockerd then refuses
rshared/rslave binds), and a shared source of our own makes every mode testable. Mount
propagation happens inside the mount(2) call, so one look right after it is enough.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from typing import Any

import pytest

from conformance.client import ApiClient
from conformance.host import Host
from conformance.resources import Containers

PRIVILEGED_MOUNT = {"CapAdd": ["SYS_ADMIN"], "SecurityOpt": ["apparmor=unconfined"]}


def _poll(fn: Callable[[], Any], timeout: float = 10, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def _marker(what: str) -> str:
    return f"conf-{what}-{random.randrange(16**8):08x}"


def _pid(containers: Containers, cid: str) -> int:
    pid = containers.inspect(cid)["State"].get("Pid") or 0
    assert pid > 0, f"container {cid[:12]} should be running, but State.Pid is {pid}"
    return pid


def _line(mountinfo: str, mountpoint: str) -> str | None:
    """The last mountinfo line mounted at `mountpoint`."""
    found = None
    for line in mountinfo.splitlines():
        parts = line.split()
        if len(parts) > 4 and parts[4] == mountpoint:
            found = line
    return found


def _propagation_tags(line: str) -> list[str]:
    """The optional fields (shared:N, master:N, propagate_from:N, unbindable) of a mountinfo line."""
    return line.split(" - ", 1)[0].split()[6:]


def _sources(mountinfo: str) -> set[str]:
    """Mount sources (the field after the fstype) in a mountinfo text."""
    out = set()
    for line in mountinfo.splitlines():
        right = line.split(" - ", 1)[1].split() if " - " in line else []
        if len(right) > 1:
            out.add(right[1])
    return out


# ---------------------------------------------------------------- mounts made inside a container


@pytest.fixture
def inner_mount(containers: Containers) -> tuple[str, str]:
    """A running container that mounted a tmpfs (source = a unique marker) on /mnt/x; (id, marker)."""
    marker = _marker("inner")
    cid = containers.run(["sh", "-c", f"mkdir -p /mnt/x && mount -t tmpfs {marker} /mnt/x && exec sleep 3600"],
                         HostConfig=PRIVILEGED_MOUNT)

    def mounted() -> bool:
        res = containers.exec(cid, ["cat", "/proc/self/mountinfo"])
        return marker in _sources(res.stdout)

    if not _poll(mounted):
        state = containers.inspect(cid)["State"]
        pytest.fail(f"the container (CAP_SYS_ADMIN) never showed its own tmpfs {marker} on /mnt/x (running: "
                    f"{state['Running']}, exit code {state['ExitCode']}, output {containers.output(cid)[-300:]!r})")
    return cid, marker


@pytest.mark.req("isolation.ns.mnt-container-mount-invisible-on-host")
def test_mnt_container_mount_invisible_on_host(containers: Containers, hostside: Host, daemon_pid: int | None,
                                               inner_mount: tuple[str, str]) -> None:
    cid, marker = inner_mount
    assert marker in _sources(hostside.read(f"/proc/{_pid(containers, cid)}/mountinfo")), (
        "the host does not see the tmpfs in the container's own mount table either")
    views = ["/proc/self/mountinfo"] + ([f"/proc/{daemon_pid}/mountinfo"] if daemon_pid else [])
    for view in views:
        assert marker not in _sources(hostside.read(view)), (
            f"the tmpfs {marker} mounted inside the container shows in the host's {view}; a mount made in the "
            "container's mount namespace must stay there")


@pytest.mark.req("isolation.ns.mnt-container-mount-invisible-to-other-container")
def test_mnt_container_mount_invisible_to_other(containers: Containers, inner_mount: tuple[str, str]) -> None:
    _cid, marker = inner_mount
    res = containers.run_output(["cat", "/proc/self/mountinfo"])
    assert res.exit_code == 0, res.describe()
    assert marker not in _sources(res.stdout), (
        f"another container's mount table lists the tmpfs {marker} mounted inside the first one; each "
        "container has its own mount namespace")


# ---------------------------------------------------------------- bind propagation


def _bind(how: str, src: str, mode: str | None) -> dict[str, Any]:
    if how == "Binds":
        return {"Binds": [f"{src}:/data" + (f":{mode}" if mode else "")]}
    opts = {"BindOptions": {"Propagation": mode}} if mode else {}
    return {"Mounts": [{"Type": "bind", "Source": src, "Target": "/data", **opts}]}


def _start_with_bind(containers: Containers, src: str, how: str, mode: str | None,
                     extra: dict[str, Any] | None = None) -> str:
    os.makedirs(os.path.join(src, "sub"), exist_ok=True)
    cid = containers.run_long(HostConfig={**_bind(how, src, mode), **(extra or {})})
    res = containers.exec(cid, ["cat", "/proc/self/mountinfo"])
    line = _line(res.stdout, "/data")
    assert line, f"/data is not a mount point in the container: {res.describe()}"
    if "conf-iso-prop" not in _sources(line):
        pytest.skip("the daemon does not see the tmpfs this check mounted on the host (it runs in another "
                    f"mount namespace): /data is {line!r}")
    return cid


@pytest.mark.req("isolation.ns.mnt-bind-default-rprivate")
@pytest.mark.parametrize("how", ["Binds", "Mounts"])
def test_mnt_bind_default_rprivate(containers: Containers, shared_mount: str, how: str) -> None:
    cid = _start_with_bind(containers, shared_mount, how, None)
    mounts = [m for m in containers.inspect(cid)["Mounts"] if m.get("Destination") == "/data"]
    assert mounts and mounts[0].get("Propagation") == "rprivate", (
        f"inspect Mounts for a {how} bind without a mode: {mounts}; Docker's default propagation is rprivate")
    line = _line(containers.exec(cid, ["cat", "/proc/self/mountinfo"]).stdout, "/data") or ""
    tags = [t for t in _propagation_tags(line) if t.startswith(("shared:", "master:"))]
    assert not tags, (f"/data (bound from a shared host mount without a mode) is {line!r}: tags {tags}; "
                      "an rprivate mount has no peer group and no master")


# (how, mode, host mounts reach the container, container mounts reach the host)
PROPAGATION = [
    ("Binds", None, False, False),
    ("Binds", "private", False, False),
    ("Binds", "rslave", True, False),
    ("Binds", "slave", True, False),
    ("Binds", "rshared", True, True),
    ("Mounts", "rslave", True, False),
    ("Mounts", "rshared", True, True),
]

OUTWARD = [p for p in PROPAGATION if p[0] == "Binds" and p[1] in (None, "rslave", "rshared")]


def _pid_of(how: str, mode: str | None) -> str:
    return f"{how}-{mode or 'default'}"


@pytest.mark.req("isolation.ns.mnt-propagation-host-to-container")
@pytest.mark.parametrize("how,mode,inward", [(h, m, i) for h, m, i, _o in PROPAGATION],
                         ids=[_pid_of(h, m) for h, m, _i, _o in PROPAGATION])
def test_mnt_propagation_host_to_container(containers: Containers, hostside: Host, shared_mount: str,
                                           how: str, mode: str | None, inward: bool) -> None:
    cid = _start_with_bind(containers, shared_mount, how, mode)
    marker = _marker("hostmnt")
    res = hostside.run("mount", "-t", "tmpfs", "-o", "size=1m", marker, os.path.join(shared_mount, "sub"))
    assert res.rc == 0, f"mounting a tmpfs under the shared bind source on the host failed: {res.stderr}"
    inside = containers.exec(cid, ["cat", "/proc/self/mountinfo"])
    seen = marker in _sources(inside.stdout)
    assert seen == inward, (
        f"a tmpfs mounted on the host under the bind source after start is {'' if seen else 'not '}visible "
        f"in the container (/data/sub) with propagation {mode or 'default (rprivate)'} via {how}; expected "
        f"{'visible: slave and shared binds receive' if inward else 'invisible: private binds receive nothing'}")


@pytest.mark.req("isolation.ns.mnt-propagation-container-to-host")
@pytest.mark.parametrize("how,mode,outward", [(h, m, o) for h, m, _i, o in OUTWARD],
                         ids=[_pid_of(h, m) for h, m, _i, _o in OUTWARD])
def test_mnt_propagation_container_to_host(containers: Containers, hostside: Host, shared_mount: str,
                                           how: str, mode: str | None, outward: bool) -> None:
    cid = _start_with_bind(containers, shared_mount, how, mode, PRIVILEGED_MOUNT)
    marker = _marker("ctrmnt")
    res = containers.exec(cid, ["mount", "-t", "tmpfs", "-o", "size=1m", marker, "/data/sub"])
    assert res.exit_code == 0, f"mounting a tmpfs on /data/sub inside (CAP_SYS_ADMIN): {res.describe()}"
    seen = marker in _sources(hostside.read("/proc/self/mountinfo"))
    assert seen == outward, (
        f"a tmpfs mounted inside the container on /data/sub is {'' if seen else 'not '}visible on the host "
        f"with propagation {mode or 'default (rprivate)'}; expected "
        f"{'visible: shared binds send mounts back to the host' if outward else 'invisible: only shared binds propagate back'}")


@pytest.mark.req("isolation.ns.mnt-rshared-private-source-refused")
def test_mnt_rshared_private_source_refused(api: ApiClient, containers: Containers, hostside: Host,
                                            host_tmpdir: str) -> None:
    # The mount that holds host_tmpdir: the longest mount point that is a prefix of it.
    best, best_len = "", -1
    for line in hostside.read("/proc/self/mountinfo").splitlines():
        point = line.split()[4]
        if (host_tmpdir == point or host_tmpdir.startswith(point.rstrip("/") + "/")) and len(point) >= best_len:
            best, best_len = line, len(point)
    if any(t.startswith(("shared:", "master:")) for t in _propagation_tags(best)):
        pytest.skip(f"{host_tmpdir} is on a shared or slave host mount ({best!r}): rshared would work there")
    body = containers.config(["true"], HostConfig={"Binds": [f"{host_tmpdir}:/data:rshared"]})
    resp = api.post("/containers/create", body)
    if resp.status_code == 201:
        cid = containers.adopt(resp.json()["Id"])
        resp = api.post(f"/containers/{cid}/start")
        assert resp.status_code >= 400, (
            f"a container with an rshared bind of {host_tmpdir}, which sits on a private host mount, started; "
            "propagation back to the host can't work there and Docker refuses it")
    assert "shared" in resp.text, f"the refusal ({resp.status_code}) does not name the reason: {resp.text[:200]!r}"
