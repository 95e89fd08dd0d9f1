"""Block I/O weight (HostConfig.BlkioWeight): applied where the kernel offers weights, never dropped silently."""

from __future__ import annotations

import os

import pytest

from conformance.client import ApiClient
from conformance.host import Host
from conformance.resources import Containers

from . import files
from .conftest import Cgroups

WEIGHT = 300


def _weight(cg: Cgroups, pid: int) -> tuple[files.Expect, str] | None:
    """The first weight file the container's blkio/io cgroup offers and its content (None: the kernel has none)."""
    for expect in files.blkio_weight(cg.version, WEIGHT):
        try:
            return expect, cg.host_raw(pid, expect)
        except FileNotFoundError:
            continue
    return None


@pytest.mark.req("cgroups.blkio.weight-applied")
@pytest.mark.deviation("docker", cgroup_version=1, reason=(
    "dockerd 20.10 on cgroup v1 looks only for CFQ's blkio.weight in the root blkio hierarchy; kernels >= 5.0 "
    "have no CFQ, only BFQ's blkio.bfq.weight in child cgroups, so dockerd discards BlkioWeight with a warning "
    "although the container's cgroup offers a weight file the runtime could set"))
def test_blkio_weight(cg: Cgroups) -> None:
    cid = cg.containers.run_long(HostConfig={"BlkioWeight": WEIGHT})
    found = _weight(cg, cg.pid(cid))
    if found is None:
        pytest.skip(f"the kernel offers no block I/O weight here (none of "
                    f"{[e.file for e in files.blkio_weight(cg.version, WEIGHT)]} exists in the container's cgroup: "
                    "no CFQ/BFQ weight support), so no engine can apply BlkioWeight")
    expect, raw = found
    assert expect.accepts(raw), expect.explain(raw, "host side")


@pytest.mark.req("cgroups.blkio.weight-discard-warns")
def test_blkio_weight_not_dropped_silently(api: ApiClient, containers: Containers, cg: Cgroups) -> None:
    """Applied, or reported: a BlkioWeight the engine does not set must show up in the create answer's Warnings."""
    resp = api.post("/containers/create", containers.config(["sleep", "3600"], HostConfig={"BlkioWeight": WEIGHT}))
    if resp.status_code == 201:
        containers.adopt(resp.json()["Id"])
    assert resp.status_code == 201, (
        f"creating a container with BlkioWeight={WEIGHT} answered {resp.status_code} {resp.text[:200]!r}; expected 201")
    cid = resp.json()["Id"]
    warnings = resp.json().get("Warnings") or []
    containers.start(cid)
    found = _weight(cg, cg.pid(cid))
    if found is not None and found[0].accepts(found[1]):
        return  # applied: nothing to warn about
    where = f"{found[0].file} reads {found[1].strip()!r}" if found else "the cgroup has no weight file"
    assert any("weight" in w.lower() for w in warnings), (
        f"BlkioWeight={WEIGHT} was not applied ({where}) and the create answer's Warnings are {warnings!r}; a "
        "resource limit the engine discards must be reported as a warning, not dropped silently")


def _block_device() -> tuple[str, str] | None:
    """A whole disk of this host as (path, "major:minor"), not a loop, ram or zram device."""
    try:
        names = sorted(os.listdir("/sys/block"))
    except OSError:
        return None
    for name in names:
        if name.startswith(("loop", "ram", "zram", "nbd", "sr", "fd", "dm-", "md")):
            continue
        try:
            with open(f"/sys/block/{name}/dev") as fh:
                numbers = fh.read().strip()
        except OSError:
            continue
        if os.path.exists(f"/dev/{name}"):
            return f"/dev/{name}", numbers
    return None


@pytest.mark.req("cgroups.blkio.throttle-applied")
@pytest.mark.parametrize("field,rate", [("BlkioDeviceReadBps", 1 << 20), ("BlkioDeviceWriteBps", 2 << 20),
                                        ("BlkioDeviceReadIOps", 100), ("BlkioDeviceWriteIOps", 50)])
def test_blkio_throttle(cg: Cgroups, hostside: Host, field: str, rate: int) -> None:
    """(`hostside` first: on a remote target the check skips before this host's disks are looked at.)"""
    found = _block_device()
    if found is None:
        pytest.skip("this host has no whole disk (only loop/ram devices) to throttle")
    path, numbers = found
    cid = cg.containers.run_long(HostConfig={field: [{"Path": path, "Rate": rate}]})
    cg.assert_host(cg.pid(cid), files.blkio_throttle(cg.version, field, numbers, rate))
