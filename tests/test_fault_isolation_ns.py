"""The namespace checks can fail: a proxy in front of dockerd rewrites every container's create body the
way a careless engine would (host namespaces instead of private ones, modes or options dropped), and the
named isolation checks must then fail. A control run through the same proxy without a fault passes them.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest

from .faultproxy import Fault, FaultProxy

NS = "conformance/isolation/test_namespaces.py::"
MNT = "conformance/isolation/test_ns_mounts.py::"


def _host_config(**values: object) -> Callable[[dict], None]:
    def mutate(body: dict) -> None:
        body.setdefault("HostConfig", {}).update(values)
    return mutate


def _drop_propagation(body: dict) -> None:
    """Binds `src:dst:<mode>` lose their mode, Mounts their BindOptions: every bind ends up rprivate."""
    hc = body.get("HostConfig") or {}
    hc["Binds"] = [":".join(b.split(":")[:2]) for b in hc.get("Binds") or []] or None
    for m in hc.get("Mounts") or []:
        m.pop("BindOptions", None)


def _ignore_pid_container_mode(body: dict) -> None:
    hc = body.get("HostConfig") or {}
    if str(hc.get("PidMode", "")).startswith("container:"):
        hc.pop("PidMode")


# (fault, checks that must fail)
FAULTS: list[tuple[Fault, list[str]]] = [
    (Fault.on_create("PidMode host", _host_config(PidMode="host")),
     [NS + "test_pid_first_process_is_1", NS + "test_pid_host_pid_not_visible",
      NS + "test_pid1_ignores_unhandled_signal[TERM]", NS + "test_own_namespace_by_default[pid]"]),
    (Fault.on_create("IpcMode host", _host_config(IpcMode="host")),
     [NS + "test_ipc_sysv_invisible_to_other_container", NS + "test_ipc_sysv_invisible_on_host",
      NS + "test_ipc_shm_size[default-64m]", NS + "test_own_namespace_by_default[ipc]"]),
    (Fault.on_create("UTSMode host", _host_config(UTSMode="host")),
     [NS + "test_uts_default_hostname", NS + "test_own_namespace_by_default[uts]"]),
    (Fault.on_create("NetworkMode host", _host_config(NetworkMode="host")),
     [NS + "test_net_none_only_lo", NS + "test_net_host_bridge_invisible", NS + "test_own_namespace_by_default[net]"]),
    (Fault.on_create("CgroupnsMode host", _host_config(CgroupnsMode="host")),
     [NS + "test_cgroup_private_root_paths", NS + "test_cgroup_private_own_namespace"]),
    (Fault.on_create("bind propagation dropped", _drop_propagation),
     [MNT + "test_mnt_propagation_host_to_container[Binds-rslave]",
      MNT + "test_mnt_propagation_host_to_container[Mounts-rshared]",
      MNT + "test_mnt_propagation_container_to_host[Binds-rshared]"]),
    (Fault.on_create("PidMode container:<id> ignored", _ignore_pid_container_mode),
     [NS + "test_pid_mode_container_shares", NS + "test_container_mode_shares_namespace[pid]"]),
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
        outcome = run.outcome(check.split("::")[-1])
        assert outcome == "passed", f"{check} ended {outcome!r} through a clean proxy:\n{run.output[-3000:]}"


@pytest.mark.parametrize("fault,checks", FAULTS, ids=[f.name for f, _ in FAULTS])
def test_fault_is_caught(dockerd_socket: str, proxy_path: str, suite, fault: Fault, checks: list[str]) -> None:
    with FaultProxy(proxy_path, dockerd_socket, fault) as url:
        run = suite(url, checks)
    assert fault.hits > 0, f"the fault {fault.name!r} never matched a request: the selection does not exercise it"
    for check in checks:
        outcome = run.outcome(check.split("::")[-1])
        assert outcome == "failed", (f"with fault {fault.name!r}, {check} ended {outcome!r}, expected 'failed'\n"
                                     f"{run.output[-2000:]}")
    assert run.returncode != 0, "a run with a failed check must exit non-zero"
