"""Escape attempts from a default container that must fail: writing kernel tunables, loading modules,
reaching the host's disk, memory and kernel log, joining the host's namespaces, walking out of the
root filesystem, writing /sys, and mounting filesystems (directly or through a user namespace).

One default container (NetworkMode none) runs every attempt once per worker; each check reads the
outcome of its attempt. Every attempt is harmless even where it would succeed: tunables and /sys files
are only opened for writing (nothing is written), device nodes are read one byte at most, modules are
256 zero bytes the kernel cannot load, and mounts land in the container's own mount namespace.
"""

from __future__ import annotations

import pytest

from conformance.host import Host, peer_pid
from conformance.isolation.test_hardening import EPERM, Outcome, ProbeRun, make_probe_run, path_id
from conformance.resources import Containers
from conformance.target import Target

ABSENT = 99  # exit status of an attempt whose target the kernel does not have
PID_IN_CONTAINER = "conf: the PID exists in the container"

# Kernel tunables that hand the host to whoever writes them (core_pattern and modprobe/hotplug run
# programs as root on the host) or hurt it (sysrq, panic, drop_caches).
SYSCTLS = ("kernel/core_pattern", "kernel/modprobe", "kernel/hotplug", "kernel/sysrq", "kernel/panic",
           "vm/drop_caches")
# sysfs files: the uevent helper runs a host program; power/state suspends the machine.
SYS_FILES = ("/sys/kernel/uevent_helper", "/sys/power/state", "/sys/kernel/mm/transparent_hugepage/enabled",
             "/sys/class/net/lo/mtu")
# Raw memory and the kernel log as character devices (devices.txt): mem 1:1, kmem 1:2, kmsg 1:11.
RAW_DEVICES = {"mem": (1, 1), "kmem": (1, 2), "kmsg": (1, 11)}
# Paths that would lead above the container's root if it were a plain chroot: each must be the root itself.
ROOT_WALKS = {"dotdot": "stat -L -c %d:%i /..", "dotdot-deep": "stat -L -c %d:%i /../../../..",
              "proc-1-root": "stat -L -c %d:%i /proc/1/root", "proc-self-root-up": "stat -L -c %d:%i /proc/self/root/..",
              "proc-1-cwd-up": "stat -L -c %d:%i /proc/1/cwd/../../..",
              "chroot-proc-1-root": "chroot /proc/1/root /bin/stat -L -c %d:%i /.."}
MOUNTS = {"tmpfs": "-t tmpfs conf", "proc": "-t proc proc", "sysfs": "-t sysfs sysfs",
          "cgroup": "-t cgroup -o ro,memory cgroup", "bind-root": "--bind /"}


@pytest.fixture
def probe_run(containers: Containers, request: pytest.FixtureRequest) -> ProbeRun:
    return make_probe_run(containers, request)


def _writable_probe(path: str) -> str:
    # `: >>` opens for writing (O_APPEND) and writes nothing: whether the open succeeds is the whole test.
    return f"[ -e {path} ] || exit {ABSENT}; : >> {path}"


@pytest.fixture
def host_facts(request: pytest.FixtureRequest, target: Target) -> dict[str, object]:
    """What an attempt needs to know about the host: its root block device and the daemon's PID (None if unknown)."""
    facts: dict[str, object] = {"root_dev": None, "daemon_pid": None, "why": ""}
    try:
        hostside: Host = request.getfixturevalue("hostside")
    except (pytest.skip.Exception, AssertionError) as exc:
        # Skipped (remote target), or the harness's own host probe could not run a container: the attempts
        # that need host facts skip, the others still run (and fail in their own call if containers can't).
        facts["why"] = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return facts
    pid = peer_pid(target)
    facts["daemon_pid"] = pid
    for line in hostside.read(f"/proc/{pid or 'self'}/mountinfo").splitlines():
        parts = line.split()
        if len(parts) > 4 and parts[4] == "/":
            major, minor = parts[2].split(":")
            facts["root_dev"] = (int(major), int(minor)) if int(major) else None
            facts["why"] = "" if int(major) else f"the host's / is not on a block device ({line.split(' - ')[-1]})"
    return facts


