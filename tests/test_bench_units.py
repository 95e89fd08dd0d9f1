"""Unit tests of bench/'s pure parts: statistics, formatting, the JSON shape, parsers. No daemon, no timing."""

from __future__ import annotations

import datetime as dt
import json
import socket
import struct

import pytest

from bench import suite
from bench.api_rate import RawConnection
from bench.memory import (
    helper_name,
    marked_id,
    monitor_of,
    parse_kv_kb,
    parse_tcp_listeners,
    parse_unix_listeners,
)
from bench.report import (
    HIGHER,
    INFO,
    LOWER,
    Figure,
    Figures,
    TargetResult,
    build_report,
    format_number,
    format_ratio,
    group_unmeasured,
    ratio,
    render_suite,
    render_table,
    results_from_report,
    write_report,
)
from bench.stats import median, percentile, summarize
from bench.streams import FrameCounter, parse_time, writer_command
from bench.targets import (
    DOCKERD_URL,
    REFENGINE_URL,
    TargetSpec,
    choose_targets,
    parse_target_arg,
    reference_of,
)
from conformance.target import parse_target

# -- statistics -----------------------------------------------------------------------------------


def test_median_odd_and_even():
    assert median([3, 1, 2]) == 2
    assert median([4, 1, 3, 2]) == 2.5
    assert median([7]) == 7


def test_percentile_interpolates_like_numpy():
    values = list(range(1, 11))  # 1..10
    assert percentile(values, 0) == 1
    assert percentile(values, 100) == 10
    assert percentile(values, 90) == pytest.approx(9.1)
    assert percentile([10, 20], 25) == pytest.approx(12.5)


def test_percentile_does_not_care_about_order():
    assert percentile([5, 1, 4, 2, 3], 90) == percentile([1, 2, 3, 4, 5], 90)


@pytest.mark.parametrize("values,q", [([], 50), ([1.0], -1), ([1.0], 101)])
def test_percentile_rejects_nonsense(values, q):
    with pytest.raises(ValueError):
        percentile(values, q)


def test_summarize():
    s = summarize([0.3, 0.1, 0.2, 0.4])
    assert (s.median, s.minimum, s.maximum, s.count) == (pytest.approx(0.25), 0.1, 0.4, 4)
    assert s.p90 == pytest.approx(0.37)


# -- formatting -------------------------------------------------------------------------------------


@pytest.mark.parametrize("value,text", [
    (None, "—"), (14400.4, "14,400"), (329.6, "330"), (31.26, "31.3"), (2.612, "2.61"), (0.1234, "0.123"),
    (-12.34, "-12.3"),
])
def test_format_number(value, text):
    assert format_number(value) == text


def test_ratio_missing_or_zero_reference():
    assert ratio(464, 329) == pytest.approx(1.4103, abs=1e-4)
    assert ratio(None, 329) is None
    assert ratio(464, None) is None
    assert ratio(464, 0) is None


@pytest.mark.parametrize("r,better,text", [
    (1.4103, LOWER, "×1.41 -"),   # 41 % slower
    (0.5, LOWER, "×0.50 +"),
    (2.0, HIGHER, "×2.00 +"),     # twice the req/s
    (0.25, HIGHER, "×0.25 -"),
    (1.02, LOWER, "×1.02"),       # within 5 %: no verdict
    (3.0, INFO, "×3.00"),         # a fact, not a verdict
    (250.0, LOWER, "×250 -"),
    (None, LOWER, "—"),
])
def test_format_ratio(r, better, text):
    assert format_ratio(r, better) == text


# -- results, table, JSON ---------------------------------------------------------------------------------


def _results() -> list[TargetResult]:
    ref_figs = Figures("lifecycle", [("lifecycle.cycle", "cycle", "ms", LOWER), ("api.ping.c1", "ping", "req/s", HIGHER)])
    ref_figs["lifecycle.cycle"].set(329.0, p90=400.0, samples=30)
    ref_figs["api.ping.c1"].set(6500.0, samples=19500)
    other = Figures("lifecycle", [("lifecycle.cycle", "cycle", "ms", LOWER), ("api.ping.c1", "ping", "req/s", HIGHER)])
    other["lifecycle.cycle"].set(464.0, p90=500.0, samples=30)
    other.skip_rest("the daemon answered 404")
    ref = TargetResult("dockerd", DOCKERD_URL, reference=True, figures=ref_figs.items,
                       version={"Version": "20.10.24", "ApiVersion": "1.41"},
                       suite=[{"area": "api", "workers": 1, "seconds": 100.0, "returncode": 0,
                               "counts": {"passed": 10}, "error": ""}])
    pod = TargetResult("podman", "unix:///tmp/podman.sock", figures=other.items,
                       suite=[{"area": "api", "workers": 1, "seconds": 150.0, "returncode": 1,
                               "counts": {"passed": 8, "failed": 2}, "error": ""}])
    ref_missing = TargetResult("refengine", REFENGINE_URL, not_measured="no socket at /run/refengine.sock")
    return [ref, pod, ref_missing]


