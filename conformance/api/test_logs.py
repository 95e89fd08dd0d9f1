"""Container logs: GET /containers/{id}/logs, its stream framing and its filters (swagger: ContainerLogs)."""

from __future__ import annotations

import re
import time
from datetime import datetime

import pytest

from conformance.client import ApiClient, error_message
from conformance.resources import AWAIT_GO, Containers
from conformance.streams import STDERR, STDOUT, demux, hijack, parse_frames
from conformance.target import Target

# Go's RFC3339Nano: fractional seconds are optional and have at most nine digits.
TIMESTAMP = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?(Z|[+-]\d\d:\d\d)) (.*)$")
# A container script waits here (20 s at most) until the check creates /tmp/go with an exec.
def _versioned(api: ApiClient, path: str) -> str:
    return f"/v{api.version}{path}" if api.version else path


def _finished(api: ApiClient, containers: Containers, cmd: list[str], **kw) -> str:
    """Run a container to its end. ContainerWait's own schema is the containers topic's business."""
    cid = containers.run(cmd, **kw)
    resp = api.post(f"/containers/{cid}/wait", timeout=60, validate=False)
    assert resp.status_code == 200, f"waiting for {cid[:12]} answered {resp.status_code} {resp.text[:200]!r}"
    return cid


def _logs(api: ApiClient, cid: str, **params) -> bytes:
    resp = api.get(f"/containers/{cid}/logs", params=params)
    assert resp.status_code == 200, (
        f"GET /containers/{{id}}/logs?{params} answered {resp.status_code} {resp.text[:200]!r}; expected 200")
    return resp.content


def _stdout_lines(body: bytes) -> list[str]:
    return demux(body).get(STDOUT, b"").decode().splitlines()


@pytest.mark.req("api.logs.multiplexed")
def test_logs_multiplexed(api: ApiClient, containers: Containers) -> None:
    cid = _finished(api, containers, ["sh", "-c", "echo out1; echo err1 >&2; echo out2"])
    body = _logs(api, cid, stdout=1, stderr=1)
    parts = demux(body)  # raises FramingError on a bad header or a truncated frame
    assert set(parts) <= {STDOUT, STDERR}, f"log frames on streams {sorted(parts)}; expected only 1 and 2"
    assert parts.get(STDOUT) == b"out1\nout2\n", f"stdout frames carried {parts.get(STDOUT)!r}; expected b'out1\\nout2\\n'"
    assert parts.get(STDERR) == b"err1\n", f"stderr frames carried {parts.get(STDERR)!r}; expected b'err1\\n'"


@pytest.mark.req("api.logs.large-output-framed")
def test_logs_large_output(api: ApiClient, containers: Containers) -> None:
    cid = _finished(api, containers, ["sh", "-c", "head -c 100000 /dev/zero | tr '\\0' x"])
    frames, tail = parse_frames(_logs(api, cid, stdout=1))
    assert not tail, f"the log stream ends inside a frame ({len(tail)} stray bytes)"
    assert {f.stream for f in frames} == {STDOUT}, f"frames on streams {sorted({f.stream for f in frames})}; expected only 1"
    data = b"".join(f.data for f in frames)
    assert data == b"x" * 100000, f"the frames carried {len(data)} bytes; the container wrote 100000 'x' bytes"


@pytest.mark.req("api.logs.partial-line")
def test_logs_partial_line(api: ApiClient, containers: Containers) -> None:
    cid = _finished(api, containers, ["printf", "no-newline"])
    out = demux(_logs(api, cid, stdout=1)).get(STDOUT, b"")
    assert out == b"no-newline", f"a final line without newline came back as {out!r}; expected b'no-newline' verbatim"


@pytest.mark.req("api.logs.tty-raw")
def test_logs_tty_raw(api: ApiClient, containers: Containers) -> None:
    cid = _finished(api, containers, ["sh", "-c", "echo tty-out; echo tty-err >&2"], Tty=True)
    body = _logs(api, cid, stdout=1, stderr=1)
    # A TTY merges both streams into the pty, which turns \n into \r\n; no frame headers.
    assert body == b"tty-out\r\ntty-err\r\n", f"TTY logs were {body[:100]!r}; expected the raw pty bytes b'tty-out\\r\\ntty-err\\r\\n'"


@pytest.mark.req("api.logs.stream-selection")
@pytest.mark.parametrize("which", ["stdout", "stderr"])
def test_logs_one_stream(api: ApiClient, containers: Containers, which: str) -> None:
    cid = _finished(api, containers, ["sh", "-c", "echo to-out; echo to-err >&2"])
    parts = demux(_logs(api, cid, **{which: 1}))
    want = {"stdout": {STDOUT: b"to-out\n"}, "stderr": {STDERR: b"to-err\n"}}[which]
    assert parts == want, f"logs with only {which}=1 returned {parts!r}; expected {want!r}"


