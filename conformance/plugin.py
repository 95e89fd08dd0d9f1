"""The pytest plugin: target selection, requirement markers, honest outcomes, reports, leak check.

Loaded through the `pytest11` entry point. Checks live in conformance/<area>/ and each carries
`@pytest.mark.req("<id>")` naming a catalogue entry; area and source markers come from there.
"""

from __future__ import annotations

import fnmatch
import os
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from . import deviations
from .capabilities import Capabilities, TargetUnreachable, negotiate, probe_capabilities
from .catalogue import AREAS, CatalogueError, Requirement, api_tuple, load_catalogue
from .client import ApiClient, Recorder
from .embedded import EmbeddedDaemon, EmbeddedError
from .host import Host, HostUnavailable, open_host
from .probe_image import ProbeImages, build_probe_tar, probe_specs
from .report.build import ReportBuilder
from .resources import RUN_LABEL, Containers, Images, Names, Networks, Volumes
from .schema import EngineSchema, SchemaNotFound, find_swagger
from .target import Target, TargetError, TLSConfig, parse_target, target_from_environment

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
STATE_KEY = pytest.StashKey["ConformanceState"]()


class ConformanceState:
    """Per-process state of a run (controller or xdist worker)."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.catalogue: dict[str, Requirement] = load_catalogue()
        self.target: Target | None = None
        self.target_error: str | None = None
        tls = None
        opt = config.option
        if opt.conf_tlscacert or opt.conf_tlscert or opt.conf_tlsverify:
            tls = TLSConfig(cacert=opt.conf_tlscacert, cert=opt.conf_tlscert, key=opt.conf_tlskey,
                            verify=bool(opt.conf_tlsverify or opt.conf_tlscacert))
        try:
            self.target = target_from_environment(opt.conf_target, tls)
        except TargetError as exc:
            self.target_error = str(exc)
        workerinput = getattr(config, "workerinput", None)
        if self.target is None and (workerinput or {}).get("conformance_embedded_url"):
            self.target = parse_target(workerinput["conformance_embedded_url"])
        self.embedded: EmbeddedDaemon | None = None
        self.is_worker = workerinput is not None
        self.run_id: str = (workerinput or {}).get("conformance_run_id") or uuid.uuid4().hex[:8]
        self.worker: str = (workerinput or {}).get("workerid", "gw0")
        self.disabled: list[str] = list(opt.conf_disable or [])
        self._caps: Capabilities | None = None
        self._schema: EngineSchema | None = None
        self.report = ReportBuilder(self.catalogue)
        self.conformance_items = 0

    def caps(self) -> Capabilities:
        if self._caps is None:
            if self.target is None:
                raise pytest.UsageError(self.target_error or no_target_message())
            self._caps = probe_capabilities(self.target)
        return self._caps

    def schema(self) -> EngineSchema:
        if self._schema is None:
            self._schema = EngineSchema(find_swagger(self.config.option.conf_swagger))
        return self._schema


def no_target_message() -> str:
    return ("no target daemon: pass --target unix:///path/to/daemon.sock (or tcp://host:port with TLS flags), "
            "or set CONFORMANCE_TARGET or DOCKER_HOST; with none of them the suite starts refengine itself.")


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("conformance", "Docker Engine API conformance")
    g.addoption("--target", dest="conf_target", help="daemon URL: unix:///path or tcp://host:port (default: $CONFORMANCE_TARGET, then $DOCKER_HOST)")
    g.addoption("--tlscacert", dest="conf_tlscacert", help="trust certs signed only by this CA")
    g.addoption("--tlscert", dest="conf_tlscert", help="client certificate")
    g.addoption("--tlskey", dest="conf_tlskey", help="client key")
    g.addoption("--tlsverify", dest="conf_tlsverify", action="store_true", help="use TLS and verify the daemon")
    g.addoption("--swagger", dest="conf_swagger", help="path to the Engine API swagger.yaml")
    g.addoption("--report-dir", dest="conf_report_dir", default="reports", help="where JSON/HTML reports go")
    g.addoption("--report-name", dest="conf_report_name", help="report file stem (default: product-version)")
    g.addoption("--disable", dest="conf_disable", action="append", metavar="PATTERN",
                help="disable requirements matching this glob (outcome: disabled); repeatable")
    g.addoption("--repeat", dest="conf_repeat", type=int, default=1, metavar="N",
                help="run every check N times to measure flakiness")


def pytest_configure(config: pytest.Config) -> None:
    try:
        state = ConformanceState(config)
    except CatalogueError as exc:
        raise pytest.UsageError(f"requirement catalogue: {exc}") from None
    config.stash[STATE_KEY] = state
    if not state.is_worker:
        if state.target is None and state.target_error is None and _selects_checks(config):
            state.embedded = EmbeddedDaemon()
            try:
                state.target = state.embedded.start()
            except EmbeddedError as exc:
                state.embedded = None
                raise pytest.UsageError(f"no target was named, and the embedded refengine failed: {exc}") from None
        config.pluginmanager.register(ControllerHooks(state), "conformance-controller")
    if config.option.conf_repeat < 1:
        raise pytest.UsageError("--repeat must be at least 1")


def pytest_configure_node(node: Any) -> None:
    """xdist: every worker uses the controller's run id (one leak check covers all) and its embedded daemon."""
    state: ConformanceState = node.config.stash[STATE_KEY]
    node.workerinput["conformance_run_id"] = state.run_id
    if state.embedded is not None:
        node.workerinput["conformance_embedded_url"] = state.embedded.url


