"""docker-py (the Python SDK) against refengined, each check also run against dockerd.

Issue 4's acceptance: images.load, containers.run (detached or not, remove=True), logs (also streamed),
exec_run (also streamed and demultiplexed), containers.list/get, stop and remove behave as on dockerd.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import docker
import pytest
from docker.errors import ContainerError, NotFound
from docker.models.containers import Container

from conformance.probe_image import build_probe_tar

from .acceptance_lib import DAEMONS, Daemon, daemon_for

CALL_TIMEOUT = 60  # seconds per API call: a hung daemon fails the test instead of blocking the run


@pytest.fixture(scope="module", params=DAEMONS)
def daemon(request: pytest.FixtureRequest) -> Daemon:
    return daemon_for(request)


@pytest.fixture(scope="module")
def client(daemon: Daemon) -> Iterator[docker.DockerClient]:
    c = docker.DockerClient(base_url=daemon.host, version="1.41", timeout=CALL_TIMEOUT)
    yield c
    _cleanup(c, daemon)
    for name in daemon.images:  # by name: dockerd's other users may hold the same image ID
        with contextlib.suppress(NotFound):
            c.images.remove(name)
    c.close()


def _cleanup(client: docker.DockerClient, daemon: Daemon) -> None:
    """Remove the run's containers (with their anonymous volumes), volumes and networks."""
    for c in client.containers.list(all=True, filters={"name": daemon.prefix}):
        if c.name.startswith(daemon.prefix):
            with contextlib.suppress(NotFound):
                c.remove(force=True, v=True)
    for v in client.volumes.list(filters={"name": daemon.prefix}):
        if v.name.startswith(daemon.prefix):
            v.remove()
    for n in client.networks.list(filters={"name": daemon.prefix}):
        if n.name.startswith(daemon.prefix):
            n.remove()


@pytest.fixture(scope="module")
def loaded(daemon: Daemon, client: docker.DockerClient) -> list:
    """The probe images, loaded with images.load (the Image objects it returns)."""
    _, data = build_probe_tar(daemon.prefix)
    return client.images.load(data)


@pytest.fixture
def dc(daemon: Daemon, client: docker.DockerClient, loaded: list) -> Iterator[tuple[Daemon, docker.DockerClient]]:
    """The daemon and its client with the probe images there; the test's containers are removed after."""
    yield daemon, client
    _cleanup(client, daemon)


def test_ping_and_version(client: docker.DockerClient) -> None:
    assert client.ping() is True
    version = client.version()
    assert (version["ApiVersion"], version["Os"], version["Arch"]) == ("1.41", "linux", "amd64")


def test_images_load_returns_the_tagged_images(daemon: Daemon, client: docker.DockerClient, loaded: list) -> None:
    tags = sorted(t for image in loaded for t in image.tags if t.startswith(daemon.repo))
    assert tags == sorted(daemon.images)
    image = client.images.get(daemon.image)
    assert image.id.startswith("sha256:") and daemon.image in image.tags
    assert image.attrs["Config"]["Cmd"] == ["sh"]
    assert daemon.image in [t for i in client.images.list(name=daemon.repo) for t in i.tags]


def test_run_returns_stdout(dc) -> None:
    daemon, client = dc
    out = client.containers.run(daemon.image, ["sh", "-c", "echo hello; echo not-stdout >&2"],
                                name=daemon.unique("fg"), remove=True)
    assert out == b"hello\n"


def test_run_remove_leaves_no_container(dc) -> None:
    daemon, client = dc
    name = daemon.unique("gone")
    assert client.containers.run(daemon.image, ["true"], name=name, remove=True) == b""
    assert client.containers.list(all=True, filters={"name": name}) == []


def test_run_stream_with_remove_keeps_the_logs(dc) -> None:
    # docker-py opens the log stream, waits, removes the container, and only then is the stream read
    daemon, client = dc
    out = client.containers.run(daemon.image, ["sh", "-c", "echo a; echo b"], name=daemon.unique("stream"),
                                stream=True, remove=True)
    assert b"".join(out) == b"a\nb\n"


def test_run_failure_raises_container_error_with_stderr(dc) -> None:
    daemon, client = dc
    with pytest.raises(ContainerError) as info:
        client.containers.run(daemon.image, ["sh", "-c", "echo why >&2; exit 3"], name=daemon.unique("fail"),
                              remove=True)
    assert info.value.exit_status == 3
    assert info.value.stderr == b"why\n"


def test_run_detached_logs_list_get_stop_remove(dc) -> None:
    daemon, client = dc
    name = daemon.unique("bg")
    c = client.containers.run(daemon.image, ["sh", "-c", "echo out; echo err >&2; sleep 60"], name=name,
                              detach=True, labels={"acceptance": "py"})
    assert isinstance(c, Container) and len(c.id) == 64
    c.reload()
    assert c.status == "running" and c.name == name and c.labels["acceptance"] == "py"
    listed = client.containers.list(filters={"name": name, "label": "acceptance=py"})
    assert [x.id for x in listed] == [c.id]
    got = client.containers.get(name)
    assert (got.id, got.attrs["Config"]["Image"], got.attrs["State"]["Running"]) == (c.id, daemon.image, True)
    _wait_for_log(c, b"err\n")
    assert c.logs(stdout=True, stderr=False) == b"out\n"
    assert c.logs(stdout=False, stderr=True) == b"err\n"
    assert sorted(c.logs().splitlines()) == [b"err", b"out"]
    c.stop(timeout=1)
    c.reload()
    assert (c.status, c.attrs["State"]["ExitCode"]) == ("exited", 137)
    assert client.containers.list(filters={"name": name}) == []
    assert [x.id for x in client.containers.list(all=True, filters={"name": name, "status": "exited"})] == [c.id]
    c.remove()
    with pytest.raises(NotFound):
        client.containers.get(name)


