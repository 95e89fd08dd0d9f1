"""Attach and exec: hijacked (101 UPGRADED) connections, framed and TTY streams, stdin, exec lifecycle.

Swagger: ContainerAttach, ContainerExec, ExecStart, ExecInspect, ExecResize.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import pytest

from conformance.client import ApiClient, error_message
from conformance.probe_image import ProbeImages
from conformance.resources import AWAIT_GO, Containers, Names
from conformance.streams import STDERR, STDOUT, Hijacked, demux, hijack, parse_frames
from conformance.target import Target

RAW_STREAM = "application/vnd.docker.raw-stream"
OUT_ERR = "stream=1&stdout=1&stderr=1"
# A container script waits here (20 s at most) until the check creates /tmp/go with an exec.
@pytest.fixture(scope="module")
def sleeper(_session_api: ApiClient, probe: ProbeImages, run_id: str) -> Iterator[str]:
    """One running container shared by the exec checks that leave it as they found it (saves a start each)."""
    factory = Containers(_session_api, probe, run_id)
    try:
        yield factory.run_long()
    finally:
        factory.cleanup()


def _versioned(api: ApiClient, path: str) -> str:
    return f"/v{api.version}{path}" if api.version else path


def _attach(api: ApiClient, target: Target, cid: str, query: str = OUT_ERR, upgrade: bool = True) -> Hijacked:
    api.exercised("POST", f"/containers/{cid}/attach")
    return hijack(target, "POST", _versioned(api, f"/containers/{cid}/attach?{query}"), upgrade=upgrade)


def _wait(api: ApiClient, cid: str) -> int:
    """Wait for a container's end. ContainerWait's own schema is the containers topic's business."""
    resp = api.post(f"/containers/{cid}/wait", timeout=60, validate=False)
    assert resp.status_code == 200, f"waiting for {cid[:12]} answered {resp.status_code} {resp.text[:200]!r}"
    return int(resp.json()["StatusCode"])


def _container_state(api: ApiClient, cid: str) -> dict[str, Any]:
    resp = api.get(f"/containers/{cid}/json", validate=False)  # ContainerInspect is checked elsewhere
    assert resp.status_code == 200, f"inspecting {cid[:12]} answered {resp.status_code}"
    return resp.json()


def _exec_create(api: ApiClient, cid: str, cmd: list[str], **cfg: Any) -> str:
    body = {"Cmd": cmd, "AttachStdout": True, "AttachStderr": True, **cfg}
    resp = api.post(f"/containers/{cid}/exec", body)
    assert resp.status_code == 201, f"POST /containers/{{id}}/exec answered {resp.status_code} {resp.text[:200]!r}; expected 201"
    return resp.json()["Id"]


def _exec_start(api: ApiClient, target: Target, eid: str, tty: bool = False, upgrade: bool = True) -> Hijacked:
    return hijack(target, "POST", _versioned(api, f"/exec/{eid}/start"), {"Detach": False, "Tty": tty}, upgrade=upgrade)


def _exec_output(api: ApiClient, target: Target, cid: str, cmd: list[str], **cfg: Any) -> dict[int, bytes]:
    """Run a command through exec and return its demultiplexed output."""
    eid = _exec_create(api, cid, cmd, **cfg)
    conn = _exec_start(api, target, eid)
    try:
        assert conn.response.status == 101, f"exec start answered {conn.response.status}; expected 101"
        return demux(conn.read_all(timeout=20))
    finally:
        conn.close()


def _exec_inspect(api: ApiClient, eid: str) -> dict[str, Any]:
    resp = api.get(f"/exec/{eid}/json")
    assert resp.status_code == 200, f"GET /exec/{{id}}/json answered {resp.status_code} {resp.text[:200]!r}; expected 200"
    return resp.json()


def _exec_finished(api: ApiClient, eid: str, timeout: float = 15) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        info = _exec_inspect(api, eid)
        if (not info["Running"] and info.get("ExitCode") is not None) or time.monotonic() > deadline:
            return info
        time.sleep(0.05)


def _upgrade_headers_ok(conn: Hijacked, what: str) -> None:
    resp = conn.response
    assert resp.status == 101, f"{what} with Upgrade: tcp answered {resp.status} {resp.reason}; expected 101 UPGRADED"
    assert (resp.header("Connection") or "").lower() == "upgrade", f"{what}: Connection header is {resp.header('Connection')!r}; expected Upgrade"
    assert (resp.header("Upgrade") or "").lower() == "tcp", f"{what}: Upgrade header is {resp.header('Upgrade')!r}; expected tcp"
    assert resp.header("Content-Type") == RAW_STREAM, f"{what}: Content-Type is {resp.header('Content-Type')!r}; expected {RAW_STREAM}"


# ================================================================ attach


@pytest.mark.req("api.attach.upgrade-101")
def test_attach_upgrade(api: ApiClient, containers: Containers, target: Target) -> None:
    cid = containers.run_long()
    conn = _attach(api, target, cid)
    try:
        _upgrade_headers_ok(conn, "POST /containers/{id}/attach")
    finally:
        conn.close()


