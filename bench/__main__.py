"""`python -m bench`: measure every target in one run, print the table, write reports/bench/*.json.

    python -m bench --quick                               # dockerd (+ refengine if its daemon answers)
    python -m bench --podman unix:///tmp/podman.sock      # dockerd and podman side by side
    python -m bench --target a=unix:///a.sock --target b=tcp://127.0.0.1:2375 --reference a
    python -m bench --suite                               # also time the conformance areas (slow)
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import secrets
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

from conformance.probe_image import ProbeImages, build_probe_tar

from . import api_rate, lifecycle, memory, streams, suite
from .report import (
    Figures,
    TargetResult,
    build_report,
    loadavg,
    machine_info,
    render_suite,
    render_table,
    results_from_report,
    write_report,
)
from .targets import (
    EMBEDDED,
    NotMeasured,
    Session,
    TargetSpec,
    choose_targets,
    parse_target_arg,
    reach,
    reference_of,
    version_summary,
)

SECTIONS = ("api", "lifecycle", "memory", "streams")
DEFAULT_OUT = os.path.join(suite.REPO, "reports", "bench")


@dataclass
class Params:
    runs: int  # serial lifecycle cycles
    many: int  # containers run/stopped at once, and running for the memory figures
    list_many: int  # containers present for the list/inspect rates
    duration: float  # seconds per API rate figure
    clients: tuple[int, ...]
    logs_mb: float
    attach_rounds: int
    sections: tuple[str, ...]
    suite_areas: tuple[str, ...]  # empty: no suite
    suite_workers: tuple[int, ...]
    suite_timeout: float
    suite_per_area: bool = False


FULL = dict(runs=30, many=50, list_many=200, duration=3.0, logs_mb=100, attach_rounds=50)
QUICK = dict(runs=5, many=10, list_many=50, duration=1.0, logs_mb=10, attach_rounds=10)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target", action="append", default=[], metavar="NAME=URL",
                   help="a daemon to measure (repeatable); default: dockerd=unix:///var/run/docker.sock")
    p.add_argument("--podman", metavar="URL", help="also measure podman's compat API at this URL")
    p.add_argument("--refengine", metavar="URL",
                   help="refengine's URL (default: unix:///run/refengine.sock when no --target is given); "
                        "'embedded' starts refengined for the run; 'none' leaves it out")
    p.add_argument("--reference", metavar="NAME", help="target the ratios are taken against (default dockerd)")
    p.add_argument("--quick", action="store_true", help="fewer runs, fewer containers, shorter durations")
    p.add_argument("--only", metavar="SECTIONS", help=f"comma-separated subset of {','.join(SECTIONS)}")
    p.add_argument("--suite", action="store_true", help="also time the conformance suite's areas (slow)")
    p.add_argument("--areas", metavar="AREAS", help="suite areas (default: every area that exists)")
    p.add_argument("--suite-workers", default="1,2", metavar="N,N", help="xdist worker counts (default 1,2)")
    p.add_argument("--suite-timeout", type=float, default=1800, metavar="S", help="per pytest run (default 1800)")
    p.add_argument("--suite-per-area", action="store_true",
                   help="each area in a pytest run of its own (stand-alone wall times; repeats the start-up) "
                        "instead of one session per worker count")
    p.add_argument("--runs", type=int, help="serial lifecycle cycles (default 30, quick 5)")
    p.add_argument("--many", type=int, help="containers run and stopped at once (default 50, quick 10)")
    p.add_argument("--list-many", type=int, help="containers present for the list rates (default 200, quick 50)")
    p.add_argument("--duration", type=float, help="seconds per API rate figure (default 3, quick 1)")
    p.add_argument("--clients", default="1,8", metavar="N,N", help="concurrent client processes (default 1,8)")
    p.add_argument("--logs-mb", type=float, help="MB the logs container writes (default 100, quick 10)")
    p.add_argument("--attach-rounds", type=int, help="attach round trips (default 50, quick 10)")
    p.add_argument("--show", metavar="FILE", help="print the table of a saved report (e.g. reports/bench/latest.json)")
    p.add_argument("--out", default=DEFAULT_OUT, metavar="DIR", help="where the JSON goes (default reports/bench)")
    return p.parse_args(argv)


def _ints(text: str, what: str) -> tuple[int, ...]:
    try:
        values = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise SystemExit(f"{what}: a comma-separated list of integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise SystemExit(f"{what}: a comma-separated list of positive integers, got {text!r}")
    return values


def params_from(args: argparse.Namespace) -> Params:
    base = QUICK if args.quick else FULL
    sections = tuple(s.strip() for s in args.only.split(",")) if args.only else SECTIONS
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        raise SystemExit(f"--only: unknown sections {sorted(unknown)}; choose from {SECTIONS}")
    areas: tuple[str, ...] = ()
    if args.suite:
        existing = suite.available_areas()
        areas = tuple(a.strip() for a in args.areas.split(",")) if args.areas else tuple(existing)
        missing = [a for a in areas if a not in existing]
        if missing:
            raise SystemExit(f"--areas: {missing} not in conformance/ (there are: {existing})")

    def pick(name: str) -> Any:
        value = getattr(args, name)
        return base[name] if value is None else value

    return Params(runs=pick("runs"), many=pick("many"), list_many=pick("list_many"), duration=pick("duration"),
                  clients=_ints(args.clients, "--clients"), logs_mb=pick("logs_mb"),
                  attach_rounds=pick("attach_rounds"), sections=sections, suite_areas=areas,
                  suite_workers=_ints(args.suite_workers, "--suite-workers"), suite_timeout=args.suite_timeout,
                  suite_per_area=args.suite_per_area)


def say(text: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def shielded() -> Iterator[None]:
    """Ctrl-C during cleanup only says so: the cleanup finishes first."""
    def note(_sig: int, _frame: object) -> None:
        say("cleaning up, please wait (containers and images of this run are being removed)")
    old = signal.signal(signal.SIGINT, note)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


def run_section(result: TargetResult, figs: Figures, fn: Callable[[], None]) -> bool:
    """Run one measurement; on an error its unmeasured figures say why. Ctrl-C goes through."""
    if not any(f is figs.items[0] for f in result.figures):
        result.figures.extend(figs.items)
    try:
        fn()
        return True
    except NotMeasured as exc:
        figs.skip_rest(str(exc))
    except Exception as exc:  # any failure of a daemon under test is a result, not a crash
        figs.skip_rest(f"{type(exc).__name__}: {exc}")
    return False


def measure_target(spec: TargetSpec, reference: str, params: Params, probe: tuple[ProbeImages, bytes],
                   run_id: str, load: dict[str, list[float]]) -> TargetResult:
    result = TargetResult(name=spec.name, url=spec.url, reference=spec.name == reference)
    embedded = None
    try:
        url = spec.url
        if url == EMBEDDED:
            from conformance.embedded import EmbeddedDaemon, EmbeddedError
            embedded = EmbeddedDaemon()
            try:
                url = embedded.start().url
            except EmbeddedError as exc:
                raise NotMeasured(f"refengined could not be started: {exc}") from None
            result.notes.append(f"refengined started for the run at {url}")
        target, version = reach(url)
    except NotMeasured as exc:
        result.not_measured = str(exc)
        say(f"{spec.name}: not measured: {exc}")
        if embedded:
            embedded.stop()
        return result
    except BaseException:
        if embedded:
            embedded.stop()
        raise
    result.version = version_summary(version)
    say(f"{spec.name}: {result.version.get('Version')} (API {result.version.get('ApiVersion')}) at {url}")
    session = Session(spec.name, target, run_id, version)
    load[f"{spec.name}:start"] = loadavg()
    try:
        try:
            _measure(session, result, params, probe)
        finally:
            with shielded():
                say(f"{spec.name}: removing what the run created")
                result.cleanup_problems = session.cleanup()
                load[f"{spec.name}:end"] = loadavg()
        if params.suite_areas:
            _suite(result, url, params)  # before the embedded daemon stops: the suite runs against it
    finally:
        if embedded:
            with shielded():
                embedded.stop()
    return result


def _measure(session: Session, result: TargetResult, params: Params, probe: tuple[ProbeImages, bytes]) -> None:
    try:
        session.load_probe(*probe)
    except NotMeasured as exc:
        session.image_error = str(exc)
        result.notes.append(str(exc))
    except Exception as exc:
        session.image_error = f"loading the probe image failed: {type(exc).__name__}: {exc}"
        result.notes.append(session.image_error)
    sections = params.sections
    mem = memory.declare(params.many)
    daemon: memory.Daemon | None = None
    idle: int | None = None
    if "memory" in sections:
        def find_and_idle() -> None:
            nonlocal daemon, idle
            daemon = memory.find_daemon(session.target)
            result.daemon = daemon.as_dict()
            result.notes.append(f"daemon RSS = {daemon.describe()}")
            result.notes.extend(daemon.notes)
            idle = memory.measure_idle(session, daemon, mem)
        say(f"{session.name}: memory, idle")
        run_section(result, mem, find_and_idle)
    if "api" in sections:
        say(f"{session.name}: API rates ({params.duration:g} s each, clients {params.clients})")
        figs = api_rate.declare(params.clients, params.list_many)
        run_section(result, figs, lambda: api_rate.measure(session, figs, params.clients, params.duration,
                                                           params.list_many))
    if "lifecycle" in sections or "memory" in sections:
        life = lifecycle.declare(params.runs, params.many)
        if "lifecycle" in sections:
            say(f"{session.name}: lifecycle, {params.runs} serial cycles")
            run_section(result, life, lambda: lifecycle.serial_cycles(session, life, params.runs))
        say(f"{session.name}: {params.many} containers at once")
        cids: list[str] = []

        def run_many() -> None:
            cids.extend(lifecycle.run_many(session, life, params.many))

        started = run_section(result, life, run_many)
        if "memory" in sections:
            if not started:
                mem.skip_rest(f"no running containers to measure: {life['lifecycle.run_many'].not_measured}")
            elif daemon is not None:
                time.sleep(1)  # let the daemon settle after the burst
                run_section(result, mem, lambda: memory.measure_busy(session, daemon, mem, cids, idle))
        if started:
            run_section(result, life, lambda: lifecycle.stop_many(session, life, cids))
        if "lifecycle" not in sections:
            result.figures = [f for f in result.figures if f.section != lifecycle.SECTION]
    if "streams" in sections:
        figs = streams.declare(params.logs_mb, params.attach_rounds)
        say(f"{session.name}: logs of {params.logs_mb:g} MB")
        run_section(result, figs, lambda: streams.logs_throughput(session, figs, int(params.logs_mb * 1e6)))
        say(f"{session.name}: attach round trips")
        run_section(result, figs, lambda: streams.attach_latency(session, figs, params.attach_rounds))
    if "memory" in sections:
        if daemon is not None:
            time.sleep(1)  # let the daemon settle after the last measurement
            run_section(result, mem, lambda: memory.measure_end(session, daemon, mem))
        else:
            mem["memory.daemon_end"].skip("the daemon's process was not found")


def _suite(result: TargetResult, url: str, params: Params) -> None:
    areas = list(params.suite_areas)
    for workers in params.suite_workers:
        if params.suite_per_area:
            for area in areas:
                say(f"{result.name}: conformance/{area} with -n {workers}")
                run = suite.run_area(area, workers, url, params.suite_timeout)
                result.suite.append(run.as_dict())
                say(f"{result.name}: conformance/{area} -n {workers}: {run.seconds:.1f} s, {run.counts or run.error}")
            continue
        say(f"{result.name}: conformance/{{{','.join(areas)}}} in one session with -n {workers}")
        rows = suite.run_session(areas, workers, url, params.suite_timeout)
        result.suite.extend(r.as_dict() for r in rows)
        say(f"{result.name}: -n {workers}: " + ", ".join(f"{r.area} {r.seconds:.1f} s" for r in rows))


def summary_lines(report: dict[str, Any], results: list[TargetResult]) -> list[str]:
    out = [render_table(results, report["reference"])]
    suite_text = render_suite(results, report["reference"])
    if suite_text:
        out.append("\n" + suite_text)
    m, load = report["machine"], report["machine"].get("loadavg", {})
    versions = "; ".join(f"{r.name} {r.version.get('Version')} (API {r.version.get('ApiVersion')})"
                         for r in results if r.version)
    out.append(f"\n{report['mode']} run {report.get('run_id', '')} of {report['started']}, {report['seconds']:.0f} s"
               f"{' (INTERRUPTED)' if report.get('interrupted') else ''}; {versions}")
    out.append(f"machine: {m.get('cpu_model')}, {m.get('cores')} cores, {m.get('memory_mb')} MiB, kernel "
               f"{m.get('kernel')}; load average (1/5/15 min) at start {load.get('start')}, at end {load.get('end')}")
    return out


def show(path: str) -> int:
    with open(path) as fh:
        report = json.load(fh)
    print("\n".join(summary_lines(report, results_from_report(report))))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.show:
        return show(args.show)
    params = params_from(args)
    try:
        specs = choose_targets([parse_target_arg(t) for t in args.target], args.podman, args.refengine)
        reference = reference_of(specs, args.reference)
    except ValueError as exc:
        raise SystemExit(f"bench: {exc}") from None

    def on_term(_sig: int, _frame: object) -> None:
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started with SIGINT ignored (`cmd &`)

    started = dt.datetime.now(dt.UTC)
    run_id = "bench" + secrets.token_hex(3)
    load: dict[str, list[float]] = {"start": loadavg()}
    results: list[TargetResult] = []
    interrupted = False
    say(f"run {run_id}: targets {', '.join(f'{s.name}={s.url}' for s in specs)}; reference {reference}; "
        f"{'quick' if args.quick else 'full'} mode; load average {load['start']}")
    try:
        probe = build_probe_tar(run_id)
        for spec in specs:
            results.append(measure_target(spec, reference, params, probe, run_id, load))
    except KeyboardInterrupt:
        interrupted = True
        say("interrupted: the report holds what was measured")
    load["end"] = loadavg()
    finished = dt.datetime.now(dt.UTC)
    report = build_report(results, reference, started=started, finished=finished,
                          mode="quick" if args.quick else "full", parameters=asdict(params),
                          machine=machine_info(), load=load, interrupted=interrupted)
    report["run_id"] = run_id
    print("\n".join(summary_lines(report, results)))
    path, latest = write_report(report, args.out, started.strftime("%Y%m%dT%H%M%SZ"))
    print(f"report: {path} (and {latest})")
    return 130 if interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
