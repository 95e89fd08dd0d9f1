"""The init forked inline by a container monitor (REFENGINE_FORKSERVER=inline) must not outlive a monitor
that dies during the start: it holds no copy of its parent's end of the channel, so it sees EOF and exits."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_init_exits_when_its_monitor_dies_during_start(rootfs: str, tmp_path) -> None:
    pidfile = tmp_path / "init.pid"
    script = f"""
import os
os.environ["REFENGINE_FORKSERVER"] = "inline"
from refengine.libcontainer import Container, ContainerConfig

def die(pid):  # the monitor dies while the init waits to be released
    with open({str(pidfile)!r}, "w") as fh:
        fh.write(str(pid))
    os._exit(3)

Container(ContainerConfig(args=["true"], rootfs={rootfs!r})).start(before_release=die)
"""
    log = tmp_path / "monitor.log"
    with open(log, "w") as out:  # files, not pipes: a lingering init would hold a pipe open
        proc = subprocess.run([sys.executable, "-c", script], stdout=out, stderr=out, timeout=60)
    assert proc.returncode == 3 and pidfile.exists(), f"the stand-in monitor did not reach the release: {log.read_text()}"
    pid = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while _running(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    alive = _running(pid)
    if alive:
        os.kill(pid, signal.SIGKILL)  # ours: the test started it
    assert not alive, f"the init (pid {pid}) still waits 5 s after its monitor died during the start"