@pytest.mark.req("api.logs.no-stream-400")
def test_logs_no_stream(api: ApiClient, containers: Containers) -> None:
    cid = _finished(api, containers, ["echo", "x"])
    resp = api.get(f"/containers/{cid}/logs", params={"stdout": 0, "stderr": 0})
    assert resp.status_code == 400, f"logs with stdout=0&stderr=0 answered {resp.status_code}; expected 400"
    assert error_message(resp), f"the 400 body {resp.text[:200]!r} is not {{'message': ...}}"


@pytest.mark.req("api.logs.tail")
@pytest.mark.parametrize(("tail", "expected"), [
    ("1", ["l3"]), ("2", ["l2", "l3"]), ("0", []), ("all", ["l1", "l2", "l3"]),
])
def test_logs_tail(api: ApiClient, containers: Containers, tail: str, expected: list[str]) -> None:
    cid = _finished(api, containers, ["sh", "-c", "echo l1; echo l2; echo l3"])
    lines = _stdout_lines(_logs(api, cid, stdout=1, tail=tail))
    assert lines == expected, f"logs with tail={tail} returned lines {lines}; expected {expected}"


@pytest.mark.req("api.logs.timestamps")
@pytest.mark.parametrize("tty", [False, True], ids=["multiplexed", "tty"])
def test_logs_timestamps(api: ApiClient, containers: Containers, tty: bool) -> None:
    cid = _finished(api, containers, ["sh", "-c", "echo first; echo second"], Tty=tty)
    body = _logs(api, cid, stdout=1, timestamps=1)
    text = body.decode().replace("\r\n", "\n") if tty else demux(body).get(STDOUT, b"").decode()
    lines = text.splitlines()
    assert len(lines) == 2, f"timestamps=1 returned {lines!r}; expected two lines"
    stamps = []
    for line, word in zip(lines, ["first", "second"], strict=True):
        m = TIMESTAMP.match(line)
        assert m, f"log line {line!r} does not start with an RFC3339Nano timestamp and a space"
        assert m.group(4) == word, f"after the timestamp the line reads {m.group(4)!r}; expected {word!r}"
        stamps.append(datetime.fromisoformat(m.group(1)))
    assert stamps[0] <= stamps[1], f"log timestamps go backwards: {lines!r}"
    assert abs(stamps[1].timestamp() - time.time()) < 300, f"log timestamp {lines[1]!r} is far from the current time"


def _stamp(line: str) -> float:
    m = TIMESTAMP.match(line)
    assert m, f"log line {line!r} does not start with an RFC3339Nano timestamp"
    return datetime.fromisoformat(m.group(1)).timestamp()  # to the microsecond


def _two_lines_apart(api: ApiClient, containers: Containers) -> tuple[str, float]:
    """A finished container that logged 'one', then 'two' a moment later; returns it and a time between the two.

    The lines are written 0.3 s apart and since/until are read to the nanosecond, so the midpoint of their
    timestamps lies ~0.15 s from each. Should a loaded daemon stamp them less than 0.1 s apart (it read both at
    once), the container is run again with the lines 1.2 s apart.
    """
    for pause in ("0.3", "1.2"):
        cid = _finished(api, containers, ["sh", "-c", f"echo one; sleep {pause}; echo two"])
        lines = _stdout_lines(_logs(api, cid, stdout=1, timestamps=1))
        assert len(lines) == 2, f"timestamps=1 returned {lines!r}; expected two lines"
        first, second = _stamp(lines[0]), _stamp(lines[1])
        if second - first >= 0.1:
            break
    assert second > first, f"the second log line is not stamped after the first: {lines!r}"
    return cid, (first + second) / 2


@pytest.mark.req("api.logs.since")
def test_logs_since(api: ApiClient, containers: Containers) -> None:
    cid, between = _two_lines_apart(api, containers)
    lines = _stdout_lines(_logs(api, cid, stdout=1, since=f"{between:.9f}"))
    assert lines == ["two"], f"logs since a moment between the two lines returned {lines}; expected ['two']"


@pytest.mark.req("api.logs.since-future")
def test_logs_since_future(api: ApiClient, containers: Containers) -> None:
    cid = _finished(api, containers, ["echo", "past"])
    body = _logs(api, cid, stdout=1, stderr=1, since=int(time.time()) + 3600)
    assert body == b"", f"logs since an hour from now returned {body[:100]!r}; expected nothing"


@pytest.mark.req("api.logs.until")
def test_logs_until(api: ApiClient, containers: Containers) -> None:
    cid, between = _two_lines_apart(api, containers)
    lines = _stdout_lines(_logs(api, cid, stdout=1, until=f"{between:.9f}"))
    assert lines == ["one"], f"logs until a moment between the two lines returned {lines}; expected ['one']"


@pytest.mark.req("api.logs.until")
def test_logs_until_epoch(api: ApiClient, containers: Containers) -> None:
    cid = _finished(api, containers, ["echo", "now"])
    body = _logs(api, cid, stdout=1, until=1)
    assert body == b"", f"logs until 1970-01-01T00:00:01Z returned {body[:100]!r}; expected nothing"


