"""Hardening of a container's process: capabilities, no_new_privs, seccomp, masked and read-only
kernel paths, the /dev it gets, the device cgroup, a read-only root filesystem, and its user/groups.

Each check runs short-lived busybox containers (NetworkMode none) and reads what the kernel says
from inside: /proc/self/status (CapEff, NoNewPrivs, Seccomp ...), /proc/self/mountinfo, stat, and
whether a syscall is refused. Facts about the default container are read once per worker by one
container that runs every probe (see `probe_run`); checks that change the configuration run their own.

Defaults are moby's oci/caps and oci/defaults (capabilities, MaskedPaths, ReadonlyPaths, devices)
and profiles/seccomp/default.json; kernel facts are from capabilities(7), proc(5), seccomp(2).
"""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass
from typing import Any

import pytest

from conformance.client import ApiClient
from conformance.host import Host, peer_pid
from conformance.resources import Containers
from conformance.target import Target

# ---------------------------------------------------------------- kernel and Docker facts

# capabilities(7): bit number -> name (linux/capability.h, up to 6.x)
CAP_NAMES = (
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID",
    "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW",
    "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT",
    "SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD",
    "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG",
    "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE",
)

# moby oci/caps DefaultCapabilities(): what a container that asks for nothing gets.
DEFAULT_CAPS = frozenset({
    "CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "NET_RAW", "SETGID", "SETUID", "SETFCAP",
    "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT", "KILL", "AUDIT_WRITE",
})

# moby oci/defaults: MaskedPaths and ReadonlyPaths of the default spec (those the kernel lacks are skipped).
MASKED_PATHS = ("/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware")
READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")

# The nodes runc creates in the container's /dev tmpfs (OCI runtime-spec "default devices"), with
# their char major:minor in stat's hex, and the links and mounts Docker adds. /dev/console only
# exists with a TTY, /dev/core only when the kernel has /proc/kcore.
DEFAULT_NODES = {"null": "1:3", "zero": "1:5", "full": "1:7", "random": "1:8", "urandom": "1:9", "tty": "5:0"}
DEV_ENTRIES = frozenset(DEFAULT_NODES) | {"fd", "stdin", "stdout", "stderr", "ptmx", "pts", "shm", "mqueue"}
DEV_OPTIONAL = frozenset({"console", "core"})

# Device numbers no container may open by default: disks and raw memory (devices.txt).
DENIED_DEVICES = {
    "sd-disk": ("b", 8, 0), "virtio-disk": ("b", 254, 0), "nvme-disk": ("b", 259, 0),
    "device-mapper": ("b", 253, 0), "loop": ("b", 7, 0), "fuse": ("c", 10, 229),
}

EPERM = "Operation not permitted"
DENIED = re.compile(r"not permitted|permission denied|read-only file system|are you root", re.I)

# Docker before 23.0 (moby oci/caps) hands a privileged container the capabilities 0..cap_last_cap, and
# 20.10 stops at CAP_AUDIT_READ even where the kernel knows more (moby#41563: CAP_PERFMON, CAP_BPF and
# CAP_CHECKPOINT_RESTORE were left out for runc 1.0.0-rc92; reverted for 23.0 by moby#42011). 23.0 hands
# out the daemon's own bounding set (moby#42933). Two documented deviations follow, each only where it holds.
DEVIATION_PRIVILEGED_START = (
    "dockerd 20.10 gives a privileged container every capability the kernel knows (up to CAP_AUDIT_READ), not "
    "those in its own bounding set; where dockerd lacks one (here {missing}) runc's capset fails with EPERM and "
    "a privileged container cannot start at all (moby#42906, fixed in moby 23.0 by #42933)")
DEVIATION_PRIVILEGED_AUDIT_READ = (
    "dockerd 20.10 gives a privileged container no capability above CAP_AUDIT_READ: it leaves out {extra}, which "
    "the kernel knows and dockerd holds (moby#41563, a workaround for runc 1.0.0-rc92 reverted in moby 23.0 by #42011)")


DOCKER_PRIVILEGED_LAST = CAP_NAMES.index("AUDIT_READ")


def cap_set(hexmask: str) -> frozenset[str]:
    """A /proc/<pid>/status capability mask (hex) as capability names; unknown bits as CAP_<n>."""
    value = int(hexmask, 16)
    return frozenset(CAP_NAMES[b] if b < len(CAP_NAMES) else f"CAP_{b}" for b in range(64) if value >> b & 1)