def escape_probes() -> dict[str, str]:
    probes = {"root": "stat -L -c %d:%i /"}
    for name in SYSCTLS:
        probes["sysctl:" + name] = _writable_probe("/proc/sys/" + name)
    probes["sysrq-trigger"] = _writable_probe("/proc/sysrq-trigger")
    probes["module:insmod"] = "head -c 256 /dev/zero > /tmp/conf.ko && insmod /tmp/conf.ko"
    probes["module:rmmod"] = "rmmod conf_no_such_module"
    probes["nsenter:pid1"] = "nsenter -t 1 -m -u -n -i -p -- hostname"
    probes["shadow"] = ("for f in /proc/[0-9]*/root/etc/shadow /proc/1/root/../../etc/shadow /../../etc/shadow; "
                        "do cat $f 2>/dev/null; done; exit 0")
    for name, cmd in ROOT_WALKS.items():
        probes["walk:" + name] = cmd
    for path in SYS_FILES:
        probes["sys:" + path] = _writable_probe(path)
    for name, (major, minor) in RAW_DEVICES.items():
        probes["raw:" + name] = (f"if [ -e /dev/{name} ]; then echo /dev/{name} exists; exit 98; fi; "
                                 f"mknod /tmp/raw.{name} c {major} {minor} && head -c 1 /tmp/raw.{name} > /dev/null")
    probes["dmesg"] = "dmesg > /dev/null"
    for name, args in MOUNTS.items():
        probes["mount:" + name] = f"mkdir -p /tmp/mnt.{name} && mount {args} /tmp/mnt.{name}"
    probes["userns-mount"] = "mkdir -p /tmp/um && unshare -Urm sh -c 'mount -t tmpfs conf /tmp/um'"
    return probes


def escape_run(probe_run: ProbeRun) -> dict[str, Outcome]:
    """Every attempt that needs nothing from the host, in one default container per worker."""
    return probe_run(escape_probes(), shared="escape")


def host_run(probe_run: ProbeRun, facts: dict[str, object]) -> dict[str, Outcome]:
    """The attempts aimed at things of the host: its root disk and the daemon's namespaces."""
    probes = {}
    if facts["root_dev"]:
        major, minor = facts["root_dev"]  # type: ignore[misc]
        probes["hostdisk:mknod"] = f"mknod /tmp/hostroot b {major} {minor}"
        probes["hostdisk:read"] = "head -c 512 /tmp/hostroot > /dev/null"
        probes["hostdisk:mount"] = "mkdir -p /tmp/hostmnt && mount -o ro /tmp/hostroot /tmp/hostmnt"
    if facts["daemon_pid"]:
        pid = facts["daemon_pid"]
        # Whether the number names a process of the container's own PID namespace (a low host PID can):
        # then nsenter opens that process's namespaces and it is setns that must refuse.
        probes["nsenter:daemon"] = (f"[ -e /proc/{pid} ] && echo '{PID_IN_CONTAINER}'; "
                                    f"nsenter -t {pid} -m -u -n -i -p -- hostname")
    return probe_run(probes, shared="escape-host")


def _refused(got: Outcome, what: str, expected: str = EPERM) -> None:
    assert got.rc != 0, f"{what} SUCCEEDED from a default container: {got.describe()}"
    assert expected in got.out, f"{what} failed, but not with {expected!r} (the refusal expected): {got.describe()}"


# ---------------------------------------------------------------- kernel tunables


@pytest.mark.req("isolation.escape.sysctl-write")
@pytest.mark.parametrize("name", SYSCTLS, ids=path_id)
def test_sysctl_write(probe_run: ProbeRun, name: str) -> None:
    got = escape_run(probe_run)["sysctl:" + name]
    if got.rc == ABSENT:
        pytest.skip(f"the kernel has no /proc/sys/{name}")
    _refused(got, f"opening /proc/sys/{name} for writing", "Read-only file system")


@pytest.mark.req("isolation.escape.sysrq-trigger")
def test_sysrq_trigger(probe_run: ProbeRun) -> None:
    got = escape_run(probe_run)["sysrq-trigger"]
    if got.rc == ABSENT:
        pytest.skip("the kernel has no /proc/sysrq-trigger (no CONFIG_MAGIC_SYSRQ)")
    _refused(got, "opening /proc/sysrq-trigger for writing", "Read-only file system")


# ---------------------------------------------------------------- modules


@pytest.mark.req("isolation.escape.module-load")
@pytest.mark.parametrize("how", ["insmod", "rmmod"])
def test_module_load(probe_run: ProbeRun, how: str) -> None:
    got = escape_run(probe_run)["module:" + how]
    _refused(got, f"{how} (init_module/delete_module)")


# ---------------------------------------------------------------- the host's disk, memory, kernel log


@pytest.mark.req("isolation.escape.host-disk")
@pytest.mark.parametrize("how", ["read", "mount"])
def test_host_disk(probe_run: ProbeRun, host_facts: dict[str, object], how: str) -> None:
    if not host_facts["root_dev"]:
        pytest.skip(f"the host's root block device is not known: {host_facts['why']}")
    found = host_run(probe_run, host_facts)
    made = found["hostdisk:mknod"]
    assert made.rc == 0, (f"the control failed: mknod of the host's root device {host_facts['root_dev']} needs only "
                          f"CAP_MKNOD, which a default container has: {made.describe()}")
    what = ("reading the host's root disk through a node made in the container" if how == "read"
            else "mounting the host's root disk (read-only) in the container")
    _refused(found["hostdisk:" + how], what, EPERM if how == "read" else "are you root")


