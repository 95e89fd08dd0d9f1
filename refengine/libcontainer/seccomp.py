"""Seccomp: a ctypes wrapper over libseccomp.so.2 that compiles a Docker-format profile to BPF, and
the default profile.

The parent compiles (once per profile and capability set, cached) and sends the BPF program to the
init, which installs it with seccomp(2) just before execve: the init never loads libseccomp.

The default profile is a *denylist* (default action allow), equivalent in effect to Docker's
allowlist (moby profiles/seccomp/default.json, 20.10): every syscall Docker's profile leaves out
is refused with EPERM, and the capability-gated groups are refused unless the container holds the
capability, as Docker's `includes/excludes: caps` do. Why a denylist: Docker's allowlist must be
kept in step with the kernel (a syscall newer than the profile gets EPERM, which breaks programs
that only fall back on ENOSYS, and runc adds ENOSYS stubs to cope); a denylist lets harmless new
syscalls through and needs no ENOSYS rule except clone3, whose flags live in memory seccomp cannot
read: it answers ENOSYS without CAP_SYS_ADMIN so glibc falls back to clone(2), whose namespace flags
are filtered. Known differences: personality(2) is not restricted to Docker's few values; 32-bit
(x86, x32) syscalls get the same denylist (Docker's archMap) when libseccomp can add those arches.
Custom profiles in Docker's JSON format (allowlists too) are compiled the same way.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import json
import os
import threading
from typing import Any

from . import capabilities

SCMP_ACT_KILL_PROCESS = 0x80000000
SCMP_ACT_KILL_THREAD = 0x00000000
SCMP_ACT_TRAP = 0x00030000
SCMP_ACT_ERRNO = 0x00050000
SCMP_ACT_TRACE = 0x7FF00000
SCMP_ACT_LOG = 0x7FFC0000
SCMP_ACT_ALLOW = 0x7FFF0000
_OPS = {"SCMP_CMP_NE": 1, "SCMP_CMP_LT": 2, "SCMP_CMP_LE": 3, "SCMP_CMP_EQ": 4, "SCMP_CMP_GE": 5,
        "SCMP_CMP_GT": 6, "SCMP_CMP_MASKED_EQ": 7}
_ARCHES = {"x86_64": ("SCMP_ARCH_X86", "SCMP_ARCH_X32"), "aarch64": ("SCMP_ARCH_ARM",)}

_NS_FLAGS = (0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000, 0x40000000, 0x00000080)

# Not in Docker's default allowlist under any capability (always refused).
_ALWAYS_DENIED = [
    "add_key", "keyctl", "request_key", "kexec_load", "kexec_file_load", "create_module", "get_kernel_syms",
    "query_module", "nfsservctl", "uselib", "ustat", "sysfs", "_sysctl", "vm86", "vm86old", "swapon", "swapoff",
    "userfaultfd", "afs_syscall", "tuxcall", "security", "putpmsg", "getpmsg", "vserver",
]


def _gated(names: list[str], *caps: str, errno_ret: int = errno.EPERM) -> dict[str, Any]:
    return {"names": names, "action": "SCMP_ACT_ERRNO", "errnoRet": errno_ret,
            "excludes": {"caps": ["CAP_" + c for c in caps]}}


DEFAULT_PROFILE: dict[str, Any] = {
    "defaultAction": "SCMP_ACT_ALLOW",
    "syscalls": [
        {"names": _ALWAYS_DENIED, "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EPERM},
        _gated(["mount", "umount", "umount2", "pivot_root", "unshare", "setns", "fanotify_init", "lookup_dcookie",
                "name_to_handle_at", "quotactl", "quotactl_fd", "sethostname", "setdomainname", "fsopen",
                "fsconfig", "fsmount", "fspick", "open_tree", "move_mount", "mount_setattr"], "SYS_ADMIN"),
        _gated(["bpf"], "SYS_ADMIN", "BPF"),
        _gated(["perf_event_open"], "SYS_ADMIN", "PERFMON"),
        _gated(["syslog"], "SYS_ADMIN", "SYSLOG"),
        # clone3 passes its flags in memory: ENOSYS makes glibc fall back to clone(2), filtered below
        _gated(["clone3"], "SYS_ADMIN", errno_ret=errno.ENOSYS),
        {**_gated(["clone"], "SYS_ADMIN"),
         "args": [{"index": 0, "value": f, "valueTwo": f, "op": "SCMP_CMP_MASKED_EQ"} for f in _NS_FLAGS]},
        _gated(["open_by_handle_at"], "DAC_READ_SEARCH"),
        _gated(["reboot"], "SYS_BOOT"),
        _gated(["chroot"], "SYS_CHROOT"),
        _gated(["init_module", "finit_module", "delete_module"], "SYS_MODULE"),
        _gated(["acct"], "SYS_PACCT"),
        _gated(["kcmp", "pidfd_getfd", "process_madvise"], "SYS_PTRACE"),
        _gated(["iopl", "ioperm"], "SYS_RAWIO"),
        _gated(["settimeofday", "stime", "clock_settime", "clock_adjtime"], "SYS_TIME"),
        _gated(["vhangup"], "SYS_TTY_CONFIG"),
        _gated(["get_mempolicy", "mbind", "set_mempolicy", "move_pages"], "SYS_NICE"),
    ],
}


class SeccompError(RuntimeError):
    pass


class _ArgCmp(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int), ("datum_a", ctypes.c_uint64),
                ("datum_b", ctypes.c_uint64)]


_lib: ctypes.CDLL | None = None
_lock = threading.Lock()
_cache: dict[tuple[str, int], bytes] = {}
_default_cache: dict[int, bytes] = {}


def _libseccomp() -> ctypes.CDLL:
    global _lib
    if _lib is None:
        name = ctypes.util.find_library("seccomp") or "libseccomp.so.2"
        try:
            lib = ctypes.CDLL(name, use_errno=True)
        except OSError as e:
            raise SeccompError(f"libseccomp is not available ({e}); install libseccomp2") from None
        lib.seccomp_init.restype = ctypes.c_void_p
        lib.seccomp_init.argtypes = [ctypes.c_uint32]
        lib.seccomp_release.argtypes = [ctypes.c_void_p]
        lib.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint,
                                               ctypes.POINTER(_ArgCmp)]
        lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
        lib.seccomp_export_bpf.argtypes = [ctypes.c_void_p, ctypes.c_int]
        lib.seccomp_arch_resolve_name.argtypes = [ctypes.c_char_p]
        lib.seccomp_arch_resolve_name.restype = ctypes.c_uint32
        lib.seccomp_arch_add.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
        _lib = lib
    return _lib


def _action(name: str, errno_ret: int | None, default_errno: int | None) -> int:
    if name == "SCMP_ACT_ERRNO":
        ret = errno_ret if errno_ret is not None else (default_errno if default_errno is not None else errno.EPERM)
        return SCMP_ACT_ERRNO | (ret & 0xFFFF)
    table = {"SCMP_ACT_ALLOW": SCMP_ACT_ALLOW, "SCMP_ACT_KILL": SCMP_ACT_KILL_THREAD,
             "SCMP_ACT_KILL_THREAD": SCMP_ACT_KILL_THREAD, "SCMP_ACT_KILL_PROCESS": SCMP_ACT_KILL_PROCESS,
             "SCMP_ACT_TRAP": SCMP_ACT_TRAP, "SCMP_ACT_LOG": SCMP_ACT_LOG,
             "SCMP_ACT_TRACE": SCMP_ACT_TRACE | (errno_ret or 0)}
    if name not in table:
        raise SeccompError(f"unknown seccomp action {name!r}")
    return table[name]


def _applies(rule: dict[str, Any], caps: frozenset[str]) -> bool:
    """Docker's includes/excludes: all `includes.caps` held, none of `excludes.caps` held."""
    inc = [capabilities.normalize(c) for c in (rule.get("includes") or {}).get("caps") or []]
    exc = [capabilities.normalize(c) for c in (rule.get("excludes") or {}).get("caps") or []]
    machine = os.uname().machine
    arches = (rule.get("includes") or {}).get("arches") or []
    if arches and not any(_arch_matches(a, machine) for a in arches):
        return False
    return all(c in caps for c in inc) and not any(c in caps for c in exc)


