"""Container lifecycle through the API: serial create→start→wait→remove cycles, and N at once."""

from __future__ import annotations

import time

from .client import Api, parallel
from .report import HIGHER, INFO, LOWER, Figures
from .stats import summarize
from .targets import Session

SECTION = "lifecycle"
# Stays up until stopped, and exits at once on SIGTERM (a plain `sleep` as PID 1 ignores it, so a stop
# would measure the 10 s grace period instead of the daemon).
LONG_RUNNING = ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]
WARMUP = 1


def declare(runs: int, many: int) -> Figures:
    return Figures(SECTION, [
        ("lifecycle.cycle", f"create→start→wait→remove `true`, median of {runs}", "ms", LOWER),
        ("lifecycle.create", "  create", "ms", LOWER),
        ("lifecycle.start", "  start", "ms", LOWER),
        ("lifecycle.wait", "  wait", "ms", LOWER),
        ("lifecycle.remove", "  remove", "ms", LOWER),
        ("lifecycle.cycles_per_s", "  serial cycles per second", "1/s", HIGHER),
        ("lifecycle.run_many", f"run -d of {many} at once (create+start), wall", "s", LOWER),
        ("lifecycle.run_many_each", f"  each of the {many}: create+start", "ms", INFO),
        ("lifecycle.stop_many", f"stop of {many} at once, wall", "s", LOWER),
        ("lifecycle.remove_many", f"remove of {many} stopped at once, wall", "s", LOWER),
    ])


def one_cycle(session: Session, api: Api) -> tuple[float, float, float, float]:
    """Seconds of create, start, wait and remove of one `true` container."""
    t0 = time.perf_counter()
    cid = session.create(api, ["true"])
    t1 = time.perf_counter()
    session.start(api, cid)
    t2 = time.perf_counter()
    code = session.wait(api, cid)
    t3 = time.perf_counter()
    session.remove(api, cid)
    t4 = time.perf_counter()
    if code != 0:
        raise RuntimeError(f"`true` exited {code} in {cid[:12]}")
    return t1 - t0, t2 - t1, t3 - t2, t4 - t3


def serial_cycles(session: Session, figs: Figures, runs: int) -> None:
    api = Api(session.target)
    try:
        for _ in range(WARMUP):
            one_cycle(session, api)
        samples = [one_cycle(session, api) for _ in range(runs)]
    finally:
        api.close()
    totals = [sum(s) for s in samples]
    figs["lifecycle.cycle"].set_summary(summarize(totals), 1000, note=f"after {WARMUP} warm-up cycle")
    for i, key in enumerate(("create", "start", "wait", "remove")):
        figs[f"lifecycle.{key}"].set_summary(summarize([s[i] for s in samples]), 1000)
    figs["lifecycle.cycles_per_s"].set(len(totals) / sum(totals), samples=len(totals))


def run_many(session: Session, figs: Figures, count: int) -> list[str]:
    """Create and start `count` long-running containers at once (one thread and connection each)."""
    each: list[float] = []

    def run(api: Api, _i: int) -> str:
        t0 = time.perf_counter()
        cid = session.create(api, LONG_RUNNING)
        session.start(api, cid)
        each.append(time.perf_counter() - t0)
        return cid

    t0 = time.perf_counter()
    cids = parallel(session.target, run, range(count), workers=count)
    figs["lifecycle.run_many"].set(time.perf_counter() - t0, samples=count)
    figs["lifecycle.run_many_each"].set_summary(summarize(each), 1000)
    return cids


def stop_many(session: Session, figs: Figures, cids: list[str]) -> None:
    def stop(api: Api, cid: str) -> None:
        session.stop(api, cid, timeout=10)

    t0 = time.perf_counter()
    parallel(session.target, stop, cids, workers=len(cids))
    wall = time.perf_counter() - t0
    figs["lifecycle.stop_many"].set(wall, samples=len(cids),
                                    note="containers trap SIGTERM and exit at once; stop t=10")

    def remove(api: Api, cid: str) -> None:
        session.remove(api, cid)

    t0 = time.perf_counter()
    parallel(session.target, remove, cids, workers=len(cids))
    figs["lifecycle.remove_many"].set(time.perf_counter() - t0, samples=len(cids))
