"""Device cgroup rules: the record, Docker's default allow list, and the kernel's v1 semantics.

Both drivers first reduce a rule list to the state the v1 devices controller would end up in
(a default behaviour plus exceptions, see Documentation/admin-guide/cgroup-v1/devices.rst); v1 then
writes that state, v2 compiles it to an eBPF program (ebpf.py), so both enforce the same thing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_RULE = re.compile(r"^([acb]) ([0-9]+|\*):([0-9]+|\*) ([rwm]{1,3})$")


@dataclass(frozen=True)
class DeviceRule:
    """One devices.allow / devices.deny line. major/minor None = ``*``."""

    allow: bool
    type: str = "a"            # "a" (all), "c" (char) or "b" (block)
    major: int | None = None
    minor: int | None = None
    access: str = "rwm"        # any of r, w, m

    def __post_init__(self) -> None:
        if self.type not in ("a", "b", "c"):
            raise ValueError(f"invalid device type {self.type!r}: want a, b or c")
        if not self.access or set(self.access) - set("rwm") or len(set(self.access)) != len(self.access):
            raise ValueError(f"invalid device access {self.access!r}: want a combination of r, w, m")
        for v in (self.major, self.minor):
            if v is not None and not (0 <= v < 2**32):
                raise ValueError(f"invalid device number {v}")

    @classmethod
    def parse(cls, text: str, allow: bool = True) -> DeviceRule:
        """Parse Docker's --device-cgroup-rule syntax, e.g. ``c 1:3 rwm`` or ``b *:* m``; ``a`` alone too."""
        text = " ".join(text.split())
        if text == "a":
            return cls(allow=allow)
        m = _RULE.match(text)
        if not m:
            raise ValueError(f"invalid device cgroup rule {text!r}: want 'TYPE MAJOR:MINOR ACCESS', e.g. 'c 1:3 rwm'")
        t, ma, mi, acc = m.groups()
        return cls(allow=allow, type=t, major=None if ma == "*" else int(ma),
                   minor=None if mi == "*" else int(mi), access=acc)

    def line(self) -> str:
        """The text the v1 devices.allow/deny files take."""
        if self.type == "a":
            return "a"
        ma = "*" if self.major is None else str(self.major)
        mi = "*" if self.minor is None else str(self.minor)
        return f"{self.type} {ma}:{mi} {self.access}"

    def __str__(self) -> str:
        return ("allow " if self.allow else "deny ") + self.line()


def _c(major: int, minor: int | None, access: str = "rwm") -> DeviceRule:
    return DeviceRule(allow=True, type="c", major=major, minor=minor, access=access)


# Docker's default device allow list: what runc appends to every container's rules
# (libcontainer/specconv AllowedDevices; Docker itself sends only "deny all" + the user's rules).
# tun/tap (c 10:200) is in runc <= 1.1 (this host's runc 1.1.5) and again since 1.2.4 after its
# removal in 1.2.0 was reverted. /dev/console (c 5:1) is not in the list: a container's console
# is a pty (c 136:*).
DOCKER_DEFAULT_ALLOWED: tuple[DeviceRule, ...] = (
    DeviceRule(allow=True, type="c", access="m"),     # mknod any char device
    DeviceRule(allow=True, type="b", access="m"),     # mknod any block device
    _c(1, 3),       # /dev/null
    _c(1, 8),       # /dev/random
    _c(1, 7),       # /dev/full
    _c(5, 0),       # /dev/tty
    _c(1, 5),       # /dev/zero
    _c(1, 9),       # /dev/urandom
    _c(136, None),  # /dev/pts/*
    _c(5, 2),       # /dev/ptmx
    _c(10, 200),    # /dev/net/tun
)

DENY_ALL = DeviceRule(allow=False)
ALLOW_ALL = DeviceRule(allow=True)


def effective_rules(configured: list[DeviceRule] | None) -> list[DeviceRule]:
    """What the container gets, in runc's order: deny all, the configured rules, then the defaults.

    As in runc the defaults come last, so a configured rule cannot take them away; a privileged
    container's ``allow a`` (ALLOW_ALL) still allows everything.
    """
    return [DENY_ALL, *(configured or []), *DOCKER_DEFAULT_ALLOWED]