def test_figures_skip_rest_keeps_measured_values():
    figs = Figures("s", [("a", "A", "ms", LOWER), ("b", "B", "ms", LOWER)])
    figs["a"].set(1.0)
    figs.skip_rest("boom")
    assert figs["a"].not_measured is None and figs["a"].value == 1.0
    assert figs["b"].not_measured == "boom"
    figs.skip_rest("later reason")
    assert figs["b"].not_measured == "boom"  # the first reason stays


def test_group_unmeasured():
    figs = [Figure("a", "s", "A", "ms", not_measured="x"), Figure("b", "s", "B", "ms", value=1.0),
            Figure("c", "s", "C", "ms", not_measured="x"), Figure("d", "s", "D", "ms", not_measured="y")]
    groups = group_unmeasured(figs)
    assert list(groups) == ["x", "y"]
    assert [f.key for f in groups["x"]] == ["a", "c"]


def test_report_json_shape(tmp_path):
    results = _results()
    t0 = dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.UTC)
    report = build_report(results, "dockerd", started=t0, finished=t0 + dt.timedelta(seconds=90), mode="quick",
                          parameters={"runs": 5}, machine={"cpu_model": "x", "cores": 2, "kernel": "6", "memory_mb": 1},
                          load={"start": [1.0, 1.0, 1.0]}, interrupted=False)
    assert report["format"] == "bench/1"
    assert report["seconds"] == 90.0
    assert report["reference"] == "dockerd"
    assert {"cpu_model", "cores", "kernel", "memory_mb", "loadavg"} <= set(report["machine"])
    names = [t["name"] for t in report["targets"]]
    assert names == ["dockerd", "podman", "refengine"]
    dockerd, podman, refengine = report["targets"]
    assert dockerd["measured"] and dockerd["reference"] and dockerd["version"]["ApiVersion"] == "1.41"
    cycle = dockerd["figures"]["lifecycle.cycle"]
    assert {"section", "label", "unit", "better", "value", "p90", "samples", "note", "not_measured"} == set(cycle)
    assert cycle["value"] == 329.0 and cycle["p90"] == 400.0
    assert podman["figures"]["api.ping.c1"]["value"] is None
    assert podman["figures"]["api.ping.c1"]["not_measured"] == "the daemon answered 404"
    assert refengine["measured"] is False and refengine["not_measured"].startswith("no socket")
    # ratios: only for measured, non-reference targets; None where either side is missing
    assert set(report["ratios"]) == {"podman"}
    assert report["ratios"]["podman"]["lifecycle.cycle"] == pytest.approx(464 / 329, abs=1e-4)
    assert report["ratios"]["podman"]["api.ping.c1"] is None
    json.dumps(report)  # serialisable as is

    path, latest = write_report(report, str(tmp_path / "bench"), "20261122T120000Z")
    assert path.endswith("bench-20261122T120000Z.json") and latest.endswith("latest.json")
    with open(latest) as fh:
        again = json.load(fh)
    assert again == json.loads(json.dumps(report))
    round_trip = results_from_report(again)
    assert [r.name for r in round_trip] == names
    assert round_trip[0].figure("lifecycle.cycle").p90 == 400.0


def test_render_table():
    text = render_table(_results(), "dockerd")
    lines = text.splitlines()
    assert "dockerd (ref)" in lines[0] and "podman" in lines[0]
    cycle = next(line for line in lines if line.startswith("cycle"))
    assert "329 (p90 400)" in cycle and "464 (p90 500)  ×1.41 -" in cycle
    ping = next(line for line in lines if line.startswith("ping"))
    assert "6,500" in ping and "not measured" in ping
    assert "refengine: not measured: no socket at /run/refengine.sock" in text
    assert "podman: not measured (api.ping.c1): the daemon answered 404" in text


def test_render_suite():
    text = render_suite(_results(), "dockerd")
    row = next(line for line in text.splitlines() if line.startswith("conformance/api"))
    assert "100.0 s [10 passed]" in row and "150.0 s [8 passed, 2 failed]  ×1.50 -" in row
    assert render_suite([TargetResult("x", "unix:///x")], "x") == ""


