"""Namespace isolation: what a container sees of PIDs, hostname, IPC, network, users and cgroups, and
which namespaces the HostConfig modes (host, container:<id>, shareable, private) give it.

Inside views come from busybox applets in the container; host views (namespace identities of
/proc/<pid>/ns/*, /proc/sysvipc) from the `hostside` fixture, which skips on remote targets.
"The host's" namespaces are the daemon's own (the `host_ns` fixture).
"""

from __future__ import annotations

import io
import random
import struct
import tarfile
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from conformance.capabilities import Capabilities
from conformance.catalogue import api_tuple
from conformance.client import ApiClient
from conformance.host import Host
from conformance.resources import Containers

# ---------------------------------------------------------------- helpers


def _poll(fn: Callable[[], Any], timeout: float = 10, interval: float = 0.05) -> Any:
    """Call fn until it returns something truthy or the deadline passes; returns the last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def _pid(containers: Containers, cid: str) -> int:
    pid = containers.inspect(cid)["State"].get("Pid") or 0
    assert pid > 0, f"container {cid[:12]} should be running, but State.Pid is {pid}"
    return pid


# How long a container is watched after a signal its PID 1 must survive. The kernel decides at send time (a
# signal PID 1 has no handler for is dropped then); had it been fatal, PID 1 would be gone within milliseconds,
# and dockerd and refengine report such an exit 5-30 ms after the kill call returns, on a loaded machine too.
SURVIVE_WINDOW = 0.3


def _stays_running(containers: Containers, cid: str, seconds: float = SURVIVE_WINDOW) -> dict[str, Any]:
    """Watch the container for `seconds`; its State as soon as it stops running (or at the end)."""
    def stopped() -> dict[str, Any] | None:
        state = containers.inspect(cid)["State"]
        return None if state["Running"] else state

    return _poll(stopped, timeout=seconds, interval=0.1) or containers.inspect(cid)["State"]


def _cgroup_lines(text: str) -> list[tuple[str, str]]:
    """/proc/<pid>/cgroup as (controllers, path) pairs."""
    out = []
    for line in text.strip().splitlines():
        _hid, ctrls, path = line.split(":", 2)
        out.append((ctrls, path))
    return out


def _mountinfo_field(mountinfo: str, mountpoint: str) -> str | None:
    """The (last) /proc/<pid>/mountinfo line whose mount point is `mountpoint`."""
    found = None
    for line in mountinfo.splitlines():
        parts = line.split()
        if len(parts) > 4 and parts[4] == mountpoint:
            found = line
    return found


def _api_at_least(capabilities: Capabilities, version: str) -> bool:
    return api_tuple(capabilities.api_version) >= api_tuple(version)


# A SysV shared-memory probe: busybox has no ipcmk here, so a 134-byte static x86-64 program does
# shmget(IPC_PRIVATE, size, IPC_CREAT|0600), shmat, shmctl(IPC_RMID) and then pause()s forever. The
# segment is listed in /proc/sysvipc/shm (key 0, the given size) for as long as the program lives and
# is destroyed when it dies, so nothing outlives the container even if an engine put it in the host's
# IPC namespace. It exits 1 if a call fails.
HOLDER_PATH = "/conf-shm-holder"


def _shm_holder_elf(size: int) -> bytes:
    code = (b"\xbf\x00\x00\x00\x00"                     # mov edi, 0 (IPC_PRIVATE)
            + b"\xbe" + struct.pack("<I", size)         # mov esi, size
            + b"\xba" + struct.pack("<I", 0o1600)       # mov edx, IPC_CREAT|0600
            + b"\xb8\x1d\x00\x00\x00\x0f\x05"           # shmget
            + b"\x48\x85\xc0\x78\x2f"                   # test rax,rax; js fail
            + b"\x89\xc3"                               # mov ebx, eax (shmid)
            + b"\x89\xdf\x31\xf6\x31\xd2"               # edi=shmid, esi=0, edx=0
            + b"\xb8\x1e\x00\x00\x00\x0f\x05"           # shmat
            + b"\x48\x85\xc0\x78\x1b"                   # test rax,rax; js fail
            + b"\x89\xdf\x31\xf6\x31\xd2"               # edi=shmid, esi=IPC_RMID, edx=0
            + b"\xb8\x1f\x00\x00\x00\x0f\x05"           # shmctl
            + b"\x48\x85\xc0\x78\x09"                   # test rax,rax; js fail
            + b"\xb8\x22\x00\x00\x00\x0f\x05\xeb\xf7"   # loop: pause; jmp loop
            + b"\xbf\x01\x00\x00\x00"                   # fail: mov edi, 1
            + b"\xb8\x3c\x00\x00\x00\x0f\x05")          # exit
    base, ehsize, phsize = 0x400000, 64, 56
    total = ehsize + phsize + len(code)
    ehdr = (b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)
            + struct.pack("<HHIQQQIHHHHHH", 2, 62, 1, base + ehsize + phsize, ehsize, 0, 0, ehsize, phsize,
                          1, 0, 0, 0))
    phdr = struct.pack("<IIQQQQQQ", 1, 5, 0, base, base, total, total, 0x1000)
    return ehdr + phdr + code


def _shm_sizes(listing: str) -> list[int]:
    """Segment sizes in a /proc/sysvipc/shm listing."""
    sizes = []
    for line in listing.strip().splitlines()[1:]:
        cols = line.split()
        if len(cols) > 3 and cols[3].isdigit():
            sizes.append(int(cols[3]))
    return sizes


@pytest.fixture
def shm_holder(api: ApiClient, containers: Containers, capabilities: Capabilities) -> Callable[..., tuple[str, int]]:
    """Start a container whose PID 1 holds a SysV shm segment of a unique size; returns (id, size)."""
    if capabilities.arch not in ("amd64", "x86_64"):
        pytest.skip(f"the SysV shm probe program is x86-64 only (busybox has no ipcmk); target is {capabilities.arch}")

    def start(**cfg: Any) -> tuple[str, int]:
        size = random.randrange(100_001, 999_999)
        cid = containers.create([HOLDER_PATH], **cfg)
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            data = _shm_holder_elf(size)
            info = tarfile.TarInfo(HOLDER_PATH.lstrip("/"))
            info.size, info.mode = len(data), 0o755
            tar.addfile(info, io.BytesIO(data))
        resp = api.put(f"/containers/{cid}/archive", params={"path": "/"}, data=buf.getvalue(),
                       headers={"Content-Type": "application/x-tar"})
        assert resp.status_code == 200, f"PUT /containers/{{id}}/archive answered {resp.status_code} {resp.text[:200]!r}"
        containers.start(cid)
        seen = _poll(lambda: size in _shm_sizes(containers.exec(cid, ["cat", "/proc/sysvipc/shm"]).stdout))
        state = containers.inspect(cid)["State"]
        assert seen, (f"the SysV probe's segment of {size} bytes never showed in its own /proc/sysvipc/shm "
                      f"(container running: {state['Running']}, exit code {state['ExitCode']})")
        return cid, size

    return start


@pytest.fixture(scope="module")
def idle(_session_api: ApiClient, probe: Any, run_id: str, capabilities: Capabilities) -> Iterator[str]:
    """One running default container per worker for checks that only look (exec, host-side reads).

    Created with CgroupnsMode private where the API has it, so its cgroup namespace is its own too.
    """
    factory = Containers(_session_api, probe, run_id)
    host_config = {"CgroupnsMode": "private"} if _api_at_least(capabilities, "1.41") else {}
    try:
        yield factory.run_long(HostConfig=host_config)
    finally:
        factory.cleanup()


NAMED = {"Hostname": "conf-named", "Domainname": "conf.example"}


@pytest.fixture(scope="module")
def named(_session_api: ApiClient, probe: Any, run_id: str) -> Iterator[str]:
    """One running container per worker created with Hostname and Domainname (NAMED)."""
    factory = Containers(_session_api, probe, run_id)
    try:
        yield factory.run_long(**NAMED)
    finally:
        factory.cleanup()


# ================================================================ PID namespace


@pytest.mark.req("isolation.ns.pid-first-process-is-1")
def test_pid_first_process_is_1(containers: Containers) -> None:
    res = containers.run_output(["sh", "-c", "echo $$"])
    assert res.exit_code == 0 and res.stdout.strip() == "1", (
        f"`echo $$` as the container's command: {res.describe()}; the first process of a new PID "
        "namespace is PID 1 in it")


@pytest.mark.req("isolation.ns.pid-host-processes-invisible")
def test_pid_host_processes_invisible(containers: Containers, idle: str) -> None:
    cid = idle
    res = containers.exec(cid, ["sh", "-c", "for p in /proc/[0-9]*; do echo ${p#/proc/} $(cat $p/comm); done"])
    assert res.exit_code == 0, f"listing /proc: {res.describe()}"
    procs = dict(line.split(" ", 1) for line in res.stdout.strip().splitlines() if " " in line)
    assert procs.get("1") == "sleep", (
        f"/proc in the container lists {procs}; PID 1 should be the container's `sleep`")
    strangers = {pid: comm for pid, comm in procs.items() if comm not in ("sleep", "sh", "cat")}
    assert not strangers, (
        f"the container sees processes that are not its own: {strangers} (all: {procs}); a private PID "
        "namespace shows only the container's processes")


@pytest.mark.req("isolation.ns.pid-host-pid-not-visible")
def test_pid_host_pid_not_visible(containers: Containers, idle: str) -> None:
    cid = idle
    host_pid = _pid(containers, cid)
    if host_pid < 100:
        pytest.skip(f"State.Pid is {host_pid}: too small to tell apart from the container's own PIDs")
    res = containers.exec(cid, ["sh", "-c", f"if [ -e /proc/{host_pid} ]; then echo present $(cat /proc/{host_pid}/comm); "
                                            "else echo absent; fi"])
    assert res.exit_code == 0 and res.stdout.strip() == "absent", (
        f"inside, /proc/{host_pid} (the host PID of the container's init, State.Pid) exists: {res.describe()}; "
        "the host's numbering must not show in a private PID namespace")


@pytest.mark.req("isolation.ns.pid-mode-host-sees-host-pids")
def test_pid_mode_host_sees_host_pids(containers: Containers) -> None:
    cid = containers.run_long(HostConfig={"PidMode": "host"})
    host_pid = _pid(containers, cid)
    res = containers.exec(cid, ["cat", f"/proc/{host_pid}/cmdline"])
    assert res.exit_code == 0 and res.stdout.split("\0")[0] == "sleep", (
        f"with PidMode host, /proc/{host_pid} (State.Pid) inside should be the container's own sleep: "
        f"{res.describe()}; in the host's PID namespace PIDs are the host's numbers")


@pytest.mark.req("isolation.ns.pid-mode-container-shares")
def test_pid_mode_container_shares(containers: Containers, idle: str) -> None:
    donor = idle
    res = containers.run_output(["sh", "-c", "cat /proc/1/cmdline; echo; echo $$"],
                                HostConfig={"PidMode": f"container:{donor}"})
    lines = res.stdout.split("\n")
    assert res.exit_code == 0 and lines[0].split("\0")[0] == "sleep", (
        f"with PidMode container:<id>, PID 1 should be the other container's `sleep 3600`: {res.describe()}")
    assert lines[1].strip() != "1", (f"the joining container's first process is PID 1 ({res.describe()}); "
                                     "it should join the other PID namespace, whose PID 1 is taken")


SIGNALS_IGNORED = ["TERM", "INT"]


@pytest.mark.req("isolation.ns.pid1-ignores-unhandled-signals")
@pytest.mark.parametrize("signal", SIGNALS_IGNORED)
def test_pid1_ignores_unhandled_signal(api: ApiClient, containers: Containers, signal: str) -> None:
    cid = containers.run_long(HostConfig={"Init": False})
    resp = api.post(f"/containers/{cid}/kill", params={"signal": signal})
    assert resp.status_code == 204, f"POST /containers/{{id}}/kill?signal={signal} answered {resp.status_code}"
    state = _stays_running(containers, cid)
    assert state["Running"], (
        f"SIG{signal} ended the container (exit code {state['ExitCode']}); its PID 1 (`sleep`, no handler) must "
        "ignore it: the kernel drops signals without a handler sent to a PID namespace's init")


@pytest.mark.req("isolation.ns.pid1-sigkill-ends")
def test_pid1_sigkill_ends(api: ApiClient, containers: Containers) -> None:
    cid = containers.run_long(HostConfig={"Init": False})
    resp = api.post(f"/containers/{cid}/kill", params={"signal": "KILL"})
    assert resp.status_code == 204, f"POST /containers/{{id}}/kill?signal=KILL answered {resp.status_code}"
    code = containers.wait(cid, timeout=20)
    assert code == 137, f"after SIGKILL the container exited {code}; expected 137 (128 + 9)"


@pytest.mark.req("isolation.ns.pid1-handled-signal-delivered")
def test_pid1_handled_signal_delivered(api: ApiClient, containers: Containers) -> None:
    cid = containers.run(["sh", "-c", "trap 'exit 42' TERM; echo ready; while :; do sleep 0.1; done"],
                         HostConfig={"Init": False})
    assert _poll(lambda: "ready" in containers.output(cid)), "the trap script never said ready"
    resp = api.post(f"/containers/{cid}/kill", params={"signal": "TERM"})
    assert resp.status_code == 204, f"POST /containers/{{id}}/kill?signal=TERM answered {resp.status_code}"
    code = containers.wait(cid, timeout=20)
    assert code == 42, (f"PID 1 with a SIGTERM handler (exit 42) exited {code}; a handled signal must reach PID 1")


@pytest.mark.req("isolation.ns.pid1-unkillable-from-inside")
def test_pid1_unkillable_from_inside(containers: Containers) -> None:
    cid = containers.run_long(HostConfig={"Init": False})
    # Guard: send only when PID 1 here is the container's own sleep (never a host init).
    res = containers.exec(cid, ["sh", "-c", 'test "$(cat /proc/1/comm)" = sleep && kill -KILL 1'])
    assert res.exit_code == 0, (f"`kill -KILL 1` inside (guarded by PID 1 being the container's sleep): "
                                f"{res.describe()}")
    state = _stays_running(containers, cid)
    assert state["Running"], (
        f"SIGKILL sent to PID 1 from inside its own PID namespace ended the container (exit {state['ExitCode']}); "
        "the kernel ignores it (only an ancestor namespace can kill the init)")


@pytest.mark.req("isolation.ns.pid-exec-not-init")
def test_pid_exec_not_init(containers: Containers, idle: str) -> None:
    cid = idle
    res = containers.exec(cid, ["sh", "-c", "echo $$; cat /proc/1/cmdline"])
    lines = res.stdout.split("\n", 1)
    assert res.exit_code == 0 and lines[0].strip() not in ("", "1"), (
        f"an exec'd shell reports PID {lines[0]!r} ({res.describe()}); it joins a PID namespace whose PID 1 exists")
    assert len(lines) > 1 and lines[1].split("\0")[0] == "sleep", (
        f"the exec'd process sees PID 1 as {lines[1:]!r}; it should see the container's `sleep 3600`")


# ================================================================ UTS namespace


@pytest.mark.req("isolation.ns.uts-default-hostname")
def test_uts_default_hostname(containers: Containers, idle: str) -> None:
    res = containers.exec(idle, ["hostname"])
    assert res.exit_code == 0 and res.stdout.strip() == idle[:12], (
        f"`hostname` in a container created without Hostname: {res.describe()}; Docker names the container's "
        f"UTS namespace after the first 12 characters of its ID ({idle[:12]})")


HOSTNAME_VIEWS = {
    "hostname": ["hostname"],
    "uname-n": ["uname", "-n"],
    "proc": ["cat", "/proc/sys/kernel/hostname"],
    "etc-hostname": ["cat", "/etc/hostname"],
}


@pytest.mark.req("isolation.ns.uts-hostname-set")
@pytest.mark.parametrize("view", list(HOSTNAME_VIEWS))
def test_uts_hostname_set(containers: Containers, named: str, view: str) -> None:
    name = NAMED["Hostname"]
    res = containers.exec(named, HOSTNAME_VIEWS[view])
    assert res.exit_code == 0 and res.stdout.strip() == name, (
        f"{' '.join(HOSTNAME_VIEWS[view])} with Hostname={name!r}: {res.describe()}; expected {name!r}")


@pytest.mark.req("isolation.ns.uts-domainname-set")
def test_uts_domainname_set(containers: Containers, named: str) -> None:
    res = containers.exec(named, ["cat", "/proc/sys/kernel/domainname"])
    assert res.exit_code == 0 and res.stdout.strip() == NAMED["Domainname"], (
        f"/proc/sys/kernel/domainname with Domainname=conf.example: {res.describe()}")


@pytest.mark.req("isolation.ns.uts-host-hostname-unchanged")
def test_uts_host_hostname_unchanged(containers: Containers, hostside: Host) -> None:
    before = hostside.read("/proc/sys/kernel/hostname").strip()
    name = f"conf-{random.randrange(16**6):06x}"
    res = containers.run_output(["hostname"], Hostname=name)
    after = hostside.read("/proc/sys/kernel/hostname").strip()
    assert res.stdout.strip() == name, f"the container's hostname: {res.describe()}; expected {name!r}"
    assert after == before, (f"the host's hostname changed from {before!r} to {after!r} while a container named "
                             f"itself {name!r}; the container's UTS namespace must be its own")


@pytest.mark.req("isolation.ns.uts-mode-host")
def test_uts_mode_host(containers: Containers, engine_info: dict[str, Any]) -> None:
    res = containers.run_output(["hostname"], HostConfig={"UTSMode": "host"})
    assert res.exit_code == 0 and res.stdout.strip() == engine_info["Name"], (
        f"`hostname` with UTSMode host: {res.describe()}; expected the host's name {engine_info['Name']!r} "
        "(GET /info Name)")


# ================================================================ IPC namespace


@pytest.mark.req("isolation.ns.ipc-sysv-invisible-to-other-container")
def test_ipc_sysv_invisible_to_other_container(containers: Containers, shm_holder: Callable) -> None:
    _cid, size = shm_holder()
    res = containers.run_output(["cat", "/proc/sysvipc/shm"])
    assert res.exit_code == 0, f"reading /proc/sysvipc/shm: {res.describe()}"
    assert size not in _shm_sizes(res.stdout), (
        f"another container lists the first container's SysV segment ({size} bytes) in /proc/sysvipc/shm: "
        f"{res.stdout!r}; SysV objects belong to the IPC namespace")


@pytest.mark.req("isolation.ns.ipc-sysv-invisible-on-host")
def test_ipc_sysv_invisible_on_host(shm_holder: Callable, hostside: Host) -> None:
    _cid, size = shm_holder()
    listing = hostside.read("/proc/sysvipc/shm")
    assert size not in _shm_sizes(listing), (
        f"the host lists the container's SysV segment ({size} bytes) in /proc/sysvipc/shm; the container "
        "must have its own IPC namespace")


@pytest.mark.req("isolation.ns.ipc-shareable-joined")
def test_ipc_shareable_joined(containers: Containers, shm_holder: Callable) -> None:
    donor, size = shm_holder(HostConfig={"IpcMode": "shareable"})
    res = containers.run_output(["cat", "/proc/sysvipc/shm"], HostConfig={"IpcMode": f"container:{donor}"})
    assert res.exit_code == 0 and size in _shm_sizes(res.stdout), (
        f"with IpcMode container:<shareable donor>, the donor's SysV segment ({size} bytes) is not listed: "
        f"{res.describe()}; joining shares the IPC namespace")


@pytest.mark.req("isolation.ns.ipc-join-non-shareable-refused")
def test_ipc_join_non_shareable_refused(api: ApiClient, containers: Containers) -> None:
    donor = containers.run_long(HostConfig={"IpcMode": "private"})
    resp = api.post("/containers/create", containers.config(["true"], HostConfig={"IpcMode": f"container:{donor}"}))
    if resp.status_code == 201:
        cid = containers.adopt(resp.json()["Id"])
        resp = api.post(f"/containers/{cid}/start")
        assert resp.status_code >= 400, (
            "a container joining the IPC namespace of a container with IpcMode private was created and started; "
            "Docker refuses that (the donor must be shareable)")
    assert "shareable" in resp.text.lower() or "ipc" in resp.text.lower(), (
        f"the refusal ({resp.status_code}) does not say why: {resp.text[:200]!r}")


@pytest.mark.req("isolation.ns.ipc-mqueue-private")
def test_ipc_mqueue_private(containers: Containers, idle: str) -> None:
    queue = f"conf-q-{random.randrange(16**6):06x}"
    cid = idle
    try:
        made = containers.exec(cid, ["sh", "-c", f"touch /dev/mqueue/{queue} && ls /dev/mqueue"])
        assert made.exit_code == 0 and queue in made.stdout.split(), (
            f"creating a POSIX message queue in /dev/mqueue: {made.describe()}")
        res = containers.run_output(["ls", "/dev/mqueue"])
        assert queue not in res.stdout.split(), (
            f"another container's /dev/mqueue lists the queue {queue}: {res.describe()}; POSIX message "
            "queues belong to the IPC namespace")
    finally:
        containers.exec(cid, ["rm", "-f", f"/dev/mqueue/{queue}"])


@pytest.mark.req("isolation.ns.ipc-dev-shm-private")
def test_ipc_dev_shm_private(containers: Containers, idle: str) -> None:
    fname = f"conf-shm-{random.randrange(16**6):06x}"
    cid = idle
    try:
        made = containers.exec(cid, ["sh", "-c", f"echo x > /dev/shm/{fname} && ls /dev/shm"])
        assert made.exit_code == 0 and fname in made.stdout.split(), f"writing /dev/shm/{fname}: {made.describe()}"
        res = containers.run_output(["ls", "/dev/shm"])
        assert fname not in res.stdout.split(), (
            f"another container's /dev/shm lists {fname}: {res.describe()}; each container has its own /dev/shm")
    finally:
        containers.exec(cid, ["rm", "-f", f"/dev/shm/{fname}"])


@pytest.mark.req("isolation.ns.ipc-dev-shm-shared-on-join")
def test_ipc_dev_shm_shared_on_join(containers: Containers) -> None:
    fname = f"conf-shm-{random.randrange(16**6):06x}"
    donor = containers.run_long(HostConfig={"IpcMode": "shareable"})
    made = containers.exec(donor, ["sh", "-c", f"echo x > /dev/shm/{fname}"])
    assert made.exit_code == 0, f"writing /dev/shm/{fname} in the donor: {made.describe()}"
    res = containers.run_output(["ls", "/dev/shm"], HostConfig={"IpcMode": f"container:{donor}"})
    assert fname in res.stdout.split(), (
        f"with IpcMode container:<donor>, /dev/shm does not list the donor's {fname}: {res.describe()}; "
        "Docker gives the joining container the donor's /dev/shm")


SHM_SIZES = [pytest.param(None, 65536, id="default-64m"),
             pytest.param(16 << 20, 16384, id="16m"),
             pytest.param(128 << 20, 131072, id="128m")]


@pytest.mark.req("isolation.ns.ipc-shm-size")
@pytest.mark.parametrize("shm_size,kib", SHM_SIZES)
def test_ipc_shm_size(containers: Containers, idle: str, shm_size: int | None, kib: int) -> None:
    if shm_size is None:  # the shared default container has the default size
        res = containers.exec(idle, ["cat", "/proc/self/mountinfo"])
    else:
        res = containers.run_output(["cat", "/proc/self/mountinfo"], HostConfig={"ShmSize": shm_size})
    line = _mountinfo_field(res.stdout, "/dev/shm")
    assert line, f"/dev/shm is not a mount point in the container: {res.describe()}"
    fstype, _src, opts = line.split(" - ", 1)[1].split()[:3]
    assert fstype == "tmpfs" and f"size={kib}k" in opts.split(","), (
        f"/dev/shm is mounted as {line!r}; expected a tmpfs with size={kib}k "
        f"({'the Docker default of 64 MiB' if shm_size is None else f'ShmSize {shm_size}'})")


@pytest.mark.req("isolation.ns.ipc-none-no-dev-shm")
def test_ipc_none_no_dev_shm(containers: Containers) -> None:
    res = containers.run_output(["cat", "/proc/self/mountinfo"], HostConfig={"IpcMode": "none"})
    assert res.exit_code == 0, res.describe()
    assert _mountinfo_field(res.stdout, "/dev/shm") is None, (
        f"with IpcMode none, /dev/shm is still mounted: {_mountinfo_field(res.stdout, '/dev/shm')!r}; "
        "Docker mounts no /dev/shm in that mode")


# ================================================================ network namespace


LOOPBACK_PROBE = (
    "cat /sys/class/net/lo/flags; ip -o -4 addr show dev lo; "
    "nc -l -p 17777 -e echo pong & "
    "for i in $(seq 50); do out=$(nc -w 2 127.0.0.1 17777 </dev/null 2>/dev/null) && [ -n \"$out\" ] && break; "
    "sleep 0.05; done; echo \"reply=$out\"")


@pytest.mark.req("isolation.ns.net-loopback-up")
@pytest.mark.parametrize("mode", ["default", "none"])
def test_net_loopback_up(containers: Containers, mode: str) -> None:
    host_config = {} if mode == "default" else {"NetworkMode": mode}
    res = containers.run_output(["sh", "-c", LOOPBACK_PROBE], HostConfig=host_config)
    lines = res.stdout.strip().splitlines()
    assert res.exit_code == 0 and lines, f"loopback probe: {res.describe()}"
    assert int(lines[0], 16) & 0x1, f"lo flags are {lines[0]} (IFF_UP unset): {res.describe()}; lo must be up"
    assert "127.0.0.1/8" in res.stdout, f"lo has no 127.0.0.1/8: {res.describe()}"
    assert "reply=pong" in res.stdout, (
        f"a TCP connection to 127.0.0.1 inside the container got no reply: {res.describe()}; "
        "the container's loopback must carry traffic")


@pytest.mark.req("isolation.ns.net-none-only-lo")
def test_net_none_only_lo(containers: Containers) -> None:
    res = containers.run_output(["ls", "/sys/class/net"], HostConfig={"NetworkMode": "none"})
    assert res.exit_code == 0 and res.stdout.split() == ["lo"], (
        f"interfaces with NetworkMode none: {res.describe()}; expected only lo")


@pytest.mark.req("isolation.ns.net-host-bridge-invisible")
def test_net_host_bridge_invisible(api: ApiClient, containers: Containers, idle: str) -> None:
    resp = api.get("/networks/bridge")
    assert resp.status_code == 200, f"GET /networks/bridge answered {resp.status_code}"
    bridge = (resp.json().get("Options") or {}).get("com.docker.network.bridge.name", "docker0")
    res = containers.exec(idle, ["ls", "/sys/class/net"])
    names = res.stdout.split()
    assert res.exit_code == 0 and "lo" in names, f"interfaces in the container: {res.describe()}"
    assert bridge not in names, (
        f"the container lists the host's bridge {bridge!r} among its interfaces {names}; a container on the "
        "default network has its own network namespace")


@pytest.mark.req("isolation.ns.net-mode-container-shares")
def test_net_mode_container_shares(containers: Containers, idle: str) -> None:
    donor = idle
    ip = containers.inspect(donor)["NetworkSettings"]["IPAddress"]
    assert ip, "the donor container on the default network has no NetworkSettings.IPAddress"
    res = containers.run_output(["ip", "-o", "-4", "addr"], HostConfig={"NetworkMode": f"container:{donor}"})
    assert res.exit_code == 0 and f" {ip}/" in res.stdout, (
        f"with NetworkMode container:<donor>, the addresses are {res.describe()}; expected the donor's {ip}")


# ================================================================ user namespace


@pytest.mark.req("isolation.ns.user-identity-map")
@pytest.mark.parametrize("mapfile", ["uid_map", "gid_map"])
def test_user_identity_map(containers: Containers, idle: str, userns_remapped: bool, mapfile: str) -> None:
    if userns_remapped:
        pytest.skip("the daemon remaps user namespaces (name=userns in SecurityOptions): no identity map expected")
    res = containers.exec(idle, ["cat", f"/proc/1/{mapfile}"])
    assert res.exit_code == 0 and res.stdout.split() == ["0", "0", "4294967295"], (
        f"/proc/1/{mapfile}: {res.describe()}; without user-namespace remapping the container is in the "
        "initial user namespace, whose map is `0 0 4294967295`")


@pytest.mark.req("isolation.ns.user-remapped-map")
def test_user_remapped_map(containers: Containers, userns_remapped: bool) -> None:
    if not userns_remapped:
        pytest.skip("the daemon does not remap user namespaces (no name=userns in SecurityOptions)")
    res = containers.run_output(["cat", "/proc/self/uid_map"])
    cols = res.stdout.split()
    assert res.exit_code == 0 and len(cols) >= 3 and cols[0] == "0" and cols[1] != "0", (
        f"/proc/self/uid_map with a remapping daemon: {res.describe()}; container root must map to a "
        "non-zero host UID")


@pytest.mark.req("isolation.ns.user-ns-per-remap")
def test_user_ns_per_remap(containers: Containers, hostside: Host, host_ns: Callable[[str], str],
                           idle: str, userns_remapped: bool) -> None:
    cid = idle
    inside, host = hostside.ns(_pid(containers, cid), "user"), host_ns("user")
    if userns_remapped:
        assert inside != host, f"with userns remapping the container is in the host's user namespace {host}"
    else:
        assert inside == host, (f"without userns remapping the container is in user namespace {inside}, "
                                f"not the host's {host}")


# ================================================================ cgroup namespace


@pytest.mark.req("isolation.ns.cgroup-private-root-paths")
def test_cgroup_private_root_paths(containers: Containers) -> None:
    res = containers.run_output(["cat", "/proc/self/cgroup"], HostConfig={"CgroupnsMode": "private"})
    lines = _cgroup_lines(res.stdout) if res.exit_code == 0 else []
    assert lines and all(path == "/" for _c, path in lines), (
        f"/proc/self/cgroup with CgroupnsMode private: {res.describe()}; a private cgroup namespace is rooted "
        "at the container's cgroup, so every path reads '/'")


@pytest.mark.req("isolation.ns.cgroup-host-mode-host-paths")
def test_cgroup_host_mode_host_paths(containers: Containers, hostside: Host) -> None:
    cid = containers.run_long(HostConfig={"CgroupnsMode": "host"})
    res = containers.exec(cid, ["cat", "/proc/1/cgroup"])
    host_view = hostside.read(f"/proc/{_pid(containers, cid)}/cgroup")
    assert res.exit_code == 0 and res.stdout.strip() == host_view.strip(), (
        f"with CgroupnsMode host, the container reads its cgroup as {res.stdout!r} but the host reads "
        f"{host_view!r}; in the host's cgroup namespace both views are the same")
    assert any(path != "/" for _c, path in _cgroup_lines(host_view)), f"the container is in the root cgroup: {host_view!r}"


@pytest.mark.req("isolation.ns.cgroup-default-mode")
def test_cgroup_default_mode(containers: Containers, capabilities: Capabilities) -> None:
    if capabilities.cgroup_version not in ("1", "2"):
        pytest.skip(f"the target reports CgroupVersion {capabilities.cgroup_version!r}")
    res = containers.run_output(["cat", "/proc/self/cgroup"])
    mode = containers.inspect(res.cid)["HostConfig"].get("CgroupnsMode")
    rooted = all(path == "/" for _c, path in _cgroup_lines(res.stdout))
    expected = "host" if capabilities.cgroup_version == "1" else "private"
    assert mode == expected, (f"HostConfig.CgroupnsMode of a container created without it is {mode!r}; "
                              f"Docker's default on cgroup v{capabilities.cgroup_version} is {expected!r}")
    assert rooted == (expected == "private"), (
        f"/proc/self/cgroup by default: {res.stdout!r}; in the {expected} default mode paths should "
        f"{'all be /' if expected == 'private' else 'be the host paths, not /'}")


# ================================================================ namespace identity (host side)

OWN_NAMESPACE = [pytest.param(kind, marks=pytest.mark.req(f"isolation.ns.{kind}-own-namespace"), id=kind)
                 for kind in ("pid", "net", "ipc", "uts", "mnt")]


@pytest.mark.parametrize("kind", OWN_NAMESPACE)
def test_own_namespace_by_default(containers: Containers, hostside: Host, host_ns: Callable[[str], str],
                                  idle: str, kind: str) -> None:
    cid = idle
    inside, host = hostside.ns(_pid(containers, cid), kind), host_ns(kind)
    assert inside != host, (f"a default container's {kind} namespace is the host's ({host}); every container "
                            f"gets its own {kind} namespace unless a mode says otherwise")


@pytest.mark.req("isolation.ns.cgroup-private-own-namespace")
def test_cgroup_private_own_namespace(containers: Containers, hostside: Host, host_ns: Callable[[str], str]) -> None:
    cid = containers.run_long(HostConfig={"CgroupnsMode": "private"})
    inside, host = hostside.ns(_pid(containers, cid), "cgroup"), host_ns("cgroup")
    assert inside != host, f"with CgroupnsMode private the container is in the host's cgroup namespace {host}"


HOST_MODES = [
    pytest.param("pid", "PidMode", marks=pytest.mark.req("isolation.ns.pid-mode-host"), id="pid"),
    pytest.param("ipc", "IpcMode", marks=pytest.mark.req("isolation.ns.ipc-mode-host"), id="ipc"),
    pytest.param("uts", "UTSMode", marks=pytest.mark.req("isolation.ns.uts-mode-host-namespace"), id="uts"),
    pytest.param("net", "NetworkMode", marks=pytest.mark.req("isolation.ns.net-mode-host"), id="net"),
    pytest.param("cgroup", "CgroupnsMode", marks=pytest.mark.req("isolation.ns.cgroup-mode-host"), id="cgroup"),
]


@pytest.mark.parametrize("kind,field", HOST_MODES)
def test_host_mode_shares_namespace(containers: Containers, hostside: Host, host_ns: Callable[[str], str],
                                    kind: str, field: str) -> None:
    cid = containers.run_long(HostConfig={field: "host"})
    inside, host = hostside.ns(_pid(containers, cid), kind), host_ns(kind)
    assert inside == host, f"with {field} host the container's {kind} namespace is {inside}, not the host's {host}"


# (kind, HostConfig field, the donor's HostConfig or None to use the shared `idle` container)
CONTAINER_MODES = [
    pytest.param("pid", "PidMode", None, marks=pytest.mark.req("isolation.ns.pid-mode-container-namespace"),
                 id="pid"),
    pytest.param("ipc", "IpcMode", {"IpcMode": "shareable"},
                 marks=pytest.mark.req("isolation.ns.ipc-mode-container-namespace"), id="ipc"),
    pytest.param("net", "NetworkMode", None, marks=pytest.mark.req("isolation.ns.net-mode-container-namespace"),
                 id="net"),
]


@pytest.mark.parametrize("kind,field,donor_config", CONTAINER_MODES)
def test_container_mode_shares_namespace(containers: Containers, hostside: Host, host_ns: Callable[[str], str],
                                         idle: str, kind: str, field: str,
                                         donor_config: dict[str, str] | None) -> None:
    donor = idle if donor_config is None else containers.run_long(HostConfig=donor_config)
    joiner = containers.run_long(HostConfig={field: f"container:{donor}"})
    theirs, ours = hostside.ns(_pid(containers, donor), kind), hostside.ns(_pid(containers, joiner), kind)
    assert ours == theirs, (f"with {field} container:<donor> the container's {kind} namespace is {ours}, "
                            f"not the donor's {theirs}")
    assert ours != host_ns(kind), f"the shared {kind} namespace is the host's"


EXEC_KINDS = ("pid", "net", "ipc", "uts", "mnt", "cgroup", "user")


@pytest.mark.req("isolation.ns.exec-joins-namespaces")
@pytest.mark.parametrize("kind", EXEC_KINDS)
def test_exec_joins_namespaces(containers: Containers, hostside: Host, idle: str, kind: str) -> None:
    cid = idle
    res = containers.exec(cid, ["readlink", f"/proc/self/ns/{kind}"])
    init = hostside.ns(_pid(containers, cid), kind)
    assert res.exit_code == 0 and res.stdout.strip() == init, (
        f"an exec'd process is in {kind} namespace {res.stdout.strip()!r} ({res.describe()}); the container's "
        f"init is in {init!r}: exec must join every namespace of the container")
