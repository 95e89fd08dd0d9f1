"""refengined --init: containers whose HostConfig.Init is null get docker-init as PID 1 (dockerd's
daemon-wide --init); an explicit Init false still runs the command as PID 1. /info names the binary."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from .daemons import refengined_with_probe

pytestmark = [pytest.mark.skipif(os.geteuid() != 0, reason="refengined runs containers as root"),
              pytest.mark.skipif(shutil.which("docker-init") is None, reason="no docker-init (docker.io) in PATH")]


@pytest.fixture(scope="module")
def client() -> Iterator[tuple[object, str]]:
    with refengined_with_probe("init", "--init", timeout=60) as d:
        yield d.client, d.image


@pytest.mark.parametrize("init,pid1", [(None, "/sbin/docker-init"), (False, "cat")])
def test_daemon_default_init(client, init: bool | None, pid1: str) -> None:
    cl, image = client
    out = cl.containers.run(image, ["cat", "/proc/1/cmdline"], init=init, network_mode="none", remove=True)
    assert out.split(b"\0")[0].decode() == pid1, f"PID 1 ran {out!r} with Init {init} under refengined --init"


def test_info_names_the_init(client) -> None:
    assert client[0].info()["InitBinary"] == "docker-init"
