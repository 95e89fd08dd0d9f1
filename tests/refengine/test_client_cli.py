"""The refengine CLI against a real daemon (dockerd here; refengined once it runs containers)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest

from conformance.probe_image import build_probe_tar


def _cli(host: str, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "refengine.client.cli", "-H", host, *args], input=stdin,
                          capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def loaded(dockerd_socket: str, tmp_path_factory) -> Iterator[tuple[str, str]]:
    host = f"unix://{dockerd_socket}"
    run_id = "cli" + uuid.uuid4().hex[:8]
    names, data = build_probe_tar(run_id)
    tar = tmp_path_factory.mktemp("cli") / "probe.tar"
    tar.write_bytes(data)
    proc = _cli(host, "load", "-i", str(tar))
    assert proc.returncode == 0, proc.stderr
    assert f"Loaded image: {names.base}".encode() in proc.stdout
    yield host, names.base
    _cli(host, "rmi", "-f", *names.all)


def test_run_exit_status_and_streams(loaded) -> None:
    host, image = loaded
    proc = _cli(host, "run", "--rm", image, "sh", "-c", "echo out; echo err >&2; exit 3")
    assert (proc.returncode, proc.stdout, proc.stderr) == (3, b"out\n", b"err\n")


def test_run_stdin(loaded) -> None:
    host, image = loaded
    proc = _cli(host, "run", "--rm", "-i", image, "cat", stdin=b"through stdin\n")
    assert (proc.returncode, proc.stdout) == (0, b"through stdin\n")


@pytest.mark.parametrize("command,status", [("/no/such/exe", 127), ("nosuchcommand", 127), ("/etc/passwd", 126)])
def test_run_refused_command_status(loaded, command: str, status: int) -> None:
    """As the docker CLI: 127 for a command not found, 126 for one that cannot be invoked (the daemon's words)."""
    host, image = loaded
    proc = _cli(host, "run", "--rm", image, command)
    assert proc.returncode == status and command.encode() in proc.stderr, proc
    assert proc.stderr.count(b"\n") == 1, proc.stderr


def test_run_init(loaded) -> None:
    host, image = loaded
    proc = _cli(host, "run", "--rm", "--init", image, "cat", "/proc/1/cmdline")
    assert (proc.returncode, proc.stdout.split(b"\0")[:2]) == (0, [b"/sbin/docker-init", b"--"]), proc


def test_detach_exec_logs_rm(loaded) -> None:
    host, image = loaded
    name = "cli-" + uuid.uuid4().hex[:8]
    proc = _cli(host, "run", "-d", "--name", name, image, "sh", "-c", "echo started; sleep 60")
    assert proc.returncode == 0 and len(proc.stdout.strip()) == 64, proc.stderr
    try:
        ex = _cli(host, "exec", name, "sh", "-c", "echo inside; exit 4")
        assert (ex.returncode, ex.stdout) == (4, b"inside\n")
        ps = _cli(host, "ps", "--filter", f"name={name}")
        assert name.encode() in ps.stdout
        logs = _cli(host, "logs", name)
        assert logs.stdout == b"started\n"
    finally:
        assert _cli(host, "rm", "-f", name).returncode == 0


@pytest.mark.parametrize("args,message", [
    (["rm", "conformance-no-such-container"], b"No such container"),
    (["-H", "ftp://x", "ps"], b"unsupported scheme"),
    (["-H", "unix:///nonexistent.sock", "ps"], b"Cannot connect"),
])
def test_errors_are_one_line(loaded, args: list[str], message: bytes) -> None:
    host, _ = loaded
    proc = _cli(host, *args) if args[0] != "-H" else subprocess.run(
        [sys.executable, "-m", "refengine.client.cli", *args], capture_output=True, timeout=60)
    assert proc.returncode != 0 and message in proc.stderr, proc.stderr
    assert b"Traceback" not in proc.stderr


def test_host_from_environment(loaded) -> None:
    host, _ = loaded
    env = dict(os.environ, DOCKER_HOST=host)
    proc = subprocess.run([sys.executable, "-m", "refengine.client.cli", "version"], capture_output=True, env=env,
                          timeout=60)
    assert proc.returncode == 0 and b"API 1.41" in proc.stdout