def pytest_unconfigure(config: pytest.Config) -> None:
    state = config.stash.get(STATE_KEY, None)
    if state is not None and state.embedded is not None:
        state.embedded.stop()


def _selects_checks(config: pytest.Config) -> bool:
    """Whether the command line asks for any part of the conformance suite (not only the self-tests)."""
    for arg in config.args:
        path = os.path.abspath(os.path.join(str(config.invocation_params.dir), arg.split("::")[0]))
        if path.startswith(PACKAGE_DIR) or PACKAGE_DIR.startswith(path + os.sep):
            return True
    return False


def _is_check(item: pytest.Item) -> bool:
    path = str(item.path)
    return any(path.startswith(os.path.join(PACKAGE_DIR, area) + os.sep) for area in AREAS)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    count = metafunc.config.option.conf_repeat
    if count > 1 and str(metafunc.definition.path).startswith(PACKAGE_DIR):
        metafunc.fixturenames.append("conformance_repeat")
        metafunc.parametrize("conformance_repeat", range(count), ids=[f"rep{i}" for i in range(count)])


@pytest.fixture
def conformance_repeat(request: pytest.FixtureRequest) -> int:
    return int(getattr(request, "param", 0))


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    state: ConformanceState = config.stash[STATE_KEY]
    problems = []
    for item in items:
        if not _is_check(item):
            continue
        state.conformance_items += 1
        marker = item.get_closest_marker("req")
        if marker is None or not marker.args:
            problems.append(f"{item.nodeid}: no @pytest.mark.req('<requirement id>')")
            continue
        req = state.catalogue.get(marker.args[0])
        if req is None:
            problems.append(f"{item.nodeid}: requirement {marker.args[0]!r} is not in the catalogue")
            continue
        if not str(item.path).startswith(os.path.join(PACKAGE_DIR, req.area) + os.sep):
            problems.append(f"{item.nodeid}: requirement {req.id} belongs to area {req.area}")
        item.add_marker(getattr(pytest.mark, req.area))
        item.add_marker(getattr(pytest.mark, req.source.replace("-", "_")))
        item.stash[REQ_KEY] = req
    if problems:
        raise pytest.UsageError("conformance checks without a valid requirement:\n  " + "\n  ".join(problems))
    if state.conformance_items and state.target is None:
        raise pytest.UsageError(state.target_error or no_target_message())


REQ_KEY = pytest.StashKey[Requirement]()
RECORDER_KEY = pytest.StashKey[Recorder]()


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def conformance_state(pytestconfig: pytest.Config) -> ConformanceState:
    return pytestconfig.stash[STATE_KEY]


@pytest.fixture(scope="session")
def target(conformance_state: ConformanceState) -> Target:
    if conformance_state.target is None:
        pytest.fail(conformance_state.target_error or no_target_message(), pytrace=False)
    return conformance_state.target


@pytest.fixture(scope="session")
def capabilities(conformance_state: ConformanceState) -> Capabilities:
    try:
        return conformance_state.caps()
    except TargetUnreachable as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def engine_schema(conformance_state: ConformanceState) -> EngineSchema:
    try:
        return conformance_state.schema()
    except SchemaNotFound as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def _session_api(target: Target, capabilities: Capabilities, engine_schema: EngineSchema) -> Iterator[ApiClient]:
    client = ApiClient(target, version=negotiate(capabilities.api_version), schema=engine_schema,
                       allowance=deviations.schema_allowance(capabilities.product))
    yield client
    client.close()


@pytest.fixture
def api(_session_api: ApiClient, request: pytest.FixtureRequest) -> ApiClient:
    """The Engine API client; what it sends and receives goes into this check's transcript."""
    return _session_api


@pytest.fixture(scope="session")
def run_id(conformance_state: ConformanceState) -> str:
    return conformance_state.run_id


@pytest.fixture(scope="session")
def names(conformance_state: ConformanceState) -> Names:
    return Names(conformance_state.run_id, conformance_state.worker)


