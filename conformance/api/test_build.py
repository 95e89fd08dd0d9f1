"""POST /build with the classic builder (API version 1): a Dockerfile and its context as a tar.

Each build labels its steps with the run's label (a LABEL right after FROM), so an intermediate
container left behind is the check's failure here and a leak in the run's report.
"""

from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
import tarfile
from typing import Any

import pytest

from conformance.client import RECORD, ApiClient, error_message, json_lines
from conformance.probe_image import find_busybox
from conformance.resources import RUN_LABEL, Containers, Images, Names

# a context file: text (mode 0644), or (bytes, mode)
ContextFile = str | tuple[bytes, int]


def _context(files: dict[str, ContextFile], mtime: int = 1700000000) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, content in files.items():
            data, mode = (content.encode(), 0o644) if isinstance(content, str) else content
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), mode, mtime
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _build(api: ApiClient, files: dict[str, ContextFile], compress: str = "", mtime: int = 1700000000, **params: Any
           ) -> tuple[int, list[dict[str, Any]], Any]:
    """Send the build (the context tar compressed with gzip/bz2/xz when asked, its files dated `mtime`);
    (status, the stream's messages, the response)."""
    query = {"rm": 1, "forcerm": 1, **params}
    body = _context(files, mtime)
    if compress:
        body = {"gzip": gzip.compress, "bzip2": bz2.compress, "xz": lzma.compress}[compress](body)
    resp = api.post("/build", data=body, params={k: (json.dumps(v) if isinstance(v, dict) else v)
                                                            for k, v in query.items()},
                    headers={"Content-Type": "application/x-tar"}, timeout=180, validate=False)
    messages = json_lines(resp.content) if resp.status_code == 200 else []
    return resp.status_code, messages, resp


def _built_id(messages: list[dict[str, Any]]) -> str:
    errors = [m for m in messages if "errorDetail" in m or "error" in m]
    assert not errors, f"the build failed: {errors[-1]}; its output: {_output(messages)[-600:]!r}"
    ids = [m["aux"]["ID"] for m in messages if isinstance(m.get("aux"), dict) and "ID" in m["aux"]]
    assert ids, f"the build stream carries no aux ID of the image: {messages[-3:]}"
    return ids[-1]


def _output(messages: list[dict[str, Any]]) -> str:
    return "".join(m.get("stream", "") for m in messages)


def _leftovers(api: ApiClient, run_id: str, mark: str) -> list[str]:
    resp = api.get("/containers/json", params={"all": 1, "filters": {"label": [f"org.conformance.build={mark}",
                                                                              f"{RUN_LABEL}={run_id}"]}})
    return [c["Id"][:12] for c in resp.json()]


@pytest.fixture
def marks(api: ApiClient, names: Names) -> Any:
    """Marks for this check's builds (request it first: it is torn down last); afterwards the untagged images they made (a failed build's steps,
    an earlier stage) are removed, newest first: deleting the tagged image does not reach them."""
    made: list[str] = []

    def new() -> str:
        made.append(names("build"))
        return made[-1]
    yield new
    for mark in made:
        # clean-up, not the check: a schema violation here is recorded as a finding (podman's null RepoTags)
        listed = api.get("/images/json", params={"all": 1, "filters": {"label": [f"org.conformance.build={mark}"]}},
                         validate=RECORD)
        for img in sorted(listed.json() if listed.status_code == 200 else [], key=lambda i: -i.get("Created", 0)):
            if not [t for t in img.get("RepoTags") or [] if t != "<none>:<none>"]:
                api.delete(f"/images/{img['Id']}", validate=RECORD)


def _head(containers: Containers, mark: str) -> str:
    return (f"FROM {containers.probe.base}\n"
            f"LABEL {RUN_LABEL}={containers.run_id} org.conformance.build={mark}\n")