@pytest.mark.req("isolation.escape.raw-memory")
@pytest.mark.parametrize("dev", sorted(RAW_DEVICES))
def test_raw_memory(probe_run: ProbeRun, dev: str) -> None:
    got = escape_run(probe_run)["raw:" + dev]
    assert got.rc != 98, f"a default container has /dev/{dev}: {got.describe()}"
    _refused(got, f"opening a /dev/{dev} node ({RAW_DEVICES[dev][0]}:{RAW_DEVICES[dev][1]}) made in the container")


@pytest.mark.req("isolation.escape.kernel-log")
def test_kernel_log(probe_run: ProbeRun) -> None:
    _refused(escape_run(probe_run)["dmesg"], "reading the kernel log with dmesg (syslog(2))")


# ---------------------------------------------------------------- namespaces and the root


@pytest.mark.req("isolation.escape.nsenter")
@pytest.mark.parametrize("whom", ["pid1", "daemon"])
def test_nsenter(probe_run: ProbeRun, request: pytest.FixtureRequest, whom: str) -> None:
    if whom == "pid1":
        got, target = escape_run(probe_run)["nsenter:pid1"], "PID 1 (the container's own init)"
    else:
        facts = request.getfixturevalue("host_facts")
        if not facts["daemon_pid"]:
            pytest.skip(f"the daemon's host PID is not known: {facts['why'] or 'not a unix-socket target'}")
        got, target = host_run(probe_run, facts)["nsenter:daemon"], f"the daemon's host PID {facts['daemon_pid']}"
    # The daemon's host PID is not in the container's PID namespace: /proc/<pid>/ns is not there (ENOENT).
    # Where that number is also a PID in the container (PID 1 always is), nsenter opens the namespaces of
    # a process of the container's own, and setns must refuse: joining any namespace, even one's own,
    # needs CAP_SYS_ADMIN, which a default container lacks (EPERM).
    in_container = whom == "pid1" or PID_IN_CONTAINER in got.out
    expected = EPERM if in_container else "No such file or directory"
    if whom == "daemon" and in_container:
        target += " (a number that names a process of the container's own PID namespace too)"
    _refused(got, f"nsenter -t into the namespaces of {target}", expected)


@pytest.mark.req("isolation.escape.proc-root-shadow")
def test_proc_root_shadow(probe_run: ProbeRun) -> None:
    got = escape_run(probe_run)["shadow"]
    assert not got.out.strip(), (
        f"a default container read an /etc/shadow through /proc/<pid>/root or ../ ({got.out[:80]!r}...); the probe "
        "image has none, so it came from outside the container")


@pytest.mark.req("isolation.escape.root-walk")
@pytest.mark.parametrize("walk", sorted(ROOT_WALKS))
def test_root_walk(probe_run: ProbeRun, walk: str) -> None:
    found = escape_run(probe_run)
    root, got = found["root"], found["walk:" + walk]
    assert root.rc == 0 and got.rc == 0, f"stat failed: {root.describe()}; {got.describe()}"
    assert got.out == root.out, (
        f"`{ROOT_WALKS[walk]}` is {got.out} (device:inode) but the container's / is {root.out}: the path leads out "
        "of the container's root; its root must be the root of its mount namespace (pivot_root, not chroot)")


@pytest.mark.req("isolation.escape.sys-write")
@pytest.mark.parametrize("path", SYS_FILES, ids=path_id)
def test_sys_write(probe_run: ProbeRun, path: str) -> None:
    got = escape_run(probe_run)["sys:" + path]
    if got.rc == ABSENT:
        pytest.skip(f"the kernel has no {path}")
    _refused(got, f"opening {path} for writing", "Read-only file system")


# ---------------------------------------------------------------- mounts


@pytest.mark.req("isolation.escape.mount")
@pytest.mark.parametrize("kind", sorted(MOUNTS))
def test_mount(probe_run: ProbeRun, kind: str) -> None:
    got = escape_run(probe_run)["mount:" + kind]
    # busybox mount reports EPERM as "permission denied (are you root?)"
    _refused(got, f"mount {MOUNTS[kind]} in a default container", "are you root")


@pytest.mark.req("isolation.escape.userns-mount")
def test_userns_mount(probe_run: ProbeRun) -> None:
    _refused(escape_run(probe_run)["userns-mount"],
             "getting CAP_SYS_ADMIN through a new user namespace (unshare -Urm) and mounting a tmpfs")