@pytest.mark.req("api.attach.no-upgrade-200")
def test_attach_no_upgrade(api: ApiClient, containers: Containers, target: Target) -> None:
    cid = containers.create(["sh", "-c", "echo plain"])
    conn = _attach(api, target, cid, upgrade=False)
    try:
        assert conn.response.status == 200, f"attach without Upgrade answered {conn.response.status}; expected 200"
        ctype = conn.response.header("Content-Type")
        assert ctype == RAW_STREAM, f"attach without Upgrade: Content-Type is {ctype!r}; expected {RAW_STREAM}"
        containers.start(cid)
        parts = demux(conn.read_all(timeout=15))
        assert parts.get(STDOUT) == b"plain\n", f"the raw (non-upgraded) attach stream carried {parts!r}; expected stdout b'plain\\n'"
    finally:
        conn.close()


@pytest.mark.req("api.attach.stream")
def test_attach_running_output(api: ApiClient, containers: Containers, target: Target) -> None:
    cid = containers.run(["sh", "-c", "while true; do echo tick; echo tock >&2; sleep 0.2; done"])
    conn = _attach(api, target, cid)
    try:
        data = b""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            data += conn.read_until(b"tock", timeout=1)
            frames, _ = parse_frames(data)  # strict: a bad header raises
            if {f.stream for f in frames} >= {STDOUT, STDERR}:
                break
        frames, _ = parse_frames(data)
        by_stream = {s: b"".join(f.data for f in frames if f.stream == s) for s in {f.stream for f in frames}}
        assert set(by_stream) == {STDOUT, STDERR}, f"attach delivered frames on streams {sorted(by_stream)}; expected 1 and 2"
        assert set(by_stream[STDOUT].split()) == {b"tick"}, f"stdout frames carried {by_stream[STDOUT][:60]!r}; expected only 'tick' lines"
        assert set(by_stream[STDERR].split()) == {b"tock"}, f"stderr frames carried {by_stream[STDERR][:60]!r}; expected only 'tock' lines"
    finally:
        conn.close()


@pytest.mark.req("api.attach.before-start")
def test_attach_before_start(api: ApiClient, containers: Containers, target: Target) -> None:
    cid = containers.create(["sh", "-c", "echo early; echo early-err >&2"])
    conn = _attach(api, target, cid)
    try:
        containers.start(cid)
        parts = demux(conn.read_all(timeout=15))
    finally:
        conn.close()
    assert parts == {STDOUT: b"early\n", STDERR: b"early-err\n"}, (
        f"attaching before start delivered {parts!r}; expected every line (stdout 'early', stderr 'early-err')")


@pytest.mark.req("api.attach.stdin")
def test_attach_stdin_running(api: ApiClient, containers: Containers, target: Target) -> None:
    cid = containers.run(["cat"], OpenStdin=True)
    conn = _attach(api, target, cid, OUT_ERR + "&stdin=1")
    try:
        conn.send(b"ping-attach\n")
        data = conn.read_until(b"ping-attach\n", timeout=10)
        frames, _ = parse_frames(data)
        echoed = b"".join(f.data for f in frames if f.stream == STDOUT)
        assert echoed == b"ping-attach\n", f"cat echoed {data[:100]!r} on attach; expected one stdout frame b'ping-attach\\n'"
    finally:
        conn.close()


@pytest.mark.req("api.attach.stdin-once")
def test_attach_stdin_once(api: ApiClient, containers: Containers, target: Target) -> None:
    cid = containers.create(["cat"], OpenStdin=True, StdinOnce=True, AttachStdin=True,
                            AttachStdout=True, AttachStderr=True)
    conn = _attach(api, target, cid, OUT_ERR + "&stdin=1")  # docker run -i: attach, then start
    try:
        containers.start(cid)
        conn.send(b"once\n")
        data = conn.read_until(b"once\n", timeout=10)
        conn.close_write()
        data += conn.read_all(timeout=15)
    finally:
        conn.close()
    assert demux(data) == {STDOUT: b"once\n"}, f"the stdin-once container echoed {data[:100]!r}; expected stdout b'once\\n'"
    code = _wait(api, cid)
    assert code == 0, f"cat exited {code} after stdin was closed; expected 0 (closing stdin of a StdinOnce container ends its input)"


@pytest.mark.req("api.attach.logs-replay")
def test_attach_logs_replay(api: ApiClient, containers: Containers, target: Target) -> None:
    # 'first' is in the logs before the attach; 'second' is written only after the attach replayed 'first'.
    cid = containers.run(["sh", "-c", f"echo first; {AWAIT_GO}; echo second; sleep 30"])
    deadline = time.monotonic() + 10
    while b"first" not in api.get(f"/containers/{cid}/logs", params={"stdout": 1}).content:
        assert time.monotonic() < deadline, "the container's first line never reached its logs"
        time.sleep(0.1)
    conn = _attach(api, target, cid, "logs=1&" + OUT_ERR)
    try:
        data = conn.read_until(b"first\n", timeout=10)
        assert b"first\n" in data, f"attach with logs=1&stream=1 did not replay the earlier line 'first': {data[:100]!r}"
        containers.let_go(cid)
        data += conn.read_until(b"second\n", timeout=10)
    finally:
        conn.close()
    frames, _ = parse_frames(data)
    out = b"".join(f.data for f in frames if f.stream == STDOUT)
    assert out == b"first\nsecond\n", (
        f"attach with logs=1&stream=1 delivered {out!r}; expected the earlier 'first' replayed, then the live 'second'")