def _fake_report(checks: list[tuple[str, float, float]]) -> dict:
    return {"summary": {"passed": len(checks), "score": 1.0},
            "areas": {a: {"passed": sum(1 for x in checks if x[0] == a), "score": 1.0} for a, _s, _e in checks},
            "checks": [{"area": a, "start": b, "stop": e, "outcome": "passed"} for a, b, e in checks]}


def test_run_session_spans(monkeypatch):
    report = _fake_report([("api", 1000.0, 1001.0), ("api", 1000.5, 1010.0), ("isolation", 1009.5, 1015.0)])
    monkeypatch.setattr(suite, "_pytest", lambda areas, workers, url, timeout: (20.0, 0, "", report))
    rows = {r.area: r for r in suite.run_session(["api", "isolation", "network"], 2, "unix:///x", 60)}
    assert rows["api"].seconds == 10.0 and rows["api"].counts == {"passed": 2}
    assert rows["isolation"].seconds == 5.5
    assert rows[suite.SESSION].seconds == 20.0 and rows[suite.SESSION].outside_checks == 5.0
    assert rows["network"].error == "no check of this area ran"


def test_run_session_without_report(monkeypatch):
    monkeypatch.setattr(suite, "_pytest", lambda *a: (3.0, 4, "no report: boom", {}))
    rows = suite.run_session(["api"], 1, "unix:///x", 60)
    assert [r.area for r in rows] == [suite.SESSION, "api"] and all(r.error for r in rows)
    assert "no ratio" in render_suite([TargetResult("x", "unix:///x", suite=[r.as_dict() for r in rows])], "x")


def test_render_suite_session_rows():
    ref = TargetResult("dockerd", DOCKERD_URL, suite=[
        {"area": "all", "workers": 2, "seconds": 100.0, "returncode": 0, "counts": {"passed": 9},
         "how": "session", "outside_checks": 4.0}])
    other = TargetResult("refengine", REFENGINE_URL, suite=[
        {"area": "all", "workers": 2, "seconds": 50.0, "returncode": 0, "counts": {"passed": 9},
         "how": "session", "outside_checks": 3.0}])
    text = render_suite([ref, other], "dockerd")
    assert "one session per worker count" in text
    row = next(line for line in text.splitlines() if line.startswith("whole session"))
    assert "100.0 s [9 passed] (4.0 s outside checks)" in row and "×0.50 +" in row


# -- targets -----------------------------------------------------------------------------------------------


def test_parse_target_arg():
    assert parse_target_arg("podman=unix:///tmp/p.sock") == TargetSpec("podman", "unix:///tmp/p.sock")
    assert parse_target_arg("ref=embedded").url == "embedded"
    for bad in ("nourl", "=unix:///x", "a b=unix:///x", "x=ftp://host"):
        with pytest.raises(ValueError):
            parse_target_arg(bad)


def test_choose_targets_defaults_and_seams():
    assert choose_targets([], None, None) == [TargetSpec("dockerd", DOCKERD_URL), TargetSpec("refengine", REFENGINE_URL)]
    assert [s.name for s in choose_targets([], "unix:///tmp/p.sock", "none")] == ["dockerd", "podman"]
    explicit = [TargetSpec("a", "unix:///a.sock")]
    assert choose_targets(explicit, None, None) == explicit  # explicit targets: refengine only when asked
    assert [s.url for s in choose_targets(explicit, None, "embedded")] == ["unix:///a.sock", "embedded"]
    with pytest.raises(ValueError):
        choose_targets([TargetSpec("podman", "unix:///a")], "unix:///b", None)


def test_reference_of():
    specs = [TargetSpec("a", "unix:///a"), TargetSpec("dockerd", DOCKERD_URL)]
    assert reference_of(specs, None) == "dockerd"
    assert reference_of(specs, "a") == "a"
    assert reference_of(specs[:1], None) == "a"
    with pytest.raises(ValueError):
        reference_of(specs, "nope")


# -- parsers -------------------------------------------------------------------------------------------------


def test_frame_counter_with_headers_split_anywhere():
    frames = [(1, b"x" * 1000), (2, b"err\n"), (1, b""), (1, b"y" * 70000)]
    data = b"".join(struct.pack(">BxxxI", s, len(p)) + p for s, p in frames)
    for step in (1, 3, 7, 8, 9, 4096, len(data)):
        counter = FrameCounter()
        for i in range(0, len(data), step):
            counter.feed(data[i:i + step])
        assert counter.payload == {1: 71000, 2: 4}, step
        assert counter.frames == 4 and counter.complete and counter.total == 71004