@pytest.fixture(scope="session")
def probe(_session_api: ApiClient, capabilities: Capabilities, run_id: str) -> ProbeImages:
    """The busybox probe images, loaded once per worker (the controller removes them at the end)."""
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(capabilities.arch, capabilities.arch or "amd64")
    images, data = build_probe_tar(run_id, arch)
    resp = _session_api.post("/images/load", data=data, headers={"Content-Type": "application/x-tar"},
                             params={"quiet": 1}, timeout=300)
    if resp.status_code != 200:
        pytest.fail(f"loading the probe image failed: {resp.status_code} {resp.text[:500]}", pytrace=False)
    return images


@pytest.fixture
def containers(_session_api: ApiClient, probe: ProbeImages, run_id: str, networks: Networks,
               volumes: Volumes) -> Iterator[Containers]:
    """Containers are set up after (so torn down before) the networks and volumes they may use."""
    factory = Containers(_session_api, probe, run_id)
    yield factory
    factory.cleanup()


@pytest.fixture
def volumes(_session_api: ApiClient, names: Names, run_id: str) -> Iterator[Volumes]:
    factory = Volumes(_session_api, names, run_id)
    yield factory
    factory.cleanup()


@pytest.fixture
def networks(_session_api: ApiClient, names: Names, run_id: str) -> Iterator[Networks]:
    factory = Networks(_session_api, names, run_id)
    yield factory
    factory.cleanup()


@pytest.fixture
def images(_session_api: ApiClient, names: Names) -> Iterator[Images]:
    factory = Images(_session_api, names)
    yield factory
    factory.cleanup()


@pytest.fixture(scope="session")
def _host_or_reason(_session_api: ApiClient, target: Target, probe: ProbeImages, run_id: str) -> Host | str:
    """Probe once per worker whether this host can see the target's containers (see conformance.host)."""
    visible = False
    if target.is_local and os.geteuid() == 0:
        factory = Containers(_session_api, probe, run_id)
        try:
            cid = factory.run(["sleep", "30"])
            pid = factory.inspect(cid)["State"].get("Pid") or 0
            # Right after start the PID may still be the runtime's init, not yet exec'd into `sleep`.
            deadline = time.monotonic() + 10
            while pid > 0 and not visible and time.monotonic() < deadline:
                try:
                    with open(f"/proc/{pid}/cmdline", "rb") as fh:
                        visible = fh.read().split(b"\0")[0].endswith(b"sleep")
                except OSError:
                    break
                if not visible:
                    time.sleep(0.05)
        finally:
            factory.cleanup()
    try:
        return open_host(target.is_local, visible)
    except HostUnavailable as exc:
        return str(exc)


@pytest.fixture
def hostside(_host_or_reason: Host | str) -> Host:
    """Host-side facts about the target's containers; skips with the reason when they can't be read.

    (Not named `host`: testinfra's pytest plugin owns that fixture name.)
    """
    if isinstance(_host_or_reason, str):
        pytest.skip(f"host-side check: {_host_or_reason}")
    return _host_or_reason


@pytest.fixture(autouse=True)
def _conformance_gate(request: pytest.FixtureRequest) -> Iterator[None]:
    """Disabled, too-old-API and documented-deviation handling, before any fixture touches the daemon."""
    item = request.node
    req = item.stash.get(REQ_KEY, None)
    if req is None:
        yield
        return
    state: ConformanceState = request.config.stash[STATE_KEY]
    for pattern in state.disabled:
        if fnmatch.fnmatchcase(req.id, pattern):
            pytest.skip(f"disabled: {req.id} matches --disable {pattern}")
    caps = request.getfixturevalue("capabilities")
    if req.min_api and api_tuple(caps.api_version) < api_tuple(req.min_api):
        pytest.skip(f"target API {caps.api_version} is older than the {req.min_api} this requirement needs")
    for marker in item.iter_markers("deviation"):
        # optional conditions: a deviation seen only with one cgroup version or cgroup driver of the product
        conditions = {k: marker.kwargs[k] for k in ("cgroup_version", "cgroup_driver") if k in marker.kwargs}
        if any(str(getattr(caps, k)) != str(v) for k, v in conditions.items()):
            continue
        if marker.args and marker.args[0] == caps.product:
            item.add_marker(pytest.mark.xfail(reason=f"documented {caps.product} deviation: "
                                              f"{marker.kwargs.get('reason', '')}", strict=True))
    api: ApiClient = request.getfixturevalue("_session_api")
    api.recorder.reset()
    item.stash[RECORDER_KEY] = api.recorder
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    req = item.stash.get(REQ_KEY, None)
    if req is None:
        return
    report.user_properties.append(("conformance.requirement", req.id))
    recorder = item.stash.get(RECORDER_KEY, None)
    if recorder is None:
        return
    if report.failed:
        report.user_properties.append(("conformance.transcript", [e.as_dict() for e in recorder.exchanges[-12:]]))
    if report.when == "teardown":
        report.user_properties.append(("conformance.operations", sorted(recorder.operations)))
        report.user_properties.append(("conformance.validated_2xx", recorder.validated_2xx))
        report.user_properties.append(("conformance.forgiven", dict(recorder.forgiven)))
        report.user_properties.append(("conformance.findings", {k: list(v) for k, v in recorder.findings.items()}))