@pytest.mark.req("api.attach.logs-only")
def test_attach_logs_only(api: ApiClient, containers: Containers, target: Target) -> None:
    cid = containers.run(["sh", "-c", "echo before; sleep 30"])
    deadline = time.monotonic() + 10
    while b"before" not in api.get(f"/containers/{cid}/logs", params={"stdout": 1}).content:
        assert time.monotonic() < deadline, "the container's line never reached its logs"
        time.sleep(0.1)
    conn = _attach(api, target, cid, "logs=1&stream=0&stdout=1")
    try:
        data, took = conn.read_all_timed(timeout=8)
    finally:
        conn.close()
    assert demux(data) == {STDOUT: b"before\n"}, f"attach with logs=1&stream=0 delivered {data[:100]!r}; expected the replayed 'before'"
    assert took < 6, f"attach with logs=1&stream=0 kept the stream open {took:.1f}s on a running container; expected it to end after the replay"


@pytest.mark.req("api.attach.unknown-404")
@pytest.mark.parametrize("upgrade", [True, False], ids=["upgrade", "plain"])
def test_attach_unknown(api: ApiClient, target: Target, names: Names, upgrade: bool) -> None:
    conn = _attach(api, target, names("missing"), "stream=1&stdout=1", upgrade=upgrade)
    conn.close()
    assert conn.response.status == 404, f"attach to an unknown container answered {conn.response.status}; expected 404"


@pytest.mark.req("api.attach.unknown-error-json")
@pytest.mark.deviation("docker", reason="dockerd 20.10 hijacks the connection before looking the container up and "
                       "writes the error as plain text with Content-Type application/vnd.docker.raw-stream")
def test_attach_unknown_json(api: ApiClient, target: Target, names: Names) -> None:
    conn = _attach(api, target, names("missing"), "stream=1&stdout=1")
    conn.close()
    resp = conn.response
    assert resp.status == 404, f"attach to an unknown container answered {resp.status}; expected 404"
    ctype = (resp.header("Content-Type") or "").split(";")[0].strip()
    assert ctype == "application/json", f"the 404 came with Content-Type {ctype!r}; expected application/json (ErrorResponse)"
    body = resp.json()
    assert isinstance(body, dict) and isinstance(body.get("message"), str), f"the 404 body {resp.body[:200]!r} is not {{'message': ...}}"


@pytest.mark.req("api.attach.tty-raw")
def test_attach_tty_raw(api: ApiClient, containers: Containers, target: Target) -> None:
    cid = containers.create(["sh", "-c", "echo tty-out; echo tty-err >&2"], Tty=True)
    conn = _attach(api, target, cid)
    try:
        containers.start(cid)
        data = conn.read_all(timeout=15)
    finally:
        conn.close()
    assert data == b"tty-out\r\ntty-err\r\n", f"attach to a TTY container delivered {data[:100]!r}; expected raw pty bytes without frame headers"


@pytest.mark.req("api.attach.tty-stdin")
def test_attach_tty_stdin(api: ApiClient, containers: Containers, target: Target) -> None:
    cid = containers.run(["sh"], Tty=True, OpenStdin=True)
    conn = _attach(api, target, cid, OUT_ERR + "&stdin=1")
    try:
        conn.send(b"echo sum-$((40+2))\n")
        data = conn.read_until(b"sum-42\r\n", timeout=10)
    finally:
        conn.close()
    assert b"sum-42\r\n" in data, f"the TTY shell answered {data[:200]!r}; expected the output line 'sum-42'"
    assert not data.startswith(b"\x01\x00\x00\x00"), f"the TTY attach stream is framed: {data[:16]!r}"


@pytest.mark.req("api.attach.detach-keys")
def test_attach_detach_keys(api: ApiClient, containers: Containers, target: Target) -> None:
    cid = containers.run(["sh"], Tty=True, OpenStdin=True)
    conn = _attach(api, target, cid, OUT_ERR + "&stdin=1&detachKeys=ctrl-x")
    try:
        conn.send(b"echo ready\n")
        conn.read_until(b"ready\r\n", timeout=10)
        conn.send(b"\x18")  # ctrl-x
        _, took = conn.read_all_timed(timeout=8)
    finally:
        conn.close()
    assert took < 6, f"the attach stream stayed open {took:.1f}s after the detach key ctrl-x; expected the daemon to end it"
    state = _container_state(api, cid)["State"]
    assert state["Running"], f"the container is {state['Status']} after detaching; detaching must leave it running"


@pytest.mark.req("api.attach.bad-detach-keys-400")
def test_attach_bad_detach_keys(api: ApiClient, containers: Containers, target: Target) -> None:
    cid = containers.run_long()
    conn = _attach(api, target, cid, "stream=1&stdout=1&detachKeys=not-a-key")
    conn.close()
    assert conn.response.status == 400, f"attach with detachKeys=not-a-key answered {conn.response.status}; expected 400"