@dataclass(frozen=True)
class DeviceState:
    """The v1 controller's state: default behaviour + exceptions (type, major, minor) -> access."""

    default_allow: bool
    exceptions: tuple[tuple[str, int | None, int | None, str], ...]

    def exception_rules(self) -> list[DeviceRule]:
        return [DeviceRule(allow=not self.default_allow, type=t, major=ma, minor=mi, access=acc)
                for t, ma, mi, acc in self.exceptions]

    def permits(self, dev_type: str, major: int, minor: int, access: str) -> bool:
        """The kernel's decision for one request (v1 match_exception / match_exception_partial)."""
        want = set(access)
        for t, ma, mi, acc in self.exceptions:
            if t != dev_type or (ma is not None and ma != major) or (mi is not None and mi != minor):
                continue
            if self.default_allow:
                if want & set(acc):      # any denied bit denies
                    return False
            elif want <= set(acc):       # one exception must cover the whole request
                return True
        return self.default_allow


def reduce_rules(rules: list[DeviceRule]) -> DeviceState:
    """Apply rules one by one the way the v1 devices controller does (dev_exception_add/rm).

    ``a`` resets the behaviour and drops all exceptions; a rule opposite to the behaviour adds
    access to the exception with the same type/major/minor; a rule agreeing with it removes access.
    """
    default_allow = True   # a fresh cgroup under an allow-all parent
    exc: dict[tuple[str, int | None, int | None], set[str]] = {}
    for r in rules:
        if r.type == "a":
            default_allow = r.allow
            exc.clear()
            continue
        key = (r.type, r.major, r.minor)
        if r.allow != default_allow:
            exc.setdefault(key, set()).update(r.access)
        elif key in exc:
            exc[key] -= set(r.access)
            if not exc[key]:
                del exc[key]
    ordered = tuple((t, ma, mi, "".join(c for c in "rwm" if c in acc)) for (t, ma, mi), acc in exc.items())
    return DeviceState(default_allow=default_allow, exceptions=ordered)


def v1_writes(state: DeviceState) -> list[tuple[str, str]]:
    """(file, line) writes that put a v1 devices cgroup in ``state``: reset with ``a``, then exceptions."""
    if state.default_allow:
        return [("devices.allow", "a")] + [("devices.deny", r.line()) for r in state.exception_rules()]
    return [("devices.deny", "a")] + [("devices.allow", r.line()) for r in state.exception_rules()]


def parse_v1_list(lines: list[str]) -> DeviceState | None:
    """devices.list back to a state; None when it reads ``a *:* rwm`` (allow-default: deny exceptions
    are not listed, so the state cannot be known from the file)."""
    exc: dict[tuple[str, int | None, int | None], str] = {}
    for line in lines:
        t, mm, acc = line.split()
        if t == "a":
            return None
        ma, mi = mm.split(":")
        exc[(t, None if ma == "*" else int(ma), None if mi == "*" else int(mi))] = acc
    return DeviceState(default_allow=False, exceptions=tuple((t, ma, mi, a) for (t, ma, mi), a in exc.items()))


def v1_update_writes(current: DeviceState | None, target: DeviceState) -> list[tuple[str, str]]:
    """Writes from ``current`` to ``target`` without a reset when both deny by default.

    A reset (``deny a``) would deny /dev/null & co. to running processes for a moment; adding the new
    exceptions first and then taking away what goes keeps every still-allowed device allowed.
    """
    if current is None or current.default_allow or target.default_allow:
        return v1_writes(target)
    cur = {(t, ma, mi): set(acc) for t, ma, mi, acc in current.exceptions}
    tgt = {(t, ma, mi): set(acc) for t, ma, mi, acc in target.exceptions}

    def line(key: tuple[str, int | None, int | None], acc: set[str]) -> str:
        t, ma, mi = key
        return DeviceRule(True, t, ma, mi, "".join(c for c in "rwm" if c in acc)).line()

    writes = [("devices.allow", line(k, a - cur.get(k, set()))) for k, a in tgt.items() if a - cur.get(k, set())]
    writes += [("devices.deny", line(k, a - tgt.get(k, set()))) for k, a in cur.items() if a - tgt.get(k, set())]
    return writes


def v1_list(state: DeviceState) -> list[str]:
    """What devices.list should read back for ``state`` (deny-default only lists the allowed exceptions)."""
    if state.default_allow:
        return ["a *:* rwm"]
    return [f"{t} {'*' if ma is None else ma}:{'*' if mi is None else mi} {acc}" for t, ma, mi, acc in state.exceptions]
