"""The devices controller: Docker's default allow-list and HostConfig.DeviceCgroupRules.

A device node the container makes itself (mknod is allowed for all devices, "c *:* m") can be opened only
if the device cgroup allows it: the kernel then answers EPERM ("Operation not permitted") before any
driver is asked. Major 42 is reserved for demos and has no driver, so an allowed open of 42:0 reaches the
driver lookup and fails with ENXIO instead: the error tells which gate refused, without touching any real
device.
"""

from __future__ import annotations

import pytest

from . import files
from .conftest import Cgroups, needs

EPERM = "Operation not permitted"
ENXIO = "No such device or address"
# mknod a node and try to open it for reading; prints "open-ok" when the open succeeds.
OPEN = 'mknod /tmp/dev {kind} {major} {minor} && {{ head -c 1 /tmp/dev >/dev/null && echo open-ok; }}'


def _open_device(cg: Cgroups, kind: str, major: int, minor: int, **create: object) -> str:
    res = cg.containers.run_output(["sh", "-c", OPEN.format(kind=kind, major=major, minor=minor)], timeout=30,
                                   **create)
    return res.stdout + res.stderr


@pytest.mark.req("cgroups.devices.default-deny")
@pytest.mark.parametrize("kind,major,minor", [("c", 42, 0), ("b", 42, 0), ("b", 7, 0)],
                         ids=["char-42:0", "block-42:0", "block-loop0"])
def test_device_not_in_default_list_denied(cg: Cgroups, kind: str, major: int, minor: int) -> None:
    out = _open_device(cg, kind, major, minor)
    assert EPERM in out and "open-ok" not in out, (
        f"opening a {kind} {major}:{minor} node made inside a default container printed {out!r}; the device "
        f"cgroup must refuse it ({EPERM!r}): it is not on Docker's default allow-list")


@pytest.mark.req("cgroups.devices.default-allow")
@pytest.mark.parametrize("name,major,minor", [("null", 1, 3), ("zero", 1, 5), ("urandom", 1, 9)])
def test_default_device_allowed(cg: Cgroups, name: str, major: int, minor: int) -> None:
    out = _open_device(cg, "c", major, minor)
    assert EPERM not in out, (
        f"opening a /dev/{name} node (c {major}:{minor}) made inside the container printed {out!r}; "
        f"Docker's default device rules allow {name} (rwm)")


@pytest.mark.req("cgroups.devices.rule-allows")
def test_device_cgroup_rule_allows_open(cg: Cgroups) -> None:
    out = _open_device(cg, "c", 42, 0, HostConfig={"DeviceCgroupRules": ["c 42:* rmw"]})
    assert EPERM not in out and ENXIO in out, (
        f"with DeviceCgroupRules ['c 42:* rmw'] opening a c 42:0 node printed {out!r}; the device cgroup must "
        f"let the open through to the (absent) driver, which answers {ENXIO!r}")


@pytest.mark.req("cgroups.devices.rule-listed")
def test_device_cgroup_rule_listed(cg: Cgroups) -> None:
    listing = needs(files.devices_list(cg.version), cg.version, "the device allow-list (devices.list)")
    cid = cg.containers.run_long(HostConfig={"DeviceCgroupRules": ["c 42:* rmw"]})
    lines = cg.host_raw(cg.pid(cid), listing).splitlines()
    want = files.device_rule_line("c 42:* rmw")
    assert want in lines, (
        f"host side: devices.list of a container with DeviceCgroupRules ['c 42:* rmw'] is {lines!r}; "
        f"it must carry {want!r}")


@pytest.mark.req("cgroups.devices.list-not-wildcard")
def test_default_devices_list(cg: Cgroups) -> None:
    listing = needs(files.devices_list(cg.version), cg.version, "the device allow-list (devices.list)")
    cid = cg.containers.run_long()
    lines = cg.host_raw(cg.pid(cid), listing).splitlines()
    assert "a *:* rwm" not in lines, (
        f"host side: devices.list of an unprivileged container is {lines!r}; 'a *:* rwm' would allow every "
        "device of the host")
    for entry in ("c 1:3 rwm", "c 1:5 rwm", "c 1:9 rwm", "c 5:2 rwm", "c 136:* rwm"):
        assert entry in lines, (f"host side: devices.list {lines!r} lacks {entry!r}; Docker's default rules allow "
                                "null, zero, urandom, ptmx and the pts devices")