@pytest.mark.req("api.build.dockerfile")
def test_build_runs_the_dockerfile(marks: Any, api: ApiClient, images: Images, containers: Containers) -> None:
    mark = marks()
    repo, tag = images.new_ref("built")
    dockerfile = (_head(containers, mark) +
                  "ARG GREETING=hello\n"
                  "ENV WHO=world\n"
                  "WORKDIR /app\n"
                  "COPY note.txt ./\n"
                  "RUN echo \"$GREETING $WHO\" > greeting && cat note.txt\n"
                  'CMD ["sh", "-c", "cat /app/greeting /app/note.txt"]\n')
    status, messages, resp = _build(api, {"Dockerfile": dockerfile, "note.txt": "from the context\n"},
                                    t=f"{repo}:{tag}", buildargs={"GREETING": "hi"})
    assert status == 200, f"POST /build answered {status} {error_message(resp)!r}; expected 200 and a stream"
    image_id = _built_id(messages)
    # before any container of the image exists (they carry its labels too)
    assert not _leftovers(api, containers.run_id, mark), "the build left intermediate containers (rm=1)"
    assert "from the context" in _output(messages), (
        f"the RUN step's output is not in the build stream: {_output(messages)[-400:]!r}")
    info = api.get(f"/images/{repo}:{tag}/json").json()
    assert info.get("Id") == image_id, f"{repo}:{tag} is {info.get('Id')}; the build's aux ID is {image_id}"
    cfg = info["Config"]
    assert cfg.get("WorkingDir") == "/app" and "WHO=world" in (cfg.get("Env") or []), (
        f"the image config has WorkingDir {cfg.get('WorkingDir')!r} and Env {cfg.get('Env')}")
    assert not any(e.startswith("GREETING=") for e in cfg.get("Env") or []), (
        f"a build ARG was kept in the image's Env: {cfg.get('Env')}")
    assert cfg.get("Cmd") == ["sh", "-c", "cat /app/greeting /app/note.txt"], f"Config.Cmd is {cfg.get('Cmd')!r}"
    run = containers.run_output(cfg["Cmd"], image=f"{repo}:{tag}")
    assert run.stdout == "hi world\nfrom the context\n", (
        f"a container of the built image printed {run.stdout!r}; expected the RUN's file (build-arg hi, ENV world) "
        f"and the COPYed file")


@pytest.mark.req("api.build.compressed-context")
@pytest.mark.parametrize("compress", ["gzip", "bzip2", "xz"])
def test_build_compressed_context(marks: Any, api: ApiClient, images: Images, containers: Containers,
                                  compress: str) -> None:
    mark = marks()
    repo, tag = images.new_ref("built")
    dockerfile = _head(containers, mark) + "COPY note.txt /note.txt\n"
    status, messages, resp = _build(api, {"Dockerfile": dockerfile, "note.txt": f"sent as {compress}\n"},
                                    compress=compress, t=f"{repo}:{tag}")
    assert status == 200, f"POST /build of a {compress} context answered {status} {error_message(resp)!r}"
    _built_id(messages)
    run = containers.run_output(["cat", "/note.txt"], image=f"{repo}:{tag}")
    assert run.stdout == f"sent as {compress}\n", (
        f"COPY from a {compress}-compressed context gave {run.stdout!r} {run.stderr!r}")


CACHED = " ---> Using cache"


@pytest.mark.req("api.build.cache")
def test_build_cache(marks: Any, api: ApiClient, images: Images, containers: Containers) -> None:
    """The classic builder's cache: an unchanged build reuses every step (the context's file times do not
    count); a changed COPY source rebuilds from that step on; nocache=1 rebuilds all."""
    mark = marks()
    dockerfile = (_head(containers, mark) + "ENV STEP=cached\nCOPY note.txt /note.txt\n"
                  "RUN echo ran-$(cat /note.txt)\n")

    def build(note: str, mtime: int, **params: Any) -> tuple[str, str]:
        repo, tag = images.new_ref("cached")
        status, messages, resp = _build(api, {"Dockerfile": dockerfile, "note.txt": note + "\n"}, mtime=mtime,
                                        t=f"{repo}:{tag}", **params)
        assert status == 200, f"POST /build answered {status} {error_message(resp)!r}"
        return _built_id(messages), _output(messages)

    first, out = build("one", 1700000000)
    assert CACHED not in out and "ran-one" in out, f"the first build of a new Dockerfile used a cache: {out!r}"
    again, out = build("one", 1800000000)
    assert (again, out.count(CACHED), "ran-one" in out) == (first, 4, False), (
        f"the same build again (only the files' times changed) gave {again} (first {first}) with "
        f"{out.count(CACHED)} cached steps; dockerd reuses all 4 steps after FROM (LABEL, ENV, COPY, RUN) and "
        f"the same image: {out!r}")
    changed, out = build("two", 1700000000)
    assert changed != first and out.count(CACHED) == 2 and "ran-two" in out, (
        f"after the COPY source changed the build gave {out.count(CACHED)} cached steps and {changed} (first "
        f"{first}); dockerd reuses LABEL and ENV only, then copies and runs again: {out!r}")
    fresh, out = build("one", 1700000000, nocache=1)
    assert fresh != first and CACHED not in out and "ran-one" in out, (
        f"with nocache=1 the build gave {fresh} (first {first}) with {out.count(CACHED)} cached steps: {out!r}")


