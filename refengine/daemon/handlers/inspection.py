"""What a container is doing and what it changed: top, stats, changes, export; and /system/df."""

from __future__ import annotations

import asyncio
import json
import subprocess
import tempfile
from collections.abc import AsyncIterator
from typing import Any

from ...engine.clock import now_rfc3339
from ...engine.containers import views
from ...engine.containers.lifecycle import Lifecycle
from ...engine.containers.record import Container
from ...engine.containers.store import ContainerStore
from ...engine.errors import Conflict, InvalidParameter
from ...engine.system import mem_total
from ...engine.volumes import VolumeStore
from ...images.store import ImageStore
from ...libcontainer.cgroups.stats import online_cpus, system_cpu_usage
from ..http import Request, Response, StreamResponse, file_body, json_response
from ..router import Router

ZERO = "0001-01-01T00:00:00Z"


def register(router: Router, store: ContainerStore, life: Lifecycle, images: ImageStore,
             volumes: VolumeStore) -> None:
    def running(c: Container) -> Any:
        run = life.running.get(c.id)
        if run is None:
            raise Conflict(f"Container {c.id} is not running")
        return run

    async def top(request: Request) -> Response:
        c = store.get(request.params["id"])
        run = running(c)
        pids = set(run.lc.cgroup.pids()) if run.lc.cgroup is not None else {run.process.pid}
        args = (request.q("ps_args") or "-ef").split()
        # Like dockerd: the host's ps, rows kept for the container's PIDs (found by the PID column)
        proc = await asyncio.to_thread(subprocess.run, ["ps", *args], capture_output=True, text=True, timeout=20)
        if proc.returncode != 0:
            raise InvalidParameter(f"ps: {proc.stderr.strip()}")
        lines = proc.stdout.splitlines()
        titles = lines[0].split()
        if "PID" not in titles:
            raise InvalidParameter(f"Couldn't find PID field in ps output: {lines[0]!r}")
        at = titles.index("PID")
        rows = []
        for line in lines[1:]:
            fields = line.split(None, len(titles) - 1)
            if len(fields) > at and fields[at].isdigit() and int(fields[at]) in pids:
                rows.append(fields)
        life.event("top", c, {})
        return json_response({"Titles": titles, "Processes": rows})

    def sample(c: Container, run: Any, previous: dict[str, Any] | None) -> dict[str, Any]:
        stats = run.lc.cgroup.stats().to_docker(mem_total(), system_cpu_usage(), online_cpus())
        out = {"read": now_rfc3339(), "preread": previous["read"] if previous else ZERO, "name": c.name,
               "id": c.id, "num_procs": 0, "storage_stats": {},
               "precpu_stats": previous["cpu_stats"] if previous else {"cpu_usage": {"total_usage": 0}},
               **stats}
        return out

    async def stats(request: Request) -> Response | StreamResponse:
        c = store.get(request.params["id"])
        stream = request.qbool("stream", True)
        run = life.running.get(c.id)
        if run is None or run.lc.cgroup is None:
            empty = {"read": ZERO, "preread": ZERO, "name": c.name, "id": c.id, "num_procs": 0,
                     "memory_stats": {}, "cpu_stats": {"cpu_usage": {"total_usage": 0}},
                     "precpu_stats": {"cpu_usage": {"total_usage": 0}}, "pids_stats": {}, "blkio_stats": {}}
            return json_response(empty)
        if not stream:
            first = None
            if not request.qbool("one-shot"):  # dockerd takes two samples a second apart for CPU percentages
                first = sample(c, run, None)
                await asyncio.sleep(1)
            return json_response(sample(c, run, first))

        async def chunks() -> AsyncIterator[bytes]:
            previous = None
            while c.id in life.running:
                previous = sample(c, run, previous)
                yield json.dumps(previous).encode() + b"\n"
                await asyncio.sleep(1)
        return StreamResponse(chunks())

    async def changes(request: Request) -> Response:
        c = store.get(request.params["id"])
        found = await asyncio.to_thread(images.layers.changes, c.id)
        return json_response([ch.to_api() for ch in found])  # [] when none: the schema's array (dockerd: null)

    async def export(request: Request) -> StreamResponse:
        c = store.get(request.params["id"])
        spool = tempfile.TemporaryFile(prefix="refengine-export-")
        try:
            await asyncio.to_thread(images.layers.export, c.id, spool)
            spool.seek(0)
        except BaseException:
            spool.close()
            raise
        life.event("export", c, {})
        return StreamResponse(file_body(spool), content_type="application/x-tar")

    async def system_df(request: Request) -> Response:
        def collect() -> dict[str, Any]:
            counts: dict[str, int] = {}
            for c in store:
                counts[c.image_id] = counts.get(c.image_id, 0) + 1
            imgs = images.summaries(False, None, shared_size=True, container_count=lambda i: counts.get(i, 0))
            ctrs = [views.summary(c, life.size(c)) for c in store]
            vols = []
            for v in volumes.list({}):
                item = v.api(volumes.root)
                users = volumes.users(v.name)
                item["UsageData"] = {"Size": volumes.size(v.name), "RefCount": len(users)}
                vols.append(item)
            layers = sum(i["Size"] - max(i.get("SharedSize", 0), 0) for i in imgs)
            return {"LayersSize": layers, "Images": imgs, "Containers": ctrs, "Volumes": vols, "BuildCache": []}
        return json_response(await asyncio.to_thread(collect))

    router.add("GET", "/containers/{id}/top", top)
    router.add("GET", "/containers/{id}/stats", stats)
    router.add("GET", "/containers/{id}/changes", changes)
    router.add("GET", "/containers/{id}/export", export)
    router.add("GET", "/system/df", system_df)
