"""A refengined started for the test session, on a temporary socket and state directory."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

import pytest
import requests_unixsocket


@pytest.fixture(scope="session")
def refengined() -> Iterator[str]:
    """The socket path of a refengined this session started (and stops, by PID)."""
    root = tempfile.mkdtemp(prefix="refengine-test-")
    sock = os.path.join(root, "refengine.sock")
    log = open(os.path.join(root, "daemon.log"), "w")
    proc = subprocess.Popen([sys.executable, "-m", "refengine.daemon.main", "-H", f"unix://{sock}",
                             "--data-root", os.path.join(root, "state"), "--stop-containers-on-exit"],
                            stdout=log, stderr=subprocess.STDOUT)
    session = requests_unixsocket.Session()
    url = "http+unix://" + sock.replace("/", "%2F") + "/_ping"
    deadline = time.monotonic() + 20
    while True:
        try:
            if session.get(url, timeout=1).text == "OK":
                break
        except Exception:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            log.close()
            pytest.fail(f"refengined did not start: {open(os.path.join(root, 'daemon.log')).read()[-2000:]}")
        time.sleep(0.1)
    yield sock
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    log.close()
    subprocess.run(["rm", "-rf", root], check=False)