def parse_status(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            out[key.strip()] = value.strip()
    return out


def mounts_at(mountinfo: str, path: str) -> list[list[str]]:
    """The mountinfo lines (split) whose mount point is `path`, in mount order."""
    return [parts for parts in (line.split() for line in mountinfo.splitlines()) if len(parts) > 5 and parts[4] == path]


def path_id(path: str) -> str:
    """A test id for a path without slashes (node ids stay easy to select): /proc/sys -> proc.sys, / -> root."""
    return path.strip("/").replace("/", ".") or "root"


def names(caps: frozenset[str] | set[str]) -> str:
    return ", ".join(sorted(caps)) or "none"


# ---------------------------------------------------------------- running probes


@dataclass
class Outcome:
    """What one probe (a shell snippet run inside the container) did."""

    name: str
    rc: int
    out: str

    def describe(self) -> str:
        return f"`{self.name}` exited {self.rc} with {self.out[-300:]!r}"

    @property
    def denied(self) -> bool:
        return self.rc != 0 and DENIED.search(self.out) is not None


def probe_script(probes: dict[str, str]) -> str:
    """One sh script running each snippet in its own `sh -c`, reporting `@@name rc` then its output."""
    lines = []
    for name, snippet in probes.items():
        lines.append(f"out=$(sh -c {shlex.quote(snippet)} 2>&1); rc=$?; echo \"@@{name} $rc\"; "
                     "printf '%s\\n' \"$out\"")
    lines.append("exit 0")
    return "\n".join(lines)


def parse_probes(stdout: str) -> dict[str, Outcome]:
    found: dict[str, Outcome] = {}
    current: Outcome | None = None
    for line in stdout.splitlines():
        m = re.fullmatch(r"@@(\S+) (\d+)", line)
        if m:
            current = found[m.group(1)] = Outcome(m.group(1), int(m.group(2)), "")
        elif current is not None:
            current.out += line + "\n"
    for o in found.values():
        o.out = o.out.rstrip("\n")
    return found


# Container runs shared by several checks of one worker, keyed by the name the checks give them (one
# name, one configuration); a failure to run is remembered too, so each check that needs the run fails (in its call phase) with the same message.
_SHARED: dict[tuple[Any, ...], dict[str, Outcome] | str] = {}


class ProbeRun:
    """Runs probes in a fresh container: `probe_run(probes, **create_config)` -> {name: Outcome}."""

    def __init__(self, containers: Containers, repeat: int) -> None:
        self.containers, self.repeat = containers, repeat

    def __call__(self, probes: dict[str, str], shared: str | None = None, **cfg: Any) -> dict[str, Outcome]:
        key = (shared, self.repeat)
        if shared is not None and key in _SHARED:
            cached = _SHARED[key]
            if isinstance(cached, str):
                pytest.fail(cached, pytrace=False)
            return cached
        hc = {"NetworkMode": "none", **cfg.pop("HostConfig", {})}
        try:
            res = self.containers.run_output(["sh", "-c", probe_script(probes)], HostConfig=hc, **cfg)
        except AssertionError as exc:
            if shared is not None:
                _SHARED[key] = f"the shared probe container ({shared}) could not run: {exc}"
            raise
        assert res.exit_code == 0, f"the probe script itself failed: {res.describe()}"
        found = parse_probes(res.stdout)
        missing = set(probes) - set(found)
        assert not missing, f"probes {sorted(missing)} reported nothing; container output: {res.describe()}"
        if shared is not None:
            _SHARED[key] = found
        return found


def make_probe_run(containers: Containers, request: pytest.FixtureRequest) -> ProbeRun:
    """A ProbeRun for this check; shared runs are per --repeat round."""
    callspec = getattr(request.node, "callspec", None)
    repeat = callspec.params.get("conformance_repeat", 0) if callspec else 0
    return ProbeRun(containers, repeat)


@pytest.fixture
def probe_run(containers: Containers, request: pytest.FixtureRequest) -> ProbeRun:
    return make_probe_run(containers, request)


# ---------------------------------------------------------------- the default container, probed once

# Commands that need one default capability each: they must work in a default container and be
# refused once that capability is dropped.
CAP_COMMANDS = {
    "CHOWN": "touch /tmp/f.chown && chown 1000 /tmp/f.chown",
    "DAC_OVERRIDE": "echo x > /tmp/f.dac && chmod 000 /tmp/f.dac && cat /tmp/f.dac",
    "FOWNER": "touch /tmp/f.fowner && chown 1000 /tmp/f.fowner && chmod 600 /tmp/f.fowner",
    "MKNOD": "mknod /tmp/n.mknod c 1 3",
    "NET_RAW": "ping -c 1 -W 2 127.0.0.1",
    "SETUID": "su probe -c true",
    "SETGID": "su probe -c true",
    "SYS_CHROOT": "chroot / true",
}
NET_ADMIN_COMMAND = "ip addr add 127.31.0.1/32 dev lo"


def _path_probe(path: str) -> str:
    """`dir <entries>`, `file <bytes read>`, `dir|file unreadable` (an LSM may refuse the read itself:
    AppArmor's docker-default denies /proc/kcore) or `absent`: one line, whatever the tools print on stderr."""
    return (f"p={path}; if [ -d $p ]; then if ls -A $p >/dev/null 2>&1; then echo \"dir $(ls -A $p | wc -l)\"; "
            f"else echo 'dir unreadable'; fi; elif [ -e $p ]; then if head -c 1 $p >/dev/null 2>&1; then "
            f"echo \"file $(head -c 65536 $p | wc -c)\"; else echo 'file unreadable'; fi; else echo absent; fi")


def default_probes() -> dict[str, str]:
    probes = {
        "status": "cat /proc/self/status",
        "mountinfo": "cat /proc/self/mountinfo",
        "dev": "ls -A /dev",
        "block": "find /dev -type b",
        "unshare-user": "unshare -U true",
        "net-admin": NET_ADMIN_COMMAND,
    }
    for path in MASKED_PATHS + READONLY_PATHS:
        probes["path:" + path] = _path_probe(path)
    for node in DEFAULT_NODES:
        probes["node:" + node] = f"stat -c '%F %t:%T' /dev/{node}"
    for name, (kind, major, minor) in DENIED_DEVICES.items():
        probes["mknod:" + name] = f"mknod /tmp/dev.{name} {kind} {major} {minor}"
        probes["open:" + name] = f"head -c 1 /tmp/dev.{name} > /dev/null"
    for cap, cmd in CAP_COMMANDS.items():
        probes["cap:" + cap] = cmd
    return probes


def default_run(probe_run: ProbeRun) -> dict[str, Outcome]:
    """Every probe above, run once per worker in a container created with no hardening options."""
    return probe_run(default_probes(), shared="default")



def _status(found: dict[str, Outcome]) -> dict[str, str]:
    return parse_status(found["status"].out)


# ---------------------------------------------------------------- capabilities


@pytest.mark.req("isolation.hardening.caps-default-set")
@pytest.mark.parametrize("field", ["CapEff", "CapPrm", "CapBnd"])
def test_caps_default_set(probe_run: ProbeRun, field: str) -> None:
    default_container = default_run(probe_run)
    got = cap_set(_status(default_container)[field])
    assert got == DEFAULT_CAPS, (
        f"a default container's {field} is {{{names(got)}}}; Docker's default set is exactly {{{names(DEFAULT_CAPS)}}} "
        f"(extra: {names(got - DEFAULT_CAPS)}; missing: {names(DEFAULT_CAPS - got)})")


@pytest.mark.req("isolation.hardening.caps-no-inheritable-ambient")
@pytest.mark.parametrize("field", ["CapInh", "CapAmb"])
def test_caps_no_inheritable_ambient(probe_run: ProbeRun, field: str) -> None:
    default_container = default_run(probe_run)
    got = cap_set(_status(default_container)[field])
    assert not got, (f"a default container's {field} is {{{names(got)}}}; Docker leaves the inheritable and ambient "
                     "sets empty (CVE-2022-24769), so exec'd programs cannot pick capabilities up through them")


# One container gets every added capability (in the spellings Docker accepts) and runs what needs them.
CAP_ADDS = {"NET_ADMIN": "NET_ADMIN", "CAP_SYS_ADMIN": "SYS_ADMIN", "sys_ptrace": "SYS_PTRACE",
            "cap_sys_nice": "SYS_NICE"}


def capadd_run(probe_run: ProbeRun) -> dict[str, Outcome]:
    probes = {"status": "cat /proc/self/status", "net-admin": NET_ADMIN_COMMAND,
              "mount": "mkdir -p /tmp/m && mount -t tmpfs conf /tmp/m"}
    probes.update({name: cmd for name, (caps, cmd, _) in SECCOMP_BLOCKED.items() if caps})
    return probe_run(probes, shared="capadd",
                     HostConfig={"CapAdd": sorted(CAP_ADDS), "SecurityOpt": ["apparmor=unconfined"]})



@pytest.mark.req("isolation.hardening.cap-add-grants")
@pytest.mark.parametrize("spelling", sorted(CAP_ADDS))
def test_cap_add_grants(probe_run: ProbeRun, spelling: str) -> None:
    capadd_container = capadd_run(probe_run)
    cap, wanted = CAP_ADDS[spelling], DEFAULT_CAPS | set(CAP_ADDS.values())
    status = _status(capadd_container)
    for field in ("CapEff", "CapPrm", "CapBnd"):
        got = cap_set(status[field])
        assert cap in got, f"with CapAdd {sorted(CAP_ADDS)} the container's {field} lacks {cap} (asked as {spelling!r})"
        assert got == wanted, (
            f"with CapAdd {sorted(CAP_ADDS)} the container's {field} is {{{names(got)}}}; expected the default set plus "
            f"the added ones (extra: {names(got - wanted)}; missing: {names(wanted - got)})")


@pytest.mark.req("isolation.hardening.cap-add-net-admin-effective")
def test_cap_add_net_admin_effective(probe_run: ProbeRun) -> None:
    default_container = default_run(probe_run)
    capadd_container = capadd_run(probe_run)
    without = default_container["net-admin"]
    assert without.denied, (f"a default container could add an address to its loopback ({without.describe()}); "
                            "that needs CAP_NET_ADMIN, which is not in Docker's default set")
    got = capadd_container["net-admin"]
    assert got.rc == 0, f"with CapAdd NET_ADMIN the container could not change its own network: {got.describe()}"


# Dropped together, in two containers: no command of a group needs another capability of its group
# (su needs SETGID for setgroups before SETUID for setuid, so they are in different groups).
CAP_DROP_GROUPS = (("CHOWN", "MKNOD", "NET_RAW", "SETUID", "SYS_CHROOT"), ("DAC_OVERRIDE", "FOWNER", "SETGID"))


@pytest.mark.req("isolation.hardening.cap-drop-removes")
@pytest.mark.parametrize("cap", sorted(CAP_COMMANDS))
def test_cap_drop_removes(probe_run: ProbeRun, cap: str) -> None:
    default_container = default_run(probe_run)
    control = default_container["cap:" + cap]
    assert control.rc == 0, (f"the control failed: in a default container (which has {cap}) {control.describe()}; "
                             "the probe must work with the capability for the check to mean anything")
    group = next(g for g in CAP_DROP_GROUPS if cap in g)
    probes = {"status": "cat /proc/self/status", **{c: CAP_COMMANDS[c] for c in group}}
    found = probe_run(probes, shared="capdrop-" + group[0], HostConfig={"CapDrop": list(group)})
    eff = cap_set(_status(found)["CapEff"])
    assert cap not in eff and eff == DEFAULT_CAPS - set(group), (
        f"with CapDrop {list(group)} CapEff is {{{names(eff)}}}; expected the default set without them")
    assert found[cap].denied, (f"with CapDrop {list(group)} the kernel still allowed what needs CAP_{cap}: "
                               f"{found[cap].describe()}; expected EPERM/EACCES")


@pytest.mark.req("isolation.hardening.cap-drop-all")
def test_cap_drop_all(probe_run: ProbeRun) -> None:
    found = probe_run({"status": "cat /proc/self/status", "chown": CAP_COMMANDS["CHOWN"]},
                      HostConfig={"CapDrop": ["ALL"]})
    status = parse_status(found["status"].out)
    for field in ("CapEff", "CapPrm", "CapBnd", "CapInh", "CapAmb"):
        assert int(status[field], 16) == 0, (
            f"with CapDrop [ALL] {field} is {{{names(cap_set(status[field]))}}}; every set must be empty")
    assert found["chown"].denied, f"with CapDrop [ALL] chown still worked: {found['chown'].describe()}"


@pytest.mark.req("isolation.hardening.cap-unknown-rejected")
@pytest.mark.parametrize("field", ["CapAdd", "CapDrop"])
def test_cap_unknown_rejected(api: ApiClient, containers: Containers, field: str) -> None:
    body = containers.config(["true"], HostConfig={field: ["CONF_NO_SUCH_CAP"], "NetworkMode": "none"})
    resp = api.post("/containers/create", body)
    if resp.status_code == 201:
        containers.adopt(resp.json()["Id"])
    assert resp.status_code == 400, (
        f"create with {field} ['CONF_NO_SUCH_CAP'] answered {resp.status_code} {resp.text[:200]!r}; an unknown "
        "capability is a client error (400), not something to ignore or fail on later")


# Users: one container per User value, shared by the uid/gid and the capability checks.
USERS = {"1000": (1000, 1000), "probe": (1000, 1000), "probe:daemon": (1000, 1), "4321:4322": (4321, 4322),
         "nobody": (65534, 65534)}


def user_container(probe_run: ProbeRun, user: str) -> dict[str, Outcome]:
    return probe_run({"uid": "id -u", "gid": "id -g", "status": "cat /proc/self/status"},
                     shared="user-" + user, User=user)


@pytest.mark.req("isolation.hardening.nonroot-no-effective-caps")
@pytest.mark.parametrize("user", ["1000", "probe", "nobody"])
def test_nonroot_no_effective_caps(probe_run: ProbeRun, user: str) -> None:
    status = _status(user_container(probe_run, user))
    assert status["Uid"].split()[0] != "0", f"User {user!r} ran as uid 0: Uid {status['Uid']}"
    for field in ("CapEff", "CapPrm", "CapAmb"):
        assert int(status[field], 16) == 0, (
            f"a container with User {user!r} has {field} {{{names(cap_set(status[field]))}}}; the kernel clears the "
            "permitted and effective sets when a process changes from uid 0 to non-zero uids (capabilities(7))")
    assert cap_set(status["CapBnd"]) == DEFAULT_CAPS, (
        f"User {user!r}: CapBnd is {{{names(cap_set(status['CapBnd']))}}}; the bounding set stays Docker's default")


def privileged_run(probe_run: ProbeRun) -> dict[str, Outcome]:
    return probe_run({"status": "cat /proc/self/status", "mountinfo": "cat /proc/self/mountinfo", "dev": "ls -A /dev"},
                     shared="privileged", HostConfig={"Privileged": True})


def _daemon_capbnd(hostside: Host, target: Target) -> frozenset[str] | None:
    pid = peer_pid(target)
    return cap_set(hostside.status(pid)["CapBnd"]) if pid else None


@pytest.fixture
def daemon_capbnd(hostside: Host, target: Target) -> frozenset[str]:
    """The capability bounding set of the daemon process (what a privileged container may have at most)."""
    capbnd = _daemon_capbnd(hostside, target)
    if capbnd is None:
        pytest.skip("the daemon's process is not known (not a unix-socket target)")
    return capbnd


def _docker_major(version: str) -> int | None:
    m = re.match(r"(\d+)\.", version)
    return int(m.group(1)) if m else None


def privileged_deviation(request: pytest.FixtureRequest, all_caps: bool = False) -> None:
    """Mark this check a documented docker deviation (strict xfail) where one holds for the daemon under test.

    Whether it holds depends on the daemon's own capability bounding set and the kernel's cap_last_cap,
    read on the daemon's host; where they cannot be read (a remote daemon) no deviation is assumed.
    """
    caps = request.getfixturevalue("capabilities")
    major = _docker_major(caps.version)
    if caps.product != "docker" or (major is not None and major >= 23):
        return
    try:
        hostside: Host = request.getfixturevalue("hostside")
        capbnd = _daemon_capbnd(hostside, request.getfixturevalue("target"))
        last_cap = int(hostside.read("/proc/sys/kernel/cap_last_cap"))
    except (pytest.skip.Exception, OSError, ValueError):
        return
    if capbnd is None:
        return
    known = [CAP_NAMES[b] if b < len(CAP_NAMES) else f"CAP_{b}" for b in range(last_cap + 1)]
    missing = set(known[:DOCKER_PRIVILEGED_LAST + 1]) - capbnd
    extra = set(known[DOCKER_PRIVILEGED_LAST + 1:]) & capbnd
    def listed(caps: set[str]) -> str:
        return ", ".join(c if c.startswith("CAP_") else "CAP_" + c for c in sorted(caps))
    if missing:
        reason = DEVIATION_PRIVILEGED_START.format(missing=listed(missing))
    elif all_caps and extra:
        reason = DEVIATION_PRIVILEGED_AUDIT_READ.format(extra=listed(extra))
    else:
        return
    request.node.add_marker(pytest.mark.xfail(reason=f"documented docker deviation: {reason}", strict=True))


@pytest.mark.req("isolation.hardening.privileged-all-caps")
def test_privileged_all_caps(request: pytest.FixtureRequest, probe_run: ProbeRun,
                             daemon_capbnd: frozenset[str]) -> None:
    privileged_deviation(request, all_caps=True)
    privileged_container = privileged_run(probe_run)
    status = _status(privileged_container)
    for field in ("CapEff", "CapBnd"):
        got = cap_set(status[field])
        assert got == daemon_capbnd, (
            f"a privileged container's {field} is {{{names(got)}}}; expected the daemon's whole bounding set "
            f"(missing: {names(daemon_capbnd - got)}; extra: {names(got - daemon_capbnd)})")
    assert status["Seccomp"] == "0", f"a privileged container runs under seccomp mode {status['Seccomp']}; expected 0"


@pytest.mark.req("isolation.hardening.privileged-unmasked")
def test_privileged_unmasked(request: pytest.FixtureRequest, probe_run: ProbeRun) -> None:
    privileged_deviation(request)
    privileged_container = privileged_run(probe_run)
    left = [p for p in MASKED_PATHS + READONLY_PATHS if mounts_at(privileged_container["mountinfo"].out, p)]
    assert not left, f"a privileged container still has masks or read-only binds on {left}; Privileged removes them"


@pytest.mark.req("isolation.hardening.privileged-host-devices")
def test_privileged_host_devices(request: pytest.FixtureRequest, probe_run: ProbeRun, hostside: Host) -> None:
    privileged_deviation(request)
    privileged_container = privileged_run(probe_run)

    def is_device(name: str) -> bool:
        # lstat: udev's symlinks (/dev/cdrom -> sr0, /dev/rtc -> rtc0) are not device nodes; runc's host
        # device scan (libcontainer/devices GetDevices) lstat's each entry and passes over anything else
        try:
            return (os.lstat(os.path.join("/dev", name)).st_mode & 0o170000) in (0o020000, 0o060000)
        except OSError:
            return False

    inside = set(privileged_container["dev"].out.split())
    # not /dev/console: Docker's host-device list (containerd's HostDevices, runc's device scan) skips it, and
    # a container has a console only with a TTY; this container runs without one
    missing = sorted(n for n in os.listdir("/dev") if is_device(n) and n not in inside and n != "console")
    assert not missing, f"a privileged container's /dev lacks the host's device nodes {missing[:20]}"


# ---------------------------------------------------------------- no_new_privs


@pytest.mark.req("isolation.hardening.no-new-privs-default-off")
def test_no_new_privs_default_off(probe_run: ProbeRun) -> None:
    default_container = default_run(probe_run)
    value = _status(default_container).get("NoNewPrivs")
    assert value == "0", f"a default container has NoNewPrivs {value!r}; Docker sets it only when asked (expected 0)"


@pytest.mark.req("isolation.hardening.no-new-privs-set")
@pytest.mark.parametrize("opt", ["no-new-privileges", "no-new-privileges=true"])
def test_no_new_privs_set(probe_run: ProbeRun, opt: str) -> None:
    found = probe_run({"status": "cat /proc/self/status"}, HostConfig={"SecurityOpt": [opt]})
    value = _status(found).get("NoNewPrivs")
    assert value == "1", (f"with SecurityOpt [{opt!r}] the container's NoNewPrivs is {value!r}; expected 1 "
                          "(PR_SET_NO_NEW_PRIVS: setuid bits and file capabilities grant nothing)")


@pytest.mark.req("isolation.hardening.exec-inherits-restrictions")
@pytest.mark.parametrize("user", ["root", "probe"])
def test_exec_inherits_restrictions(containers: Containers, user: str) -> None:
    cid = containers.run_long(HostConfig={"NetworkMode": "none", "SecurityOpt": ["no-new-privileges"]})
    res = containers.exec(cid, ["cat", "/proc/self/status"], User=user)
    assert res.exit_code == 0, f"exec as {user} failed: {res.describe()}"
    status = parse_status(res.stdout)
    expected = DEFAULT_CAPS if user == "root" else frozenset()
    assert cap_set(status["CapEff"]) == expected, (
        f"a process exec'd as {user} has CapEff {{{names(cap_set(status['CapEff']))}}}; expected {{{names(expected)}}}")
    assert cap_set(status["CapBnd"]) == DEFAULT_CAPS, (
        f"a process exec'd as {user} has CapBnd {{{names(cap_set(status['CapBnd']))}}}; expected the container's")
    assert status.get("Seccomp") == "2", (
        f"a process exec'd as {user} runs with Seccomp {status.get('Seccomp')!r}; exec must apply the profile too (2)")
    assert status.get("NoNewPrivs") == "1", (
        f"a process exec'd as {user} into a no-new-privileges container has NoNewPrivs {status.get('NoNewPrivs')!r}")


# ---------------------------------------------------------------- seccomp


@pytest.mark.req("isolation.hardening.seccomp-default-filter")
def test_seccomp_default_filter(probe_run: ProbeRun) -> None:
    default_container = default_run(probe_run)
    status = _status(default_container)
    assert status.get("Seccomp") == "2", (
        f"a default container's Seccomp is {status.get('Seccomp')!r}; Docker's default profile is a filter (mode 2)")
    assert int(status.get("Seccomp_filters", "1")) >= 1, f"Seccomp_filters is {status.get('Seccomp_filters')}"


# name -> (capabilities the probe needs besides the profile, the probe, what it gets without the profile)
SECCOMP_BLOCKED = {
    # CLONE_NEWUSER needs no capability: only the profile refuses it (without it, unshare works).
    "unshare-user": ([], "unshare -U true", None),
    # swapon/swapoff are in no allow rule of the profile even with CAP_SYS_ADMIN; without the profile the
    # kernel gets to look at the file and answers EINVAL (no swap signature), so no swap is ever enabled.
    "swapon": (["SYS_ADMIN"], "touch /tmp/s && swapon /tmp/s", "Invalid argument"),
    "swapoff": (["SYS_ADMIN"], "touch /tmp/s && swapoff /tmp/s", "Invalid argument"),
}


def unconfined_container(probe_run: ProbeRun, caps: list[str]) -> dict[str, Outcome]:
    """The seccomp probes (and the status) without the profile, with the given capabilities added."""
    probes = {"status": "cat /proc/self/status"}
    probes.update({name: cmd for name, (need, cmd, _) in SECCOMP_BLOCKED.items() if need == caps})
    hc: dict[str, Any] = {"SecurityOpt": ["seccomp=unconfined"], **({"CapAdd": caps} if caps else {})}
    return probe_run(probes, shared="unconfined-" + ",".join(caps), HostConfig=hc)


@pytest.mark.req("isolation.hardening.seccomp-unconfined")
def test_seccomp_unconfined(probe_run: ProbeRun) -> None:
    value = _status(unconfined_container(probe_run, [])).get("Seccomp")
    assert value == "0", f"with SecurityOpt ['seccomp=unconfined'] the container's Seccomp is {value!r}; expected 0"


@pytest.mark.req("isolation.hardening.seccomp-blocks")
@pytest.mark.parametrize("name", sorted(SECCOMP_BLOCKED))
def test_seccomp_blocks(probe_run: ProbeRun, name: str) -> None:
    caps, cmd, unconfined_answer = SECCOMP_BLOCKED[name]
    confined = (capadd_run(probe_run) if caps else default_run(probe_run))[name]
    assert confined.rc != 0 and EPERM in confined.out, (
        f"under the default seccomp profile{' with CapAdd ' + str(caps) if caps else ''} `{cmd}` was not refused "
        f"with EPERM: {confined.describe()}; the default profile blocks this syscall")
    loose = unconfined_container(probe_run, caps)[name]
    if unconfined_answer is None:
        if "No space left" in loose.out:
            pytest.skip("user namespaces are disabled on this host (user.max_user_namespaces is 0): without the "
                        "profile unshare -U fails too, so the profile's refusal cannot be told apart")
        assert loose.rc == 0, (f"the control failed: without seccomp `{cmd}` should work (no capability needed) but "
                               f"{loose.describe()}; the refusal above cannot be pinned on the profile")
    else:
        assert unconfined_answer in loose.out, (
            f"the control failed: without seccomp `{cmd}` should reach the kernel and get {unconfined_answer!r}, but "
            f"{loose.describe()}; the refusal above cannot be pinned on the profile")


@pytest.mark.req("isolation.hardening.seccomp-follows-capabilities")
def test_seccomp_follows_capabilities(probe_run: ProbeRun) -> None:
    capadd_container = capadd_run(probe_run)
    got = capadd_container["mount"]
    assert got.rc == 0, (
        f"with CapAdd SYS_ADMIN a tmpfs mount inside the container failed: {got.describe()}; Docker's "
        "default profile allows mount(2) to containers that hold CAP_SYS_ADMIN")


# ---------------------------------------------------------------- masked and read-only paths


def _path_state(found: dict[str, Outcome], path: str) -> tuple[str, str]:
    """(kind, size) of a path in the container: ('file', bytes read) or ('dir', entries); size 'unreadable'."""
    got = found["path:" + path]
    state = got.out.split()
    if state == ["absent"]:
        pytest.skip(f"the kernel has no {path} (absent in the container's /proc or /sys)")
    assert len(state) == 2 and state[0] in ("file", "dir"), f"the probe of {path} printed no state: {got.describe()}"
    return state[0], state[1]


@pytest.mark.req("isolation.hardening.masked-paths")
@pytest.mark.parametrize("path", MASKED_PATHS, ids=path_id)
def test_masked_paths(probe_run: ProbeRun, path: str) -> None:
    default_container = default_run(probe_run)
    kind, size = _path_state(default_container, path)
    mounts = mounts_at(default_container["mountinfo"].out, path)
    assert mounts, f"{path} ({kind}) is not masked: nothing is mounted over it in the container"
    # 'unreadable': an LSM refused the read itself (AppArmor's docker-default denies /proc/kcore and
    # /sys/firmware): nothing leaks either way, and the mask is there (above)
    if kind == "file":
        assert size in ("0", "unreadable"), (
            f"{path} is readable in a default container ({size} bytes); masked files read as empty")
    else:
        assert size in ("0", "unreadable"), f"the masked directory {path} lists {size} entries; expected an empty tmpfs"
        assert "ro" in mounts[-1][5].split(","), f"the mask over {path} is writable: {' '.join(mounts[-1])}"


@pytest.mark.req("isolation.hardening.readonly-paths")
@pytest.mark.parametrize("path", READONLY_PATHS, ids=path_id)
def test_readonly_paths(probe_run: ProbeRun, path: str) -> None:
    default_container = default_run(probe_run)
    _path_state(default_container, path)
    mounts = mounts_at(default_container["mountinfo"].out, path)
    assert mounts, f"{path} is not bound read-only in a default container: no mount at that path"
    assert "ro" in mounts[-1][5].split(","), f"{path} is mounted writable: {' '.join(mounts[-1])}"


@pytest.mark.req("isolation.hardening.systempaths-unconfined")
@pytest.mark.parametrize("which", ["MaskedPaths", "ReadonlyPaths"])
def test_systempaths_unconfined(probe_run: ProbeRun, which: str) -> None:
    default_container = default_run(probe_run)
    # What `docker run --security-opt systempaths=unconfined` sends. The open for writing of the container's own
    # network sysctl writes nothing: it only shows that /proc/sys is writable. Where AppArmor is on, Docker's
    # docker-default profile denies writes under /proc/sys whatever ReadonlyPaths says, so users of
    # systempaths=unconfined there add apparmor=unconfined, as this does (ignored where AppArmor is off).
    found = probe_run({"mountinfo": "cat /proc/self/mountinfo", "open": ": >> /proc/sys/net/ipv4/ip_forward"},
                      shared="systempaths", HostConfig={"MaskedPaths": [], "ReadonlyPaths": [],
                                                        "SecurityOpt": ["apparmor=unconfined"]})
    paths = MASKED_PATHS if which == "MaskedPaths" else READONLY_PATHS
    present = [p for p in paths if default_container["path:" + p].out != "absent"]
    still = [p for p in present if mounts_at(found["mountinfo"].out, p)]
    assert not still, f"with HostConfig.{which} [] these paths are still covered: {still}"
    if which == "ReadonlyPaths":
        assert found["open"].rc == 0, (f"with ReadonlyPaths [] the container's own network sysctl could not be "
                                       f"opened for writing: {found['open'].describe()}")


@pytest.mark.req("isolation.hardening.masked-paths-custom")
def test_masked_paths_custom(probe_run: ProbeRun) -> None:
    found = probe_run({"group": "cat /etc/group", "mountinfo": "cat /proc/self/mountinfo"},
                      HostConfig={"MaskedPaths": ["/etc/group"]})
    assert found["group"].rc == 0 and found["group"].out == "", (
        f"with MaskedPaths ['/etc/group'] the file still reads {found['group'].out[:100]!r}; expected empty")
    replaced = [p for p in MASKED_PATHS if mounts_at(found["mountinfo"].out, p)]
    assert not replaced, f"MaskedPaths replaces the default list, but {replaced} are masked too"
    assert mounts_at(found["mountinfo"].out, "/proc/sys"), "MaskedPaths alone must leave the read-only paths as they are"


# ---------------------------------------------------------------- /dev and devices


@pytest.mark.req("isolation.hardening.dev-default-only")
def test_dev_default_only(probe_run: ProbeRun) -> None:
    default_container = default_run(probe_run)
    entries = set(default_container["dev"].out.split())
    extra, missing = entries - DEV_ENTRIES - DEV_OPTIONAL, DEV_ENTRIES - entries
    assert not extra and not missing, (
        f"a default container's /dev holds {sorted(entries)}; expected exactly {sorted(DEV_ENTRIES)} "
        f"(optional {sorted(DEV_OPTIONAL)}): extra {sorted(extra)}, missing {sorted(missing)}")


@pytest.mark.req("isolation.hardening.dev-default-nodes")
@pytest.mark.parametrize("node", sorted(DEFAULT_NODES))
def test_dev_default_nodes(probe_run: ProbeRun, node: str) -> None:
    default_container = default_run(probe_run)
    got = default_container["node:" + node]
    major, minor = DEFAULT_NODES[node].split(":")
    expected = f"character special file {int(major):x}:{int(minor):x}"
    assert got.rc == 0 and got.out == expected, f"/dev/{node}: {got.describe()}; expected {expected!r}"


@pytest.mark.req("isolation.hardening.dev-no-block-devices")
def test_dev_no_block_devices(probe_run: ProbeRun) -> None:
    default_container = default_run(probe_run)
    found = default_container["block"]
    assert found.rc == 0 and not found.out.strip(), f"a default container's /dev holds block devices: {found.out!r}"


@pytest.mark.req("isolation.hardening.device-cgroup-denies")
@pytest.mark.parametrize("name", sorted(DENIED_DEVICES))
def test_device_cgroup_denies(probe_run: ProbeRun, name: str) -> None:
    default_container = default_run(probe_run)
    kind, major, minor = DENIED_DEVICES[name]
    made = default_container["mknod:" + name]
    assert made.rc == 0, (f"the control failed: mknod {kind} {major}:{minor} needs only CAP_MKNOD, which a default "
                          f"container has, and Docker's device cgroup allows mknod ('m') of any node: {made.describe()}")
    opened = default_container["open:" + name]
    assert opened.rc != 0 and EPERM in opened.out, (
        f"a default container opened a {kind} {major}:{minor} node it made ({opened.describe()}); the device cgroup "
        "must refuse with EPERM every device not in Docker's allow list")


def devices_run(probe_run: ProbeRun) -> dict[str, Outcome]:
    """/dev/null added as /dev/xnull (rwm) and /dev/loop-control as /dev/xloop (r only).

    /dev/loop-control is not in Docker's default allow list; opening it without an ioctl does nothing.
    Local targets only (the callers take `hostside`): the host must have the device.
    """
    if not os.path.exists("/dev/loop-control"):
        pytest.skip("the host has no /dev/loop-control to hand to the container")
    return probe_run({"stat": "stat -c '%F %t:%T' /dev/xnull", "write": "echo conf > /dev/xnull",
                      "loop-read": ": < /dev/xloop", "loop-write": ": >> /dev/xloop"},
                     shared="devices",
                     HostConfig={"Devices": [
                         {"PathOnHost": "/dev/null", "PathInContainer": "/dev/xnull", "CgroupPermissions": "rwm"},
                         {"PathOnHost": "/dev/loop-control", "PathInContainer": "/dev/xloop", "CgroupPermissions": "r"},
                     ]})


@pytest.mark.req("isolation.hardening.devices-add")
def test_devices_add(probe_run: ProbeRun, hostside: Host) -> None:
    devices_container = devices_run(probe_run)
    found = devices_container
    assert found["stat"].out == "character special file 1:3", (
        f"HostConfig.Devices /dev/null -> /dev/xnull: {found['stat'].describe()}; expected a char 1:3 node")
    assert found["write"].rc == 0, f"writing the added /dev/xnull failed: {found['write'].describe()}"


@pytest.mark.req("isolation.hardening.devices-cgroup-permissions")
def test_devices_cgroup_permissions(probe_run: ProbeRun, hostside: Host) -> None:
    devices_container = devices_run(probe_run)
    found = devices_container
    assert found["loop-read"].rc == 0, (f"a device added with CgroupPermissions 'r' could not be opened for reading: "
                                        f"{found['loop-read'].describe()}")
    assert found["loop-write"].rc != 0 and EPERM in found["loop-write"].out, (
        f"a device added with CgroupPermissions 'r' was opened for writing ({found['loop-write'].describe()}); the "
        "device cgroup must grant only the permissions asked for")


# ---------------------------------------------------------------- read-only rootfs, users and groups

ROOTFS_WRITES = {"/": False, "/tmp": False, "/dev/shm": True, "/scratch": True}


@pytest.mark.req("isolation.hardening.readonly-rootfs")
@pytest.mark.parametrize("where", sorted(ROOTFS_WRITES), ids=path_id)
def test_readonly_rootfs(probe_run: ProbeRun, where: str) -> None:
    probes = {d: f"touch {d.rstrip('/')}/conf-probe" for d in ROOTFS_WRITES}
    found = probe_run(probes, shared="readonly-rootfs",
                      HostConfig={"ReadonlyRootfs": True, "Tmpfs": {"/scratch": ""}})
    got = found[where]
    if ROOTFS_WRITES[where]:
        assert got.rc == 0, f"with ReadonlyRootfs, {where} must stay writable (it is a tmpfs): {got.describe()}"
    else:
        assert got.rc != 0 and "Read-only file system" in got.out, (
            f"with ReadonlyRootfs a file could be created in {where}: {got.describe()}; expected EROFS")


@pytest.mark.req("isolation.hardening.user-spec")
@pytest.mark.parametrize("user", sorted(USERS))
def test_user_spec(probe_run: ProbeRun, user: str) -> None:
    found = user_container(probe_run, user)
    got, (uid, gid) = (found["uid"].out, found["gid"].out), USERS[user]
    assert got == (str(uid), str(gid)), (f"User {user!r} ran as uid:gid {':'.join(got)}; expected {uid}:{gid} "
                                         "(numeric ids as given, names from the image's /etc/passwd and /etc/group)")


@pytest.mark.req("isolation.hardening.group-add")
def test_group_add(probe_run: ProbeRun) -> None:
    found = probe_run({"groups": "id -G"}, User="probe", HostConfig={"GroupAdd": ["daemon", "4242"]})
    groups = set(found["groups"].out.split())
    assert {"1", "4242", "1000"} <= groups, (
        f"User probe with GroupAdd ['daemon', '4242'] has groups {sorted(groups)}; expected 1 (daemon, by name), "
        "4242 (numeric) and the primary 1000")
