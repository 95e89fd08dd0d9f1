"""The container's filesystem: pivot_root, /proc, /dev, /sys, mounts, masked and read-only paths."""

from __future__ import annotations

import os

import pytest

from refengine.libcontainer import DOCKER_READONLY_PATHS, Device, Mount, StartError, default_mounts
from refengine.libcontainer.rootfs import parse_options, secure_join

DEV_ENTRIES = {"null", "zero", "full", "random", "urandom", "tty", "fd", "stdin", "stdout", "stderr", "ptmx",
               "pts", "shm", "mqueue"}


def mountinfo_at(text: str, path: str) -> list[list[str]]:
    return [p for p in (line.split() for line in text.splitlines()) if len(p) > 5 and p[4] == path]


def test_root_is_the_rootfs(lc, rootfs) -> None:
    with open(os.path.join(rootfs, "marker"), "w") as fh:
        fh.write("inside")
    rc, out = lc.run("cat /marker; ls /")
    assert out.startswith("inside")
    assert "lc-host-only" not in out


def test_old_root_is_gone(lc) -> None:
    rc, out = lc.run("cat /proc/self/mountinfo")
    mps = [line.split()[4] for line in out.splitlines()]
    assert mps[0] == "/", "the first mount is the new root"
    assert not any(mp.startswith("/work") or mp.startswith("/tmp/pytest") for mp in mps), mps


def test_proc_dev_sys(lc) -> None:
    rc, out = lc.run("ls -A /dev; echo ---; cat /proc/self/mountinfo")
    dev, _, info = out.partition("---\n")
    entries = set(dev.split())
    assert DEV_ENTRIES <= entries and entries - DEV_ENTRIES <= {"core", "console"}, sorted(entries)
    assert "proc" in mountinfo_at(info, "/proc")[0]
    sys_mount = mountinfo_at(info, "/sys")[0]
    assert sys_mount[5].startswith("ro"), sys_mount
    pts = mountinfo_at(info, "/dev/pts")[0]
    assert "ptmxmode=666" in pts[-1] and "gid=5" in pts[-1]
    shm = mountinfo_at(info, "/dev/shm")[0]
    assert "size=65536k" in shm[-1] and "noexec" in shm[5]
    assert mountinfo_at(info, "/dev/mqueue")[0][8] == "mqueue"
    devm = mountinfo_at(info, "/dev")[0]
    assert devm[8] == "tmpfs" and "mode=755" in devm[-1]


@pytest.mark.parametrize("node,numbers", [("null", "1:3"), ("zero", "1:5"), ("full", "1:7"), ("random", "1:8"),
                                          ("urandom", "1:9"), ("tty", "5:0")])
def test_default_nodes(lc, node: str, numbers: str) -> None:
    rc, out = lc.run(f"stat -c '%F %t:%T %a %u:%g' /dev/{node}")
    major, minor = numbers.split(":")
    assert out.strip() == f"character special file {int(major):x}:{int(minor):x} 666 0:0"


def test_dev_links_and_devices_work(lc) -> None:
    rc, out = lc.run("for l in fd stdin stdout stderr ptmx; do readlink /dev/$l; done; echo x > /dev/null; "
                     "head -c 4 /dev/zero | wc -c; head -c 4 /dev/urandom | wc -c; find /dev -type b | wc -l")
    assert out.split() == ["/proc/self/fd", "/proc/self/fd/0", "/proc/self/fd/1", "/proc/self/fd/2", "pts/ptmx",
                           "4", "4", "0"]


def test_shm_size_and_no_ipc_shm(lc) -> None:
    rc, out = lc.run("df -k /dev/shm | tail -1", mounts=default_mounts(shm_size=32 << 20))
    assert out.split()[1] == "32768"
    rc, out = lc.run("ls /dev", mounts=default_mounts(ipc_none=True))
    assert "shm" not in out.split()


def test_extra_device(lc) -> None:
    rc, out = lc.run("stat -c '%F %t:%T' /dev/xnull; echo hi > /dev/xnull && echo ok",
                     devices=[Device("/dev/xnull", "c", 1, 3)])
    assert out.split("\n")[:2] == ["character special file 1:3", "ok"]


def test_masked_paths(lc) -> None:
    rc, out = lc.run("cat /proc/self/mountinfo; echo ---; wc -c < /proc/keys; ls -A /sys/firmware | wc -l; "
                     "cat /proc/timer_list | wc -c; touch /sys/firmware/x 2>&1")
    info, _, rest = out.partition("---\n")
    lines = rest.split("\n")
    assert mountinfo_at(info, "/proc/keys") and lines[0] == "0"
    assert lines[1] == "0" and mountinfo_at(info, "/sys/firmware")[-1][5].startswith("ro")
    assert lines[2] == "0"
    assert "Read-only file system" in rest


def test_readonly_paths(lc) -> None:
    rc, out = lc.run("cat /proc/self/mountinfo; echo ---; echo 1 > /proc/sys/kernel/ns_last_pid 2>&1; "
                     "echo 1 > /proc/sys/net/ipv4/ip_forward 2>&1")
    info, _, rest = out.partition("---\n")
    for path in DOCKER_READONLY_PATHS:
        if os.path.exists(path):
            assert mountinfo_at(info, path)[-1][5].split(",")[0] == "ro", path
    assert rest.count("Read-only file system") == 2


def test_custom_masked_paths_replace_the_default(lc) -> None:
    rc, out = lc.run("cat /etc/group | wc -c; cat /proc/self/mountinfo", masked_paths=["/etc/group"])
    assert out.split("\n")[0] == "0"
    assert not mountinfo_at(out, "/proc/keys") and mountinfo_at(out, "/proc/sys")


