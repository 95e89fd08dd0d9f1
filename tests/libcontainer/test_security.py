"""Capabilities, no_new_privs and seccomp, read back from /proc/self/status and from refused syscalls."""

from __future__ import annotations

import base64
import subprocess
import sys

import pytest

from refengine.libcontainer import capabilities, seccomp
from refengine.libcontainer.capabilities import CapabilityError

DEFAULT = frozenset(capabilities.DOCKER_DEFAULT)


def status(text: str) -> dict[str, str]:
    return {k.strip(): v.strip() for k, sep, v in (line.partition(":") for line in text.splitlines()) if sep}


def caps(hexmask: str) -> frozenset[str]:
    return frozenset(capabilities.to_names(int(hexmask, 16)))


def run_status(lc, **kw) -> dict[str, str]:
    rc, out = lc.run(["cat", "/proc/self/status"], **kw)
    assert rc == 0, out
    return status(out)


# ---------------------------------------------------------------- capabilities


def test_default_capabilities(lc) -> None:
    st = run_status(lc)
    for field in ("CapEff", "CapPrm", "CapBnd"):
        assert caps(st[field]) == DEFAULT, field
    assert int(st["CapInh"], 16) == 0 and int(st["CapAmb"], 16) == 0


def test_cap_add_and_drop(lc) -> None:
    st = run_status(lc, cap_add=["NET_ADMIN", "cap_sys_ptrace"], cap_drop=["CHOWN", "CAP_MKNOD"])
    assert caps(st["CapEff"]) == (DEFAULT | {"NET_ADMIN", "SYS_PTRACE"}) - {"CHOWN", "MKNOD"}
    assert caps(st["CapBnd"]) == caps(st["CapEff"])


def test_cap_drop_all(lc) -> None:
    st = run_status(lc, cap_drop=["ALL"])
    for field in ("CapEff", "CapPrm", "CapBnd", "CapInh", "CapAmb"):
        assert int(st[field], 16) == 0, field
    st = run_status(lc, cap_drop=["ALL"], cap_add=["KILL"])
    assert caps(st["CapEff"]) == {"KILL"}


def test_cap_add_all(lc) -> None:
    st = run_status(lc, cap_add=["ALL"], cap_drop=["SYS_ADMIN"])
    assert caps(st["CapEff"]) == frozenset(capabilities.to_names(capabilities.bounding_set())) - {"SYS_ADMIN"}


def test_caps_are_enforced(lc) -> None:
    rc, out = lc.run("touch /tmp/f && chown 1000 /tmp/f && echo chown-ok; ip addr add 127.31.0.1/32 dev lo 2>&1")
    assert "chown-ok" in out and ("not permitted" in out.lower() or "permission denied" in out.lower())
    rc, out = lc.run("touch /tmp/f && chown 1000 /tmp/f 2>&1", cap_drop=["CHOWN"])
    assert rc != 0 and "not permitted" in out.lower()
    rc, out = lc.run("ip addr add 127.31.0.1/32 dev lo && echo net-admin-ok", cap_add=["NET_ADMIN"])
    assert "net-admin-ok" in out


@pytest.mark.parametrize("user", ["1000", "probe", "nobody"])
def test_nonroot_has_no_effective_caps(lc, user: str) -> None:
    st = run_status(lc, user=user)
    assert int(st["CapEff"], 16) == 0 and int(st["CapPrm"], 16) == 0 and int(st["CapAmb"], 16) == 0
    assert caps(st["CapBnd"]) == DEFAULT


def test_privileged(lc) -> None:
    rc, out = lc.run("cat /proc/self/status; cat /proc/self/mountinfo; ls /dev", privileged=True)
    st = status(out)
    held = capabilities.bounding_set()
    assert int(st["CapEff"], 16) == held and int(st["CapBnd"], 16) == held
    assert st["Seccomp"] == "0"
    assert " /proc/keys " not in out and " /proc/sys " not in out, "privileged: nothing masked or read-only"
    assert "loop-control" in out.split() or "kvm" in out.split() or "vda" in out.split()
    for mp in ("/sys", "/sys/fs/cgroup"):
        line = next(ln for ln in out.splitlines() if len(ln.split()) > 5 and ln.split()[4] == mp)
        assert line.split()[5].startswith("rw"), f"privileged: {mp} is read-write ({line})"


