"""Bind propagation checks on a given mount table, and block I/O throttles from a HostConfig (no kernel)."""

from __future__ import annotations

import os

import pytest

from refengine.libcontainer import propagation
from refengine.libcontainer.cgroups import Resources, resources_from_host_config
from refengine.libcontainer.cgroups.resources import Throttle
from refengine.libcontainer.cgroups.v1 import V1Cgroup
from refengine.libcontainer.config import HostSetupError

MOUNTINFO = """\
21 1 254:0 / / rw,relatime - ext4 /dev/vda rw
30 21 0:40 / /srv/shared rw,relatime shared:7 - tmpfs t rw
31 30 0:41 / /srv/shared/slave rw,relatime master:7 - tmpfs t rw
32 21 0:42 / /srv/with\\040space rw,relatime shared:9 - tmpfs t rw
"""


@pytest.fixture
def mountinfo(tmp_path) -> str:
    f = tmp_path / "mountinfo"
    f.write_text(MOUNTINFO)
    return str(f)


@pytest.mark.parametrize("path,point,shared,slave", [
    ("/srv/shared/x/y", "/srv/shared", True, False),
    ("/srv/shared/slave/z", "/srv/shared/slave", False, True),
    ("/srv/sharedness", "/", False, False),   # a prefix of the name is not a parent directory
    ("/srv/with space/a", "/srv/with space", True, False),
])
def test_mount_of(mountinfo: str, path: str, point: str, shared: bool, slave: bool) -> None:
    m = propagation.mount_of(path, mountinfo)
    assert (m.mountpoint, m.shared, m.slave) == (point, shared, slave)


def test_require(mountinfo: str) -> None:
    propagation.require("/srv/shared/a", shared_only=True, mountinfo=mountinfo)
    propagation.require("/srv/shared/slave/a", shared_only=False, mountinfo=mountinfo)
    with pytest.raises(HostSetupError, match="is mounted on /srv/shared/slave but it is not a shared mount"):
        propagation.require("/srv/shared/slave/a", shared_only=True, mountinfo=mountinfo)
    with pytest.raises(HostSetupError, match="is mounted on / but it is not a shared or slave mount"):
        propagation.require("/etc", shared_only=False, mountinfo=mountinfo)


def _block_device() -> str | None:
    for name in sorted(os.listdir("/sys/block")):
        if os.path.exists(f"/dev/{name}") and os.path.isfile(f"/sys/block/{name}/dev"):
            return f"/dev/{name}"
    return None


def test_throttles_from_host_config() -> None:
    dev = _block_device()
    if dev is None:
        pytest.skip("no block device node under /dev to take numbers from")
    st = os.stat(dev)
    r = resources_from_host_config({"BlkioDeviceReadBps": [{"Path": dev, "Rate": 1 << 20}],
                                    "BlkioDeviceWriteIOps": [{"Path": dev, "Rate": 50}]})
    assert r.blkio_throttle == [Throttle("read_bps", os.major(st.st_rdev), os.minor(st.st_rdev), 1 << 20),
                                Throttle("write_iops", os.major(st.st_rdev), os.minor(st.st_rdev), 50)]
    with pytest.raises(ValueError, match="not a block device"):
        resources_from_host_config({"BlkioDeviceReadBps": [{"Path": "/dev/null", "Rate": 1}]})
    assert resources_from_host_config({}).blkio_throttle is None


def test_v1_writes_throttle_lines(tmp_path) -> None:
    """The v1 cgroup writes "major:minor rate" into the matching blkio.throttle file (a plain directory
    stands in for the cgroup here)."""
    d = tmp_path / "blkio"
    d.mkdir()
    for kind in ("read_bps", "write_iops"):
        (d / f"blkio.throttle.{kind}_device").write_text("")
    cg = V1Cgroup("x", "/refengine/x", {"blkio": str(d)})
    cg.apply(Resources(blkio_throttle=[Throttle("read_bps", 8, 0, 1024), Throttle("write_iops", 8, 16, 7)]))
    assert (d / "blkio.throttle.read_bps_device").read_text() == "8:0 1024"
    assert (d / "blkio.throttle.write_iops_device").read_text() == "8:16 7"