@pytest.mark.req("api.attach.ends-on-exit")
def test_attach_ends_on_exit(api: ApiClient, containers: Containers, target: Target) -> None:
    cid = containers.run(["sh", "-c", f"{AWAIT_GO}; echo bye"])  # it exits only once the attach is in place
    conn = _attach(api, target, cid, "stream=1&stdout=1")
    try:
        containers.let_go(cid)
        data, took = conn.read_all_timed(timeout=15)
    finally:
        conn.close()
    assert took < 10, f"the attach stream stayed open {took:.1f}s; expected it to end when the container exits"
    assert demux(data) == {STDOUT: b"bye\n"}, f"attach delivered {data[:100]!r}; expected stdout b'bye\\n'"


@pytest.mark.req("api.attach.stream-selection")
def test_attach_stderr_only(api: ApiClient, containers: Containers, target: Target) -> None:
    cid = containers.create(["sh", "-c", "echo to-out; echo to-err >&2"])
    conn = _attach(api, target, cid, "stream=1&stderr=1")
    try:
        containers.start(cid)
        parts = demux(conn.read_all(timeout=15))
    finally:
        conn.close()
    assert parts == {STDERR: b"to-err\n"}, f"attach with only stderr=1 delivered {parts!r}; expected only stream 2 b'to-err\\n'"


@pytest.mark.req("api.attach.multiple-clients")
def test_attach_two_clients(api: ApiClient, containers: Containers, target: Target) -> None:
    cid = containers.create(["sh", "-c", "sleep 0.3; echo shared"])
    first = _attach(api, target, cid, "stream=1&stdout=1")
    second = _attach(api, target, cid, "stream=1&stdout=1")
    try:
        containers.start(cid)
        got = [demux(c.read_all(timeout=15)) for c in (first, second)]
    finally:
        first.close()
        second.close()
    for i, parts in enumerate(got, 1):
        assert parts == {STDOUT: b"shared\n"}, f"attached client {i} of 2 received {parts!r}; expected stdout b'shared\\n'"


@pytest.mark.req("api.attach.exited")
def test_attach_exited_then_started(api: ApiClient, containers: Containers, target: Target) -> None:
    cid = containers.run(["sh", "-c", "echo run"])
    _wait(api, cid)
    conn = _attach(api, target, cid, "stream=1&stdout=1")  # what `docker start -a` does
    try:
        assert conn.response.status == 101, f"attach to an exited container answered {conn.response.status}; expected 101"
        # A replay of the old output would follow the 101 at once; and any late one still fails the final check.
        early = conn.read_all(timeout=0.2)
        assert early == b"", f"attach stream=1 to an exited container replayed {early[:100]!r} before any restart"
        containers.start(cid)
        data = early + conn.read_all(timeout=15)
    finally:
        conn.close()
    assert demux(data) == {STDOUT: b"run\n"}, (
        f"attach to an exited container delivered {data[:100]!r} once it was started again; expected exactly the new run's b'run\\n'")


# ================================================================ exec: create


@pytest.mark.req("api.exec.create")
def test_exec_create(api: ApiClient, sleeper: str) -> None:
    cid = sleeper
    resp = api.post(f"/containers/{cid}/exec", {"Cmd": ["true"]})  # body validated against IdResponse
    assert resp.status_code == 201, f"exec create answered {resp.status_code} {resp.text[:200]!r}; expected 201"
    assert re.fullmatch(r"[0-9a-f]{64}", resp.json()["Id"]), f"exec Id {resp.json()['Id']!r} is not 64 hex digits"


@pytest.mark.req("api.exec.by-name")
def test_exec_by_name(api: ApiClient, containers: Containers, target: Target, names: Names) -> None:
    name = names("exec")
    containers.run_long(name=name)
    out = _exec_output(api, target, name, ["echo", "by-name"])
    assert out == {STDOUT: b"by-name\n"}, f"exec in a container addressed by name printed {out!r}; expected b'by-name\\n'"


@pytest.mark.req("api.exec.create-not-running-409")
@pytest.mark.parametrize("state", ["created", "exited"])
def test_exec_create_not_running(api: ApiClient, containers: Containers, state: str) -> None:
    if state == "created":
        cid = containers.create(["true"])
    else:
        cid = containers.run(["true"])
        _wait(api, cid)
    resp = api.post(f"/containers/{cid}/exec", {"Cmd": ["true"]})
    assert resp.status_code == 409, f"exec create in a {state} container answered {resp.status_code}; expected 409"
    assert error_message(resp), f"the 409 body {resp.text[:200]!r} is not {{'message': ...}}"


@pytest.mark.req("api.exec.create-unknown-404")
def test_exec_create_unknown(api: ApiClient, names: Names) -> None:
    resp = api.post(f"/containers/{names('missing')}/exec", {"Cmd": ["true"]})
    assert resp.status_code == 404, f"exec create in an unknown container answered {resp.status_code}; expected 404"
    assert error_message(resp), f"the 404 body {resp.text[:200]!r} is not {{'message': ...}}"