def test_cap_outside_our_bounding_set_refused() -> None:
    held = capabilities.bounding_set()
    missing = [n for i, n in enumerate(capabilities.NAMES[: capabilities.last_cap() + 1]) if not held >> i & 1]
    if not missing:
        pytest.skip("the engine holds every capability here")
    with pytest.raises(CapabilityError, match=missing[0]):
        capabilities.resolve(add=[missing[0]], available=held)


def test_resolve_rules() -> None:
    allcaps = (1 << 41) - 1
    assert capabilities.resolve(available=allcaps) == capabilities.to_mask(DEFAULT)
    assert capabilities.resolve(privileged=True, available=allcaps) == allcaps
    assert capabilities.resolve(add=["all"], drop=["chown"], available=allcaps) == allcaps & ~1
    assert capabilities.resolve(drop=["ALL"], add=["kill"], available=allcaps) == 1 << 5
    with pytest.raises(CapabilityError, match="unknown capability"):
        capabilities.resolve(add=["NOPE"], available=allcaps)


# ---------------------------------------------------------------- no_new_privs


def test_no_new_privs(lc) -> None:
    assert run_status(lc)["NoNewPrivs"] == "0", "Docker sets it only when asked"
    assert run_status(lc, no_new_privileges=True)["NoNewPrivs"] == "1"


# ---------------------------------------------------------------- seccomp


def test_default_seccomp_filter_loaded(lc) -> None:
    st = run_status(lc)
    assert st["Seccomp"] == "2" and int(st.get("Seccomp_filters", "1")) == 1
    assert run_status(lc, seccomp="unconfined")["Seccomp"] == "0"
    assert run_status(lc, seccomp=None)["Seccomp"] == "0"


def test_seccomp_blocks_unshare_user(lc) -> None:
    rc, out = lc.run("unshare -U true 2>&1")
    assert rc != 0 and "Operation not permitted" in out
    rc, out = lc.run("unshare -U true && echo ok", seccomp="unconfined")
    assert out.strip() == "ok", "control: without the profile unshare -U needs no capability"


def test_seccomp_follows_capabilities(lc) -> None:
    rc, out = lc.run("mkdir -p /tmp/m && mount -t tmpfs t /tmp/m 2>&1", cap_add=["SYS_ADMIN"])
    assert rc == 0, f"mount with CAP_SYS_ADMIN: {out}"
    rc, out = lc.run("mkdir -p /tmp/m && mount -t tmpfs t /tmp/m 2>&1")
    assert rc != 0


@pytest.mark.parametrize("cmd", ["swapon", "swapoff"])
def test_seccomp_blocks_swap_even_with_sys_admin(lc, cmd: str) -> None:
    rc, out = lc.run(f"touch /tmp/s && {cmd} /tmp/s 2>&1", cap_add=["SYS_ADMIN"])
    assert rc != 0 and "Operation not permitted" in out
    rc, out = lc.run(f"touch /tmp/s && {cmd} /tmp/s 2>&1", cap_add=["SYS_ADMIN"], seccomp="unconfined")
    assert "Operation not permitted" not in out, "control: without the profile the kernel answers otherwise"


def test_seccomp_with_no_new_privs_and_nonroot(lc) -> None:
    """The filter is loaded last (after the capabilities are dropped) when no_new_privs is set."""
    rc, out = lc.run("grep -E 'Seccomp:|NoNewPrivs' /proc/self/status; unshare -U true 2>&1",
                     user="probe", no_new_privileges=True)
    assert "Seccomp:\t2" in out and "NoNewPrivs:\t1" in out and "Operation not permitted" in out