def _arch_matches(arch: str, machine: str) -> bool:
    return {"amd64": "x86_64", "x86_64": "x86_64", "arm64": "aarch64", "aarch64": "aarch64"}.get(arch) == machine


def _cmp_groups(args: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """runc's rule: conditions on distinct arguments are ANDed in one rule; several conditions on the
    same argument (libseccomp allows one per argument) become one rule each (ORed)."""
    if not args:
        return [[]]
    indexes = [a["index"] for a in args]
    if len(set(indexes)) == len(indexes):
        return [args]
    return [[a] for a in args]


def compile_profile(profile: dict[str, Any], cap_mask: int) -> bytes:
    """The BPF program (raw struct sock_filter[]) for `profile` given the container's capabilities."""
    key = (json.dumps(profile, sort_keys=True), cap_mask)
    with _lock:
        cached = _cache.get(key)
    if cached is not None:
        return cached
    prog = _compile(profile, frozenset(capabilities.to_names(cap_mask)))
    with _lock:
        if len(_cache) > 64:
            _cache.clear()
        _cache[key] = prog
    return prog


def _compile(profile: dict[str, Any], caps: frozenset[str]) -> bytes:
    lib = _libseccomp()
    default_errno = profile.get("defaultErrnoRet")
    ctx = lib.seccomp_init(_action(profile.get("defaultAction", "SCMP_ACT_ALLOW"), default_errno, None))
    if not ctx:
        raise SeccompError("seccomp_init failed")
    try:
        for arch in _ARCHES.get(os.uname().machine, ()):
            token = lib.seccomp_arch_resolve_name(arch.removeprefix("SCMP_ARCH_").lower().encode())
            if token:
                lib.seccomp_arch_add(ctx, token)  # best effort: an arch the kernel lacks is left out
        for rule in profile.get("syscalls") or []:
            if not _applies(rule, caps):
                continue
            action = _action(rule["action"], rule.get("errnoRet"), default_errno)
            names = rule.get("names") or ([rule["name"]] if rule.get("name") else [])
            for name in names:
                nr = lib.seccomp_syscall_resolve_name(name.encode())
                if nr < 0:
                    continue  # unknown on this architecture (e.g. vm86 on x86_64)
                for group in _cmp_groups(rule.get("args") or []):
                    arr = (_ArgCmp * max(len(group), 1))()
                    for i, a in enumerate(group):
                        if a["op"] not in _OPS:
                            raise SeccompError(f"unknown seccomp comparison {a['op']!r} in the rule for {name}")
                        arr[i] = _ArgCmp(a["index"], _OPS[a["op"]], a.get("value", 0), a.get("valueTwo", 0))
                    rc = lib.seccomp_rule_add_array(ctx, action, nr, len(group), arr)
                    if rc < 0 and rc != -errno.EACCES:  # -EACCES: the rule's action equals the default
                        raise SeccompError(f"seccomp rule for {name} refused by libseccomp: {os.strerror(-rc)}")
        fd = os.memfd_create("refengine-seccomp", os.MFD_CLOEXEC)
        try:
            rc = lib.seccomp_export_bpf(ctx, fd)
            if rc < 0:
                raise SeccompError(f"seccomp_export_bpf failed: {os.strerror(-rc)}")
            os.lseek(fd, 0, os.SEEK_SET)
            chunks = []
            while chunk := os.read(fd, 1 << 16):
                chunks.append(chunk)
            return b"".join(chunks)
        finally:
            os.close(fd)
    finally:
        lib.seccomp_release(ctx)


def program_for(setting: str | dict[str, Any] | None, cap_mask: int) -> bytes | None:
    """The BPF program a container's seccomp setting asks for, or None (unconfined)."""
    if setting is None or setting == "unconfined":
        return None
    if setting == "default":
        prog = _default_cache.get(cap_mask)
        if prog is None:  # keyed by the mask alone: no JSON dump of the profile per container
            prog = _default_cache[cap_mask] = compile_profile(DEFAULT_PROFILE, cap_mask)
        return prog
    if isinstance(setting, str):
        try:
            setting = json.loads(setting)
        except ValueError as e:
            raise SeccompError(f"the seccomp profile is not valid JSON: {e}") from None
    if not isinstance(setting, dict):
        raise SeccompError("a seccomp profile is a JSON object")
    return compile_profile(setting, cap_mask)
