"""The real docker CLI (Debian's docker.io 20.10) against refengined, each check also run against dockerd.

Issue 4's acceptance: load, images, run (--rm, -d, -i, -it), ps, logs (-f), exec (-it), stop, rm, rmi,
inspect, volume, network, version and info work as they do on dockerd. A test parametrized with
"dockerd" proves the expectation on the real daemon; with "refengine" it checks refengined.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import tarfile
import time
from collections.abc import Iterator

import pexpect
import pytest

from conformance.probe_image import build_probe_tar
from refengine.client.transport import DEFAULT_HOST
from refengine.daemon.server import DEFAULT_SOCKET

from .acceptance_lib import (
    DAEMONS,
    Daemon,
    argv,
    cleanup,
    cli,
    cli_label,
    daemon_for,
    docker_clis,
    remove_images,
    require_cli,
)

HEX64 = re.compile(rb"^[0-9a-f]{64}\n$")


CLIS = docker_clis()
PAIRS = [pytest.param((name, path), id=f"{name}-{cli_label(path)}" if len(CLIS) > 1 else name)
         for path in CLIS for name in DAEMONS]


@pytest.fixture(scope="module", params=PAIRS)
def daemon(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """A daemon, with the docker CLI to drive it, and this module's probe images loaded through
    `docker load`; cleaned up after."""
    name, path = request.param
    require_cli(path)
    d = daemon_for(request, name)
    d.cli = path
    _, data = build_probe_tar(d.prefix)
    tar = tmp_path_factory.mktemp("cli-acceptance") / "probe.tar"
    tar.write_bytes(data)
    load = cli(d, "load", "-i", str(tar), timeout=120)
    assert load.returncode == 0, load.stderr
    d.load_output = load.stdout
    yield d
    cleanup(d)
    remove_images(d)


@pytest.fixture
def clean(daemon: Daemon) -> Iterator[Daemon]:
    """The daemon; after the test, the run's containers, volumes and networks are removed."""
    yield daemon
    cleanup(daemon)


