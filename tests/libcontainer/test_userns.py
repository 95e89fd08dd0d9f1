"""User namespaces with remapping: container root is an unprivileged host id.

Runs as real root (the parent writes the maps). Nothing rootless is claimed or tested (see userns.py).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator

import pytest

from refengine.libcontainer import ConfigError, ExecConfig, IDMap, NamespaceSpec, StartError, userns
from refengine.libcontainer.config import default_namespaces

try:
    from .conftest import ns_inode
except ImportError:  # tests/libcontainer is not a package
    from conftest import ns_inode

BASE = 300000
MAPS = [IDMap(0, BASE, 65536)]


@pytest.fixture
def remapped(busybox_tree: str) -> Iterator[dict]:
    """A rootfs owned by the mapped range, under a directory the remapped root can traverse (pytest's
    tmp dirs are 0700 host-root: an unmapped owner, so no access from inside the namespace)."""
    top = tempfile.mkdtemp(prefix="refengine-userns-")
    os.chmod(top, 0o755)
    root = os.path.join(top, "rootfs")
    shutil.copytree(busybox_tree, root, symlinks=True)
    userns.chown_tree(root, MAPS, MAPS)
    yield {"rootfs": root, "namespaces": default_namespaces() + [NamespaceSpec("user")], "uid_mappings": MAPS,
           "gid_mappings": MAPS}
    shutil.rmtree(top)


def test_maps_and_identity(lc, remapped) -> None:
    rc, out = lc.run("cat /proc/self/uid_map /proc/self/gid_map; id -u; touch /tmp/made; ls -n /tmp/made",
                     **remapped)
    assert rc == 0, out
    lines = out.splitlines()
    assert lines[0].split() == ["0", str(BASE), "65536"] and lines[1].split() == ["0", str(BASE), "65536"]
    assert lines[2] == "0", "root inside"


def test_files_owned_by_the_host_range(lc, remapped) -> None:
    rootfs = remapped["rootfs"]
    rc, out = lc.run("touch /tmp/root-file; su probe -c 'touch /tmp/probe-file' 2>&1; echo done", **remapped)
    assert "done" in out
    st = os.stat(os.path.join(rootfs, "tmp/root-file"))
    assert (st.st_uid, st.st_gid) == (BASE, BASE)
    st = os.stat(os.path.join(rootfs, "tmp/probe-file"))
    assert st.st_uid == BASE + 1000


def test_namespace_is_new_and_caps_are_namespaced(lc, remapped) -> None:
    c = lc.start(["sleep", "60"], **remapped)
    assert ns_inode(c.pid, "user") != ns_inode("self", "user")
    with open(f"/proc/{c.pid}/status") as fh:
        st = {k.strip(): v.split() for k, _, v in (line.partition(":") for line in fh)}
    assert st["Uid"][0] == str(BASE), "the payload is an unprivileged host id"


def test_devices_are_bound_not_made(lc, remapped) -> None:
    rc, out = lc.run("stat -c '%t:%T' /dev/null /dev/zero /dev/tty; echo x > /dev/null && echo ok; "
                     "mknod /tmp/n c 1 3 2>&1; head -c 2 /dev/zero | wc -c", **remapped)
    assert out.split()[:4] == ["1:3", "1:5", "5:0", "ok"]
    assert "Operation not permitted" in out


def test_proc_sys_and_masks_inside(lc, remapped) -> None:
    rc, out = lc.run("cat /proc/self/mountinfo; hostname", hostname="remapped", **remapped)
    mps = {line.split()[4] for line in out.splitlines() if len(line.split()) > 5}
    assert {"/proc", "/sys", "/dev", "/dev/pts", "/proc/sys"} <= mps
    assert out.strip().endswith("remapped")


def test_host_root_files_are_unmapped(lc, remapped) -> None:
    from refengine.libcontainer import Mount, default_mounts

    secret = os.path.join(os.path.dirname(remapped["rootfs"]), "secret")
    with open(secret, "w") as fh:
        fh.write("host root only")
    os.chmod(secret, 0o600)
    mounts = default_mounts() + [Mount("/secret", "bind", secret, ["bind"])]
    rc, out = lc.run("ls -n /secret; cat /secret 2>&1", mounts=mounts, **remapped)
    assert out.split()[2] == "65534", "host root shows as the overflow uid"
    assert "Permission denied" in out


def test_exec_joins_the_user_namespace_first(lc, remapped) -> None:
    c = lc.start(["sleep", "60"], **remapped)
    p = c.exec(ExecConfig(["sleep", "60"], user="probe"))
    try:
        for kind in ("user", "mnt", "pid", "net", "ipc", "uts"):
            assert ns_inode(p.pid, kind) == ns_inode(c.pid, kind), kind
        with open(f"/proc/{p.pid}/status") as fh:
            uid = next(line for line in fh if line.startswith("Uid:")).split()[1]
        assert uid == str(BASE + 1000)
    finally:
        p.signal(9)
        p.wait(10)
        p.close()


def test_mapping_validation(lc) -> None:
    ns = default_namespaces() + [NamespaceSpec("user")]
    with pytest.raises(ConfigError, match="needs uid and gid mappings"):
        lc.make(["true"], namespaces=ns).start()
    with pytest.raises(ConfigError, match="need a new user namespace"):
        lc.make(["true"], uid_mappings=MAPS, gid_mappings=MAPS).start()
    with pytest.raises(ConfigError, match="overlapping"):
        lc.make(["true"], namespaces=ns, uid_mappings=[IDMap(0, BASE, 10), IDMap(5, BASE + 100, 10)],
                gid_mappings=MAPS).start()


def test_unmapped_user_fails(lc, remapped) -> None:
    with pytest.raises(StartError):
        lc.make(["true"], user="70000", **remapped).start()
