"""The network checks can fail: a proxy in front of dockerd rewrites every container-create body the way
a careless engine would (wrong network mode, lost port bindings, lost aliases, a binding widened to every
address), and the named checks must then fail. A control run through the same proxy with no fault
passes them, so it is the fault, not the proxy, that they catch.
"""

from __future__ import annotations

import os

import pytest

from .faultproxy import Fault, FaultProxy

NET = "conformance/network/"


def _network_mode(mode: str):
    def mutate(body: dict) -> None:
        body.setdefault("HostConfig", {})["NetworkMode"] = mode
        body.pop("NetworkingConfig", None)  # the careless engine ignores the endpoints it was asked for
    return mutate


def _drop_port_bindings(body: dict) -> None:
    (body.get("HostConfig") or {}).pop("PortBindings", None)


def _drop_aliases(body: dict) -> None:
    for endpoint in ((body.get("NetworkingConfig") or {}).get("EndpointsConfig") or {}).values():
        if isinstance(endpoint, dict):
            endpoint.pop("Aliases", None)


def _bind_everywhere(body: dict) -> None:
    for bindings in ((body.get("HostConfig") or {}).get("PortBindings") or {}).values():
        for binding in bindings or []:
            binding["HostIp"] = "0.0.0.0"


# (fault, checks that must fail). Selections are small: each run starts a fresh suite process.
FAULTS: list[tuple[Fault, list[str]]] = [
    (Fault.on_create("NetworkMode host", _network_mode("host")),
     [NET + "test_bridge.py::test_eth0_address_in_subnet[default-bridge]",
      NET + "test_modes.py::test_none_has_only_loopback",
      NET + "test_modes.py::test_container_mode_same_netns"]),
    (Fault.on_create("NetworkMode none", _network_mode("none")),
     [NET + "test_bridge.py::test_default_route_via_gateway[user-network]",
      NET + "test_dns.py::test_hosts_has_own_hostname[default-bridge]",
      NET + "test_egress.py::test_container_reaches_outside[default-bridge]"]),
    (Fault.on_create("PortBindings dropped", _drop_port_bindings),
     [NET + "test_ports.py::test_publish_tcp_reachable[user-network]",
      NET + "test_ports.py::test_inspect_reports_binding"]),
    (Fault.on_create("network aliases dropped", _drop_aliases),
     [NET + "test_dns.py::test_alias_resolves[nslookup]",
      NET + "test_dns.py::test_alias_resolves[ping]",
      NET + "test_dns.py::test_alias_in_inspect"]),
    (Fault.on_create("HostIp 127.0.0.1 widened to 0.0.0.0", _bind_everywhere),
     [NET + "test_ports.py::test_inspect_reports_binding",
      NET + "test_ports.py::test_loopback_binding_listens_on_loopback_only",
      NET + "test_egress.py::test_loopback_binding_not_reachable_from_outside"]),
]


@pytest.fixture
def proxy_path(tmp_path) -> str:
    return os.path.join(str(tmp_path), "proxy.sock")


def test_control_run_through_proxy_passes(dockerd_socket: str, proxy_path: str, suite) -> None:
    """Without a fault, every check used below passes through the proxy."""
    selection = sorted({check for _, checks in FAULTS for check in checks})
    with FaultProxy(proxy_path, dockerd_socket) as url:
        run = suite(url, selection, "-n", "2")
    for check in selection:
        assert run.outcome(check.split("/")[-1]) == "passed", (
            f"{check} did not pass through a clean proxy:\n{run.output[-3000:]}")
    assert run.returncode == 0, f"the clean run exited {run.returncode}:\n{run.output[-2000:]}"


@pytest.mark.parametrize("fault,checks", FAULTS, ids=[f.name for f, _ in FAULTS])
def test_fault_is_caught(dockerd_socket: str, proxy_path: str, suite, fault: Fault, checks: list[str]) -> None:
    with FaultProxy(proxy_path, dockerd_socket, fault) as url:
        run = suite(url, checks)
    assert fault.hits > 0, f"the fault {fault.name!r} never matched a request: the selection does not exercise it"
    for check in checks:
        outcome = run.outcome(check.split("/")[-1])
        entry = next(c for c in run.report["checks"] if c["nodeid"].endswith(check.split("/")[-1]))
        assert outcome == "failed", (
            f"with fault {fault.name!r}, {check} ended {outcome!r}, expected 'failed': {entry}\n{run.output[-3000:]}")
    assert run.returncode != 0, "a run with a failed check must exit non-zero"
    assert "LEAK" not in run.output, f"the faulty run left objects behind:\n{run.output[-2000:]}"