def test_systempaths_unconfined(lc) -> None:
    rc, out = lc.run(": >> /proc/sys/net/ipv4/ip_forward && echo writable; cat /proc/self/mountinfo",
                     masked_paths=[], readonly_paths=[])
    assert out.startswith("writable")
    assert not mountinfo_at(out, "/proc/sys") and not mountinfo_at(out, "/proc/keys")


def test_readonly_rootfs(lc) -> None:
    mounts = default_mounts() + [Mount("/scratch", "tmpfs", "tmpfs", ["size=1m"])]
    rc, out = lc.run("touch /x 2>&1; touch /tmp/x 2>&1; touch /dev/shm/x && echo shm-ok; touch /scratch/x && "
                     "echo scratch-ok", readonly_rootfs=True, mounts=mounts)
    assert out.count("Read-only file system") == 2
    assert "shm-ok" in out and "scratch-ok" in out


def test_bind_mounts(lc, tmp_path) -> None:
    src = tmp_path / "data"
    src.mkdir()
    (src / "f").write_text("from host")
    single = tmp_path / "single.txt"
    single.write_text("one file")
    mounts = default_mounts() + [
        Mount("/data", "bind", str(src), ["rbind"]),
        Mount("/ro", "bind", str(src), ["rbind", "ro"]),
        Mount("/etc/single.txt", "bind", str(single), ["bind", "ro"]),
    ]
    rc, out = lc.run("cat /data/f; echo; echo new > /data/g && echo rw-ok; touch /ro/h 2>&1; cat /etc/single.txt",
                     mounts=mounts)
    assert out.startswith("from host\nrw-ok\n")
    assert "Read-only file system" in out and out.endswith("one file")
    assert (src / "g").read_text() == "new\n"


def test_bind_ro_keeps_locked_flags(lc, tmp_path) -> None:
    """A read-only remount of a bind keeps nosuid/nodev/noexec it was given."""
    src = tmp_path / "d"
    src.mkdir()
    mounts = default_mounts() + [Mount("/d", "bind", str(src), ["rbind", "ro", "nosuid", "nodev", "noexec"])]
    rc, out = lc.run("cat /proc/self/mountinfo", mounts=mounts)
    opts = mountinfo_at(out, "/d")[0][5].split(",")
    assert {"ro", "nosuid", "nodev", "noexec"} <= set(opts)


def test_symlink_cannot_escape_the_rootfs(lc, rootfs, tmp_path) -> None:
    """A destination through a symlink pointing out of the rootfs stays inside it."""
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(str(outside), os.path.join(rootfs, "evil"))
    mounts = default_mounts() + [Mount("/evil/x", "tmpfs", "tmpfs", ["size=1m"])]
    rc, out = lc.run("cat /proc/self/mountinfo", mounts=mounts)
    assert rc == 0
    assert not os.path.exists(outside / "x"), "the mount point was created outside the rootfs"
    assert any(line.split()[4] == str(outside) + "/x" for line in out.splitlines()), out


def test_secure_join(tmp_path) -> None:
    root = str(tmp_path)
    os.symlink("/etc", os.path.join(root, "abs"))
    os.symlink("../../..", os.path.join(root, "up"))
    os.makedirs(os.path.join(root, "a/b"))
    os.symlink("b", os.path.join(root, "a/rel"))
    assert secure_join(root, "/abs/passwd") == root + "/etc/passwd"
    assert secure_join(root, "/up/etc") == root + "/etc"
    assert secure_join(root, "/../../x") == root + "/x"
    assert secure_join(root, "/a/rel/c") == root + "/a/b/c"
    os.symlink("loop", os.path.join(root, "loop"))
    with pytest.raises(OSError):
        secure_join(root, "/loop/x")


def test_parse_options() -> None:
    flags, clear, prop, data = parse_options(["ro", "nosuid", "rbind", "rslave", "size=1m", "mode=755"])
    from refengine.libcontainer import syscalls as sc

    assert flags == sc.MS_RDONLY | sc.MS_NOSUID | sc.MS_BIND | sc.MS_REC
    assert prop == [sc.MS_SLAVE | sc.MS_REC] and data == "size=1m,mode=755"
    flags, clear, _, _ = parse_options(["ro", "rw"])
    assert flags == 0 and clear == sc.MS_RDONLY


def test_sysctl(lc) -> None:
    rc, out = lc.run("cat /proc/sys/kernel/shmmni /proc/sys/net/ipv4/ip_unprivileged_port_start",
                     sysctl={"kernel.shmmni": "1234", "net.ipv4.ip_unprivileged_port_start": "80"})
    assert out.split() == ["1234", "80"]
    with open("/proc/sys/kernel/shmmni") as fh:
        assert fh.read().strip() != "1234"


def test_mount_failure_is_reported(lc, tmp_path) -> None:
    mounts = default_mounts() + [Mount("/x", "bind", str(tmp_path / "does-not-exist"), ["rbind"])]
    with pytest.raises(StartError) as ei:
        lc.make(["true"], mounts=mounts).start()
    assert ei.value.exit_code == 128 and "/x" in ei.value.message and "No such file" in ei.value.message


def test_no_mounts_leak_to_the_host(lc, rootfs) -> None:
    c = lc.start(["sleep", "30"])
    with open("/proc/self/mountinfo") as fh:
        assert rootfs not in fh.read()
    c.destroy()


def test_rootfs_propagation_option_accepted(lc) -> None:
    rc, out = lc.run("cat /proc/self/mountinfo", rootfs_propagation="rprivate")
    root = mountinfo_at(out, "/")[0]
    assert not any(f.startswith(("shared:", "master:")) for f in root[6:root.index("-")])
