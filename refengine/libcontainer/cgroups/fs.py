"""Plain file access for cgroupfs: one write(2) per value, clear errors, EBUSY-tolerant rmdir."""

from __future__ import annotations

import errno
import os
import re
import time

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@:-]*$")


class CgroupError(RuntimeError):
    """A cgroup operation failed; the message names the file and the value."""

    def __init__(self, message: str, err: int | None = None) -> None:
        super().__init__(message)
        self.errno = err


class CgroupNotFound(CgroupError):
    pass


class CgroupExists(CgroupError):
    pass


def check_name(name: str, what: str = "cgroup name", nested: bool = False) -> str:
    """Refuse names that could leave our parent (``..``, absolute paths, empty components)."""
    parts = name.split("/") if nested else [name]
    if not name or not all(_NAME.match(p) for p in parts):
        raise CgroupError(f"invalid {what} {name!r}: use letters, digits and _.@:- (no '..', no empty parts)")
    return name


def write(dirpath: str, filename: str, value: str | int) -> None:
    """Write one value with a single write(2): cgroupfs parses each write separately."""
    path = os.path.join(dirpath, filename)
    data = str(value).encode()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)
    except OSError as e:
        raise CgroupError(f"cgroup: cannot open {path} for writing: {e.strerror}", e.errno) from None
    try:
        n = os.write(fd, data)
        if n != len(data):
            raise CgroupError(f"cgroup: short write of {value!r} to {path}: {n} of {len(data)} bytes")
    except OSError as e:
        raise CgroupError(f"cgroup: writing {value!r} to {path}: {e.strerror}", e.errno) from None
    finally:
        os.close(fd)


def read(dirpath: str, filename: str) -> str:
    path = os.path.join(dirpath, filename)
    try:
        with open(path) as fh:
            return fh.read()
    except OSError as e:
        raise CgroupError(f"cgroup: cannot read {path}: {e.strerror}", e.errno) from None


def read_str(dirpath: str, filename: str) -> str:
    return read(dirpath, filename).strip()


def read_int(dirpath: str, filename: str) -> int | None:
    """An integer file; ``max`` (v2 and pids.max) reads as None = unlimited."""
    text = read_str(dirpath, filename)
    if text == "max":
        return None
    try:
        return int(text)
    except ValueError:
        raise CgroupError(f"cgroup: {os.path.join(dirpath, filename)} holds {text!r}, not an integer") from None


def read_int_or(dirpath: str, filename: str, default: int = 0) -> int:
    """An integer file that may be absent on this kernel (reads as ``default``)."""
    if not os.path.exists(os.path.join(dirpath, filename)):
        return default
    v = read_int(dirpath, filename)
    return default if v is None else v


def read_keyed(dirpath: str, filename: str) -> dict[str, int]:
    """Flat keyed files: ``key value`` per line (memory.stat, cpu.stat, memory.events, oom_control)."""
    out: dict[str, int] = {}
    for line in read(dirpath, filename).splitlines():
        parts = line.split()
        if len(parts) == 2:
            try:
                out[parts[0]] = int(parts[1])
            except ValueError:
                continue
    return out


def read_pids(dirpath: str, filename: str = "cgroup.procs") -> list[int]:
    try:
        text = read(dirpath, filename)
    except CgroupError as e:
        if e.errno == errno.ENOENT or e.errno == errno.ENODEV:
            return []
        raise
    return [int(x) for x in text.split()]


def exists(dirpath: str) -> bool:
    return os.path.isdir(dirpath)


def rmdir(path: str, timeout: float = 2.0) -> None:
    """rmdir a cgroup, retrying EBUSY briefly (exiting tasks leave the cgroup a moment later)."""
    deadline = time.monotonic() + timeout
    delay = 0.001
    while True:
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError as e:
            if e.errno != errno.EBUSY or time.monotonic() > deadline:
                raise CgroupError(f"cgroup: cannot remove {path}: {e.strerror}", e.errno) from None
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def rmdir_tree(path: str, timeout: float = 2.0) -> None:
    """Remove a cgroup and any child cgroups below it (deepest first); files are the kernel's."""
    if not os.path.isdir(path):
        return
    for root, dirs, _files in os.walk(path, topdown=False):
        for d in dirs:
            rmdir(os.path.join(root, d), timeout)
    rmdir(path, timeout)