# The profile itself, loaded in a throwaway host process: syscalls busybox has no applet for.
PROBE = r"""
import ctypes, os, sys, base64
from refengine.libcontainer import syscalls as sc
prog = base64.b64decode(sys.argv[1])
libc = ctypes.CDLL(None, use_errno=True)
sc.prctl(sc.PR_SET_NO_NEW_PRIVS, 1)
sc.seccomp_set_filter(prog)
NR = {"keyctl": 250, "add_key": 248, "request_key": 249, "kexec_load": 246, "init_module": 175,
      "finit_module": 313, "delete_module": 176, "reboot": 169, "unshare": 272, "setns": 308, "mount": 165,
      "umount2": 166, "pivot_root": 155, "clone3": 435, "bpf": 321, "perf_event_open": 298, "acct": 163,
      "getpid": 39, "clone": 56, "settimeofday": 164, "userfaultfd": 323, "open_by_handle_at": 304}
out = {}
for name in sys.argv[2:]:
    if name == "clone-newuser":
        r = libc.syscall(56, 0x10000000 | 17, 0, 0, 0, 0)
    elif name == "clone3":
        r = libc.syscall(435, 0, 0)
    else:
        r = libc.syscall(NR[name], 0, 0, 0, 0, 0)
    out[name] = 0 if r >= 0 else ctypes.get_errno()
print(" ".join(f"{k}={v}" for k, v in out.items()))
"""


def probe_profile(cap_names: list[str], calls: list[str]) -> dict[str, int]:
    import os

    if os.uname().machine != "x86_64":
        pytest.skip("syscall numbers in the probe are x86_64's")
    prog = seccomp.program_for("default", capabilities.to_mask(cap_names))
    res = subprocess.run([sys.executable, "-c", PROBE, base64.b64encode(prog).decode(), *calls],
                         capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stderr
    return {k: int(v) for k, v in (kv.split("=") for kv in res.stdout.split())}


def test_default_profile_denies() -> None:
    always = ["keyctl", "add_key", "request_key", "kexec_load", "userfaultfd"]
    gated = ["init_module", "finit_module", "delete_module", "reboot", "unshare", "setns", "mount", "umount2",
             "pivot_root", "bpf", "perf_event_open", "acct", "settimeofday", "clone-newuser", "open_by_handle_at"]
    got = probe_profile(list(DEFAULT), always + gated + ["getpid", "clone3"])
    for name in always + gated:
        assert got[name] == 1, f"{name}: errno {got[name]}, expected EPERM"
    assert got["getpid"] == 0
    assert got["clone3"] == 38, "clone3 answers ENOSYS so glibc falls back to the filtered clone"


def test_default_profile_follows_caps() -> None:
    got = probe_profile(list(DEFAULT) + ["SYS_ADMIN", "SYS_MODULE", "SYS_BOOT"],
                        ["mount", "unshare", "init_module", "reboot", "keyctl", "clone3"])
    assert got["keyctl"] == 1, "keyctl stays refused whatever the capabilities"
    for name in ("mount", "unshare", "init_module", "reboot"):
        assert got[name] != 1, f"{name} should reach the kernel with its capability"
    assert got["clone3"] != 38, "with CAP_SYS_ADMIN clone3 reaches the kernel (EFAULT/EINVAL for a NULL struct)"


def test_custom_allowlist_profile(lc) -> None:
    """A Docker-format allowlist: everything not listed is refused with the default errno."""
    profile = {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1,
               "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
                            {"names": ["mkdir"], "action": "SCMP_ACT_ALLOW",
                             "includes": {"caps": ["CAP_SYS_ADMIN"]}}]}
    profile["syscalls"].insert(0, {"names": ALLOW_BASICS, "action": "SCMP_ACT_ALLOW"})
    rc, out = lc.run("mkdir /tmp/x 2>&1", seccomp=profile)
    assert rc != 0 and "Permission denied" in out


ALLOW_BASICS = [
    "read", "write", "open", "openat", "close", "fstat", "newfstatat", "stat", "lstat", "mmap", "munmap", "mprotect",
    "brk", "rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "ioctl", "access", "execve", "exit", "exit_group",
    "getpid", "getppid", "getuid", "geteuid", "getgid", "getegid", "setuid", "setgid", "setresuid", "setresgid",
    "setgroups", "capget", "capset", "prctl", "arch_prctl", "set_tid_address", "wait4", "fork", "vfork", "clone",
    "dup2", "dup3", "fcntl", "chdir", "getcwd", "uname", "getdents64", "close_range", "sendmsg", "sendto",
    "getrandom", "futex", "set_robust_list", "rseq", "prlimit64", "readlink", "lseek", "pipe", "pipe2",
]


def test_seccomp_unknown_action_refused() -> None:
    with pytest.raises(seccomp.SeccompError, match="unknown seccomp action"):
        seccomp.program_for({"defaultAction": "SCMP_ACT_NOPE"}, 0)