# ---------------------------------------------------------------- controller side: report and cleanup


class ControllerHooks:
    """Hooks that only the controlling process (or a run without xdist) acts on."""

    def __init__(self, state: ConformanceState) -> None:
        self.state = state
        self.volumes_before: set[str] | None = None

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        self.state.report.started = time.time()
        # Fail before xdist workers start: a UsageError raised inside a worker only shows as a crash.
        if self.state.target is None and _selects_checks(session.config):
            raise pytest.UsageError(self.state.target_error or no_target_message())
        self.volumes_before = volume_names(self.state.target) if self.state.target is not None else None

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.state.report.add(report)

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        state = self.state
        if state.target is None or not state.report.has_checks:
            return
        caps: Capabilities | None = None
        try:
            caps = state.caps()
            leaks = remove_run_objects(state.target, state.run_id)
        except TargetUnreachable as exc:
            leaks = [f"leak check impossible: {exc}"]
        if leaks:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
        after = volume_names(state.target)
        strays = sorted(after - self.volumes_before) if after is not None and self.volumes_before is not None else []
        try:
            schema = state.schema()
        except SchemaNotFound:
            schema = None
        opt = session.config.option
        paths = state.report.write(directory=opt.conf_report_dir, name=opt.conf_report_name,
                                   target=state.target, caps=caps, schema=schema, run_id=state.run_id,
                                   leaks=leaks, repeat=opt.conf_repeat, unattributed=strays)
        tr = session.config.pluginmanager.get_plugin("terminalreporter")
        if tr is not None:
            tr.write_line("")
            for line in state.report.summary_lines():
                tr.write_line(line)
            for leak in leaks:
                if leak.startswith("leak check impossible"):
                    tr.write_line(f"LEAK CHECK: {leak}", red=True)
                else:
                    tr.write_line(f"LEAK (removed now; a check did not clean up): {leak}", red=True)
            if strays:
                tr.write_line(f"conformance: {len(strays)} volume(s) appeared during the run without its label "
                              f"(not removed; maybe anonymous volumes a check left): {', '.join(strays[:10])}",
                              yellow=True)
            for path in paths:
                tr.write_line(f"conformance report: {path}")


def volume_names(target: Target) -> set[str] | None:
    """Every volume the target has now, or None if it cannot tell."""
    client = ApiClient(target)
    try:
        resp = client.get("/volumes")
        if resp.status_code != 200:
            return None
        return {v["Name"] for v in (resp.json() or {}).get("Volumes") or [] if isinstance(v, dict) and "Name" in v}
    except (TargetUnreachable, ValueError, OSError):  # requests' errors are OSErrors: the run reports it elsewhere
        return None
    finally:
        client.close()


def remove_run_objects(target: Target, run_id: str) -> list[str]:
    """Remove the run's probe images, then anything else of this run still there: each is a leak."""
    client = ApiClient(target)
    leaks: list[str] = []
    names, _ = probe_specs(run_id)
    def listing(path: str, **params: object) -> list | dict:
        resp = client.get(path, params=params or None)
        if resp.status_code != 200:
            leaks.append(f"leak check impossible: GET {path} answered {resp.status_code} {resp.text[:120]!r}")
            return []
        return resp.json() or []

    try:
        label = {"label": [f"{RUN_LABEL}={run_id}"]}
        for c in listing("/containers/json", all=1, filters=label):
            leaks.append(f"container {c['Id'][:12]} {c.get('Names')}")
            client.delete(f"/containers/{c['Id']}", params={"force": 1, "v": 1})
        for n in listing("/networks", filters=label):
            leaks.append(f"network {n['Id'][:12]} {n.get('Name')}")
            client.delete(f"/networks/{n['Id']}")
        for v in (listing("/volumes", filters=label) or {}).get("Volumes") or []:
            leaks.append(f"volume {v['Name']}")
            client.delete(f"/volumes/{v['Name']}", params={"force": 1})
        for ref in names.all:
            client.delete(f"/images/{ref}", params={"force": 1})
        for img in listing("/images/json"):
            tags = [t for t in img.get("RepoTags") or [] if f"-{run_id}-" in t or f"-{run_id}:" in t]
            if tags:
                leaks.append(f"image {img['Id'][7:19]} {tags}")
                for t in tags:
                    client.delete(f"/images/{t}", params={"force": 1})
    finally:
        client.close()
    return leaks