@pytest.mark.req("api.exec.create-no-cmd-400")
@pytest.mark.parametrize("body", [{"AttachStdout": True}, {"Cmd": [], "AttachStdout": True}], ids=["missing", "empty"])
def test_exec_create_no_cmd(api: ApiClient, sleeper: str, body: dict[str, Any]) -> None:
    cid = sleeper
    resp = api.post(f"/containers/{cid}/exec", body)
    assert resp.status_code == 400, f"exec create with body {body} answered {resp.status_code}; expected 400 (no command)"
    assert error_message(resp), f"the 400 body {resp.text[:200]!r} is not {{'message': ...}}"


@pytest.mark.req("api.exec.create-bad-json-400")
def test_exec_create_bad_json(api: ApiClient, sleeper: str) -> None:
    cid = sleeper
    resp = api.post(f"/containers/{cid}/exec", data=b'{"Cmd": ["true"', headers={"Content-Type": "application/json"})
    assert resp.status_code == 400, f"exec create with truncated JSON answered {resp.status_code}; expected 400"
    assert error_message(resp), f"the 400 body {resp.text[:200]!r} is not {{'message': ...}}"


@pytest.mark.req("api.exec.paused-409")
def test_exec_create_paused(api: ApiClient, containers: Containers) -> None:
    cid = containers.run_long()
    assert api.post(f"/containers/{cid}/pause").status_code == 204, "pausing the container failed"
    try:
        resp = api.post(f"/containers/{cid}/exec", {"Cmd": ["true"]})
    finally:
        api.post(f"/containers/{cid}/unpause")
    assert resp.status_code == 409, f"exec create in a paused container answered {resp.status_code}; expected 409"
    assert error_message(resp), f"the 409 body {resp.text[:200]!r} is not {{'message': ...}}"


@pytest.mark.req("api.exec.paused-409")
def test_exec_start_paused(api: ApiClient, containers: Containers) -> None:
    cid = containers.run_long()
    eid = _exec_create(api, cid, ["true"])
    assert api.post(f"/containers/{cid}/pause").status_code == 204, "pausing the container failed"
    try:
        resp = api.post(f"/exec/{eid}/start", {"Detach": True})
    finally:
        api.post(f"/containers/{cid}/unpause")
    assert resp.status_code == 409, f"exec start in a paused container answered {resp.status_code}; expected 409"
    assert error_message(resp), f"the 409 body {resp.text[:200]!r} is not {{'message': ...}}"


# ================================================================ exec: start and streams


@pytest.mark.req("api.exec.start-upgrade-101")
def test_exec_start_upgrade(api: ApiClient, sleeper: str, target: Target) -> None:
    cid = sleeper
    eid = _exec_create(api, cid, ["true"])
    conn = _exec_start(api, target, eid)
    try:
        _upgrade_headers_ok(conn, "POST /exec/{id}/start")
    finally:
        conn.close()


@pytest.mark.req("api.exec.multiplexed")
def test_exec_multiplexed(api: ApiClient, sleeper: str, target: Target) -> None:
    cid = sleeper
    out = _exec_output(api, target, cid, ["sh", "-c", "echo to-out; echo to-err >&2; echo more-out"])
    assert out == {STDOUT: b"to-out\nmore-out\n", STDERR: b"to-err\n"}, (
        f"exec output demultiplexed to {out!r}; expected stdout 'to-out','more-out' and stderr 'to-err'")


@pytest.mark.req("api.exec.start-no-upgrade-200")
def test_exec_start_no_upgrade(api: ApiClient, sleeper: str, target: Target) -> None:
    cid = sleeper
    eid = _exec_create(api, cid, ["echo", "plain"])
    conn = _exec_start(api, target, eid, upgrade=False)
    try:
        assert conn.response.status == 200, f"exec start without Upgrade answered {conn.response.status}; expected 200"
        ctype = conn.response.header("Content-Type")
        assert ctype == RAW_STREAM, f"exec start without Upgrade: Content-Type is {ctype!r}; expected {RAW_STREAM}"
        parts = demux(conn.read_all(timeout=15))
    finally:
        conn.close()
    assert parts == {STDOUT: b"plain\n"}, f"the raw exec stream carried {parts!r}; expected stdout b'plain\\n'"


@pytest.mark.req("api.exec.tty-raw")
def test_exec_tty_raw(api: ApiClient, sleeper: str, target: Target) -> None:
    cid = sleeper
    eid = _exec_create(api, cid, ["sh", "-c", "echo tty-out; echo tty-err >&2; tty"], Tty=True)
    conn = _exec_start(api, target, eid, tty=True)
    try:
        data = conn.read_all(timeout=15)
    finally:
        conn.close()
    assert re.fullmatch(rb"tty-out\r\ntty-err\r\n/dev/pts/\d+\r\n", data), (
        f"a TTY exec delivered {data[:100]!r}; expected raw pty bytes (no frame headers) ending with its /dev/pts/N")


@pytest.mark.req("api.exec.attach-selection")
def test_exec_stderr_only(api: ApiClient, sleeper: str, target: Target) -> None:
    cid = sleeper
    out = _exec_output(api, target, cid, ["sh", "-c", "echo to-out; echo to-err >&2"], AttachStdout=False)
    assert out == {STDERR: b"to-err\n"}, f"an exec attached to stderr only delivered {out!r}; expected only stream 2 b'to-err\\n'"