def _out(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0, (proc.returncode, proc.stdout, proc.stderr)
    return proc.stdout.decode()


def test_load_names_every_image(daemon: Daemon) -> None:
    out = daemon.load_output.decode()
    assert out.splitlines() == [f"Loaded image: {name}" for name in daemon.images]


def test_images_lists_and_filters(daemon: Daemon) -> None:
    out = _out(cli(daemon, "images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}", daemon.repo))
    rows = sorted(line.split() for line in out.splitlines())
    assert [r[0] for r in rows] == sorted(daemon.images)
    assert all(re.fullmatch(r"[0-9a-f]{12}", r[1]) for r in rows)
    quiet = _out(cli(daemon, "images", "-q", daemon.image)).split()
    assert quiet == [r[1] for r in rows if r[0] == daemon.image]


def test_image_inspect_formats(daemon: Daemon) -> None:
    out = _out(cli(daemon, "image", "inspect", "-f",
                   "{{.Os}} {{.Architecture}} {{json .Config.Cmd}} {{index .Config.Labels \"org.conformance.probe\"}}",
                   daemon.image))
    assert out == 'linux amd64 ["sh"] base\n'
    data = json.loads(_out(cli(daemon, "image", "inspect", daemon.image)))
    assert len(data) == 1 and daemon.image in data[0]["RepoTags"] and data[0]["Id"].startswith("sha256:")


def test_run_rm_propagates_output_and_exit_code(clean: Daemon) -> None:
    name = clean.unique("rm")
    proc = cli(clean, "run", "--rm", "--name", name, clean.image, "sh", "-c", "echo out; echo err >&2; exit 3")
    assert (proc.returncode, proc.stdout, proc.stderr) == (3, b"out\n", b"err\n")
    assert _out(cli(clean, "ps", "-a", "-q", "--filter", f"name={name}")) == ""  # --rm removed it


def test_run_rm_stdin(clean: Daemon) -> None:
    name = clean.unique("stdin")
    try:
        proc = cli(clean, "run", "--rm", "-i", "--name", name, clean.image, "sh", "-c", "cat; echo done",
                   stdin=b"through stdin\n", timeout=20)
    finally:
        cli(clean, "rm", "-f", name)
    assert (proc.returncode, proc.stdout) == (0, b"through stdin\ndone\n"), proc.stderr


def test_run_i_stdin_after_start(clean: Daemon) -> None:
    """Input that comes once the container runs, then EOF (the path an interactive `run -i` takes)."""
    name = clean.unique("late")
    proc = subprocess.Popen(argv(clean, "run", "--rm", "-i", "--name", name, clean.image,
                             "sh", "-c", "cat; echo done"), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        for _ in range(200):
            if _out(cli(clean, "ps", "-q", "--filter", f"name={name}", "--filter", "status=running")):
                break
            time.sleep(0.1)
        out, err = proc.communicate(b"after start\n", timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert (proc.returncode, out) == (0, b"after start\ndone\n"), err


def test_run_unknown_command_is_127(clean: Daemon) -> None:
    proc = cli(clean, "run", "--rm", clean.image, "/no/such/binary")
    assert proc.returncode == 127 and b"no such file or directory" in proc.stderr.lower(), proc.stderr


def test_run_detached_ps_exec_logs_stop_rm(clean: Daemon) -> None:
    name = clean.unique("d")
    run = cli(clean, "run", "-d", "--name", name, "--label", "acceptance=yes", clean.image,
              "sh", "-c", "echo started; echo to-stderr >&2; sleep 60")
    assert run.returncode == 0 and HEX64.match(run.stdout), run.stderr
    cid = run.stdout.decode().strip()
    ps = _out(cli(clean, "ps", "--no-trunc", "--filter", f"name={name}",
                  "--format", "{{.ID}}|{{.Names}}|{{.Image}}|{{.Command}}|{{.Label \"acceptance\"}}"))
    assert ps == f"{cid}|{name}|{clean.image}|\"sh -c 'echo started; echo to-stderr >&2; sleep 60'\"|yes\n"
    assert _out(cli(clean, "ps", "-q", "--filter", "label=acceptance=yes", "--filter", f"name={name}")) == cid[:12] + "\n"
    ex = cli(clean, "exec", name, "sh", "-c", "echo inside; echo inside-err >&2; exit 4")
    assert (ex.returncode, ex.stdout, ex.stderr) == (4, b"inside\n", b"inside-err\n")
    ex_in = cli(clean, "exec", "-i", name, "cat", stdin=b"exec stdin\n")
    assert (ex_in.returncode, ex_in.stdout) == (0, b"exec stdin\n")
    logs = cli(clean, "logs", name)
    assert (logs.returncode, logs.stdout, logs.stderr) == (0, b"started\n", b"to-stderr\n")
    assert _out(cli(clean, "stop", "-t", "1", name)) == name + "\n"
    assert _out(cli(clean, "ps", "-q", "--filter", f"name={name}")) == ""
    exited = _out(cli(clean, "ps", "-a", "--filter", f"name={name}", "--filter", "status=exited",
                      "--format", "{{.Names}} {{.State}}"))
    assert exited == f"{name} exited\n"
    # sh as PID 1 has no SIGTERM handler: the stop timeout's SIGKILL ends it
    assert _out(cli(clean, "inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", name)) == "exited 137\n"
    assert _out(cli(clean, "rm", name)) == name + "\n"
    again = cli(clean, "rm", name)
    assert again.returncode == 1 and f"No such container: {name}".encode() in again.stderr


def test_rm_of_a_running_container_needs_force(clean: Daemon) -> None:
    name = clean.unique("force")
    _out(cli(clean, "run", "-d", "--name", name, clean.image, "sleep", "60"))
    refused = cli(clean, "rm", name)
    assert refused.returncode == 1 and b"stop the container before attempting removal or force remove" in refused.stderr.lower()
    assert _out(cli(clean, "rm", "-f", name)) == name + "\n"


def test_run_d_rm_is_removed_after_stop(clean: Daemon) -> None:
    name = clean.unique("drm")
    script = "trap 'exit 0' TERM; while true; do sleep 0.1; done"  # ends on SIGTERM, before the timeout
    _out(cli(clean, "run", "-d", "--rm", "--name", name, clean.image, "sh", "-c", script))
    assert _out(cli(clean, "stop", name)) == name + "\n"
    for _ in range(50):  # --rm removes it once it exited; stop may answer first
        if _out(cli(clean, "ps", "-a", "-q", "--filter", f"name={name}")) == "":
            break
        time.sleep(0.1)
    assert _out(cli(clean, "ps", "-a", "-q", "--filter", f"name={name}")) == ""


def test_run_t_output_is_a_terminal(clean: Daemon) -> None:
    proc = cli(clean, "run", "--rm", "-t", clean.image, "sh", "-c", "echo tty; [ -t 1 ] && exit 2")
    assert (proc.returncode, proc.stdout) == (2, b"tty\r\n"), proc.stderr


def test_exec_options_and_restart(clean: Daemon) -> None:
    name = clean.unique("opts")
    _out(cli(clean, "run", "-d", "--name", name, clean.image, "sh", "-c", "echo up; exec sleep 60"))
    ex = cli(clean, "exec", "-w", "/tmp", "-e", "WHO=exec", "-u", "1000", name, "sh", "-c", "echo $WHO $(pwd) $(id -u)")
    assert (ex.returncode, ex.stdout) == (0, b"exec /tmp 1000\n"), ex.stderr
    assert _out(cli(clean, "restart", "-t", "1", name)) == name + "\n"
    assert _out(cli(clean, "inspect", "-f", "{{.State.Running}} {{.RestartCount}}", name)) == "true 0\n"
    assert _out(cli(clean, "exec", name, "echo", "again")) == "again\n"
    assert _out(cli(clean, "kill", "-s", "KILL", name)) == name + "\n"
    assert _out(cli(clean, "wait", name)) == "137\n"


def test_ps_ports_only_while_running(clean: Daemon) -> None:
    name = clean.unique("ports")
    _out(cli(clean, "create", "--name", name, "--expose", "9000", "-p", "127.0.0.1::8080", clean.image,
             "sleep", "60"))
    fmt = ["--filter", f"name={name}", "--format", "{{.Ports}}"]
    assert _out(cli(clean, "ps", "-a", *fmt)) == "\n"  # created: nothing is bound, nothing listed
    _out(cli(clean, "start", name))
    assert re.fullmatch(r"9000/tcp, 127\.0\.0\.1:\d+->8080/tcp\n", _out(cli(clean, "ps", *fmt)))
    port = _out(cli(clean, "port", name, "8080/tcp"))
    assert re.fullmatch(r"127\.0\.0\.1:\d+\n", port), port
    _out(cli(clean, "stop", "-t", "0", name))
    assert _out(cli(clean, "ps", "-a", *fmt)) == "\n"


def test_logs_follow_streams_until_exit(clean: Daemon) -> None:
    name = clean.unique("follow")
    script = "echo one; while [ ! -e /tmp/go ]; do sleep 0.1; done; echo two; exit 5"
    _out(cli(clean, "run", "-d", "--name", name, clean.image, "sh", "-c", script))
    follow = subprocess.Popen(argv(clean, "logs", "-f", name), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE)
    try:
        assert follow.stdout is not None
        assert follow.stdout.readline() == b"one\n"  # streamed while the container still runs
        assert follow.poll() is None  # -f is still following
        _out(cli(clean, "exec", name, "touch", "/tmp/go"))
        rest, err = follow.communicate(timeout=30)  # returns once the container exits
        assert (follow.returncode, rest, err) == (0, b"two\n", b"")
    finally:
        if follow.poll() is None:
            follow.kill()
            follow.wait()
    assert _out(cli(clean, "wait", name)) == "5\n"
    assert _out(cli(clean, "logs", "--tail", "1", name)) == "two\n"
    stamped = _out(cli(clean, "logs", "-t", name)).splitlines()
    assert [line.split(" ", 1)[1] for line in stamped] == ["one", "two"]
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z", line.split(" ", 1)[0]) for line in stamped)
    assert _out(cli(clean, "logs", "--details", name)) == " one\n two\n"  # no log attributes: just the space


def _interact(child: pexpect.spawn) -> bytes:
    """Talk to an interactive busybox sh on a pty: its tty, its window size, then exit 7."""
    child.expect(rb"[#$] ")
    child.sendline("tty; stty size; echo marker-$((6*7))")
    child.expect(rb"marker-42")  # the expansion proves the shell ran the line, not just the echo of it
    seen = child.before
    child.sendline("exit 7")
    child.expect(pexpect.EOF)
    child.close()
    return seen


def test_run_it_on_a_pty(clean: Daemon) -> None:
    name = clean.unique("it")
    child = pexpect.spawn(clean.cli, argv(clean, "run", "--rm", "-it", "--name", name, clean.image, "sh")[1:],
                          timeout=30, dimensions=(30, 100))
    try:
        seen = _interact(child)
    finally:
        child.close(force=True)
    assert b"/dev/pts/0\r\n30 100\r\n" in seen
    assert child.exitstatus == 7


def test_exec_it_on_a_pty(clean: Daemon) -> None:
    name = clean.unique("execit")
    _out(cli(clean, "run", "-d", "--name", name, clean.image, "sleep", "60"))
    child = pexpect.spawn(clean.cli, argv(clean, "exec", "-it", name, "sh")[1:], timeout=30, dimensions=(24, 90))
    try:
        seen = _interact(child)
    finally:
        child.close(force=True)
    assert re.search(rb"/dev/pts/\d+\r\n24 90\r\n", seen), seen
    assert child.exitstatus == 7
    assert _out(cli(clean, "inspect", "-f", "{{.State.Running}}", name)) == "true\n"  # only the exec ended


def test_run_it_detach_keys_then_attach(clean: Daemon) -> None:
    name = clean.unique("detach")
    child = pexpect.spawn(clean.cli, argv(clean, "run", "-it", "--name", name, clean.image, "sh")[1:],
                          timeout=30)
    try:
        child.expect(rb"[#$] ")
        child.send(b"\x10\x11")  # the default detach keys
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0
    assert _out(cli(clean, "inspect", "-f", "{{.State.Running}}", name)) == "true\n"  # detached, not stopped
    again = pexpect.spawn(clean.cli, argv(clean, "attach", name)[1:], timeout=10)
    try:
        again.expect(rb"# ")  # the CLI's resize makes the shell redraw its prompt: attached
        again.sendline("echo back-$((1+1))")
        again.expect(rb"back-2")
        again.sendline("exit 3")
        again.expect(pexpect.EOF)
    finally:
        again.close(force=True)
    assert again.exitstatus == 3


def test_inspect_formats_and_errors(clean: Daemon) -> None:
    name = clean.unique("inspect")
    cid = _out(cli(clean, "create", "--name", name, "-e", "FOO=bar", "-w", "/tmp", clean.image, "echo", "hi")).strip()
    out = _out(cli(clean, "inspect", "--type", "container", "-f",
                   "{{.Id}} {{.Name}} {{.State.Status}} {{.Config.Image}} {{json .Config.Cmd}} {{.Config.WorkingDir}}",
                   name))
    assert out == f"{cid} /{name} created {clean.image} [\"echo\",\"hi\"] /tmp\n"
    assert "FOO=bar" in json.loads(_out(cli(clean, "inspect", "-f", "{{json .Config.Env}}", name)))
    both = json.loads(_out(cli(clean, "inspect", name, clean.image)))
    assert [b["Id"] for b in both][0] == cid and both[1]["Id"].startswith("sha256:")
    missing = cli(clean, "inspect", clean.unique("missing"))
    assert missing.returncode == 1 and b"Error: No such object" in missing.stderr
    assert _out(cli(clean, "start", "-a", name)) == "hi\n"


def test_tag_and_rmi(clean: Daemon) -> None:
    extra = f"{clean.repo}-extra:t1"
    _out(cli(clean, "tag", clean.image, extra))
    assert _out(cli(clean, "images", "-q", extra)) == _out(cli(clean, "images", "-q", clean.image))
    assert _out(cli(clean, "rmi", extra)) == f"Untagged: {extra}\n"
    again = cli(clean, "rmi", extra)
    assert again.returncode == 1 and f"No such image: {extra}".encode() in again.stderr
    assert _out(cli(clean, "images", "-q", clean.image)).strip()  # the other tag keeps the image


def test_commit_and_run_the_image(clean: Daemon) -> None:
    name = clean.unique("commit")
    _out(cli(clean, "run", "--name", name, clean.image, "sh", "-c", "echo kept > /kept.txt"))
    ref = f"{clean.repo}-committed:t1"
    image_id = _out(cli(clean, "commit", "-c", "CMD cat /kept.txt", "-m", "by the CLI", name, ref)).strip()
    assert image_id.startswith("sha256:"), image_id
    assert _out(cli(clean, "run", "--rm", ref)) == "kept\n"
    assert _out(cli(clean, "image", "inspect", "-f", "{{.Comment}}", ref)) == "by the CLI\n"
    cli(clean, "rm", name)
    assert _out(cli(clean, "rmi", ref)).startswith(f"Untagged: {ref}")


def test_build_and_run_the_image(clean: Daemon, tmp_path) -> None:
    (tmp_path / "Dockerfile").write_text(f"FROM {clean.image}\nCOPY note.txt /note.txt\n"
                                         "RUN echo built >> /note.txt\nCMD [\"cat\", \"/note.txt\"]\n")
    (tmp_path / "note.txt").write_text("copied\n")
    ref = f"{clean.repo}-built:t1"
    done = subprocess.run(argv(clean, "build", "--force-rm", "-t", ref, str(tmp_path)),
                          capture_output=True, timeout=120, env={**os.environ, "DOCKER_BUILDKIT": "0"})
    assert done.returncode == 0 and f"Successfully tagged {ref}".encode() in done.stdout, done.stderr[-800:]
    assert _out(cli(clean, "run", "--rm", ref)) == "copied\nbuilt\n"
    assert _out(cli(clean, "rmi", ref)).startswith(f"Untagged: {ref}")


def test_import_and_rmi_of_an_image_in_use(clean: Daemon, tmp_path) -> None:
    # an imported image is this run's own (a fresh ID): dockerd's other users cannot share it
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("hello.txt")
        info.size = 6
        tar.addfile(info, io.BytesIO(b"hello\n"))
    rootfs = tmp_path / "rootfs.tar"
    rootfs.write_bytes(buf.getvalue())
    ref = f"{clean.repo}-imported:t1"
    image_id = _out(cli(clean, "import", str(rootfs), ref)).strip()
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", image_id)
    name = clean.unique("inuse")
    try:
        cid = _out(cli(clean, "create", "--name", name, ref, "true")).strip()
        refused = cli(clean, "rmi", ref)
        assert (refused.returncode, refused.stderr.decode()) == (
            1, f'Error response from daemon: conflict: unable to remove repository reference "{ref}" (must force)'
               f" - container {cid[:12]} is using its referenced image {image_id[7:19]}\n")
        _out(cli(clean, "rm", name))
        removed = _out(cli(clean, "rmi", ref)).splitlines()
        assert removed[0] == f"Untagged: {ref}" and f"Deleted: {image_id}" in removed
    finally:  # whatever failed above, nothing of this test stays behind
        cli(clean, "rm", "-f", name)
        cli(clean, "rmi", ref)


def test_volume_create_ls_inspect_use_rm(clean: Daemon) -> None:
    vol = clean.unique("vol")
    assert _out(cli(clean, "volume", "create", "--label", "acceptance=yes", vol)) == vol + "\n"
    assert _out(cli(clean, "volume", "ls", "-q", "--filter", f"name={vol}")) == vol + "\n"
    assert _out(cli(clean, "volume", "ls", "--filter", "label=acceptance=yes", "--filter", f"name={vol}",
                    "--format", "{{.Driver}} {{.Name}}")) == f"local {vol}\n"
    out = _out(cli(clean, "volume", "inspect", "-f", "{{.Name}} {{.Driver}} {{.Scope}} {{.Labels}}", vol))
    assert out == f"{vol} local local map[acceptance:yes]\n"
    run = cli(clean, "run", "--rm", "-v", f"{vol}:/data", clean.image, "sh", "-c", "echo kept > /data/f")
    assert run.returncode == 0, run.stderr
    read = cli(clean, "run", "--rm", "-v", f"{vol}:/data:ro", clean.image, "cat", "/data/f")
    assert (read.returncode, read.stdout) == (0, b"kept\n"), read.stderr
    assert _out(cli(clean, "volume", "rm", vol)) == vol + "\n"
    again = cli(clean, "volume", "rm", vol)
    # the 20.10 CLI words it "No such volume: x"; later CLIs print the daemon's "get x: no such volume"
    assert again.returncode == 1 and vol.encode() in again.stderr and b"no such volume" in again.stderr.lower()


def test_network_create_ls_inspect_rm(clean: Daemon) -> None:
    net = clean.unique("net")
    nid = _out(cli(clean, "network", "create", "--label", "acceptance=yes", net)).strip()
    assert re.fullmatch(r"[0-9a-f]{64}", nid)
    assert _out(cli(clean, "network", "ls", "--filter", f"name={net}",
                    "--format", "{{.ID}} {{.Name}} {{.Driver}} {{.Scope}}")) == f"{nid[:12]} {net} bridge local\n"
    out = _out(cli(clean, "network", "inspect", "-f",
                   "{{.Id}} {{.Name}} {{.Driver}} {{.Internal}} {{.Attachable}} {{index .Labels \"acceptance\"}}", net))
    assert out == f"{nid} {net} bridge false false yes\n"
    subnet = _out(cli(clean, "network", "inspect", "-f", "{{range .IPAM.Config}}{{.Subnet}}{{end}}", net)).strip()
    assert re.fullmatch(r"\d+\.\d+\.\d+\.\d+/\d+", subnet), subnet
    assert _out(cli(clean, "network", "rm", net)) == net + "\n"
    again = cli(clean, "network", "rm", net)
    # the 20.10 CLI: "No such network: x"; later CLIs print the daemon's "network x not found"
    assert again.returncode == 1 and net.encode() in again.stderr and (
        b"no such network" in again.stderr.lower() or b"not found" in again.stderr)


def test_run_on_a_user_network(clean: Daemon) -> None:
    net = clean.unique("net")
    _out(cli(clean, "network", "create", net))
    name = clean.unique("onnet")
    try:
        run = cli(clean, "run", "--rm", "--name", name, "--network", net, clean.image,
                  "sh", "-c", "ip -o -4 addr show eth0 | wc -l")
        assert (run.returncode, run.stdout) == (0, b"1\n"), run.stderr
    finally:
        cli(clean, "network", "rm", net)


def test_error_messages(clean: Daemon) -> None:
    name = clean.unique("err")
    cid = _out(cli(clean, "create", "--name", name, clean.image, "true")).strip()
    stopped = cli(clean, "exec", name, "true")
    assert (stopped.returncode, stopped.stderr) == (
        1, f"Error response from daemon: Container {cid} is not running\n".encode())
    taken = cli(clean, "run", "--rm", "--name", name, clean.image, "true")
    assert taken.returncode == 125
    assert (f'Conflict. The container name "/{name}" is already in use by container "{cid}"'.encode()
            in taken.stderr), taken.stderr
    missing = clean.unique("missing")
    nostart = cli(clean, "start", missing)
    assert nostart.returncode == 1 and f"No such container: {missing}".encode() in nostart.stderr
    vol = clean.unique("vol")
    _out(cli(clean, "volume", "create", vol))
    user = _out(cli(clean, "create", "--name", clean.unique("user"), "-v", f"{vol}:/d", clean.image, "true")).strip()
    busy = cli(clean, "volume", "rm", vol)
    assert (busy.returncode, busy.stderr) == (
        1, f"Error response from daemon: remove {vol}: volume is in use - [{user}]\n".encode())


def test_version(daemon: Daemon) -> None:
    out = _out(cli(daemon, "version", "--format", "{{.Server.APIVersion}} {{.Server.Os}} {{.Server.Arch}}"))
    assert out == "1.41 linux amd64\n"
    full = cli(daemon, "version")
    assert full.returncode == 0 and b"Server:" in full.stdout and full.stderr == b""


def test_info(clean: Daemon) -> None:
    info = json.loads(_out(cli(clean, "info", "--format", "{{json .}}")))
    assert (info["OSType"], info["Architecture"]) == ("linux", "x86_64")
    assert isinstance(info["Containers"], int) and isinstance(info["Images"], int) and info["Images"] >= 1
    plain = cli(clean, "info")
    assert plain.returncode == 0 and plain.stderr == b"", plain.stderr
    assert b"Server Version:" in plain.stdout and b"Storage Driver:" in plain.stdout
    name = clean.unique("count")
    _out(cli(clean, "create", "--name", name, clean.image, "true"))
    after = json.loads(_out(cli(clean, "info", "--format", "{{json .}}")))["Containers"]
    if clean.name == "refengine":  # dockerd is shared with other users: its count moves on its own
        assert after == info["Containers"] + 1


def test_default_socket_is_the_documented_one() -> None:
    # issue 4 names /run/refengine.sock: the daemon's default listener and the refengine client's default
    assert DEFAULT_SOCKET == "/run/refengine.sock"
    assert DEFAULT_HOST == f"unix://{DEFAULT_SOCKET}"