@pytest.mark.req("api.build.cache")
def test_build_cache_per_stage(marks: Any, api: ApiClient, images: Images, containers: Containers) -> None:
    """A miss ends the reuse for the rest of its stage only: a later stage probes the cache again."""
    head = _head(containers, marks())
    dockerfile = (head.replace("\n", " AS one\n", 1) + "COPY note.txt /note.txt\n"
                  + head + "RUN echo stage-two\nCOPY --from=one /note.txt /copied\n")

    def build(note: str) -> str:
        repo, tag = images.new_ref("staged")
        status, messages, resp = _build(api, {"Dockerfile": dockerfile, "note.txt": note}, t=f"{repo}:{tag}")
        assert status == 200, f"POST /build answered {status} {error_message(resp)!r}"
        _built_id(messages)
        return _output(messages)

    build("one\n")
    out = build("two\n")
    # stage one: LABEL cached, COPY changed; stage two: LABEL and RUN cached, COPY --from changed
    assert out.count(CACHED) == 3 and "\nstage-two\n" not in out, (
        f"after stage one's COPY source changed the build used the cache {out.count(CACHED)} times; dockerd "
        f"reuses stage one's LABEL and, probing again in stage two, its LABEL and RUN (3): {out!r}")


@pytest.mark.req("api.build.from-scratch")
def test_build_from_scratch(marks: Any, api: ApiClient, images: Images, containers: Containers) -> None:
    """FROM scratch: no base image; the COPYed static busybox is the image's only layer."""
    mark = marks()
    repo, tag = images.new_ref("scratch")
    with open(find_busybox(), "rb") as fh:
        busybox = fh.read()
    dockerfile = ("FROM scratch\n"
                  f"LABEL {RUN_LABEL}={containers.run_id} org.conformance.build={mark}\n"
                  "COPY busybox /bin/busybox\n"
                  'CMD ["/bin/busybox", "echo", "from-scratch"]\n')
    status, messages, resp = _build(api, {"Dockerfile": dockerfile, "busybox": (busybox, 0o755)}, t=f"{repo}:{tag}")
    assert status == 200, f"POST /build answered {status} {error_message(resp)!r}"
    _built_id(messages)
    info = api.get(f"/images/{repo}:{tag}/json").json()
    layers = info["RootFS"].get("Layers") or []
    assert len(layers) == 1, f"an image built FROM scratch with one COPY has {len(layers)} layers; expected 1"
    env = info["Config"].get("Env") or []
    assert any(e.startswith("PATH=") for e in env), (
        f"the image's Env is {env}; a stage whose base has no PATH gets the default PATH (dockerd)")
    run = containers.run_output(None, image=f"{repo}:{tag}")
    assert run.stdout == "from-scratch\n", f"a container of the FROM scratch image printed {run.stdout!r} {run.stderr!r}"


@pytest.mark.req("api.build.prune")
def test_build_prune_keeps_classic_cache(marks: Any, api: ApiClient, images: Images, containers: Containers) -> None:
    """POST /build/prune prunes BuildKit's cache; the classic builder's cache is images and stays."""
    files = {"Dockerfile": _head(containers, marks()) + "RUN echo pruned-or-not > /f\n"}
    repo, tag = images.new_ref("prune")
    status, messages, resp = _build(api, files, t=f"{repo}:{tag}")
    assert status == 200, f"POST /build answered {status} {error_message(resp)!r}"
    first = _built_id(messages)
    # an `id` no cache record has: a build prune must not reach the host's BuildKit cache, which is not ours
    resp = api.post("/build/prune", params={"filters": {"until": ["10m"], "id": [f"^conformance-none-{marks()}$"]}})
    assert resp.status_code == 200, f"POST /build/prune answered {resp.status_code} {error_message(resp)!r}"
    body = resp.json()
    assert isinstance(body.get("SpaceReclaimed"), int), f"the build prune answered {body}; SpaceReclaimed is bytes"
    _, again, _ = _build(api, files, t=f"{repo}:{tag}")
    rebuilt = _built_id(again)
    assert rebuilt == first and CACHED in _output(again), (
        f"after POST /build/prune the same build gave {rebuilt} (before {first}) and {_output(again)!r}; the "
        "classic builder's cache (its images) must survive a build-cache prune")
    bad = api.post("/build/prune", params={"filters": {"conformance-nonsense": ["1"]}})
    assert bad.status_code == 400 and "conformance-nonsense" in (error_message(bad) or ""), (
        f"a build prune with an unknown filter answered {bad.status_code} {error_message(bad)!r}; dockerd answers "
        "400 naming it")