@pytest.mark.req("api.exec.ends-on-exit")
def test_exec_stream_ends(api: ApiClient, sleeper: str, target: Target) -> None:
    cid = sleeper
    eid = _exec_create(api, cid, ["sh", "-c", "sleep 0.3; echo done"])
    conn = _exec_start(api, target, eid)
    try:
        data, took = conn.read_all_timed(timeout=15)
    finally:
        conn.close()
    assert took < 10, f"the exec stream stayed open {took:.1f}s; expected it to end when the exec process exits"
    assert demux(data) == {STDOUT: b"done\n"}, f"the exec delivered {data[:100]!r}; expected stdout b'done\\n'"


@pytest.mark.req("api.exec.stdin")
def test_exec_stdin(api: ApiClient, sleeper: str, target: Target) -> None:
    cid = sleeper
    eid = _exec_create(api, cid, ["cat"], AttachStdin=True)
    conn = _exec_start(api, target, eid)
    try:
        conn.send(b"hello stdin\n")
        data = conn.read_until(b"hello stdin\n", timeout=10)
        conn.close_write()
        data += conn.read_all(timeout=15)
    finally:
        conn.close()
    assert demux(data) == {STDOUT: b"hello stdin\n"}, f"exec cat echoed {data[:100]!r}; expected stdout b'hello stdin\\n'"
    info = _exec_finished(api, eid)
    assert not info["Running"] and info["ExitCode"] == 0, (
        f"after stdin was closed the exec is Running={info['Running']} ExitCode={info['ExitCode']}; expected it ended with 0")


@pytest.mark.req("api.exec.env")
def test_exec_env(api: ApiClient, sleeper: str, target: Target) -> None:
    cid = sleeper
    out = _exec_output(api, target, cid, ["sh", "-c", 'echo "$FOO|$BAR"'], Env=["FOO=foo1", "BAR=with space"])
    assert out == {STDOUT: b"foo1|with space\n"}, f"exec with Env printed {out!r}; expected b'foo1|with space\\n'"


@pytest.mark.req("api.exec.workdir")
def test_exec_workdir(api: ApiClient, sleeper: str, target: Target) -> None:
    cid = sleeper
    out = _exec_output(api, target, cid, ["pwd"], WorkingDir="/tmp")
    assert out == {STDOUT: b"/tmp\n"}, f"exec with WorkingDir /tmp printed {out!r}; expected b'/tmp\\n'"


@pytest.mark.req("api.exec.user")
@pytest.mark.parametrize(("user", "ids"), [("1000", "1000 1000"), ("probe", "1000 1000"), ("1000:0", "1000 0"),
                                           ("nobody", "65534 65534")])
def test_exec_user(api: ApiClient, sleeper: str, target: Target, user: str, ids: str) -> None:
    cid = sleeper
    out = _exec_output(api, target, cid, ["sh", "-c", "echo $(id -u) $(id -g)"], User=user)
    assert out == {STDOUT: ids.encode() + b"\n"}, f"exec as User {user!r} printed uid/gid {out!r}; expected {ids!r}"


@pytest.mark.req("api.exec.unknown-user-fails")
def test_exec_unknown_user(api: ApiClient, sleeper: str, target: Target) -> None:
    cid = sleeper
    eid = _exec_create(api, cid, ["sh", "-c", "echo ran"], User="no-such-user")
    conn = _exec_start(api, target, eid)
    try:
        data = conn.read_all(timeout=15)
    finally:
        conn.close()
    assert b"ran" not in data, f"an exec as an unknown user ran its command: {data[:200]!r}"
    info = _exec_finished(api, eid)
    assert info["ExitCode"] not in (0, None), f"an exec as an unknown user ended with ExitCode {info['ExitCode']}; expected a failure"


@pytest.mark.req("api.exec.inherits-container")
def test_exec_inherits_container(api: ApiClient, containers: Containers, target: Target) -> None:
    cid = containers.run(["3600"], image=containers.probe.config, Entrypoint=["sleep"], User="1000",
                         Env=["CENV=from-container"])
    out = _exec_output(api, target, cid, ["sh", "-c", 'pwd; id -u; echo "$PROBE_ENV $CENV"'])
    want = b"/srv\n1000\nfrom-image from-container\n"
    assert out == {STDOUT: want}, (
        f"exec without its own WorkingDir/User/Env printed {out!r}; expected the container's /srv, uid 1000 and env {want!r}")


@pytest.mark.req("api.exec.env-override")
def test_exec_env_override(api: ApiClient, containers: Containers, target: Target) -> None:
    cid = containers.run_long(Env=["CENV=from-container"])
    out = _exec_output(api, target, cid, ["sh", "-c", 'echo "$CENV"'], Env=["CENV=from-exec"])
    assert out == {STDOUT: b"from-exec\n"}, f"exec Env CENV=from-exec printed {out!r}; expected it to override the container's value"


