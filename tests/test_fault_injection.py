"""The harness can fail: a proxy in front of a real dockerd corrupts one thing, the right check fails.

Each fault changes one status, header or field; the run through the proxy must report the named
checks as failed. A control run through the same proxy with no fault must pass them, so it is
the fault, not the proxy, that the checks catch.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest

from .faultproxy import Fault, FaultProxy, Response

API = "conformance/api/"


def _body(value: bytes) -> Callable[[Response], None]:
    def rewrite(r: Response) -> None:
        r.body = value
    return rewrite


def _header(name: str, value: str | None) -> Callable[[Response], None]:
    def rewrite(r: Response) -> None:
        r.set_header(name, value)
    return rewrite


def _json_field(key: str, change: Callable[[object], object]) -> Callable[[Response], None]:
    def rewrite(r: Response) -> None:
        data = r.json()
        assert isinstance(data, dict)
        data[key] = change(data.get(key))
        r.set_json(data)
    return rewrite


def _status(code: int) -> Callable[[Response], None]:
    def rewrite(r: Response) -> None:
        r.status = code
    return rewrite


def _status_if(was: int, now: int) -> Callable[[Response], None]:
    def rewrite(r: Response) -> None:
        if r.status == was:
            r.status = now
    return rewrite


def _state_exit_code_off_by_one(r: Response) -> None:
    data = r.json()
    if isinstance(data, dict) and isinstance(data.get("State"), dict):
        data["State"]["ExitCode"] += 1
        r.set_json(data)


def _corrupt_first_frame(r: Response) -> None:
    # Byte 0 of a multiplexed frame names the stream (0, 1, 2); 9 is no stream at all.
    if r.body:
        r.body = b"\x09" + r.body[1:]


def _plain_text(r: Response) -> None:
    r.set_header("Content-Type", "text/plain; charset=utf-8")
    r.body = b"page not found\n"


# (fault, checks that must fail). Paths are regexes over the request path the harness sends.
FAULTS: list[tuple[Fault, list[str]]] = [
    (Fault("ping body is not OK", "GET", r"/_ping$", _body(b"KO")),
     [API + "test_system.py::test_ping_get"]),
    (Fault("ping without API-Version", "GET", r"/_ping$", _header("Api-Version", None)),
     [API + "test_system.py::test_ping_api_version_header[GET]"]),
    (Fault("ping cacheable", "GET", r"/_ping$", _header("Cache-Control", "max-age=60")),
     [API + "test_system.py::test_ping_no_cache"]),
    (Fault("experimental header not a boolean", "GET", r"/_ping$", _header("Docker-Experimental", "maybe")),
     [API + "test_system.py::test_ping_experimental_header"]),
    (Fault("version served as text/plain", "GET", r"/version$", _header("Content-Type", "text/plain")),
     [API + "test_system.py::test_version_content_type"]),
    (Fault("version Os of the wrong type", "GET", r"/version$", _json_field("Os", lambda _: 5)),
     [API + "test_system.py::test_version_schema"]),
    (Fault("info counts disagree", "GET", r"/info$", _json_field("Containers", lambda n: int(n) + 1)),
     [API + "test_system.py::test_info_container_counts"]),
    (Fault("info cgroup version unknown", "GET", r"/info$", _json_field("CgroupVersion", lambda _: "3")),
     [API + "test_system.py::test_info_cgroup_version"]),
    (Fault("info NCPU zero", "GET", r"/info$", _json_field("NCPU", lambda _: 0)),
     [API + "test_system.py::test_info_resources"]),
    (Fault("too-old version accepted", "GET", r"^/v1\.0/version$", _status(200)),
     [API + "test_system.py::test_version_too_old"]),
    (Fault("too-new error as text", "GET", r"^/v9\.99/version$", _plain_text),
     [API + "test_system.py::test_version_too_new_json"]),
    # Containers: one status, one field or one frame byte changed on the way back.
    (Fault("name conflict answered 500", "POST", r"/containers/create\?", _status_if(409, 500)),
     [API + "test_containers_create.py::test_create_name_conflict"]),
    (Fault("wait reports a different exit code", "POST", r"/containers/[^/]+/wait",
           _json_field("StatusCode", lambda n: int(n) + 1)),
     [API + "test_containers_lifecycle.py::test_wait_blocks_until_exit"]),
    (Fault("stop of a stopped container answers 204", "POST", r"/containers/[^/]+/stop", _status_if(304, 204)),
     [API + "test_containers_lifecycle.py::test_stop_already_stopped[exited]"]),
    (Fault("inspect reports a different exit code", "GET", r"/containers/[^/]+/json", _state_exit_code_off_by_one),
     [API + "test_containers_lifecycle.py::test_exit_code[42]"]),
    (Fault("log frame names no stream", "GET", r"/containers/[^/]+/logs", _corrupt_first_frame),
     [API + "test_logs.py::test_logs_multiplexed"]),
    (Fault("unknown path answered as text", "GET", r"^/no-such-endpoint$", _plain_text),
     [API + "test_system.py::test_unknown_path"]),
    # An engine that ignores HostConfig.Init, and one that inserts the init whatever the PID mode.
    (Fault.on_create("Init ignored", lambda body: (body.get("HostConfig") or {}).pop("Init", None)),
     [API + "test_init.py::test_init_is_pid1", API + "test_init.py::test_init_forwards_sigterm",
      API + "test_init.py::test_init_reaps_orphans"]),
    (Fault.on_create("Init also with PidMode host", lambda body: (body.get("HostConfig") or {}).pop("PidMode", None)
                     if (body.get("HostConfig") or {}).get("Init") else None),
     [API + "test_init.py::test_init_not_inserted_with_host_pid"]),
]


@pytest.fixture
def proxy_path(tmp_path) -> str:
    return os.path.join(str(tmp_path), "proxy.sock")


def test_control_run_through_proxy_passes(dockerd_socket: str, proxy_path: str, suite) -> None:
    """Without a fault, every check used below passes through the proxy."""
    selection = sorted({check for _, checks in FAULTS for check in checks})
    with FaultProxy(proxy_path, dockerd_socket) as url:
        run = suite(url, selection)
    for check in selection:
        assert run.outcome(check.split("/")[-1]) == "passed", f"{check} did not pass through a clean proxy:\n{run.output[-3000:]}"


@pytest.mark.parametrize("fault,checks", FAULTS, ids=[f.name for f, _ in FAULTS])
def test_fault_is_caught(dockerd_socket: str, proxy_path: str, suite, fault: Fault, checks: list[str]) -> None:
    with FaultProxy(proxy_path, dockerd_socket, fault) as url:
        run = suite(url, checks)
    assert fault.hits > 0, f"the fault {fault.name!r} never matched a request: the selection does not exercise it"
    for check in checks:
        outcome = run.outcome(check.split("/")[-1])
        assert outcome == "failed", f"with fault {fault.name!r}, {check} ended {outcome!r}, expected 'failed'"
    assert run.returncode != 0, "a run with a failed check must exit non-zero"


def test_scene_setting_violation_is_a_finding_not_a_failure(dockerd_socket: str, proxy_path: str, suite) -> None:
    """A schema violation met while setting the scene (the factory's inspect) is reported per operation
    under schema_findings; the exit-code check, whose subject is something else, still passes."""
    fault = Fault("inspect Name of the wrong type", "GET", r"/containers/[^/]+/json", _json_field("Name", lambda _: 5))
    check = API + "test_containers_lifecycle.py::test_exit_code[42]"
    with FaultProxy(proxy_path, dockerd_socket, fault) as url:
        run = suite(url, [check])
    assert fault.hits > 0, "the selection never inspected a container"
    assert run.outcome("test_exit_code[42]") == "passed", run.output[-2000:]
    findings = run.report["schema_findings"]
    assert "ContainerInspect" in findings and any("Name" in m for m in findings["ContainerInspect"]["examples"]), findings