def test_frame_counter_incomplete_and_bad():
    counter = FrameCounter()
    counter.feed(struct.pack(">BxxxI", 1, 10) + b"abc")
    assert not counter.complete and counter.total == 3
    with pytest.raises(ValueError):
        FrameCounter().feed(b"HTTP/1.1 200 OK\r\n")


def test_writer_command_writes_whole_lines():
    cmd = writer_command(10_000_000, 1024)
    assert cmd[:2] == ["sh", "-c"] and cmd[2].endswith("| head -c 10000000")
    assert len(cmd[2].split()[1]) == 1023  # + the newline yes adds


def test_parse_time():
    assert parse_time("2026-11-23T00:49:45.5Z") == pytest.approx(1795394985.5)
    assert parse_time("2026-11-23T01:49:45.25+01:00") == pytest.approx(1795394985.25)
    assert parse_time("0001-01-01T00:00:00Z") is None
    assert parse_time("") is None


PROC_NET_UNIX = """Num       RefCount Protocol Flags    Type St Inode Path
0000000000000000: 00000002 00000000 00010000 0001 01 23456 /var/run/docker.sock
0000000000000000: 00000002 00000000 00010000 0001 01 23457 /run/docker.sock
0000000000000000: 00000003 00000000 00000000 0001 03 23458 /var/run/docker.sock
0000000000000000: 00000002 00000000 00010000 0001 01 23459 @/containerd-shim/abc.sock
0000000000000000: 00000002 00000000 00000000 0002 01 23460
"""


def test_parse_unix_listeners_only_listening_sockets_on_the_path():
    assert parse_unix_listeners(PROC_NET_UNIX, {"/var/run/docker.sock"}) == {23456}
    assert parse_unix_listeners(PROC_NET_UNIX, {"/var/run/docker.sock", "/run/docker.sock"}) == {23456, 23457}
    assert parse_unix_listeners(PROC_NET_UNIX, {"/nope"}) == set()


def test_parse_tcp_listeners():
    text = ("  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
            "   0: 0100007F:0947 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 777 1 0\n"
            "   1: 0100007F:0947 0100007F:C000 01 00000000:00000000 00:00000000 00000000     0        0 778 1 0\n"
            "   2: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 779 1 0\n")
    assert parse_tcp_listeners(text, 2375) == {777}
    assert parse_tcp_listeners(text, 22) == {779}


def test_monitor_found_by_marker_and_container_id():
    launch = ["python3", "-I", "-S", "-c", "boot", "/work/main", "refengine-monitor", "abc123", "/var/lib/x", "7"]
    assert marked_id(launch) == "abc123"
    assert marked_id(["python3", "-c", "refengine-monitor"]) is None  # the marker with nothing after it
    assert marked_id(["sleep", "60"]) is None
    marked = {"abc123": 10, "def456": 11}
    assert monitor_of("abc123" + "0" * 58, marked) == 10  # a full id matches its short form
    assert monitor_of("def4", marked) == 11
    assert monitor_of("fff", marked) is None


def test_helper_name_from_boot_code():
    boot = "import sys;sys.path.insert(0,sys.argv[1]);from refengine.libcontainer.forkserver import serve;serve(3)"
    assert helper_name(f"/usr/bin/python3 -I -S -c {boot} /work/main 42") == "forkserver"
    assert helper_name("python -m refengine.drivers.exec.monitor_zygote") == "monitor_zygote"
    assert helper_name("python3 something else") == "helper"


def test_parse_kv_kb():
    text = "Name:\tdockerd\nVmRSS:\t   93184 kB\nThreads:\t20\nRss:  13000 kB\nPss:  2600 kB\n"
    assert parse_kv_kb(text) == {"VmRSS": 93184, "Rss": 13000, "Pss": 2600}


# -- the rate client's response reader (over a socketpair, no daemon) ----------------------------------------------


def test_raw_connection_reads_length_chunked_and_204(monkeypatch):
    ours, theirs = socket.socketpair()
    monkeypatch.setattr("conformance.target.Target.connect", lambda self, timeout=30.0: ours)
    conn = RawConnection(parse_target("unix:///nowhere.sock"))
    body = b'[{"Id":"abc"}]'
    theirs.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK"
                   b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                   + b"%x\r\n%s\r\n" % (5, body[:5]) + b"%x;ext=1\r\n%s\r\n" % (len(body) - 5, body[5:]) + b"0\r\n\r\n"
                   b"HTTP/1.1 204 No Content\r\n\r\n"
                   b"HTTP/1.1 404 Not Found\r\ncontent-length: 5\r\n\r\nnope!")
    assert [conn.read_response() for _ in range(4)] == [200, 200, 204, 404]
    assert conn.buf == bytearray()
    conn.close()
    theirs.close()