@pytest.mark.req("api.exec.detach")
def test_exec_detach(api: ApiClient, sleeper: str, target: Target, names: Names) -> None:
    cid, path = sleeper, f"/tmp/{names('detach')}"  # the container is shared: a file of its own
    eid = _exec_create(api, cid, ["sh", "-c", f"echo detached > {path}"], AttachStdout=False, AttachStderr=False)
    resp = api.post(f"/exec/{eid}/start", {"Detach": True})
    assert resp.status_code == 200, f"exec start with Detach answered {resp.status_code} {resp.text[:200]!r}; expected 200"
    assert resp.content == b"", f"exec start with Detach sent a body {resp.content[:100]!r}; expected none"
    info = _exec_finished(api, eid)
    assert info["ExitCode"] == 0, f"the detached exec ended with ExitCode {info['ExitCode']}; expected 0"
    out = _exec_output(api, target, cid, ["cat", path])
    assert out == {STDOUT: b"detached\n"}, f"the file written by the detached exec holds {out!r}; expected b'detached\\n'"


@pytest.mark.req("api.exec.start-twice-409")
def test_exec_start_twice(api: ApiClient, sleeper: str) -> None:
    cid = sleeper
    eid = _exec_create(api, cid, ["true"])
    first = api.post(f"/exec/{eid}/start", {"Detach": True})
    assert first.status_code == 200, f"the first exec start answered {first.status_code}; expected 200"
    _exec_finished(api, eid)
    again = api.post(f"/exec/{eid}/start", {"Detach": True})
    assert again.status_code == 409, f"starting a finished exec again answered {again.status_code}; expected 409"
    assert error_message(again), f"the 409 body {again.text[:200]!r} is not {{'message': ...}}"


@pytest.mark.req("api.exec.run-once")
def test_exec_attached_start_twice(api: ApiClient, sleeper: str, target: Target, names: Names) -> None:
    cid, path = sleeper, f"/tmp/{names('count')}"
    eid = _exec_create(api, cid, ["sh", "-c", f"echo run >> {path}"])
    for _ in range(2):
        # dockerd answers the second attached start 101 and writes its error into the stream, so only the
        # effect is compared across daemons.
        conn = _exec_start(api, target, eid)
        try:
            conn.read_all(timeout=15)
        finally:
            conn.close()
    out = _exec_output(api, target, cid, ["cat", path])
    assert out == {STDOUT: b"run\n"}, f"after two starts of one exec its command had written {out!r}; expected it to run once"


# ================================================================ exec: inspect


@pytest.mark.req("api.exec.exit-code")
@pytest.mark.parametrize("code", [0, 3, 42])
def test_exec_exit_code(api: ApiClient, sleeper: str, target: Target, code: int) -> None:
    cid = sleeper
    eid = _exec_create(api, cid, ["sh", "-c", f"exit {code}"])
    conn = _exec_start(api, target, eid)
    try:
        conn.read_all(timeout=15)
    finally:
        conn.close()
    info = _exec_finished(api, eid)
    assert info["Running"] is False, f"exec inspect says Running={info['Running']} after the stream ended; expected false"
    assert info["ExitCode"] == code, f"exec of 'exit {code}' reports ExitCode {info['ExitCode']}; expected {code}"


@pytest.mark.req("api.exec.inspect-fields")
def test_exec_inspect_fields(api: ApiClient, sleeper: str) -> None:
    cid = sleeper
    eid = _exec_create(api, cid, ["sh", "-c", "exit 0"], AttachStdin=True, AttachStderr=False, Tty=True,
                       User="1000", Privileged=True)
    info = _exec_inspect(api, eid)
    assert info.get("ID") == eid, f"exec inspect ID is {info.get('ID')!r}; expected the created Id {eid}"
    assert info.get("ContainerID") == cid, f"exec inspect ContainerID is {info.get('ContainerID')!r}; expected {cid}"
    opens = (info.get("OpenStdin"), info.get("OpenStdout"), info.get("OpenStderr"))
    assert opens == (True, True, False), f"OpenStdin/OpenStdout/OpenStderr are {opens}; expected the Attach* flags (True, True, False)"
    pc = info.get("ProcessConfig") or {}
    want = {"entrypoint": "sh", "arguments": ["-c", "exit 0"], "tty": True, "user": "1000", "privileged": True}
    got = {k: pc.get(k) for k in want}
    assert got == want, f"exec ProcessConfig is {pc}; expected {want}"


@pytest.mark.req("api.exec.inspect-created")
def test_exec_inspect_not_started(api: ApiClient, sleeper: str) -> None:
    cid = sleeper
    eid = _exec_create(api, cid, ["true"])
    info = _exec_inspect(api, eid)
    assert info.get("Running") is False, f"a created, unstarted exec reports Running={info.get('Running')!r}; expected false"
    assert info.get("Pid") == 0, f"a created, unstarted exec reports Pid={info.get('Pid')!r}; expected 0"


@pytest.mark.req("api.exec.running")
def test_exec_running(api: ApiClient, sleeper: str) -> None:
    cid = sleeper
    eid = _exec_create(api, cid, ["sleep", "30"], AttachStdout=False, AttachStderr=False)
    resp = api.post(f"/exec/{eid}/start", {"Detach": True})
    assert resp.status_code == 200, f"exec start with Detach answered {resp.status_code}"
    info = _exec_inspect(api, eid)
    assert info["Running"] is True, f"a sleeping exec reports Running={info['Running']!r}; expected true"
    assert isinstance(info.get("Pid"), int) and info["Pid"] > 0, f"a running exec reports Pid={info.get('Pid')!r}; expected > 0"
    execs = _container_state(api, cid).get("ExecIDs") or []
    assert eid in execs, f"container inspect ExecIDs {execs} does not list the running exec {eid[:12]}"


