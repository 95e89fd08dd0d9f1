"""Container lifecycle and state transitions: start, wait, stop, kill, restart, pause, restart
policies, and what can be read from a container (top, changes, export, archive, stats, resize)."""

from __future__ import annotations

import base64
import io
import json
import tarfile
import time
from datetime import datetime
from typing import Any

import pytest
import requests

from conformance.client import ApiClient, error_message
from conformance.resources import Containers, Names

ZERO_TIME = "0001-01-01T00:00:00Z"
# A shell that announces itself, then idles in short sleeps so traps run promptly.
IDLE = "echo ready; while true; do sleep 0.1; done"
# FileMode bits of Go's os.FileMode, which X-Docker-Container-Path-Stat carries.
MODE_DIR = 1 << 31
MODE_SYMLINK = 1 << 27


def _ts(value: str) -> datetime:
    """An RFC 3339 timestamp with nanoseconds, cut to what datetime can hold."""
    head, _, frac = value.rstrip("Z").partition(".")
    return datetime.fromisoformat(head + ("." + frac[:6] if frac else "") + "+00:00")


def _wait_output(containers: Containers, cid: str, text: str, timeout: float = 10) -> str:
    deadline = time.monotonic() + timeout
    while True:
        out = containers.output(cid)
        if text in out or time.monotonic() > deadline:
            return out
        time.sleep(0.05)