@pytest.mark.req("api.build.multi-stage")
def test_build_multi_stage(marks: Any, api: ApiClient, images: Images, containers: Containers) -> None:
    mark = marks()
    repo, tag = images.new_ref("built")
    head = _head(containers, mark)
    dockerfile = (head.replace("\n", " AS maker\n", 1) + "RUN mkdir /out && echo made-in-stage-one > /out/artifact\n"
                  + head + "COPY --from=maker /out/artifact /final/\n")
    status, messages, resp = _build(api, {"Dockerfile": dockerfile}, t=f"{repo}:{tag}")
    assert status == 200, f"POST /build answered {status} {error_message(resp)!r}"
    _built_id(messages)
    run = containers.run_output(["cat", "/final/artifact"], image=f"{repo}:{tag}")
    assert run.stdout == "made-in-stage-one\n", f"COPY --from=maker gave {run.stdout!r} {run.stderr!r}"
    out = containers.run_output(["ls", "/out"], image=f"{repo}:{tag}")
    assert out.exit_code != 0, f"the final stage has the first stage's /out: {out.stdout!r}"


@pytest.mark.req("api.build.onbuild")
def test_build_runs_onbuild_triggers(marks: Any, api: ApiClient, images: Images, containers: Containers) -> None:
    parent_repo, parent_tag = images.new_ref("parent")
    status, messages, resp = _build(api, {"Dockerfile": _head(containers, marks()) +
                                          "ONBUILD RUN echo triggered > /from-trigger\n"}, t=f"{parent_repo}:{parent_tag}")
    assert status == 200, f"POST /build answered {status} {error_message(resp)!r}"
    _built_id(messages)
    repo, tag = images.new_ref("child")
    status, messages, resp = _build(api, {"Dockerfile": f"FROM {parent_repo}:{parent_tag}\n"
                                          f"LABEL org.conformance.build={marks()}\n"}, t=f"{repo}:{tag}")
    assert status == 200, f"POST /build answered {status} {error_message(resp)!r}"
    _built_id(messages)
    run = containers.run_output(["cat", "/from-trigger"], image=f"{repo}:{tag}")
    assert run.stdout == "triggered\n", (
        f"the base image's ONBUILD RUN did not run in the child build: {run.stdout!r} {run.stderr!r}")
    child = api.get(f"/images/{repo}:{tag}/json").json()
    assert not (child["Config"].get("OnBuild") or []), (
        f"the child image still has the triggers it ran: {child['Config'].get('OnBuild')}")


@pytest.mark.req("api.build.run-failure")
def test_build_failing_run(marks: Any, api: ApiClient, images: Images, containers: Containers) -> None:
    mark = marks()
    repo, tag = images.new_ref("built")
    status, messages, resp = _build(api, {"Dockerfile": _head(containers, mark) + "RUN echo before; exit 3\n"},
                                    t=f"{repo}:{tag}")
    if status == 200:
        errors = [m for m in messages if "errorDetail" in m]
        assert errors, f"a RUN that exits 3 ended a build without an error: {messages[-3:]}"
        detail = errors[-1]["errorDetail"]
        assert detail.get("code") == 3 and "exit 3" in detail.get("message", ""), (
            f"the error is {detail}; dockerd names the command and its code 3")
    else:
        assert status >= 400 and error_message(resp), f"the failed build answered {status} without a message"
    assert api.get(f"/images/{repo}:{tag}/json").status_code == 404, "a failed build still tagged its image"
    assert not _leftovers(api, containers.run_id, mark), "the failed step's container is left (forcerm=1)"


@pytest.mark.req("api.build.bad-dockerfile")
@pytest.mark.parametrize("case", ["unknown-instruction", "missing-dockerfile"])
def test_build_bad_dockerfile(marks: Any, api: ApiClient, images: Images, containers: Containers,
                              case: str) -> None:
    repo, tag = images.new_ref("built")
    if case == "unknown-instruction":
        files, params, word = {"Dockerfile": _head(containers, marks()) + "FROBNICATE now\n"}, {}, "FROBNICATE"
    else:
        files, params, word = {"other": "x"}, {"dockerfile": "Nope.Dockerfile"}, "Nope.Dockerfile"
    status, messages, resp = _build(api, files, t=f"{repo}:{tag}", **params)
    if status == 200:
        errors = [m.get("error") or m["errorDetail"].get("message", "") for m in messages
                  if "errorDetail" in m or "error" in m]
        assert errors and word.lower() in errors[-1].lower(), f"the build of a bad Dockerfile ({case}) streamed {messages}"
    else:
        msg = error_message(resp) or ""
        assert status >= 400 and word.lower() in msg.lower(), (
            f"the build of a bad Dockerfile ({case}) answered {status} {msg!r}; expected an error naming {word!r}")
    assert api.get(f"/images/{repo}:{tag}/json").status_code == 404, f"the refused build ({case}) tagged an image"