@pytest.mark.req("api.exec.top")
def test_exec_in_top(api: ApiClient, sleeper: str) -> None:
    cid = sleeper
    eid = _exec_create(api, cid, ["sleep", "31"], AttachStdout=False, AttachStderr=False)
    assert api.post(f"/exec/{eid}/start", {"Detach": True}).status_code == 200, "starting the exec failed"
    resp = api.get(f"/containers/{cid}/top")
    assert resp.status_code == 200, f"GET /containers/{{id}}/top answered {resp.status_code}"
    body = resp.json()
    cmd_col = body["Titles"].index("CMD") if "CMD" in body["Titles"] else -1
    cmds = [row[cmd_col] for row in body["Processes"]]
    assert "sleep 31" in cmds, f"the container's process list {cmds} does not show the exec's 'sleep 31'"


@pytest.mark.req("api.exec.inspect-unknown-404")
def test_exec_inspect_unknown(api: ApiClient, names: Names) -> None:
    resp = api.get(f"/exec/{names('missing')}/json")
    assert resp.status_code == 404, f"inspect of an unknown exec answered {resp.status_code}; expected 404"
    assert error_message(resp), f"the 404 body {resp.text[:200]!r} is not {{'message': ...}}"


@pytest.mark.req("api.exec.start-unknown-404")
@pytest.mark.parametrize("upgrade", [True, False], ids=["upgrade", "plain"])
def test_exec_start_unknown(api: ApiClient, target: Target, names: Names, upgrade: bool) -> None:
    conn = _exec_start(api, target, names("missing"), upgrade=upgrade)
    conn.close()
    assert conn.response.status == 404, f"start of an unknown exec answered {conn.response.status}; expected 404"
    assert isinstance((conn.response.json() or {}).get("message"), str), (
        f"the 404 body {conn.response.body[:200]!r} is not {{'message': ...}}")


@pytest.mark.req("api.exec.gone-after-stop")
def test_exec_gone_after_stop(api: ApiClient, containers: Containers) -> None:
    cid = containers.run_long()
    eid = _exec_create(api, cid, ["true"])
    resp = api.post(f"/containers/{cid}/stop", params={"t": 0}, timeout=30)
    assert resp.status_code == 204, f"stopping the container answered {resp.status_code}"
    resp = api.get(f"/exec/{eid}/json")
    assert resp.status_code == 404, f"inspect of an exec of a stopped container answered {resp.status_code}; expected 404"


@pytest.mark.req("api.exec.cannot-execute")
@pytest.mark.parametrize(("cmd", "codes"), [(["/etc/passwd"], (126,)), (["no-such-command"], (126, 127))],
                         ids=["not-executable", "missing"])
def test_exec_cannot_execute(api: ApiClient, sleeper: str, target: Target, cmd: list[str],
                             codes: tuple[int, ...]) -> None:
    cid = sleeper
    eid = _exec_create(api, cid, cmd)
    conn = _exec_start(api, target, eid)
    try:
        conn.read_all(timeout=15)
    finally:
        conn.close()
    info = _exec_finished(api, eid)
    assert info["ExitCode"] in codes, f"exec of {cmd} reports ExitCode {info['ExitCode']}; expected one of {codes}"


# ================================================================ exec: resize


@pytest.mark.req("api.exec.resize")
def test_exec_resize(api: ApiClient, sleeper: str, target: Target) -> None:
    cid = sleeper
    # The exec waits for a line on stdin, so the size it prints is read after the resize.
    eid = _exec_create(api, cid, ["sh", "-c", "read go; stty size"], Tty=True, AttachStdin=True)
    conn = _exec_start(api, target, eid, tty=True)
    try:
        resp = api.post(f"/exec/{eid}/resize", params={"h": 33, "w": 111})
        assert resp.status_code == 200, f"resize of a running TTY exec answered {resp.status_code} {resp.text[:200]!r}; expected 200"
        conn.send(b"go\n")
        data = conn.read_all(timeout=15)
    finally:
        conn.close()
    assert data.endswith(b"33 111\r\n"), f"after resizing to 33x111 the exec's `stty size` printed {data[-100:]!r}"


@pytest.mark.req("api.exec.resize-unknown-404")
def test_exec_resize_unknown(api: ApiClient, names: Names) -> None:
    resp = api.post(f"/exec/{names('missing')}/resize", params={"h": 10, "w": 10})
    assert resp.status_code == 404, f"resize of an unknown exec answered {resp.status_code}; expected 404"


@pytest.mark.req("api.exec.resize-bad-param-400")
def test_exec_resize_bad_param(api: ApiClient, sleeper: str, target: Target) -> None:
    cid = sleeper
    eid = _exec_create(api, cid, ["sleep", "5"], Tty=True)
    conn = _exec_start(api, target, eid, tty=True)
    try:
        resp = api.post(f"/exec/{eid}/resize", params={"h": "tall", "w": 80})
    finally:
        conn.close()
    assert resp.status_code == 400, f"resize with h=tall answered {resp.status_code}; expected 400"
