"""Joining: exec into a running container (setns into all its namespaces), container:X modes, host modes."""

from __future__ import annotations

import os
import subprocess

import pytest

from refengine.libcontainer import ExecConfig, NamespaceSpec, StartError

try:
    from .conftest import ns_inode
except ImportError:  # tests/libcontainer is not a package
    from conftest import ns_inode

KINDS = ("pid", "mnt", "net", "ipc", "uts", "user", "cgroup")


def exec_out(c, ec: ExecConfig) -> tuple[int, str]:
    p = c.exec(ec, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out = p.stdout.read().decode()
    rc = p.wait(10)
    p.close()
    return rc, out


def test_exec_joins_every_namespace(lc) -> None:
    c = lc.start(["sleep", "60"], hostname="joined")
    p = c.exec(ExecConfig(["sleep", "60"]))
    try:
        for kind in KINDS:
            assert ns_inode(p.pid, kind) == ns_inode(c.pid, kind), f"exec'd process not in the container's {kind} ns"
        with open(f"/proc/{p.pid}/status") as fh:
            nspid = next(line for line in fh if line.startswith("NSpid")).split()[1:]
        assert len(nspid) == 2 and nspid[1] != "1", "exec'd process lives in the container's PID namespace"
    finally:
        p.signal(9)
        p.wait(10)
        p.close()


def test_exec_sees_the_container(lc, rootfs) -> None:
    c = lc.start(["sh", "-c", "echo inside > /tmp/mark; sleep 60"], hostname="joined")
    rc, out = exec_out(c, ExecConfig(["sh", "-c", "sleep 0.2; cat /tmp/mark; hostname; ps -o pid,comm | grep -c sleep"]))
    assert out.split() == ["inside", "joined", "1"]


def test_exec_user_env_cwd(lc) -> None:
    c = lc.start(["sleep", "60"], env=["PATH=/bin:/usr/bin", "A=container"], cwd="/tmp")
    rc, out = exec_out(c, ExecConfig(["sh", "-c", 'echo "$(id -u):$(id -g) $A $B $(pwd)"'], env=["B=exec"]))
    assert out.strip() == "0:0 container exec /tmp"
    rc, out = exec_out(c, ExecConfig(["sh", "-c", 'echo "$(id -u):$(id -G) $A $(pwd)"'], user="probe",
                                     additional_groups=["daemon"], env=["A=override"], cwd="/home"))
    assert out.strip() == "1000:1000 1 override /home"


def test_exec_keeps_the_restrictions(lc) -> None:
    c = lc.start(["sleep", "60"], no_new_privileges=True, cap_drop=["CHOWN"])
    rc, out = exec_out(c, ExecConfig(["cat", "/proc/self/status"]))
    st = dict(line.split(":\t", 1) for line in out.splitlines() if ":\t" in line)
    assert st["NoNewPrivs"] == "1" and st["Seccomp"] == "2"
    assert int(st["CapEff"], 16) == int(st["CapBnd"], 16) and not int(st["CapEff"], 16) & 1, "CHOWN stays dropped"
    rc, out = exec_out(c, ExecConfig(["cat", "/proc/self/status"], user="probe"))
    st = dict(line.split(":\t", 1) for line in out.splitlines() if ":\t" in line)
    assert int(st["CapEff"], 16) == 0


def test_exec_privileged(lc) -> None:
    c = lc.start(["sleep", "60"])
    rc, out = exec_out(c, ExecConfig(["sh", "-c", "mkdir -p /tmp/m && mount -t tmpfs x /tmp/m && echo mounted"],
                                     privileged=True))
    assert "mounted" in out


def test_exec_errors(lc) -> None:
    c = lc.start(["sleep", "60"])
    with pytest.raises(StartError) as ei:
        c.exec(ExecConfig(["nope"]))
    assert ei.value.exit_code == 127
    with pytest.raises(StartError) as ei:
        c.exec(ExecConfig(["true"], user="ghost"))
    assert "unable to find user ghost" in ei.value.message
    with pytest.raises(StartError) as ei:
        c.exec(ExecConfig(["true"], cwd="/no/such/dir"))
    assert ei.value.exit_code == 127 and "no such file or directory" in ei.value.message


def test_exec_refused_when_not_running(lc) -> None:
    c = lc.make(["true"])
    with pytest.raises(RuntimeError):
        c.exec(ExecConfig(["true"]))
    c.start()
    c.wait(10)
    with pytest.raises(RuntimeError):
        c.exec(ExecConfig(["true"]))


def test_exec_exit_code_and_signal(lc) -> None:
    c = lc.start(["sleep", "60"])
    assert exec_out(c, ExecConfig(["sh", "-c", "exit 7"]))[0] == 7
    p = c.exec(ExecConfig(["sleep", "60"]))
    p.signal(15)
    assert p.wait(10) == 128 + 15, "an exec'd process is not PID 1: SIGTERM kills it"
    p.close()


def test_exec_added_to_the_container_cgroup(lc) -> None:
    c = lc.start(["sleep", "60"], cgroup=True)
    p = c.exec(ExecConfig(["sleep", "60"]))
    assert p.pid in c.cgroup.pids()
    p.signal(9)
    p.wait(10)
    p.close()


def test_exec_processes_die_with_the_container(lc) -> None:
    c = lc.start(["sleep", "60"])
    p = c.exec(ExecConfig(["sleep", "60"]))
    c.signal(9)
    assert c.wait(10) == 137
    assert p.wait(10) == 137, "PID 1 gone: the kernel kills the rest of the PID namespace"


@pytest.mark.parametrize("kind", ["net", "ipc", "pid", "uts"])
def test_container_mode_joins_another_container(lc, kind: str) -> None:
    donor = lc.start(["sleep", "60"])
    ns = [NamespaceSpec(k) for k in ("mnt", "pid", "net", "ipc", "uts") if k != kind]
    ns.append(NamespaceSpec(kind, donor.ns_path(kind)))
    c = lc.make(["sleep", "60"], namespaces=ns)
    p = c.start()
    assert ns_inode(p.pid, kind) == ns_inode(donor.pid, kind)
    for other in ("mnt", "pid", "net", "ipc", "uts"):
        if other != kind:
            assert ns_inode(p.pid, other) != ns_inode(donor.pid, other), other


def test_pid_container_mode_sees_the_donor(lc) -> None:
    donor = lc.start(["sleep", "60"])
    ns = [NamespaceSpec(k) for k in ("mnt", "net", "ipc", "uts")] + [NamespaceSpec("pid", donor.ns_path("pid"))]
    rc, out = lc.run("echo $$; ps -o pid,comm | grep sleep", namespaces=ns)
    lines = out.split("\n")
    assert lines[0] != "1" and lines[1].split() == ["1", "sleep"]


def test_net_container_mode_shares_loopback(lc) -> None:
    donor = lc.start(["sh", "-c", "ip link set lo up; ip addr add 127.77.0.1/32 dev lo; sleep 60"],
                     cap_add=["NET_ADMIN"])
    ns = [NamespaceSpec(k) for k in ("mnt", "pid", "ipc", "uts")] + [NamespaceSpec("net", donor.ns_path("net"))]
    rc, out = lc.run("sleep 0.3; ip addr show lo", namespaces=ns)
    assert "127.77.0.1" in out


def test_join_missing_namespace_fails_cleanly(lc) -> None:
    ns = [NamespaceSpec("mnt"), NamespaceSpec("net", "/proc/999999999/ns/net")]
    with pytest.raises(StartError, match="cannot open the net namespace"):
        lc.make(["true"], namespaces=ns).start()


def test_exec_from_a_threaded_parent(lc) -> None:
    """The engine is threaded; exec (setns into a mount namespace) still works: the init does it."""
    import threading

    c = lc.start(["sleep", "60"])
    results: list[str] = []

    def worker() -> None:
        results.append(exec_out(c, ExecConfig(["hostname"]))[1])

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(results) == 4 and len(set(results)) == 1
    assert os.getpid() > 0
