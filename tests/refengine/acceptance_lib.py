"""Shared parts of the real-client acceptance tests: the daemons to compare and what a run leaves behind.

Each acceptance test runs against refengined and, to prove its expectation, against the host's dockerd.
Everything a run creates carries one run prefix (containers, volumes, networks) or one image repository,
so cleanup removes exactly that and never another user's objects.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from dataclasses import dataclass, field

import pytest

DOCKER_CLI = "/usr/bin/docker"  # Debian's docker.io 20.10: always tested
DAEMONS = ["refengine", "dockerd"]


def docker_clis() -> list[str]:
    """The docker CLIs to run the acceptance tests with: Debian's 20.10 and, when `docker` on PATH is
    another binary (a current CLI talks API 1.41 too, but sends what 20.10 did not), that one as well.
    ACCEPTANCE_DOCKER_CLI names one CLI to use instead."""
    if os.environ.get("ACCEPTANCE_DOCKER_CLI"):
        return [os.environ["ACCEPTANCE_DOCKER_CLI"]]
    found = [DOCKER_CLI]
    other = shutil.which("docker")
    if other and os.path.exists(DOCKER_CLI) and os.path.realpath(other) != os.path.realpath(DOCKER_CLI):
        found.append(other)
    return found


def cli_label(path: str) -> str:
    """`cli<version>` of a docker CLI binary, for test IDs."""
    try:
        out = subprocess.run([path, "version", "--format", "{{.Client.Version}}"], capture_output=True,
                             timeout=20).stdout.decode().strip()
    except (OSError, subprocess.TimeoutExpired):
        out = ""
    return "cli" + (out.split("+")[0] or os.path.basename(path))


@dataclass
class Daemon:
    """One daemon under test and the names this run uses on it."""

    name: str
    socket: str
    prefix: str = field(default_factory=lambda: "acc" + uuid.uuid4().hex[:10])
    load_output: bytes = b""  # what loading the probe images printed
    cli: str = DOCKER_CLI  # the docker CLI binary the tests run against it

    @property
    def host(self) -> str:
        return f"unix://{self.socket}"

    @property
    def repo(self) -> str:
        return f"conformance-probe-{self.prefix}"

    @property
    def image(self) -> str:
        return f"{self.repo}:latest"

    @property
    def images(self) -> list[str]:
        return [f"{self.repo}:latest", f"{self.repo}:config"]

    def unique(self, what: str) -> str:
        return f"{self.prefix}-{what}-{uuid.uuid4().hex[:6]}"


def daemon_for(request: pytest.FixtureRequest, name: str | None = None) -> Daemon:
    """The Daemon of a test parametrized over DAEMONS (refengined from its fixture, dockerd from the host)."""
    name = name or request.param
    if name == "refengine":
        return Daemon("refengine", request.getfixturevalue("refengined"))
    return Daemon("dockerd", request.getfixturevalue("dockerd_socket"))


def require_cli(path: str = DOCKER_CLI) -> None:
    if not os.access(path, os.X_OK):
        pytest.skip(f"{path} is missing: these tests need Debian's docker.io CLI (apt-get install docker.io)")


def argv(daemon: Daemon, *args: str) -> list[str]:
    """The daemon's docker CLI command line. `run` and `create` get `--pull never`: an image the daemon
    lacks must fail the test, not make the daemon ask Docker Hub (traffic off this host)."""
    if args and args[0] in ("run", "create"):
        args = (args[0], "--pull", "never", *args[1:])
    return [daemon.cli, "-H", daemon.host, *args]


def cli(daemon: Daemon, *args: str, stdin: bytes | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    """The daemon's docker CLI against it; killed (SIGKILL, subprocess.run) if it outlives `timeout`."""
    return subprocess.run(argv(daemon, *args), input=stdin, capture_output=True, timeout=timeout)


def cleanup(daemon: Daemon) -> list[str]:
    """Remove what this run made on `daemon`; the names it had to remove (containers, volumes, networks)."""
    left: list[str] = []
    ps = cli(daemon, "ps", "-a", "--filter", f"name={daemon.prefix}", "--format", "{{.Names}}")
    names = [n for n in ps.stdout.decode().split() if n.startswith(daemon.prefix)]
    if names:
        cli(daemon, "rm", "-f", "-v", *names)
        left += names
    for kind in ("volume", "network"):
        ls = cli(daemon, kind, "ls", "--filter", f"name={daemon.prefix}", "--format", "{{.Name}}")
        found = [n for n in ls.stdout.decode().split() if n.startswith(daemon.prefix)]
        if found:
            cli(daemon, kind, "rm", *found)
            left += found
    return left


def remove_images(daemon: Daemon) -> None:
    """Untag the run's image names, the probe's and those tests added under the run's repository prefix
    (by name only: dockerd's other users may hold the same image ID)."""
    listed = cli(daemon, "images", "--format", "{{.Repository}}:{{.Tag}}").stdout.decode().split()
    cli(daemon, "rmi", *sorted(set(daemon.images) | {r for r in listed if r.startswith(daemon.repo)}))
