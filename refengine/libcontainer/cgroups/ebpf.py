"""cgroup v2 device control: a BPF_PROG_TYPE_CGROUP_DEVICE program built here and attached with bpf(2).

This is what runc does (libcontainer/cgroups/devices/devicefilter.go + ebpf_linux.go): the v2
unified hierarchy has no devices.allow/deny files; the kernel asks the eBPF programs attached to
the cgroup (and its ancestors) for every open/mknod of a device node.

The program is generated from the reduced v1-style state (devices.reduce_rules), so v1 and v2
enforce the same decision. Context (struct bpf_cgroup_dev_ctx):
    u32 access_type   # (access << 16) | type; type: 1 block, 2 char; access: 1 mknod, 2 read, 4 write
    u32 major, minor
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import struct
from dataclasses import dataclass

from .devices import DeviceRule, DeviceState, reduce_rules
from .fs import CgroupError

# --- instruction encoding (include/uapi/linux/bpf.h, bpf_common.h) ---
BPF_LDX_MEM_W = 0x61     # BPF_LDX | BPF_MEM | BPF_W
BPF_ALU_AND_K = 0x54     # 32-bit dst &= imm
BPF_ALU_RSH_K = 0x74     # 32-bit dst >>= imm
BPF_ALU_MOV_K = 0xB4     # 32-bit dst = imm
BPF_ALU_MOV_X = 0xBC     # 32-bit dst = src
BPF_JMP_JNE_K = 0x55     # if dst != imm goto pc+off
BPF_JMP_JEQ_K = 0x15     # if dst == imm goto pc+off
BPF_JMP_EXIT = 0x95

R0, R1, R2, R3, R4, R5 = range(6)

DEV_BLOCK, DEV_CHAR = 1, 2
ACC_MKNOD, ACC_READ, ACC_WRITE = 1, 2, 4
_TYPE = {"b": DEV_BLOCK, "c": DEV_CHAR}
_ACC = {"m": ACC_MKNOD, "r": ACC_READ, "w": ACC_WRITE}


@dataclass(frozen=True)
class Insn:
    code: int
    dst: int = 0
    src: int = 0
    off: int = 0
    imm: int = 0

    def encode(self) -> bytes:
        return struct.pack("<BBhi", self.code, (self.src << 4) | self.dst, self.off, self.imm)


def access_mask(access: str) -> int:
    m = 0
    for c in access:
        m |= _ACC[c]
    return m


def compile_state(state: DeviceState) -> list[Insn]:
    """One block per exception; the first matching exception decides, else the default."""
    prog = [
        Insn(BPF_LDX_MEM_W, R2, R1, 0), Insn(BPF_ALU_AND_K, R2, imm=0xFFFF),   # r2 = type
        Insn(BPF_LDX_MEM_W, R3, R1, 0), Insn(BPF_ALU_RSH_K, R3, imm=16),       # r3 = access
        Insn(BPF_LDX_MEM_W, R4, R1, 4),                                         # r4 = major
        Insn(BPF_LDX_MEM_W, R5, R1, 8),                                         # r5 = minor
    ]
    for t, major, minor, acc in state.exceptions:
        # each entry: (code, dst, imm, is_jump_to_next_block)
        block: list[tuple[int, int, int, bool]] = [(BPF_JMP_JNE_K, R2, _TYPE[t], True)]
        if major is not None:
            block.append((BPF_JMP_JNE_K, R4, major, True))
        if minor is not None:
            block.append((BPF_JMP_JNE_K, R5, minor, True))
        mask = access_mask(acc)
        if state.default_allow:
            # deny exception: denies if the request shares any bit with it
            if mask != 7:
                block += [(BPF_ALU_MOV_X, R1, 0, False), (BPF_ALU_AND_K, R1, mask, False),
                          (BPF_JMP_JEQ_K, R1, 0, True)]
            block += [(BPF_ALU_MOV_K, R0, 0, False), (BPF_JMP_EXIT, 0, 0, False)]
        else:
            # allow exception: allows if it covers every requested bit
            if mask != 7:
                block += [(BPF_ALU_MOV_X, R1, 0, False), (BPF_ALU_AND_K, R1, ~mask & 7, False),
                          (BPF_JMP_JNE_K, R1, 0, True)]
            block += [(BPF_ALU_MOV_K, R0, 1, False), (BPF_JMP_EXIT, 0, 0, False)]
        n = len(block)
        for i, (code, dst, imm, jump) in enumerate(block):
            if code == BPF_ALU_MOV_X:
                prog.append(Insn(code, dst, R3))          # r1 = r3 (requested access)
            else:
                prog.append(Insn(code, dst, 0, n - i - 1 if jump else 0, imm))
    prog += [Insn(BPF_ALU_MOV_K, R0, imm=1 if state.default_allow else 0), Insn(BPF_JMP_EXIT)]
    return prog


def compile_rules(rules: list[DeviceRule]) -> list[Insn]:
    return compile_state(reduce_rules(rules))


def run_program(prog: list[Insn], dev_type: int, access: int, major: int, minor: int) -> int:
    """A tiny interpreter for the instructions compile_state emits (for tests; the kernel runs the real one)."""
    ctx = [(access << 16) | dev_type, major, minor]
    regs = [0] * 11
    pc = 0
    while True:
        i = prog[pc]
        pc += 1
        if i.code == BPF_LDX_MEM_W:
            assert i.src == R1, "only context loads are emitted"
            regs[i.dst] = ctx[i.off // 4]
        elif i.code == BPF_ALU_AND_K:
            regs[i.dst] = (regs[i.dst] & i.imm) & 0xFFFFFFFF
        elif i.code == BPF_ALU_RSH_K:
            regs[i.dst] = (regs[i.dst] & 0xFFFFFFFF) >> i.imm
        elif i.code == BPF_ALU_MOV_K:
            regs[i.dst] = i.imm & 0xFFFFFFFF
        elif i.code == BPF_ALU_MOV_X:
            regs[i.dst] = regs[i.src] & 0xFFFFFFFF
        elif i.code == BPF_JMP_JNE_K:
            if regs[i.dst] != i.imm:
                pc += i.off
        elif i.code == BPF_JMP_JEQ_K:
            if regs[i.dst] == i.imm:
                pc += i.off
        elif i.code == BPF_JMP_EXIT:
            return regs[R0]
        else:
            raise ValueError(f"unknown opcode {i.code:#x}")


# --- bpf(2) ---
BPF_PROG_LOAD = 5
BPF_PROG_ATTACH = 8
BPF_PROG_DETACH = 9
BPF_PROG_GET_FD_BY_ID = 13
BPF_PROG_QUERY = 16
BPF_PROG_TYPE_CGROUP_DEVICE = 15
BPF_CGROUP_DEVICE = 6
BPF_F_ALLOW_MULTI = 2

_SYS_BPF = {"x86_64": 321, "aarch64": 280, "armv7l": 386, "ppc64le": 361, "s390x": 351, "riscv64": 280}
_ATTR_SIZE = 128   # larger than any field used; the kernel checks that the tail is zero

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def _bpf(cmd: int, attr: ctypes.Array) -> int:
    nr = _SYS_BPF.get(platform.machine())
    if nr is None:
        raise CgroupError(f"bpf(2): syscall number unknown for {platform.machine()}")
    rc = _libc.syscall(ctypes.c_long(nr), ctypes.c_int(cmd), attr, ctypes.c_uint(len(attr)))
    if rc < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return rc


def load_program(prog: list[Insn]) -> int:
    """BPF_PROG_LOAD a cgroup device program; returns its fd. On failure, reload with the verifier log."""
    code = b"".join(i.encode() for i in prog)
    insns = ctypes.create_string_buffer(code, len(code))
    license_ = ctypes.create_string_buffer(b"Apache")
    log = ctypes.create_string_buffer(256 * 1024)

    def attempt(log_level: int) -> int:
        attr = ctypes.create_string_buffer(_ATTR_SIZE)
        struct.pack_into("<IIQQIIQ", attr, 0, BPF_PROG_TYPE_CGROUP_DEVICE, len(prog),
                         ctypes.addressof(insns), ctypes.addressof(license_), log_level,
                         len(log) if log_level else 0, ctypes.addressof(log) if log_level else 0)
        attr[48:48 + 10] = b"refengine\0"                      # prog_name (shown by bpftool)
        struct.pack_into("<I", attr, 68, BPF_CGROUP_DEVICE)    # expected_attach_type
        return _bpf(BPF_PROG_LOAD, attr)

    try:
        return attempt(0)
    except OSError as e:
        first = e
    try:
        fd = attempt(1)     # not expected to succeed now; if it does, use it
        return fd
    except OSError:
        pass
    text = log.value.decode(errors="replace").strip()
    raise CgroupError(f"bpf(BPF_PROG_LOAD) of the device filter failed: {first.strerror}"
                      + (f"; verifier: {text[-2000:]}" if text else ""), first.errno)


def query_programs(cgroup_fd: int) -> list[int]:
    """IDs of the device programs attached directly to this cgroup."""
    ids = (ctypes.c_uint32 * 64)()
    attr = ctypes.create_string_buffer(_ATTR_SIZE)
    struct.pack_into("<IIIIQI", attr, 0, cgroup_fd, BPF_CGROUP_DEVICE, 0, 0, ctypes.addressof(ids), len(ids))
    _bpf(BPF_PROG_QUERY, attr)
    count = struct.unpack_from("<I", attr, 24)[0]
    return list(ids[:count])


def _prog_fd_by_id(prog_id: int) -> int:
    attr = ctypes.create_string_buffer(_ATTR_SIZE)
    struct.pack_into("<I", attr, 0, prog_id)
    return _bpf(BPF_PROG_GET_FD_BY_ID, attr)


def _attach_cmd(cmd: int, cgroup_fd: int, prog_fd: int, flags: int) -> None:
    attr = ctypes.create_string_buffer(_ATTR_SIZE)
    struct.pack_into("<IIII", attr, 0, cgroup_fd, prog_fd, BPF_CGROUP_DEVICE, flags)
    _bpf(cmd, attr)


def apply_device_rules(cgroup_dir: str, rules: list[DeviceRule]) -> None:
    """Replace the device program on a v2 cgroup: attach the new one, then detach the old ones.

    Attaching first (BPF_F_ALLOW_MULTI) means there is no moment without a filter; while both are
    attached the kernel requires both to allow, which is at most stricter for an instant.
    """
    prog_fd = load_program(compile_rules(rules))
    try:
        cg_fd = os.open(cgroup_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as e:
        os.close(prog_fd)
        raise CgroupError(f"cannot open cgroup {cgroup_dir}: {e.strerror}", e.errno) from None
    try:
        try:
            old = query_programs(cg_fd)
        except OSError as e:
            raise CgroupError(f"bpf(BPF_PROG_QUERY) on {cgroup_dir}: {e.strerror}", e.errno) from None
        try:
            _attach_cmd(BPF_PROG_ATTACH, cg_fd, prog_fd, BPF_F_ALLOW_MULTI)
        except OSError as e:
            raise CgroupError(f"bpf(BPF_PROG_ATTACH) of the device filter to {cgroup_dir}: {e.strerror}",
                              e.errno) from None
        for pid in old:
            try:
                old_fd = _prog_fd_by_id(pid)
            except OSError as e:
                if e.errno == errno.ENOENT:
                    continue
                raise CgroupError(f"bpf(BPF_PROG_GET_FD_BY_ID {pid}): {e.strerror}", e.errno) from None
            try:
                _attach_cmd(BPF_PROG_DETACH, cg_fd, old_fd, 0)
            except OSError as e:
                if e.errno != errno.ENOENT:
                    raise CgroupError(f"bpf(BPF_PROG_DETACH) of old device filter {pid} from {cgroup_dir}: "
                                      f"{e.strerror}", e.errno) from None
            finally:
                os.close(old_fd)
    finally:
        os.close(cg_fd)
        os.close(prog_fd)   # the attachment holds its own reference


def attached_program_ids(cgroup_dir: str) -> list[int]:
    fd = os.open(cgroup_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        return query_programs(fd)
    finally:
        os.close(fd)
