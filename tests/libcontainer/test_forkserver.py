"""The two ways the init starts: forked by the pre-warmed fork server, or a fresh `python -I -S` exec."""

from __future__ import annotations

import os
import signal

import pytest

from refengine.libcontainer import process


def _status(text: str) -> dict[str, str]:
    return {k.strip(): v.strip() for k, sep, v in (line.partition(":") for line in text.splitlines()) if sep}


@pytest.mark.parametrize("mode", ["forkserver", "exec"])
def test_both_modes_give_the_same_container(lc, monkeypatch, mode: str) -> None:
    monkeypatch.setenv("REFENGINE_FORKSERVER", "1" if mode == "forkserver" else "0")
    rc, out = lc.run("echo $$; cat /proc/self/status; ls /proc/self/fd", hostname="m")
    lines = out.split("\n")
    st = _status(out)
    assert lines[0] == "1" and st["Seccomp"] == "2" and st["SigIgn"] == "0000000000000000"
    assert st["NoNewPrivs"] == "0" and int(st["CapEff"], 16) == 0xa80425fb
    assert out.split()[-4:] == ["0", "1", "2", "3"]


def test_fork_server_is_single_threaded_and_ours(lc, monkeypatch) -> None:
    monkeypatch.setenv("REFENGINE_FORKSERVER", "1")
    lc.run("true")
    pid = process._forkserver.pid
    assert pid is not None
    with open(f"/proc/{pid}/status") as fh:
        st = _status(fh.read())
    assert st["Threads"] == "1" and st["PPid"] == str(os.getpid())


def test_fork_server_children_are_ours(lc, monkeypatch) -> None:
    monkeypatch.setenv("REFENGINE_FORKSERVER", "1")
    c = lc.start(["sleep", "60"])
    with open(f"/proc/{c.pid}/status") as fh:
        assert _status(fh.read())["PPid"] == str(os.getpid())


def test_fork_server_restarts_when_it_died(lc, monkeypatch) -> None:
    monkeypatch.setenv("REFENGINE_FORKSERVER", "1")
    lc.run("true")
    old = process._forkserver.pid
    os.kill(old, signal.SIGKILL)  # our own child
    rc, out = lc.run("echo again")
    assert (rc, out) == (0, "again\n")
    assert process._forkserver.pid != old


def test_fork_server_exits_with_its_engine(lc, monkeypatch) -> None:
    monkeypatch.setenv("REFENGINE_FORKSERVER", "1")
    lc.run("true")
    pid = process._forkserver.pid
    process.shutdown_forkserver()  # closes our end: the server sees EOF and exits; we reap it
    assert not os.path.exists(f"/proc/{pid}")
    assert lc.run("echo back")[1] == "back\n"


@pytest.mark.parametrize("mode", ["forkserver", "exec"])
def test_no_fd_leak(lc, monkeypatch, mode: str) -> None:
    monkeypatch.setenv("REFENGINE_FORKSERVER", "1" if mode == "forkserver" else "0")
    lc.run("true")  # the fork server's socket, if any, exists from here on
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(5):
        lc.run("true", cgroup=True)
        lc.made[-1].destroy()  # closes its pidfd and pipes
        c = lc.start(["sh", "-c", "echo x"], tty=False)
        c.process.stdout.read()
        c.destroy()
        c.process.close()
    with pytest.raises(process.StartError):
        lc.make(["nope"]).start()
    assert len(os.listdir("/proc/self/fd")) == before


def test_concurrent_starts_from_threads(lc) -> None:
    import threading

    results: list[tuple[int, str]] = []
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            results.append(lc.run(f"echo {i}", cgroup=True, hostname=f"h{i}"))
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert sorted(out.strip() for _, out in results) == [str(i) for i in range(6)]
