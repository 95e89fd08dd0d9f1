"""A daemon restart (SIGTERM or SIGKILL) loses no container, image or volume; running containers survive.

Each check runs a real refengined on its own socket and state directory, stops it with the signal
while containers run, waits a little (containers keep writing; one exits), starts a new refengined on
the same state, and looks: same PID, logs written while the daemon was down, stop/wait/attach, the
real exit code of the one that ended meanwhile, the `always` container running again.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from refengine.engine.containers.record import parse_rfc3339

from .graph_testlib import probe_images_or_skip

docker = pytest.importorskip("docker")

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="refengined runs containers as root")

TICKER = "i=0; while true; do echo tick $i; echo tick $i >> /data/ticks; i=$((i+1)); sleep 0.2; done"
DOWN_SECONDS = 3.0  # how long the daemon stays down: the ticker writes ~15 lines meanwhile


class Daemon:
    """refengined on a private socket and state directory; stopped and started by PID."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.sock = os.path.join(root, "d.sock")
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self, stop_on_exit: bool = False) -> docker.DockerClient:
        self.starts += 1
        log = open(os.path.join(self.root, f"daemon-{self.starts}.log"), "wb")  # noqa: SIM115 - the daemon's
        argv = [sys.executable, "-m", "refengine.daemon.main", "-H", f"unix://{self.sock}",
                "--data-root", os.path.join(self.root, "state")]
        self.proc = subprocess.Popen(argv + (["--stop-containers-on-exit"] if stop_on_exit else []),
                                     stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        client = docker.DockerClient(base_url=f"unix://{self.sock}", version="1.41", timeout=60)
        deadline = time.monotonic() + 30
        while True:
            try:
                client.ping()
                return client
            except Exception:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"refengined did not start: {self.log_tail()}") from None
                time.sleep(0.1)

    def stop(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"refengined did not exit on signal {sig}") from None

    def log_tail(self) -> str:
        with open(os.path.join(self.root, f"daemon-{self.starts}.log"), "rb") as fh:
            return fh.read()[-3000:].decode(errors="replace")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _monitor_pids(cids: list[str]) -> list[int]:
    """Processes whose command line names one of our containers after the monitor marker."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                argv = fh.read().split(b"\0")
        except OSError:
            continue
        if b"refengine-monitor" in argv and any(cid.encode() in argv for cid in cids):
            found.append(int(entry))
    return found


def _until(pred: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


@pytest.fixture
def daemon() -> Iterator[Daemon]:
    root = tempfile.mkdtemp(prefix="refengine-restart-")
    d = Daemon(root)
    cids: list[str] = []
    d.cids = cids  # type: ignore[attr-defined]
    try:
        yield d
    finally:
        # whatever the outcome: remove our containers through a daemon that stops the rest at exit
        try:
            if d.proc is not None and d.proc.poll() is None:
                d.stop(signal.SIGTERM)
            client = d.start(stop_on_exit=True)
            for c in client.containers.list(all=True):
                c.remove(force=True)
            d.stop(signal.SIGTERM)
        finally:
            for pid in _monitor_pids(cids):  # last resort: monitors of this test's containers only
                os.kill(pid, signal.SIGKILL)
            subprocess.run(["umount", "-R", "-l", os.path.join(root, "state")], capture_output=True, check=False)
            shutil.rmtree(root, ignore_errors=True)


def _after(flag: str, then: str) -> str:
    """A shell line that waits for /data/<flag> to appear, then runs `then`."""
    return f"while [ ! -e /data/{flag} ]; do sleep 0.1; done; {then}"


def _ticks(logs: bytes) -> list[tuple[float, int]]:
    """(timestamp, n) of each `tick n` line of a `logs(timestamps=True)` output."""
    out = []
    for line in logs.decode().splitlines():
        stamp, _, text = line.partition(" ")
        if text.startswith("tick "):
            out.append((parse_rfc3339(stamp).timestamp(), int(text.split()[1])))
    return out


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_restart_keeps_everything(daemon: Daemon, sig: int) -> None:
    names, tar = probe_images_or_skip("restart")
    client = daemon.start()
    client.api._post(client.api._url("/images/load"), data=tar).close()
    image_ids = sorted(i.id for i in client.images.list())
    client.volumes.create("restart-vol")
    volume_dir = client.volumes.create("restart-vol").attrs["Mountpoint"]
    vol = {"restart-vol": {"bind": "/data", "mode": "rw"}}
    run: dict[str, Any] = {"detach": True, "network_mode": "none", "volumes": vol}
    ticker = client.containers.run(names.base, ["sh", "-c", TICKER], name="ticker", **run)
    # these two end when the test drops a file in the volume, while the daemon is down
    exiter = client.containers.run(names.base, ["sh", "-c", _after("go-exiter", "exit 7")], name="exiter", **run)
    always = client.containers.run(names.base, ["sh", "-c", _after("go-always", "rm /data/go-always; exit 3")],
                                   name="always", restart_policy={"Name": "always"}, **run)
    daemon.cids += [ticker.id, exiter.id, always.id]  # type: ignore[attr-defined]
    _until(lambda: b"tick 3" in ticker.logs(), 20, "the ticker's first lines")
    pids = {}
    for c in (ticker, exiter, always):
        c.reload()
        assert c.attrs["State"]["Running"], f"{c.name} is {c.attrs['State']['Status']} before the restart"
        pids[c.name] = c.attrs["State"]["Pid"]
    pid = pids["ticker"]
    before = sorted(c.id for c in client.containers.list(all=True))

    daemon.stop(sig)
    down_at = time.time()
    assert _alive(pid), f"the container's PID 1 ({pid}) died with the daemon ({signal.Signals(sig).name})"
    for name in ("go-exiter", "go-always"):
        open(os.path.join(volume_dir, name), "w").close()
    _until(lambda: not _alive(pids["exiter"]) and not _alive(pids["always"]), 20,
           "the exiter and the `always` container to end while the daemon is down")
    time.sleep(DOWN_SECONDS)  # the ticker keeps writing
    assert _alive(pid), "the container's PID 1 died while the daemon was down"
    up_at = time.time()
    client = daemon.start()

    assert sorted(c.id for c in client.containers.list(all=True)) == before, "containers lost in the restart"
    assert sorted(i.id for i in client.images.list()) == image_ids, "images lost in the restart"
    assert "restart-vol" in [v.name for v in client.volumes.list()], "the named volume was lost in the restart"

    ticker.reload()
    state = ticker.attrs["State"]
    assert state["Running"] and state["Status"] == "running", f"the ticker is {state['Status']} after the restart"
    assert state["Pid"] == pid, f"the ticker's PID is {state['Pid']} after the restart; it was {pid}"
    down = [n for t, n in _ticks(ticker.logs(timestamps=True)) if down_at + 0.3 < t < up_at - 0.3]
    assert down, "no log line of the ticker is timestamped while the daemon was down"
    with open(os.path.join(volume_dir, "ticks"), "rb") as fh:
        assert f"tick {down[0]}\n".encode() in fh.read(), "the volume lacks what the ticker wrote meanwhile"

    exiter.reload()
    assert exiter.attrs["State"]["Status"] == "exited", f"the exiter is {exiter.attrs['State']['Status']}"
    assert exiter.attrs["State"]["ExitCode"] == 7, \
        f"the exiter ended with 7 while the daemon was down; it shows ExitCode {exiter.attrs['State']['ExitCode']}"

    def always_restarted() -> bool:
        always.reload()
        started = parse_rfc3339(always.attrs["State"]["StartedAt"]).timestamp()
        return always.attrs["State"]["Running"] and started > down_at
    _until(always_restarted, 20, "the `always` container to run again after the restart")

    # attach to the re-adopted container: output still reaches attached clients
    sock = ticker.attach_socket(params={"stdout": 1, "stream": 1})
    raw = getattr(sock, "_sock", sock)
    raw.settimeout(10)
    got = b""
    while b"tick" not in got:
        chunk = raw.recv(4096)
        assert chunk, f"the attach stream ended before any output: {got!r}"
        got += chunk
    raw.close()

    # wait and stop work on it (sh as PID 1 ignores SIGTERM: the stop ends with SIGKILL)
    waited: dict[str, Any] = {}
    waiter = threading.Thread(target=lambda: waited.update(ticker.wait(timeout=60)))
    waiter.start()
    time.sleep(0.3)  # let the wait reach the daemon before the stop
    ticker.stop(timeout=1)
    waiter.join(60)
    assert waited.get("StatusCode") == 137, f"wait after stop answered {waited}"
    _until(lambda: not _alive(pid), 10, f"PID {pid} to be gone after the stop")
    ticker.reload()
    assert ticker.attrs["State"]["Status"] == "exited" and ticker.attrs["State"]["ExitCode"] == 137


def test_monitor_gone_without_status(daemon: Daemon) -> None:
    """A container whose monitor disappeared without recording an exit shows exited 255 with an error."""
    names, tar = probe_images_or_skip("restart")
    client = daemon.start()
    client.api._post(client.api._url("/images/load"), data=tar).close()
    c = client.containers.run(names.base, ["sleep", "300"], name="orphan", detach=True, network_mode="none")
    daemon.cids.append(c.id)  # type: ignore[attr-defined]
    c.reload()
    pid = c.attrs["State"]["Pid"]
    daemon.stop(signal.SIGKILL)
    monitors = _monitor_pids([c.id])
    assert len(monitors) == 1, f"expected one monitor process for the container, found {monitors}"
    os.kill(monitors[0], signal.SIGKILL)  # the monitor dies first: no exit file is written
    os.kill(pid, signal.SIGKILL)
    _until(lambda: not _alive(pid), 10, "the payload to die")
    client = daemon.start()
    c.reload()
    state = c.attrs["State"]
    assert state["Status"] == "exited" and state["ExitCode"] == 255 and state["Error"], state
