"""The init protocol end to end: namespaces, exec, stdio, env/cwd/user, error paths and exit codes."""

from __future__ import annotations

import os
import socket
import subprocess

import pytest

from refengine.libcontainer import ConfigError, NamespaceSpec, Rlimit, StartError
from refengine.libcontainer.config import default_namespaces

try:
    from .conftest import ns_inode
except ImportError:  # tests/libcontainer is not a package
    from conftest import ns_inode


def status(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        k, sep, v = line.partition(":")
        if sep:
            out[k.strip()] = v.strip()
    return out


def test_runs_and_exits_zero(lc) -> None:
    rc, out = lc.run(["echo", "hello"])
    assert (rc, out) == (0, "hello\n")


@pytest.mark.parametrize("code", [1, 3, 42, 255])
def test_exit_status(lc, code: int) -> None:
    rc, _ = lc.run(f"exit {code}")
    assert rc == code


def test_payload_is_pid1_with_private_namespaces(lc) -> None:
    c = lc.make(["sleep", "30"])
    p = c.start()
    try:
        for kind in ("pid", "mnt", "net", "ipc", "uts"):
            assert ns_inode(p.pid, kind) != ns_inode("self", kind), f"{kind} namespace is the host's"
        # host user and cgroup namespaces (Docker's default on cgroup v1)
        for kind in ("user", "cgroup"):
            assert ns_inode(p.pid, kind) == ns_inode("self", kind)
        with open(f"/proc/{p.pid}/status") as fh:
            nspid = status(fh.read())["NSpid"].split()
        assert nspid[-1] == "1" and nspid[0] == str(p.pid)
    finally:
        c.destroy()
    rc, out = lc.run("echo $$; ps -o pid,comm | tail -n +2")
    assert out.split()[0] == "1"
    assert out.split("\n", 1)[1].split()[:2] == ["1", "sh"], "the container sees its own PIDs only"


def test_host_modes_share_namespaces(lc) -> None:
    c = lc.make(["sleep", "30"], namespaces=[NamespaceSpec("mnt")])
    p = c.start()
    for kind in ("pid", "net", "ipc", "uts"):
        assert ns_inode(p.pid, kind) == ns_inode("self", kind), f"{kind} should be the host's"
    assert ns_inode(p.pid, "mnt") != ns_inode("self", "mnt")
    c.destroy()


def test_hostname_and_domainname(lc) -> None:
    rc, out = lc.run("hostname; cat /proc/sys/kernel/domainname", hostname="box1", domainname="example.org")
    assert rc == 0 and out.split() == ["box1", "example.org"]
    assert socket.gethostname() != "box1"


def test_hostname_needs_private_uts(lc) -> None:
    with pytest.raises(ConfigError, match="UTS"):
        lc.make(["true"], hostname="x", namespaces=[NamespaceSpec("mnt")]).start()


def test_env_cwd_and_home(lc) -> None:
    rc, out = lc.run('echo "$FOO|$PATH|$HOME|$(pwd)"', env=["FOO=bar baz", "PATH=/bin"], cwd="/tmp")
    assert out.strip() == "bar baz|/bin|/root|/tmp"
    rc, out = lc.run("echo $HOME", user="probe")
    assert out.strip() == "/home/probe"
    rc, out = lc.run("echo $HOME", user="4321")
    assert out.strip() == "/", "a uid with no passwd entry gets HOME=/"


def test_missing_cwd_is_created(lc, rootfs) -> None:
    rc, out = lc.run("pwd", cwd="/work/dir")
    assert (rc, out.strip()) == (0, "/work/dir")
    assert os.path.isdir(os.path.join(rootfs, "work/dir"))


@pytest.mark.parametrize("user,ids", [
    ("1000", "1000 1000"), ("probe", "1000 1000"), ("probe:daemon", "1000 1"), ("4321:4322", "4321 4322"),
    ("nobody", "65534 65534"), ("", "0 0"), ("root", "0 0"),
])
def test_user_spec(lc, user: str, ids: str) -> None:
    rc, out = lc.run('echo "$(id -u) $(id -g)"', user=user)
    assert (rc, out.strip()) == (0, ids)


def test_additional_groups(lc) -> None:
    rc, out = lc.run("id -G", user="probe", additional_groups=["daemon", "4242"])
    assert set(out.split()) == {"1000", "1", "4242"}


def test_supplementary_groups_from_group_file(lc, rootfs) -> None:
    with open(os.path.join(rootfs, "etc/group"), "a") as fh:
        fh.write("extra:x:777:probe,other\n")
    rc, out = lc.run("id -G", user="probe")
    assert set(out.split()) == {"1000", "777"}


@pytest.mark.parametrize("user,message", [
    ("nosuchuser", "unable to find user nosuchuser: no matching entries in passwd file"),
    ("probe:nosuchgroup", "unable to find group nosuchgroup: no matching entries in group file"),
])
def test_bad_user(lc, user: str, message: str) -> None:
    c = lc.make(["true"], user=user)
    with pytest.raises(StartError) as ei:
        c.start()
    assert ei.value.message == message and ei.value.exit_code == 128
    assert c.exit_code == 128 and c.status() == "stopped"


def test_bad_additional_group(lc) -> None:
    with pytest.raises(StartError, match="Unable to find group nope"):
        lc.make(["true"], additional_groups=["nope"]).start()


def test_executable_not_found_127(lc) -> None:
    c = lc.make(["foo"])
    with pytest.raises(StartError) as ei:
        c.start()
    assert ei.value.exit_code == 127 and c.exit_code == 127
    assert ei.value.message == 'exec: "foo": executable file not found in $PATH'


def test_path_not_found_127(lc) -> None:
    with pytest.raises(StartError) as ei:
        lc.make(["/no/such/file"]).start()
    assert ei.value.exit_code == 127 and "no such file or directory" in ei.value.message


@pytest.mark.parametrize("path", ["/etc/passwd", "/etc"])
def test_not_executable_126(lc, path: str) -> None:
    with pytest.raises(StartError) as ei:
        lc.make([path]).start()
    assert ei.value.exit_code == 126 and ei.value.message == f'exec: "{path}": permission denied'


def test_exec_format_error_126(lc, rootfs) -> None:
    path = os.path.join(rootfs, "bin/garbage")
    with open(path, "wb") as fh:
        fh.write(b"\x7fELF not really")
    os.chmod(path, 0o755)
    with pytest.raises(StartError) as ei:
        lc.make(["/bin/garbage"]).start()
    assert ei.value.exit_code == 126 and "exec format error" in ei.value.message


def test_non_executable_skipped_in_path(lc, rootfs) -> None:
    """Go's LookPath (runc) skips a match without x bits and keeps looking."""
    with open(os.path.join(rootfs, "usr/local/notexec"), "w") if os.path.isdir(os.path.join(rootfs, "usr/local")) \
            else open(os.path.join(rootfs, "usr/bin/notexec"), "w") as fh:
        fh.write("#!/bin/sh\n")
    with pytest.raises(StartError) as ei:
        lc.make(["notexec"]).start()
    assert ei.value.exit_code == 127


def test_script_with_missing_interpreter_127(lc, rootfs) -> None:
    path = os.path.join(rootfs, "bin/script")
    with open(path, "w") as fh:
        fh.write("#!/bin/bash\necho hi\n")
    os.chmod(path, 0o755)
    with pytest.raises(StartError) as ei:
        lc.make(["script"]).start()
    assert ei.value.exit_code == 127


def test_stdin_stdout_stderr(lc) -> None:
    c = lc.make(["sh", "-c", "read x; echo out:$x; echo err:$x >&2"])
    p = c.start(stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdin.write(b"ping\n")
    p.stdin.close()
    assert p.stdout.read() == b"out:ping\n"
    assert p.stderr.read() == b"err:ping\n"
    assert c.wait(10) == 0


def test_signal_state_reset(lc) -> None:
    """CPython ignores SIGPIPE/SIGXFSZ; none of that (nor a blocked mask) reaches the payload."""
    rc, out = lc.run(["cat", "/proc/self/status"])
    st = status(out)
    assert st["SigIgn"] == "0000000000000000"
    assert st["SigBlk"] == "0000000000000000"


def test_stray_fds_closed(lc) -> None:
    leak = os.open("/dev/null", os.O_RDONLY)
    os.set_inheritable(leak, True)
    try:
        rc, out = lc.run("ls /proc/self/fd")
    finally:
        os.close(leak)
    assert sorted(int(x) for x in out.split()) == [0, 1, 2, 3], out  # 3 = ls's own directory fd


def test_session_leader(lc) -> None:
    rc, out = lc.run(["cat", "/proc/self/stat"])
    fields = out.rpartition(")")[2].split()
    assert fields[2] == "1" and fields[3] == "1", "PID 1 leads its own process group and session"


def test_dumpable_restored_by_exec(lc) -> None:
    """The init runs undumpable (its /proc/<pid>/exe is the host's interpreter); execve makes it normal."""
    c = lc.make(["sleep", "30"])
    p = c.start()
    assert os.readlink(f"/proc/{p.pid}/exe").endswith("busybox")
    st = os.stat(f"/proc/{p.pid}/status")
    assert st.st_uid == 0
    c.destroy()


def test_rlimits_applied_and_clamped(lc) -> None:
    import resource

    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    c = lc.make(["sh", "-c", "ulimit -n; ulimit -Hn; ulimit -c"],
                rlimits=[Rlimit("nofile", 1024, 2048), Rlimit("RLIMIT_CORE", 0, 0)])
    p = c.start(stdout=subprocess.PIPE)
    assert p.stdout.read().split() == [b"1024", b"2048", b"0"]
    c.wait(10)
    if hard == resource.RLIM_INFINITY:
        pytest.skip("the host's hard nofile limit is unlimited: nothing to clamp")
    c = lc.make(["sh", "-c", "ulimit -n; ulimit -Hn"], rlimits=[Rlimit("nofile", hard * 4, hard * 4)])
    with pytest.warns(UserWarning, match="CAP_SYS_RESOURCE"):
        p = c.start(stdout=subprocess.PIPE)
    assert p.stdout.read().split() == [str(hard).encode()] * 2
    assert any("clamped" in w for w in p.warnings)
    c.wait(10)


def test_config_validation(lc) -> None:
    with pytest.raises(ConfigError):
        lc.make([]).start()
    with pytest.raises(ConfigError, match="given twice"):
        lc.make(["true"], namespaces=default_namespaces() + [NamespaceSpec("pid")]).start()
    with pytest.raises(ConfigError, match="NAME=value"):
        lc.make(["true"], env=["NOEQUALS"]).start()
    with pytest.raises(ConfigError, match="unknown capability"):
        lc.make(["true"], cap_add=["CONF_NO_SUCH_CAP"]).start()


def test_start_twice_refused(lc) -> None:
    c = lc.make(["true"])
    c.start()
    c.wait(10)
    with pytest.raises(RuntimeError):
        c.start()


def test_rootfs_failure_wins_over_a_hook_that_met_it(lc) -> None:
    """The init mounts while the parent's hook runs; a mount that fails first ends the init, so a hook
    opening /proc/<pid>/ns/net fails too: the start error must be the mount's (it was the hook's)."""
    import time

    from refengine.libcontainer.config import Mount

    def hook(pid: int) -> None:
        time.sleep(0.3)  # the init's mount fails meanwhile
        with open(f"/proc/{pid}/ns/net"):
            pass
        raise AssertionError("the init was expected to be gone by now")

    c = lc.make(["true"], mounts=[*lc.config(["true"]).mounts, Mount("/t", "tmpfs", "tmpfs", ["size=lots"])])
    with pytest.raises(StartError, match="mounting tmpfs on /t"):
        c.start(stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, before_release=hook)