@pytest.mark.req("api.logs.follow")
def test_logs_follow_until_exit(api: ApiClient, containers: Containers) -> None:
    # 'b' is written only after the followed stream delivered 'a', so it must arrive live, then the stream end.
    cid = containers.run(["sh", "-c", f"echo a; {AWAIT_GO}; echo b"])
    resp = api.get(f"/containers/{cid}/logs", params={"stdout": 1, "follow": 1}, stream=True, timeout=20)
    try:
        assert resp.status_code == 200, f"logs with follow=1 answered {resp.status_code}; expected 200"
        body, stream = b"", resp.iter_content(1)  # the body is a few bytes: read as they come
        for byte in stream:
            body += byte
            if b"a\n" in body:
                break
        assert b"a\n" in body, f"follow=1 ended after {body[:100]!r}, before the container's first line 'a'"
        containers.let_go(cid)
        body += b"".join(stream)
    finally:
        resp.close()
    lines = _stdout_lines(body)
    assert lines == ["a", "b"], (
        f"follow=1 delivered {lines} before the stream ended; expected ['a', 'b'] (it must last until the container exits)")


@pytest.mark.req("api.logs.follow")
def test_logs_follow_stays_open(api: ApiClient, containers: Containers, target: Target) -> None:
    cid = containers.run(["sh", "-c", "echo live; sleep 30"])
    conn = hijack(target, "GET", _versioned(api, f"/containers/{cid}/logs?stdout=1&follow=1"), upgrade=False)
    try:
        assert conn.response.status == 200, f"logs with follow=1 answered {conn.response.status}; expected 200"
        seen = conn.read_until(b"live", timeout=10)
        assert b"live" in seen, f"follow=1 on a running container delivered {seen[:100]!r}; expected the line 'live'"
        # A daemon that does not follow ends the response together with the lines it has, within milliseconds:
        # it closes, sends the last chunk (maybe in the same read as 'live') or has sent a Content-Length.
        started = time.monotonic()
        more = conn.read_all(timeout=0.4)
        waited = time.monotonic() - started
        ended = b"\r\n0\r\n\r\n" in seen + more or conn.response.header("Content-Length") is not None
        assert waited >= 0.35 and not ended, (
            f"the followed log stream of a running container ended (read for {waited:.2f}s; Content-Length "
            f"{conn.response.header('Content-Length')!r}; last bytes {(seen + more)[-60:]!r}); it must stay open while "
            "the container runs")
    finally:
        conn.close()


@pytest.mark.req("api.logs.created-empty")
def test_logs_created_container(api: ApiClient, containers: Containers) -> None:
    cid = containers.create(["echo", "never"])
    body = _logs(api, cid, stdout=1, stderr=1)
    assert body == b"", f"logs of a never-started container returned {body[:100]!r}; expected an empty body"


@pytest.mark.req("api.logs.unknown-404")
def test_logs_unknown(api: ApiClient, names) -> None:
    resp = api.get(f"/containers/{names('missing')}/logs", params={"stdout": 1})
    assert resp.status_code == 404, f"logs of an unknown container answered {resp.status_code}; expected 404"
    assert error_message(resp), f"the 404 body {resp.text[:200]!r} is not {{'message': ...}}"


@pytest.mark.req("api.logs.by-name")
def test_logs_by_name(api: ApiClient, containers: Containers, names) -> None:
    name = names("logs")
    _finished(api, containers, ["echo", "named"], name=name)
    lines = _stdout_lines(_logs(api, name, stdout=1))
    assert lines == ["named"], f"logs addressed by name returned {lines}; expected ['named']"


@pytest.mark.req("api.logs.content-type")
def test_logs_content_type(api: ApiClient, containers: Containers) -> None:
    cid = _finished(api, containers, ["echo", "x"])
    resp = api.get(f"/containers/{cid}/logs", params={"stdout": 1})
    ctype = resp.headers.get("Content-Type")
    # The 1.41 swagger: "the logs endpoint does not upgrade the connection and does not set Content-Type";
    # later engines label it with a vnd.docker stream type. Never JSON.
    assert ctype is None or ctype.split(";")[0].strip() in (
        "application/vnd.docker.raw-stream", "application/vnd.docker.multiplexed-stream"), (
        f"logs were served with Content-Type {ctype!r}; expected none (or a vnd.docker stream type)")


@pytest.mark.req("api.logs.unreadable-driver")
def test_logs_driver_none(api: ApiClient, containers: Containers) -> None:
    cid = _finished(api, containers, ["echo", "x"], HostConfig={"LogConfig": {"Type": "none", "Config": {}}})
    resp = api.get(f"/containers/{cid}/logs", params={"stdout": 1})
    assert resp.status_code == 501, (
        f"logs of a container with log driver 'none' answered {resp.status_code}; expected 501 Not Implemented")
    assert error_message(resp), f"the error body {resp.text[:200]!r} is not {{'message': ...}}"