def _wait_for_log(c: Container, needle: bytes) -> None:
    """Follow the logs until `needle` shows (the container is written to before the test reads)."""
    for chunk in c.logs(stream=True, follow=True):
        if needle in chunk:
            return
    raise AssertionError(f"the logs ended without {needle!r}")


def test_logs_stream_follows_until_exit(dc) -> None:
    daemon, client = dc
    c = client.containers.run(daemon.image, ["sh", "-c",
                                             "echo one; while [ ! -e /tmp/go ]; do sleep 0.1; done; echo two"],
                              name=daemon.unique("follow"), detach=True)
    stream = c.logs(stream=True, follow=True)
    first = next(stream)
    assert first == b"one\n"  # streamed while the container still runs
    assert c.exec_run(["touch", "/tmp/go"]).exit_code == 0
    assert b"".join(stream) == b"two\n"  # the generator ends when the container exits
    assert c.wait(timeout=CALL_TIMEOUT)["StatusCode"] == 0


def test_exec_run(dc) -> None:
    daemon, client = dc
    c = client.containers.run(daemon.image, ["sleep", "60"], name=daemon.unique("exec"), detach=True)
    res = c.exec_run(["sh", "-c", "echo out; echo err >&2; exit 4"])
    assert res.exit_code == 4
    assert sorted(res.output.splitlines()) == [b"err", b"out"]
    split = c.exec_run(["sh", "-c", "echo out; echo err >&2"], demux=True)
    assert (split.exit_code, split.output) == (0, (b"out\n", b"err\n"))
    only_out = c.exec_run(["sh", "-c", "echo out"], demux=True)
    assert only_out.output == (b"out\n", None)
    env = c.exec_run(["sh", "-c", "echo $WHO in $(pwd) as $(id -u)"], environment={"WHO": "exec"},
                     workdir="/tmp", user="1000")
    assert (env.exit_code, env.output) == (0, b"exec in /tmp as 1000\n")
    tty = c.exec_run(["sh", "-c", "tty"], tty=True)
    assert tty.exit_code == 0 and tty.output.startswith(b"/dev/pts/")


def test_exec_run_stream(dc) -> None:
    daemon, client = dc
    c = client.containers.run(daemon.image, ["sleep", "60"], name=daemon.unique("stream"), detach=True)
    res = c.exec_run(["sh", "-c", "echo a; echo b >&2; echo c"], stream=True)
    assert res.exit_code is None  # a stream has no exit code yet
    assert sorted(b"".join(res.output).splitlines()) == [b"a", b"b", b"c"]
    demuxed = c.exec_run(["sh", "-c", "echo a; echo b >&2; echo c"], stream=True, demux=True)
    outs, errs = b"", b""
    for out, err in demuxed.output:
        outs += out or b""
        errs += err or b""
    assert (outs, errs) == (b"a\nc\n", b"b\n")


def test_exec_run_detach(dc) -> None:
    daemon, client = dc
    c = client.containers.run(daemon.image, ["sleep", "60"], name=daemon.unique("detach"), detach=True)
    # docker-py reads ExitCode from exec inspect at once: null while it runs, 0 if it already ended
    assert c.exec_run(["sh", "-c", "echo made > /tmp/f"], detach=True).exit_code in (None, 0)
    # the detached exec finishes on its own; the next exec sees its file once it has
    assert c.exec_run(["sh", "-c", "while [ ! -s /tmp/f ]; do sleep 0.1; done; cat /tmp/f"]).output == b"made\n"


def test_kill_and_remove_force(dc) -> None:
    daemon, client = dc
    c = client.containers.run(daemon.image, ["sleep", "60"], name=daemon.unique("kill"), detach=True)
    c.kill(signal="SIGKILL")
    assert c.wait(timeout=CALL_TIMEOUT)["StatusCode"] == 137
    c2 = client.containers.run(daemon.image, ["sleep", "60"], name=daemon.unique("force"), detach=True)
    c2.remove(force=True)
    with pytest.raises(NotFound):
        c2.reload()


def test_volumes_and_networks(dc) -> None:
    daemon, client = dc
    vol = client.volumes.create(daemon.unique("vol"), labels={"acceptance": "py"})
    assert (vol.attrs["Driver"], vol.attrs["Labels"]) == ("local", {"acceptance": "py"})
    assert [v.name for v in client.volumes.list(filters={"name": vol.name})] == [vol.name]
    net = client.networks.create(daemon.unique("net"), labels={"acceptance": "py"})
    assert net.attrs["Driver"] == "bridge" and [n.id for n in client.networks.list(names=[net.name])] == [net.id]
    c = client.containers.run(daemon.image, ["sh", "-c", "cat /data/f"], name=daemon.unique("user"),
                              volumes={vol.name: {"bind": "/data", "mode": "rw"}}, network=net.name, detach=True,
                              entrypoint=["sh", "-c", "echo via-volume > /data/f; exec \"$@\"", "sh"])
    assert c.wait(timeout=CALL_TIMEOUT)["StatusCode"] == 0
    assert c.logs() == b"via-volume\n"
    net.reload()
    assert [x.id for x in net.containers] == []  # an exited container has left the network
    c.remove()
    vol.remove()
    net.remove()
    with pytest.raises(NotFound):
        client.volumes.get(vol.name)
    with pytest.raises(NotFound):
        client.networks.get(net.id)
