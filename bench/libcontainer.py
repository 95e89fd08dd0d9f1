"""`python -m bench.libcontainer`: lifecycle latency of a `true` container through refengine's
libcontainer alone, next to `unshare` and `runc run`, measured in the same run.

One sample = create -> start -> exit -> cleanup of a container running /bin/true on a busybox-static
rootfs built in a temp dir:

  unshare             `unshare --pid --fork --mount --uts --ipc --net /bin/true` (no rootfs, no /proc,
                      no cgroup: the floor any namespace-creating runtime pays)
  unshare+cgroup      the same, joined to a fresh cgroup first (created, joined, removed as refengine's are):
                      the floor with cgroups; on cgroup v1 joining waits for an RCU grace period
  runc                `runc run` on an OCI bundle (the same rootfs; `runc spec` edited: no terminal,
                      args [true], a cgroup of ours); runc spec has no seccomp profile
  refengine           Container(...).start(); wait(); destroy(): Docker's defaults (5 namespaces, /proc,
                      /dev + nodes, /sys, masked/read-only paths, 14 caps, the default seccomp filter), a
                      cgroup created/removed per container, the init forked by the pre-warmed fork server
  refengine-exec      the same with REFENGINE_FORKSERVER=0: a fresh `python -I -S` init per container
  refengine-nocgroup  the fork server path without a cgroup of its own

Targets are sampled round-robin in a shuffled order per round (noise on this shared 2-core machine hits all alike); medians of
--runs (>= 30) samples each. Prints a table with ratios; writes reports/bench/libcontainer.json.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import random
import secrets
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable

from conformance.probe_image import busybox_layer, find_busybox

UNSHARE = ["unshare", "--pid", "--fork", "--mount", "--uts", "--ipc", "--net", "/bin/true"]


def build_rootfs(top: str) -> str:
    root = os.path.join(top, "rootfs")
    os.mkdir(root)
    with tarfile.open(fileobj=io.BytesIO(busybox_layer(find_busybox()))) as tar:
        tar.extractall(root, filter="fully_trusted")
    os.chmod(top, 0o755)
    return root


def runc_bundle(top: str, rootfs: str, cgroup: str) -> str | None:
    runc = shutil.which("runc")
    if runc is None:
        return None
    bundle = os.path.join(top, "bundle")
    os.mkdir(bundle)
    subprocess.run([runc, "spec", "--bundle", bundle], check=True)
    path = os.path.join(bundle, "config.json")
    with open(path) as fh:
        spec = json.load(fh)
    spec["root"] = {"path": rootfs, "readonly": False}
    spec["process"]["terminal"] = False
    spec["process"]["args"] = ["true"]
    spec["linux"]["cgroupsPath"] = "/" + cgroup
    with open(path, "w") as fh:
        json.dump(spec, fh)
    return bundle


def sampler(name: str, rootfs: str, state: str, bundle: str | None, cg_parent: str) -> Callable[[], None]:
    if name == "unshare":
        return lambda: subprocess.run(UNSHARE, check=True)
    if name == "unshare+cgroup":
        from refengine.libcontainer import cgroups

        driver = cgroups.detect(cg_parent)

        def run_unshare_cg() -> None:
            # the same cgroup work as refengine's (create, join before the payload runs, remove)
            cg = driver.create("u" + secrets.token_hex(6))
            try:
                procs = [os.path.join(d, "cgroup.procs") for d in sorted(set(cg.paths.values()))]
                subprocess.run(["sh", "-c", 'for f; do echo $$ > "$f"; done; exec "$0" ' + " ".join(UNSHARE[1:]),
                                UNSHARE[0], *procs], check=True)
            finally:
                cg.destroy()
        return run_unshare_cg
    if name == "runc":
        assert bundle is not None

        def run_runc() -> None:
            subprocess.run(["runc", "--root", state, "run", "--bundle", bundle, "b" + secrets.token_hex(6)],
                           check=True, stdin=subprocess.DEVNULL)
        return run_runc
    from refengine.libcontainer import Container, ContainerConfig
    from refengine.libcontainer import process as lcprocess

    use_fs = name != "refengine-exec"
    with_cg = name != "refengine-nocgroup"

    def run_refengine() -> None:
        cfg = ContainerConfig(rootfs, ["true"], cgroup_name=("b" + secrets.token_hex(6)) if with_cg else None,
                              cgroup_parent=cg_parent)
        c = Container(cfg)
        os.environ["REFENGINE_FORKSERVER"] = "1" if use_fs else "0"
        try:
            c.start(stdin=subprocess.DEVNULL)
            rc = c.wait(30)
        finally:
            c.destroy()
        if rc != 0:
            raise RuntimeError(f"true exited {rc}")
    _ = lcprocess
    return run_refengine


def measure(fns: dict[str, Callable[[], None]], runs: int, warmup: int) -> dict[str, list[float]]:
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    samples: dict[str, list[float]] = {n: [] for n in fns}
    order = list(fns)
    rng = random.Random(1)
    for _ in range(runs):
        # round-robin (load spikes hit every target alike), shuffled: a target's asynchronous teardown
        # (runc's cgroup and netns release) must not always land on the same successor
        rng.shuffle(order)
        for name in order:
            fn = fns[name]
            t0 = time.perf_counter()
            fn()
            samples[name].append((time.perf_counter() - t0) * 1000)
    return samples


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.libcontainer", description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=40, help="samples per target (>= 30)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--out", default="reports/bench/libcontainer.json")
    ap.add_argument("--no-runc", action="store_true")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("needs root (namespaces, mounts, cgroups)", file=sys.stderr)
        return 2
    runs = max(args.runs, 30)
    top = tempfile.mkdtemp(prefix="refengine-bench-")
    cg_parent = "refengine-bench-" + secrets.token_hex(3)
    runc_cg = "refengine-bench-runc-" + secrets.token_hex(3)
    state = os.path.join(top, "runc-state")
    try:
        rootfs = build_rootfs(top)
        bundle = None if args.no_runc else runc_bundle(top, rootfs, runc_cg)
        names = ["unshare", "unshare+cgroup"] + (["runc"] if bundle else []) + \
            ["refengine", "refengine-exec", "refengine-nocgroup"]
        fns = {n: sampler(n, rootfs, state, bundle, cg_parent) for n in names}
        samples = measure(fns, runs, args.warmup)
    finally:
        _cleanup(top, cg_parent, runc_cg)
    med = {n: statistics.median(v) for n, v in samples.items()}
    rows = []
    for n in names:
        v = sorted(samples[n])
        rows.append({"target": n, "median_ms": round(med[n], 2), "p10_ms": round(v[len(v) // 10], 2),
                     "p90_ms": round(v[(len(v) * 9) // 10], 2), "runs": len(v),
                     "vs_unshare": round(med[n] / med["unshare"], 2),
                     "vs_unshare_cgroup": round(med[n] / med["unshare+cgroup"], 2),
                     "vs_runc": round(med[n] / med["runc"], 2) if "runc" in med else None})
    print(f"{'target':<20}{'median ms':>10}{'p10':>8}{'p90':>8}{'x unshare':>11}{'x unshare+cg':>14}{'x runc':>8}")
    for r in rows:
        vs_runc = f"{r['vs_runc']:.2f}" if r["vs_runc"] is not None else "-"
        print(f"{r['target']:<20}{r['median_ms']:>10.2f}{r['p10_ms']:>8.2f}{r['p90_ms']:>8.2f}"
              f"{r['vs_unshare']:>11.2f}{r['vs_unshare_cgroup']:>14.2f}{vs_runc:>8}")
    report = {
        "what": "create->start->exit->cleanup of a `true` container (libcontainer layer alone)",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "host": {"kernel": platform.release(), "cpus": os.cpu_count(), "loadavg": os.getloadavg(),
                 "python": sys.version.split()[0]},
        "aims": {"within_3x_unshare": med["refengine"] <= 3 * med["unshare"],
                 "within_3x_unshare_with_cgroup": med["refengine"] <= 3 * med["unshare+cgroup"],
                 "nocgroup_within_3x_unshare": med["refengine-nocgroup"] <= 3 * med["unshare"],
                 "faster_than_runc": ("runc" in med and med["refengine"] < med["runc"])},
        "results": rows,
        "samples_ms": {n: [round(x, 3) for x in v] for n, v in samples.items()},
    }
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(report, fh, indent=2)
    print(f"aims: within 3x unshare: {report['aims']['within_3x_unshare']}, "
          f"faster than runc: {report['aims']['faster_than_runc']}; report: {args.out}")
    return 0


def _cleanup(top: str, cg_parent: str, runc_cg: str) -> None:
    from refengine.libcontainer import cgroups
    from refengine.libcontainer.process import shutdown_forkserver

    shutdown_forkserver()
    try:
        cgroups.detect(cg_parent).remove_parent()
    except Exception:  # noqa: BLE001 - never created (e.g. runc missing), nothing to remove
        pass
    # runc removes its container cgroups on delete; the parent directory it made for them is ours to remove
    for base in ("/sys/fs/cgroup", *(os.path.join("/sys/fs/cgroup", d) for d in _v1_dirs())):
        path = os.path.join(base, runc_cg)
        if os.path.isdir(path):
            try:
                os.rmdir(path)
            except OSError:
                pass
    shutil.rmtree(top, ignore_errors=True)


def _v1_dirs() -> list[str]:
    try:
        return os.listdir("/sys/fs/cgroup")
    except OSError:
        return []


if __name__ == "__main__":
    sys.exit(main())
