"""Processes the refengine tests start themselves (refengined, docker-registry): start, wait until up, stop by PID."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests_unixsocket

from .graph_testlib import probe_images_or_skip


def wait_up(ready: Callable[[], bool], what: str, proc: subprocess.Popen[bytes], log: str,
            timeout: float = 20) -> None:
    """Poll `ready` until it is true; if the process ends or the time runs out, kill it and fail with its log."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if ready():
                return
        except Exception:  # noqa: BLE001 - not up yet
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            with open(log, errors="replace") as fh:
                pytest.fail(f"{what} did not start: {fh.read()[-2000:]}")
        time.sleep(0.1)


def stop(proc: subprocess.Popen[bytes], timeout: float = 15) -> None:
    """SIGTERM, then SIGKILL if it has not ended within `timeout`."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def ping_ok(sock: str) -> bool:
    return requests_unixsocket.Session().get("http+unix://" + sock.replace("/", "%2F") + "/_ping", timeout=1).text == "OK"


def start_refengined(root: str, *extra: str, sock_name: str = "refengine.sock",
                     timeout: float = 20) -> tuple[str, subprocess.Popen[bytes]]:
    """refengined on <root>/<sock_name> with state in <root>/state and its log in <root>/daemon.log, up."""
    sock = os.path.join(root, sock_name)
    log = os.path.join(root, "daemon.log")
    with open(log, "ab") as out:  # the child keeps its own descriptor
        proc = subprocess.Popen([sys.executable, "-m", "refengine.daemon.main", "-H", f"unix://{sock}",
                                 "--data-root", os.path.join(root, "state"), *extra],
                                stdout=out, stderr=subprocess.STDOUT)
    wait_up(lambda: ping_ok(sock), "refengined", proc, log, timeout)
    return sock, proc


@dataclass
class ProbeDaemon:
    client: Any  # docker.DockerClient
    image: str   # the probe image's name
    pid: int     # refengined's
    data_root: str


@contextlib.contextmanager
def refengined_with_probe(name: str, *extra: str, timeout: float = 120) -> Iterator[ProbeDaemon]:
    """A refengined of the test's own (a temporary root, containers stopped with it), the probe image
    loaded, and a docker-py client; stopped and its root removed afterwards."""
    docker = pytest.importorskip("docker")
    names, tar = probe_images_or_skip(name)
    root = tempfile.mkdtemp(prefix=f"refengine-{name}-")
    try:
        sock, proc = start_refengined(root, "--stop-containers-on-exit", *extra)
        try:
            client = docker.DockerClient(base_url=f"unix://{sock}", version="1.41", timeout=timeout)
            client.images.load(tar)
            yield ProbeDaemon(client, names.base, proc.pid, os.path.join(root, "state"))
        finally:
            stop(proc)
    finally:
        shutil.rmtree(root, ignore_errors=True)