def _poll(fn: Any, timeout: float = 10, interval: float = 0.1) -> Any:
    """Call fn until it returns something truthy or the deadline passes; returns the last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def _open_wait(api: ApiClient, cid: str, condition: str) -> requests.Response:
    """Start POST /wait and return once the daemon has answered the head, i.e. the wait is registered."""
    try:
        resp = api.post(f"/containers/{cid}/wait", params={"condition": condition}, stream=True, timeout=15)
    except requests.exceptions.ReadTimeout:
        pytest.fail(f"POST /containers/{{id}}/wait?condition={condition} sent no response head within 15 s; "
                    "docker clients rely on the head arriving at once so the wait is in place before they act")
    assert resp.status_code == 200, (
        f"POST /containers/{{id}}/wait?condition={condition} answered {resp.status_code}: {resp.text[:200]}")
    return resp


def _finish_wait(resp: requests.Response, what: str) -> dict[str, Any]:
    try:
        body = json.loads(resp.content)
    finally:
        resp.close()
    assert isinstance(body, dict) and isinstance(body.get("StatusCode"), int), (
        f"{what}: the wait body is {body!r}; expected an object with an integer StatusCode")
    return body


def _tar(files: dict[str, tuple[bytes, int]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, (data, mode) in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), mode, 1700000000
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _path_stat(resp: requests.Response) -> dict[str, Any]:
    raw = resp.headers.get("X-Docker-Container-Path-Stat")
    assert raw, (f"{resp.request.method} /containers/{{id}}/archive answered {resp.status_code} without an "
                 "X-Docker-Container-Path-Stat header; the schema requires it")
    stat = json.loads(base64.b64decode(raw))
    assert isinstance(stat, dict), f"X-Docker-Container-Path-Stat decodes to {stat!r}, not a JSON object"
    return stat


def _archive_file(api: ApiClient, cid: str, path: str) -> tuple[tarfile.TarInfo, bytes]:
    """The single member of GET /archive for a regular file, and its content."""
    resp = api.get(f"/containers/{cid}/archive", params={"path": path})
    assert resp.status_code == 200, f"GET /containers/{{id}}/archive?path={path} answered {resp.status_code}"
    with tarfile.open(fileobj=io.BytesIO(resp.content)) as tar:
        members = tar.getmembers()
        assert len(members) == 1, f"the archive of the file {path} holds {[m.name for m in members]}"
        member = members[0]
        fh = tar.extractfile(member)
        return member, fh.read() if fh else b""


# ---------------------------------------------------------------- start


@pytest.mark.req("api.lifecycle.start-runs")
def test_start_runs(api: ApiClient, containers: Containers) -> None:
    cid = containers.create(["sleep", "3600"])
    resp = api.post(f"/containers/{cid}/start")
    assert resp.status_code == 204, f"POST /containers/{{id}}/start answered {resp.status_code}; expected 204"
    state = containers.inspect(cid)["State"]
    assert state["Running"] is True, f"after start State.Running is {state['Running']!r}; expected true"
    assert state["Status"] == "running", f"after start State.Status is {state['Status']!r}; expected 'running'"
    assert state["Pid"] > 0, f"after start State.Pid is {state['Pid']!r}; expected the process's PID (> 0)"
    assert state["StartedAt"] and state["StartedAt"] != ZERO_TIME, (
        f"after start State.StartedAt is {state['StartedAt']!r}; expected the start time")


@pytest.mark.req("api.lifecycle.start-already-started")
def test_start_twice(api: ApiClient, containers: Containers) -> None:
    cid = containers.run_long()
    resp = api.post(f"/containers/{cid}/start")
    assert resp.status_code == 304, (
        f"starting a running container answered {resp.status_code}; the schema says 304 Not Modified")


@pytest.mark.req("api.lifecycle.start-exited-again")
def test_start_exited_again(api: ApiClient, containers: Containers) -> None:
    cid, code = containers.run_to_exit(["sh", "-c", "echo run"])
    assert code == 0
    resp = api.post(f"/containers/{cid}/start")
    assert resp.status_code == 204, f"starting an exited container answered {resp.status_code}; expected 204"
    containers.wait(cid)
    out = containers.output(cid)
    assert out.count("run") == 2, f"after a second start the log is {out!r}; expected the command to have run twice"


@pytest.mark.req("api.lifecycle.start-missing-executable")
@pytest.mark.parametrize("cmd", ["/no/such/exe", "nosuchcommand"])
def test_start_missing_executable(api: ApiClient, containers: Containers, cmd: str) -> None:
    cid = containers.create([cmd])
    resp = api.post(f"/containers/{cid}/start")
    assert resp.status_code >= 400, (
        f"starting a container whose command {cmd!r} does not exist answered {resp.status_code}; expected an error")
    msg = error_message(resp) or ""
    assert cmd in msg, f"the start error {msg!r} does not name the missing executable {cmd!r}"


# A config no kernel can run as asked: (HostConfig or Config fields, words one of which the refusal names).
UNRUNNABLE: dict[str, tuple[dict[str, Any], str | tuple[str, ...]]] = {
    "ulimit-soft-above-hard": ({"HostConfig": {"Ulimits": [{"Name": "nofile", "Soft": 10, "Hard": 5}]}},
                               ("rlimit", "ulimit")),
    "missing-device": ({"HostConfig": {"Devices": [{"PathOnHost": "/dev/conformance-none", "PathInContainer": "/dev/x",
                                                    "CgroupPermissions": "rwm"}]}}, "/dev/conformance-none"),
    "host-wide-sysctl": ({"HostConfig": {"Sysctls": {"kernel.conformance_none": "1"}}}, "kernel.conformance_none"),
    "unavailable-cpus": ({"HostConfig": {"CpusetCpus": "4095"}}, "4095"),
    "bad-tmpfs-option": ({"HostConfig": {"Tmpfs": {"/conformance-t": "size=lots"}}}, "tmpfs"),
    "unknown-user": ({"User": "conformance-nobody"}, "conformance-nobody"),
}


@pytest.mark.req("api.lifecycle.start-unrunnable")
@pytest.mark.parametrize("case", list(UNRUNNABLE))
def test_unrunnable_config_refused(api: ApiClient, containers: Containers, case: str) -> None:
    fields, word = UNRUNNABLE[case]
    resp = api.post("/containers/create", containers.config(["true"], **fields))
    if resp.status_code == 201:
        cid = containers.adopt(resp.json()["Id"])
        resp = api.post(f"/containers/{cid}/start")
        assert resp.status_code >= 400, (
            f"create and start of a container with {fields} both succeeded (start answered {resp.status_code}); "
            f"the engine ran something other than what was asked")
        state = containers.inspect(cid)["State"]
        assert state["Running"] is False, f"after the refused start State.Running is {state['Running']!r}"
    else:
        assert resp.status_code >= 400, f"create with {fields} answered {resp.status_code}"
    msg = error_message(resp) or ""
    words = (word,) if isinstance(word, str) else word
    assert any(w.lower() in msg.lower() for w in words), (
        f"the refusal {msg!r} does not name what cannot be done ({' or '.join(map(repr, words))}); dockerd's does")


@pytest.mark.req("api.lifecycle.start-missing-executable-state")
def test_start_missing_executable_state(api: ApiClient, containers: Containers) -> None:
    cid = containers.create(["/no/such/exe"])
    api.post(f"/containers/{cid}/start")
    state = containers.inspect(cid)["State"]
    assert state["Running"] is False, f"State.Running is {state['Running']!r} after a failed start"
    assert state["ExitCode"] == 127, (
        f"State.ExitCode is {state['ExitCode']!r} after a start with a missing executable; expected 127")
    assert "/no/such/exe" in (state.get("Error") or ""), (
        f"State.Error is {state.get('Error')!r}; expected the reason the start failed")


@pytest.mark.req("api.lifecycle.start-not-executable-state")
def test_start_not_executable_state(api: ApiClient, containers: Containers) -> None:
    cid = containers.create(["/etc/passwd"])
    resp = api.post(f"/containers/{cid}/start")
    assert resp.status_code >= 400, f"starting a non-executable command answered {resp.status_code}"
    state = containers.inspect(cid)["State"]
    assert state["ExitCode"] == 126, (
        f"State.ExitCode is {state['ExitCode']!r} after starting a file without execute permission; expected 126")


# A refused start: (fields, the status dockerd answers, the State.ExitCode it records). dockerd reads runc's
# message: the command missing (127) or not executable (126) is the caller's error (400), any other refusal
# a server error (500) with exit code 128 (daemon/errors.go translateContainerdStartErr; observed on 20.10).
START_FAILURES: dict[str, tuple[dict[str, Any], int, int]] = {
    "missing-command": ({"Cmd": ["/no/such/exe"]}, 400, 127),
    "command-not-in-path": ({"Cmd": ["nosuchcommand"]}, 400, 127),
    "not-executable": ({"Cmd": ["/etc/passwd"]}, 400, 126),
    "unknown-user": ({"User": "conformance-nobody"}, 500, 128),
    "ulimit-soft-above-hard": ({"HostConfig": {"Ulimits": [{"Name": "nofile", "Soft": 10, "Hard": 5}]}}, 500, 128),
}


@pytest.mark.req("api.lifecycle.start-failure-status")
@pytest.mark.parametrize("case", list(START_FAILURES))
def test_start_failure_status(api: ApiClient, containers: Containers, case: str) -> None:
    fields, status, exit_code = START_FAILURES[case]
    fields = dict(fields)
    cid = containers.create(fields.pop("Cmd", ["true"]), **fields)
    resp = api.post(f"/containers/{cid}/start")
    state = containers.inspect(cid)["State"]
    assert (resp.status_code, state["ExitCode"]) == (status, exit_code), (
        f"the refused start ({case}) answered {resp.status_code} {(error_message(resp) or '')[:160]!r} and left "
        f"State.ExitCode {state['ExitCode']!r}; dockerd answers {status} and records {exit_code}")
    assert state["Status"] == "created" and state["Running"] is False, (
        f"after a refused first start State.Status is {state['Status']!r}, Running {state['Running']!r}; "
        "expected created, not running")


# ---------------------------------------------------------------- exit codes and wait


@pytest.mark.req("api.lifecycle.exit-code")
@pytest.mark.parametrize("code", [0, 1, 42, 255])
def test_exit_code(containers: Containers, code: int) -> None:
    cid, status = containers.run_to_exit(["sh", "-c", f"exit {code}"])
    assert status == code, f"wait reported StatusCode {status}; the process exited with {code}"
    state = containers.inspect(cid)["State"]
    assert state["ExitCode"] == code, f"State.ExitCode is {state['ExitCode']}; the process exited with {code}"
    assert state["Status"] == "exited" and state["Running"] is False, (
        f"after exit State is Status={state['Status']!r} Running={state['Running']!r}; expected exited/false")


@pytest.mark.req("api.lifecycle.finished-at")
def test_finished_at(containers: Containers) -> None:
    cid, _ = containers.run_to_exit(["sleep", "0.3"])
    state = containers.inspect(cid)["State"]
    assert state["FinishedAt"] != ZERO_TIME, f"State.FinishedAt is {state['FinishedAt']!r} after the exit"
    assert state["Pid"] == 0, f"State.Pid is {state['Pid']} after the exit; expected 0"
    started, finished = _ts(state["StartedAt"]), _ts(state["FinishedAt"])
    assert finished > started, (
        f"FinishedAt {state['FinishedAt']} is not after StartedAt {state['StartedAt']} for a 0.3 s process")


@pytest.mark.req("api.lifecycle.wait-blocks")
def test_wait_blocks_until_exit(api: ApiClient, containers: Containers) -> None:
    cid = containers.run(["sh", "-c", "sleep 0.3; exit 4"])
    resp = api.post(f"/containers/{cid}/wait")
    assert resp.status_code == 200, f"POST /containers/{{id}}/wait answered {resp.status_code}; expected 200"
    assert resp.json()["StatusCode"] == 4, f"wait reported {resp.json()!r}; the process exited with 4"
    state = containers.inspect(cid)["State"]
    assert state["Running"] is False, "wait returned while the container was still running"


@pytest.mark.req("api.lifecycle.wait-not-running-immediate")
@pytest.mark.parametrize("state", ["exited", "created"])
def test_wait_not_running_immediate(api: ApiClient, containers: Containers, state: str) -> None:
    if state == "exited":
        cid, _ = containers.run_to_exit(["sh", "-c", "exit 3"])
        expected = 3
    else:
        cid, expected = containers.create(["true"]), 0
    started = time.monotonic()
    resp = api.post(f"/containers/{cid}/wait", params={"condition": "not-running"}, timeout=10)
    took = time.monotonic() - started
    assert resp.status_code == 200, f"wait?condition=not-running on a {state} container answered {resp.status_code}"
    assert resp.json()["StatusCode"] == expected, (
        f"wait?condition=not-running on a {state} container reported {resp.json()!r}; expected {expected}")
    assert took < 5, f"wait?condition=not-running on a {state} container took {took:.1f} s; expected at once"


@pytest.mark.req("api.lifecycle.wait-next-exit")
def test_wait_next_exit_created(api: ApiClient, containers: Containers) -> None:
    cid = containers.create(["sh", "-c", "exit 5"])
    resp = _open_wait(api, cid, "next-exit")
    containers.start(cid)
    body = _finish_wait(resp, "wait?condition=next-exit")
    assert body["StatusCode"] == 5, f"wait?condition=next-exit reported {body!r}; the process exited with 5"


@pytest.mark.req("api.lifecycle.wait-next-exit")
def test_wait_next_exit_running(api: ApiClient, containers: Containers) -> None:
    cid = containers.run_long()
    resp = _open_wait(api, cid, "next-exit")
    kill = api.post(f"/containers/{cid}/kill")
    assert kill.status_code == 204, f"kill answered {kill.status_code}"
    body = _finish_wait(resp, "wait?condition=next-exit")
    assert body["StatusCode"] == 137, f"wait?condition=next-exit reported {body!r}; a SIGKILLed process gives 137"


@pytest.mark.req("api.lifecycle.wait-removed")
def test_wait_removed(api: ApiClient, containers: Containers) -> None:
    cid, _ = containers.run_to_exit(["sh", "-c", "exit 6"])
    resp = _open_wait(api, cid, "removed")
    removed = api.delete(f"/containers/{cid}")
    assert removed.status_code == 204, f"DELETE /containers/{{id}} answered {removed.status_code}"
    body = _finish_wait(resp, "wait?condition=removed")
    assert body["StatusCode"] == 6, f"wait?condition=removed reported {body!r}; the process exited with 6"


# ---------------------------------------------------------------- stop


@pytest.mark.req("api.lifecycle.stop-graceful")
def test_stop_graceful(api: ApiClient, containers: Containers) -> None:
    cid = containers.run(["sh", "-c", f"trap 'exit 7' TERM; {IDLE}"])
    _wait_output(containers, cid, "ready")
    resp = api.post(f"/containers/{cid}/stop", params={"t": 5})
    assert resp.status_code == 204, f"POST /containers/{{id}}/stop answered {resp.status_code}; expected 204"
    state = containers.inspect(cid)["State"]
    assert state["Status"] == "exited", f"after stop State.Status is {state['Status']!r}; expected 'exited'"
    assert state["ExitCode"] == 7, (
        f"State.ExitCode is {state['ExitCode']} after stop; the TERM trap exits 7, so SIGTERM was not delivered")


@pytest.mark.req("api.lifecycle.stop-already-stopped")
@pytest.mark.parametrize("state", ["exited", "created"])
def test_stop_already_stopped(api: ApiClient, containers: Containers, state: str) -> None:
    cid = containers.run_to_exit(["true"])[0] if state == "exited" else containers.create(["true"])
    resp = api.post(f"/containers/{cid}/stop", params={"t": 1})
    assert resp.status_code == 304, (
        f"stopping a {state} container answered {resp.status_code}; the schema says 304 Not Modified")


@pytest.mark.req("api.lifecycle.stop-timeout-kills")
def test_stop_timeout_kills(api: ApiClient, containers: Containers) -> None:
    cid = containers.run(["sh", "-c", f"trap '' TERM; {IDLE}"])
    _wait_output(containers, cid, "ready")
    started = time.monotonic()
    resp = api.post(f"/containers/{cid}/stop", params={"t": 1})
    took = time.monotonic() - started
    assert resp.status_code == 204, f"stop answered {resp.status_code}; expected 204"
    state = containers.inspect(cid)["State"]
    assert state["ExitCode"] == 137, (
        f"a process ignoring SIGTERM has ExitCode {state['ExitCode']} after stop; expected 137 (SIGKILL)")
    assert 0.8 <= took < 10, f"stop with t=1 of a process ignoring SIGTERM took {took:.1f} s; expected about 1 s"


@pytest.mark.req("api.lifecycle.stop-timeout-config")
def test_stop_timeout_from_config(api: ApiClient, containers: Containers) -> None:
    cid = containers.run(["sh", "-c", f"trap '' TERM; {IDLE}"], StopTimeout=1)
    _wait_output(containers, cid, "ready")
    started = time.monotonic()
    resp = api.post(f"/containers/{cid}/stop")
    took = time.monotonic() - started
    assert resp.status_code == 204, f"stop answered {resp.status_code}; expected 204"
    assert took < 8, f"stop without t of a container with StopTimeout=1 took {took:.1f} s; expected about 1 s"
    assert containers.inspect(cid)["State"]["ExitCode"] == 137


@pytest.mark.req("api.lifecycle.stop-signal-image")
def test_stop_signal_from_image(api: ApiClient, containers: Containers) -> None:
    script = f"trap 'exit 9' USR1; trap '' TERM; {IDLE}"
    cid = containers.run(None, image=containers.probe.config, Entrypoint=["sh", "-c", script])
    assert containers.inspect(cid)["Config"].get("StopSignal") == "SIGUSR1", (
        "Config.StopSignal does not carry the image's SIGUSR1")
    _wait_output(containers, cid, "ready")
    resp = api.post(f"/containers/{cid}/stop", params={"t": 5})
    assert resp.status_code == 204, f"stop answered {resp.status_code}; expected 204"
    code = containers.inspect(cid)["State"]["ExitCode"]
    assert code == 9, f"ExitCode is {code} after stop; the image's StopSignal SIGUSR1 (trap exits 9) was not sent"


@pytest.mark.req("api.lifecycle.stop-signal-config")
def test_stop_signal_from_config(api: ApiClient, containers: Containers) -> None:
    cid = containers.run(["sh", "-c", f"trap 'exit 12' USR2; trap '' TERM; {IDLE}"], StopSignal="SIGUSR2")
    _wait_output(containers, cid, "ready")
    resp = api.post(f"/containers/{cid}/stop", params={"t": 5})
    assert resp.status_code == 204, f"stop answered {resp.status_code}; expected 204"
    code = containers.inspect(cid)["State"]["ExitCode"]
    assert code == 12, f"ExitCode is {code} after stop; the container's StopSignal SIGUSR2 (trap exits 12) was not sent"


# ---------------------------------------------------------------- kill


@pytest.mark.req("api.lifecycle.kill-default-sigkill")
def test_kill_default(api: ApiClient, containers: Containers) -> None:
    cid = containers.run(["sh", "-c", f"trap '' TERM INT; {IDLE}"])
    resp = api.post(f"/containers/{cid}/kill")
    assert resp.status_code == 204, f"POST /containers/{{id}}/kill answered {resp.status_code}; expected 204"
    state = containers.wait_for_state(cid, "Running", False)
    assert state["Running"] is False, "the container still runs after kill"
    assert state["ExitCode"] == 137, f"ExitCode is {state['ExitCode']} after kill; SIGKILL gives 137"


@pytest.mark.req("api.lifecycle.kill-signal")
@pytest.mark.parametrize("signal", ["SIGUSR1", "USR1", "10"])
def test_kill_handled_signal(api: ApiClient, containers: Containers, signal: str) -> None:
    cid = containers.run(["sh", "-c", f"trap 'echo got-usr1' USR1; {IDLE}"])
    _wait_output(containers, cid, "ready")
    resp = api.post(f"/containers/{cid}/kill", params={"signal": signal})
    assert resp.status_code == 204, f"kill signal={signal} answered {resp.status_code}; expected 204"
    out = _wait_output(containers, cid, "got-usr1")
    assert "got-usr1" in out, f"kill signal={signal} did not reach the USR1 trap; the log is {out!r}"
    assert containers.inspect(cid)["State"]["Running"] is True, "a handled signal stopped the container"


@pytest.mark.req("api.lifecycle.kill-signal")
@pytest.mark.parametrize("signal", ["SIGTERM", "15"])
def test_kill_term(api: ApiClient, containers: Containers, signal: str) -> None:
    cid = containers.run(["sh", "-c", f"trap 'exit 3' TERM; {IDLE}"])
    _wait_output(containers, cid, "ready")
    resp = api.post(f"/containers/{cid}/kill", params={"signal": signal})
    assert resp.status_code == 204, f"kill signal={signal} answered {resp.status_code}; expected 204"
    assert containers.wait(cid, timeout=10) == 3, f"kill signal={signal} did not reach the TERM trap (exit 3)"


@pytest.mark.req("api.lifecycle.kill-invalid-signal")
def test_kill_invalid_signal(api: ApiClient, containers: Containers) -> None:
    cid = containers.run_long()
    resp = api.post(f"/containers/{cid}/kill", params={"signal": "NOSUCHSIGNAL"})
    assert resp.status_code == 400, f"kill with signal=NOSUCHSIGNAL answered {resp.status_code}; expected 400"
    assert containers.inspect(cid)["State"]["Running"] is True, "an invalid signal stopped the container"


@pytest.mark.req("api.lifecycle.kill-not-running")
@pytest.mark.parametrize("state", ["created", "exited"])
def test_kill_not_running(api: ApiClient, containers: Containers, state: str) -> None:
    cid = containers.create(["true"]) if state == "created" else containers.run_to_exit(["true"])[0]
    resp = api.post(f"/containers/{cid}/kill")
    assert resp.status_code == 409, f"killing a {state} container answered {resp.status_code}; the schema says 409"


# ---------------------------------------------------------------- restart


@pytest.mark.req("api.lifecycle.restart-running")
def test_restart_running(api: ApiClient, containers: Containers) -> None:
    cid = containers.run(["sh", "-c", f"trap 'exit 0' TERM; {IDLE}"])
    _wait_output(containers, cid, "ready")
    before = containers.inspect(cid)["State"]
    resp = api.post(f"/containers/{cid}/restart", params={"t": 5})
    assert resp.status_code == 204, f"POST /containers/{{id}}/restart answered {resp.status_code}; expected 204"
    after = containers.inspect(cid)["State"]
    assert after["Running"] is True, f"after restart State.Running is {after['Running']!r}"
    assert _ts(after["StartedAt"]) > _ts(before["StartedAt"]), (
        f"StartedAt went {before['StartedAt']} → {after['StartedAt']}; a restart must start the process anew")
    assert after["Pid"] != before["Pid"], f"the Pid stayed {after['Pid']}; a restart must start a new process"


@pytest.mark.req("api.lifecycle.restart-stopped")
@pytest.mark.parametrize("state", ["created", "exited"])
def test_restart_stopped(api: ApiClient, containers: Containers, state: str) -> None:
    cmd = ["sh", "-c", f"trap 'exit 0' TERM; {IDLE}"]
    if state == "created":
        cid = containers.create(cmd)
    else:
        cid = containers.run(cmd)
        assert api.post(f"/containers/{cid}/kill").status_code == 204
        containers.wait_for_state(cid, "Running", False)
    resp = api.post(f"/containers/{cid}/restart", params={"t": 1})
    assert resp.status_code == 204, f"restarting a {state} container answered {resp.status_code}; expected 204"
    st = containers.inspect(cid)["State"]
    assert st["Running"] is True, f"after restarting a {state} container State.Status is {st['Status']!r}"


@pytest.mark.req("api.lifecycle.restart-paused")
def test_restart_paused(api: ApiClient, containers: Containers) -> None:
    cid = containers.run(["sh", "-c", f"trap 'exit 0' TERM; {IDLE}"])
    _wait_output(containers, cid, "ready")
    assert api.post(f"/containers/{cid}/pause").status_code == 204
    resp = api.post(f"/containers/{cid}/restart", params={"t": 1})
    assert resp.status_code == 204, f"restarting a paused container answered {resp.status_code}; expected 204"
    st = containers.inspect(cid)["State"]
    assert st["Running"] is True and st["Paused"] is False, (
        f"after restarting a paused container State is Status={st['Status']!r} Paused={st['Paused']!r}")


# ---------------------------------------------------------------- pause


@pytest.mark.req("api.lifecycle.pause")
def test_pause(api: ApiClient, containers: Containers) -> None:
    cid = containers.run_long()
    resp = api.post(f"/containers/{cid}/pause")
    assert resp.status_code == 204, f"POST /containers/{{id}}/pause answered {resp.status_code}; expected 204"
    st = containers.inspect(cid)["State"]
    assert st["Paused"] is True, f"after pause State.Paused is {st['Paused']!r}"
    assert st["Status"] == "paused", f"after pause State.Status is {st['Status']!r}; expected 'paused'"
    assert st["Running"] is True, f"a paused container's State.Running is {st['Running']!r}; docker keeps it true"


@pytest.mark.req("api.lifecycle.pause-listed")
def test_pause_listed(api: ApiClient, containers: Containers) -> None:
    cid = containers.run_long()
    assert api.post(f"/containers/{cid}/pause").status_code == 204
    rows = api.get("/containers/json", params={"all": 1, "filters": {"id": [cid]}}).json()
    assert len(rows) == 1, f"GET /containers/json filtered by id listed {len(rows)} containers"
    assert rows[0]["State"] == "paused", f"the list shows State {rows[0]['State']!r} for a paused container"


@pytest.mark.req("api.lifecycle.pause-freezes")
def test_pause_freezes(api: ApiClient, containers: Containers) -> None:
    cid = containers.run(["sh", "-c", "i=0; while true; do i=$((i+1)); echo $i > /tmp/n; sleep 0.05; done"])
    _poll(lambda: api.head(f"/containers/{cid}/archive", params={"path": "/tmp/n"}).status_code == 200)
    assert api.post(f"/containers/{cid}/pause").status_code == 204
    first = _archive_file(api, cid, "/tmp/n")[1]
    time.sleep(0.3)  # six ticks of the counter; pause answers once the cgroup is frozen, so none may land
    second = _archive_file(api, cid, "/tmp/n")[1]
    assert first == second, (f"the counter went {first!r} → {second!r} in 0.3 s while paused (it ticks every 50 ms); "
                             "the processes were not frozen")
    assert api.post(f"/containers/{cid}/unpause").status_code == 204
    third = _poll(lambda: (d := _archive_file(api, cid, "/tmp/n")[1]) != second and d, timeout=5)
    assert third, f"the counter stayed at {second!r} after unpause; the processes were not thawed"


@pytest.mark.req("api.lifecycle.unpause")
def test_unpause(api: ApiClient, containers: Containers) -> None:
    cid = containers.run_long()
    assert api.post(f"/containers/{cid}/pause").status_code == 204
    resp = api.post(f"/containers/{cid}/unpause")
    assert resp.status_code == 204, f"POST /containers/{{id}}/unpause answered {resp.status_code}; expected 204"
    st = containers.inspect(cid)["State"]
    assert st["Paused"] is False and st["Status"] == "running", (
        f"after unpause State is Status={st['Status']!r} Paused={st['Paused']!r}; expected running/false")


@pytest.mark.req("api.lifecycle.pause-not-running")
@pytest.mark.parametrize("state", ["created", "exited"])
def test_pause_not_running(api: ApiClient, containers: Containers, state: str) -> None:
    cid = containers.create(["true"]) if state == "created" else containers.run_to_exit(["true"])[0]
    resp = api.post(f"/containers/{cid}/pause")
    assert resp.status_code == 409, f"pausing a {state} container answered {resp.status_code}; expected 409"


@pytest.mark.req("api.lifecycle.pause-twice")
def test_pause_twice(api: ApiClient, containers: Containers) -> None:
    cid = containers.run_long()
    assert api.post(f"/containers/{cid}/pause").status_code == 204
    resp = api.post(f"/containers/{cid}/pause")
    assert resp.status_code == 409, f"pausing a paused container answered {resp.status_code}; expected 409"
    assert containers.inspect(cid)["State"]["Paused"] is True, "a refused second pause unpaused the container"


@pytest.mark.req("api.lifecycle.unpause-not-paused")
def test_unpause_not_paused(api: ApiClient, containers: Containers) -> None:
    cid = containers.run_long()
    resp = api.post(f"/containers/{cid}/unpause")
    assert resp.status_code >= 400, f"unpausing a container that is not paused answered {resp.status_code}"
    assert error_message(resp), f"the refusal has no JSON error message: {resp.text[:200]!r}"
    assert containers.inspect(cid)["State"]["Running"] is True, "a refused unpause stopped the container"


@pytest.mark.req("api.lifecycle.paused-stop-kill")
@pytest.mark.parametrize("action", ["stop", "kill"])
def test_paused_stop_kill(api: ApiClient, containers: Containers, action: str) -> None:
    cid = containers.run_long()
    assert api.post(f"/containers/{cid}/pause").status_code == 204
    resp = api.post(f"/containers/{cid}/{action}", params={"t": 1} if action == "stop" else None)
    assert resp.status_code == 204, f"{action} of a paused container answered {resp.status_code}; expected 204"
    st = containers.wait_for_state(cid, "Running", False, timeout=10)
    assert st["Status"] == "exited" and st["Paused"] is False, (
        f"after {action} of a paused container State is Status={st['Status']!r} Paused={st['Paused']!r}")


@pytest.mark.req("api.lifecycle.paused-remove-refused")
def test_paused_remove_refused(api: ApiClient, containers: Containers) -> None:
    cid = containers.run_long()
    assert api.post(f"/containers/{cid}/pause").status_code == 204
    resp = api.delete(f"/containers/{cid}")
    assert resp.status_code == 409, f"removing a paused container without force answered {resp.status_code}"
    assert containers.inspect(cid)["State"]["Paused"] is True


# ---------------------------------------------------------------- auto-remove and restart policies


@pytest.mark.req("api.lifecycle.auto-remove")
def test_auto_remove(api: ApiClient, containers: Containers) -> None:
    cid = containers.run(["true"], HostConfig={"AutoRemove": True})
    # not schema-checked: caught mid-removal, dockerd 20.10 answers GraphDriver.Data null (the schema
    # says object; seen once in CI); the inspect checks validate a settled container's answer
    gone = _poll(lambda: api.get(f"/containers/{cid}/json", validate=False).status_code == 404)
    assert gone, "a container with HostConfig.AutoRemove still exists 10 s after its process exited"


@pytest.mark.req("api.lifecycle.auto-remove-wait")
def test_auto_remove_wait_removed(api: ApiClient, containers: Containers) -> None:
    cid = containers.create(["sh", "-c", "exit 8"], HostConfig={"AutoRemove": True})
    resp = _open_wait(api, cid, "removed")
    containers.start(cid)
    body = _finish_wait(resp, "wait?condition=removed on an AutoRemove container")
    assert body["StatusCode"] == 8, f"wait?condition=removed reported {body!r}; the process exited with 8"
    assert api.get(f"/containers/{cid}/json").status_code == 404, "the container exists after wait reported removal"


@pytest.mark.req("api.lifecycle.auto-remove-start-failure")
def test_auto_remove_after_failed_start(api: ApiClient, containers: Containers) -> None:
    cid = containers.create(["/no/such/exe"], HostConfig={"AutoRemove": True})
    resp = _open_wait(api, cid, "removed")  # what `docker run --rm` waits on
    started = api.post(f"/containers/{cid}/start")
    assert started.status_code >= 400, f"the start of a missing executable answered {started.status_code}"
    try:
        _finish_wait(resp, "wait?condition=removed on an AutoRemove container whose start failed")
    except requests.exceptions.RequestException:
        pytest.fail("wait?condition=removed did not end within 15 s of the failed start: the AutoRemove container "
                    "was not removed (a `docker run --rm` of a current docker CLI hangs on this)")
    assert api.get(f"/containers/{cid}/json").status_code == 404, (
        "the AutoRemove container still exists after its start failed")


@pytest.mark.req("api.lifecycle.restart-policy-on-failure")
def test_restart_on_failure(containers: Containers) -> None:
    policy = {"Name": "on-failure", "MaximumRetryCount": 2}
    cid = containers.run(["sh", "-c", "exit 3"], HostConfig={"RestartPolicy": policy})

    def settled() -> dict[str, Any] | None:
        c = containers.inspect(cid)
        st = c["State"]
        return c if c["RestartCount"] >= 2 and not st["Running"] and not st["Restarting"] else None

    c = _poll(settled, timeout=15) or containers.inspect(cid)
    assert c["RestartCount"] == 2, (
        f"RestartCount is {c['RestartCount']} with on-failure:2 and a command that always fails; expected 2")
    assert c["State"]["Status"] == "exited" and c["State"]["ExitCode"] == 3, (
        f"after the retries State is {c['State']['Status']!r} code {c['State']['ExitCode']}; expected exited/3")


@pytest.mark.req("api.lifecycle.restart-policy-on-failure-success")
def test_restart_on_failure_success(containers: Containers) -> None:
    policy = {"Name": "on-failure", "MaximumRetryCount": 2}
    cid, code = containers.run_to_exit(["true"], HostConfig={"RestartPolicy": policy})
    assert code == 0
    time.sleep(0.5)
    c = containers.inspect(cid)
    assert c["RestartCount"] == 0 and c["State"]["Running"] is False, (
        f"a successful exit under on-failure gave RestartCount {c['RestartCount']}, Status {c['State']['Status']!r}")


@pytest.mark.req("api.lifecycle.restart-policy-always")
def test_restart_always_and_stop(api: ApiClient, containers: Containers) -> None:
    cid = containers.run(["sleep", "0.2"], HostConfig={"RestartPolicy": {"Name": "always"}})
    restarted = _poll(lambda: containers.inspect(cid)["RestartCount"] >= 1, timeout=10)
    assert restarted, "a container with restart policy 'always' was not restarted after its process exited"
    assert api.post(f"/containers/{cid}/stop", params={"t": 1}).status_code in (204, 304)
    count = containers.inspect(cid)["RestartCount"]
    time.sleep(0.5)
    c = containers.inspect(cid)
    assert c["State"]["Running"] is False and c["RestartCount"] == count, (
        f"after an explicit stop the 'always' container is {c['State']['Status']!r} with RestartCount "
        f"{count} → {c['RestartCount']}; an explicit stop must not be undone by the policy")


# ---------------------------------------------------------------- top, changes, export


@pytest.mark.req("api.lifecycle.top")
def test_top(api: ApiClient, containers: Containers) -> None:
    cid = containers.run_long()
    resp = api.get(f"/containers/{cid}/top")
    assert resp.status_code == 200, f"GET /containers/{{id}}/top answered {resp.status_code}; expected 200"
    body = resp.json()
    titles, procs = body.get("Titles") or [], body.get("Processes") or []
    assert "PID" in titles, f"top Titles are {titles}; expected a PID column"
    assert procs and all(len(p) == len(titles) for p in procs), (
        f"top Processes {procs} do not have one value per title {titles}")
    pid = str(containers.inspect(cid)["State"]["Pid"])
    assert any(p[titles.index("PID")] == pid for p in procs), f"top does not list the container's process {pid}"
    assert any("sleep" in " ".join(p) for p in procs), f"top does not show the sleep command: {procs}"


@pytest.mark.req("api.lifecycle.top-ps-args")
def test_top_ps_args(api: ApiClient, containers: Containers) -> None:
    cid = containers.run_long()
    resp = api.get(f"/containers/{cid}/top", params={"ps_args": "-o pid,comm"})
    assert resp.status_code == 200, f"top with ps_args answered {resp.status_code}; expected 200"
    titles = resp.json().get("Titles") or []
    assert len(titles) == 2 and titles[0] == "PID", f"top with ps_args='-o pid,comm' has Titles {titles}"


@pytest.mark.req("api.lifecycle.top-not-running")
def test_top_not_running(api: ApiClient, containers: Containers) -> None:
    cid = containers.create(["true"])
    resp = api.get(f"/containers/{cid}/top")
    assert resp.status_code == 409, f"top of a created container answered {resp.status_code}; expected 409"


@pytest.mark.req("api.lifecycle.changes")
@pytest.mark.parametrize("path,kind", [("/tmp/new.txt", 1), ("/etc/passwd", 0), ("/etc/group", 2)],
                         ids=["added", "modified", "deleted"])
def test_changes(api: ApiClient, containers: Containers, path: str, kind: int) -> None:
    cid, _ = containers.run_to_exit(["sh", "-c", "echo hi > /tmp/new.txt; echo x >> /etc/passwd; rm /etc/group"])
    resp = api.get(f"/containers/{cid}/changes")
    assert resp.status_code == 200, f"GET /containers/{{id}}/changes answered {resp.status_code}; expected 200"
    changes = {c["Path"]: c["Kind"] for c in resp.json() or []}
    assert changes.get(path) == kind, f"changes list {path} as {changes.get(path)!r}; expected Kind {kind}: {changes}"


@pytest.mark.req("api.lifecycle.changes-none")
def test_changes_none(api: ApiClient, containers: Containers) -> None:
    cid = containers.create(["true"])
    resp = api.get(f"/containers/{cid}/changes")
    assert resp.status_code == 200, f"changes of an untouched container answered {resp.status_code}"
    assert not resp.json(), f"an untouched container reports changes {resp.json()!r}"


@pytest.mark.req("api.lifecycle.export")
def test_export(api: ApiClient, containers: Containers) -> None:
    cid, _ = containers.run_to_exit(["sh", "-c", "echo exported > /tmp/export.txt"])
    resp = api.get(f"/containers/{cid}/export", timeout=120)
    assert resp.status_code == 200, f"GET /containers/{{id}}/export answered {resp.status_code}; expected 200"
    with tarfile.open(fileobj=io.BytesIO(resp.content)) as tar:
        members = {m.name.lstrip("./"): m for m in tar.getmembers()}
        assert "bin/busybox" in members, f"the export lacks the image's bin/busybox ({len(members)} entries)"
        assert "tmp/export.txt" in members, "the export lacks the file the container wrote"
        fh = tar.extractfile(members["tmp/export.txt"])
        assert fh and fh.read() == b"exported\n", "the exported file has the wrong content"


# ---------------------------------------------------------------- archive


@pytest.mark.req("api.lifecycle.archive-get")
def test_archive_get(api: ApiClient, containers: Containers) -> None:
    cid, _ = containers.run_to_exit(["sh", "-c", "printf abc > /tmp/a.txt; chmod 640 /tmp/a.txt"])
    resp = api.get(f"/containers/{cid}/archive", params={"path": "/tmp/a.txt"})
    assert resp.status_code == 200, f"GET /containers/{{id}}/archive answered {resp.status_code}; expected 200"
    stat = _path_stat(resp)
    assert stat.get("name") == "a.txt" and stat.get("size") == 3, f"the path stat is {stat}; expected a.txt, 3 bytes"
    assert stat.get("mode") == 0o640, f"the path stat mode is {stat.get('mode')!r}; expected 0o640 (416)"
    with tarfile.open(fileobj=io.BytesIO(resp.content)) as tar:
        members = tar.getmembers()
        assert [m.name for m in members] == ["a.txt"], f"the archive holds {[m.name for m in members]}"
        fh = tar.extractfile(members[0])
        assert fh and fh.read() == b"abc", "the archived file has the wrong content"


@pytest.mark.req("api.lifecycle.archive-head")
def test_archive_head(api: ApiClient, containers: Containers) -> None:
    cid, _ = containers.run_to_exit(["sh", "-c", "printf abcd > /tmp/h.txt"])
    resp = api.head(f"/containers/{cid}/archive", params={"path": "/tmp/h.txt"})
    assert resp.status_code == 200, f"HEAD /containers/{{id}}/archive answered {resp.status_code}; expected 200"
    assert resp.content == b"", f"HEAD /archive sent a body of {len(resp.content)} bytes"
    stat = _path_stat(resp)
    assert stat.get("name") == "h.txt" and stat.get("size") == 4, f"the path stat is {stat}"


@pytest.mark.req("api.lifecycle.archive-stat-kinds")
@pytest.mark.parametrize("path,bit,link", [("/tmp", MODE_DIR, ""), ("/bin/sh", MODE_SYMLINK, "/bin/busybox")],
                         ids=["directory", "symlink"])
def test_archive_stat_kinds(api: ApiClient, containers: Containers, path: str, bit: int, link: str) -> None:
    cid = containers.create(["true"])
    resp = api.head(f"/containers/{cid}/archive", params={"path": path})
    assert resp.status_code == 200, f"HEAD /archive?path={path} answered {resp.status_code}"
    stat = _path_stat(resp)
    assert stat.get("mode", 0) & bit, f"the stat mode of {path} is {stat.get('mode')!r}; expected bit {bit:#x}"
    assert stat.get("linkTarget", "") == link, f"the stat linkTarget of {path} is {stat.get('linkTarget')!r}"


@pytest.mark.req("api.lifecycle.archive-missing-path")
@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_archive_missing_path(api: ApiClient, containers: Containers, method: str) -> None:
    cid = containers.create(["true"])
    resp = api.request(method, f"/containers/{cid}/archive", params={"path": "/no/such/file"})
    assert resp.status_code == 404, f"{method} /archive of a missing path answered {resp.status_code}; expected 404"


@pytest.mark.req("api.lifecycle.archive-path-required")
def test_archive_path_required(api: ApiClient, containers: Containers) -> None:
    cid = containers.create(["true"])
    resp = api.get(f"/containers/{cid}/archive")
    assert resp.status_code == 400, f"GET /archive without path answered {resp.status_code}; expected 400"


@pytest.mark.req("api.lifecycle.archive-put")
@pytest.mark.parametrize("state", ["created", "running"])
def test_archive_put(api: ApiClient, containers: Containers, state: str) -> None:
    cid = containers.create(["true"]) if state == "created" else containers.run_long()
    data = _tar({"put.txt": (b"put content\n", 0o640), "sub/inner.txt": (b"inner\n", 0o644)})
    resp = api.put(f"/containers/{cid}/archive", params={"path": "/tmp"}, data=data,
                   headers={"Content-Type": "application/x-tar"})
    assert resp.status_code == 200, f"PUT /containers/{{id}}/archive answered {resp.status_code}: {resp.text[:200]}"
    member, content = _archive_file(api, cid, "/tmp/put.txt")
    assert content == b"put content\n", f"/tmp/put.txt reads back {content!r}"
    assert member.mode & 0o777 == 0o640, f"/tmp/put.txt has mode {member.mode:o}; the tar said 640"
    assert _archive_file(api, cid, "/tmp/sub/inner.txt")[1] == b"inner\n", (
        "the nested file of the uploaded tar was not extracted")


@pytest.mark.req("api.lifecycle.archive-put-missing-dir")
def test_archive_put_missing_dir(api: ApiClient, containers: Containers) -> None:
    cid = containers.create(["true"])
    data = _tar({"x.txt": (b"x", 0o644)})
    resp = api.put(f"/containers/{cid}/archive", params={"path": "/no/such/dir"}, data=data,
                   headers={"Content-Type": "application/x-tar"})
    assert resp.status_code == 404, f"PUT /archive into a missing directory answered {resp.status_code}; expected 404"


@pytest.mark.req("api.lifecycle.archive-put-not-dir")
def test_archive_put_not_dir(api: ApiClient, containers: Containers) -> None:
    cid = containers.create(["true"])
    data = _tar({"x.txt": (b"x", 0o644)})
    resp = api.put(f"/containers/{cid}/archive", params={"path": "/etc/passwd"}, data=data,
                   headers={"Content-Type": "application/x-tar"})
    assert resp.status_code >= 400, f"PUT /archive with a regular file as path answered {resp.status_code}"
    head = api.head(f"/containers/{cid}/archive", params={"path": "/etc/passwd"})
    assert head.status_code == 200 and not _path_stat(head).get("mode", 0) & MODE_DIR, (
        "the refused upload replaced /etc/passwd")


# ---------------------------------------------------------------- stats and resize


@pytest.mark.req("api.lifecycle.stats-once")
def test_stats_once(api: ApiClient, containers: Containers) -> None:
    cid = containers.run_long()
    resp = api.get(f"/containers/{cid}/stats", params={"stream": "false"}, timeout=30)
    assert resp.status_code == 200, f"GET /containers/{{id}}/stats?stream=false answered {resp.status_code}"
    body = resp.json()
    for key in ("read", "memory_stats", "cpu_stats"):
        assert key in body, f"the stats object has no {key}: keys {sorted(body)}"
    assert body["read"] != ZERO_TIME, f"stats of a running container have read={body['read']!r}"
    assert body["cpu_stats"].get("cpu_usage", {}).get("total_usage", 0) > 0, (
        f"cpu_stats.cpu_usage.total_usage is not positive for a running container: {body['cpu_stats']}")
    assert body["memory_stats"].get("usage", 0) > 0, f"memory_stats.usage is not positive: {body['memory_stats']}"


@pytest.mark.req("api.lifecycle.stats-one-shot")
def test_stats_one_shot(api: ApiClient, containers: Containers) -> None:
    cid = containers.run_long()
    resp = api.get(f"/containers/{cid}/stats", params={"stream": "false", "one-shot": "true"}, timeout=30)
    assert resp.status_code == 200, f"stats with one-shot answered {resp.status_code}; expected 200"
    body = resp.json()
    assert isinstance(body, dict) and body.get("read") not in (None, ZERO_TIME), (
        f"one-shot stats have read={body.get('read')!r}; expected the sample time")


@pytest.mark.req("api.lifecycle.stats-stream")
def test_stats_stream(api: ApiClient, containers: Containers) -> None:
    cid = containers.run_long()
    resp = api.get(f"/containers/{cid}/stats", stream=True, timeout=30)
    try:
        assert resp.status_code == 200, f"GET /containers/{{id}}/stats answered {resp.status_code}"
        lines = resp.iter_lines()
        first, second = json.loads(next(lines)), json.loads(next(lines))
    finally:
        resp.close()
    assert _ts(second["read"]) > _ts(first["read"]), (
        f"two streamed stats samples have read {first['read']} and {second['read']}; expected increasing times")


@pytest.mark.req("api.lifecycle.resize-tty")
def test_resize_tty(api: ApiClient, containers: Containers) -> None:
    script = ('for i in $(seq 100); do [ "$(stty size)" = "33 77" ] && { echo resized; exit 0; }; '
              "sleep 0.05; done; exit 1")
    cid = containers.run(["sh", "-c", script], Tty=True, OpenStdin=True)
    resp = api.post(f"/containers/{cid}/resize", params={"h": 33, "w": 77})
    assert resp.status_code == 200, f"POST /containers/{{id}}/resize answered {resp.status_code}; expected 200"
    code = containers.wait(cid, timeout=20)
    assert code == 0, "the container's terminal never reported the size 33x77 after the resize"


@pytest.mark.req("api.lifecycle.resize-not-running")
def test_resize_not_running(api: ApiClient, containers: Containers) -> None:
    cid = containers.create(["true"], Tty=True)
    resp = api.post(f"/containers/{cid}/resize", params={"h": 40, "w": 100})
    assert resp.status_code == 409, f"resizing a created container answered {resp.status_code}; expected 409"


@pytest.mark.req("api.lifecycle.resize-bad-size")
def test_resize_bad_size(api: ApiClient, containers: Containers) -> None:
    cid = containers.run_long(Tty=True)
    resp = api.post(f"/containers/{cid}/resize", params={"h": "tall", "w": 100})
    assert resp.status_code == 400, f"resize with h=tall answered {resp.status_code}; expected 400"


# ---------------------------------------------------------------- unknown containers


UNKNOWN_OPS = [
    ("POST", "start", None), ("POST", "stop", None), ("POST", "restart", None), ("POST", "kill", None),
    ("POST", "pause", None), ("POST", "unpause", None), ("POST", "wait", None), ("GET", "top", None),
    ("GET", "changes", None), ("GET", "export", None), ("GET", "stats", {"stream": "false"}),
    ("POST", "resize", {"h": 10, "w": 10}), ("GET", "archive", {"path": "/"}),
    ("HEAD", "archive", {"path": "/"}), ("PUT", "archive", {"path": "/"}),
]


@pytest.mark.req("api.lifecycle.unknown-404")
@pytest.mark.parametrize("method,action,params", UNKNOWN_OPS, ids=[f"{m}-{a}" for m, a, _ in UNKNOWN_OPS])
def test_unknown_container(api: ApiClient, names: Names, method: str, action: str,
                           params: dict[str, Any] | None) -> None:
    missing = names("missing")
    data = _tar({"x": (b"x", 0o644)}) if method == "PUT" else None
    resp = api.request(method, f"/containers/{missing}/{action}", params=params, data=data)
    assert resp.status_code == 404, (
        f"{method} /containers/{{id}}/{action} for a container that does not exist answered {resp.status_code}; "
        "expected 404")
    if method != "HEAD":
        assert error_message(resp), f"the 404 has no JSON error message: {resp.text[:200]!r}"
