"""A private docker-registry (Debian's `docker-registry`, distribution API v2) on 127.0.0.1 for pull and push.

Started and stopped by the harness, by PID, with its storage in a directory of its own: nothing is pulled
from or pushed to anywhere but this loopback registry.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import requests

REGISTRY_BIN = "/usr/bin/docker-registry"


class RegistryDidNotStart(RuntimeError):
    pass


@dataclass
class Registry:
    host: str  # 127.0.0.1:PORT
    root: str
    proc: subprocess.Popen[bytes] | None = None

    def stop(self, timeout: float = 15) -> None:
        """SIGTERM, then SIGKILL if it has not ended within `timeout`."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(root: str, auth: dict[str, Any] | None = None, timeout: float = 20) -> Registry:
    """A registry storing under `root`, listening on a free 127.0.0.1 port, answering /v2/ when this returns.
    `auth` is the registry's `auth:` config section (htpasswd, token)."""
    port = free_port()
    config: dict[str, Any] = {
        "version": 0.1,
        "log": {"level": "warn"},
        "storage": {"filesystem": {"rootdirectory": os.path.join(root, "data")}},
        "http": {"addr": f"127.0.0.1:{port}"},
    }
    if auth:
        config["auth"] = auth
    path = os.path.join(root, "config.yml")
    with open(path, "w") as fh:
        json.dump(config, fh)  # JSON is YAML
    log = os.path.join(root, "registry.log")
    with open(log, "wb") as out:
        proc = subprocess.Popen([REGISTRY_BIN, "serve", path], stdout=out, stderr=subprocess.STDOUT)
    registry = Registry(f"127.0.0.1:{port}", root, proc)
    deadline = time.monotonic() + timeout
    while True:
        try:
            if requests.get(f"http://{registry.host}/v2/", timeout=1).status_code in (200, 401):
                return registry
        except requests.RequestException:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            registry.stop()
            with open(log, errors="replace") as fh:
                raise RegistryDidNotStart(f"docker-registry did not start: {fh.read()[-2000:]}")
        time.sleep(0.1)


def htpasswd_auth(root: str, user: str, password: str) -> dict[str, Any]:
    """The `auth:` section of a registry that lets one user in by basic auth (an htpasswd file under `root`).
    Needs bcrypt (ImportError without it: the test extra)."""
    import bcrypt  # only a registry with a password needs it

    path = os.path.join(root, "htpasswd")
    with open(path, "w") as fh:
        fh.write(f"{user}:{bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=5)).decode()}\n")
    return {"htpasswd": {"realm": "conformance", "path": path}}


@contextlib.contextmanager
def running(prefix: str, user: tuple[str, str] | None = None) -> Iterator[Registry]:
    """A registry in a temporary directory of its own (with `user` = (name, password): basic auth), stopped
    and its storage removed afterwards."""
    root = tempfile.mkdtemp(prefix=prefix)
    try:
        reg = start(root, htpasswd_auth(root, *user) if user else None)
        try:
            yield reg
        finally:
            reg.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)
