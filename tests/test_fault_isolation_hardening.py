"""The hardening and escape checks can fail: a proxy in front of dockerd weakens every container it
creates, the way a careless engine would, and the named checks must then FAIL.

Each fault rewrites the POST /containers/create body (Fault.on_create). A control run of the same
checks through the same proxy without a fault must pass, so it is the fault the checks catch.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest

from .faultproxy import Fault, FaultProxy

HARD = "conformance/isolation/test_hardening.py::"
ESC = "conformance/isolation/test_escapes.py::"


def _host_config(body: dict) -> dict:
    if not isinstance(body.get("HostConfig"), dict):
        body["HostConfig"] = {}
    return body["HostConfig"]


def _set(**fields: object) -> Callable[[dict], None]:
    def mutate(body: dict) -> None:
        _host_config(body).update(fields)
    return mutate


def _add_security_opt(opt: str) -> Callable[[dict], None]:
    def mutate(body: dict) -> None:
        hc = _host_config(body)
        hc["SecurityOpt"] = [*(hc.get("SecurityOpt") or []), opt]
    return mutate


def _drop_security_opt(prefix: str) -> Callable[[dict], None]:
    def mutate(body: dict) -> None:
        hc = _host_config(body)
        hc["SecurityOpt"] = [o for o in hc.get("SecurityOpt") or [] if not o.startswith(prefix)]
    return mutate


# (fault, checks that must then fail). On this host dockerd cannot start a container with every
# capability (see the privileged-all-caps deviation), so the first two also fail there by refusing to
# start; the checks named are those that catch them on a host where the container does start.
FAULTS: list[tuple[Fault, list[str]]] = [
    (Fault.on_create("every container privileged", _set(Privileged=True)),
     [HARD + "test_caps_default_set[CapEff]", HARD + "test_masked_paths[proc.timer_list]",
      ESC + "test_raw_memory[mem]", ESC + "test_mount[tmpfs]"]),
    (Fault.on_create("CapAdd ALL", _set(CapAdd=["ALL"])),
     [HARD + "test_caps_default_set[CapBnd]", ESC + "test_module_load[insmod]", ESC + "test_mount[proc]"]),
    (Fault.on_create("seccomp unconfined", _add_security_opt("seccomp=unconfined")),
     [HARD + "test_seccomp_default_filter", HARD + "test_seccomp_blocks[unshare-user]",
      HARD + "test_seccomp_blocks[swapon]", ESC + "test_userns_mount"]),
    (Fault.on_create("no masked paths", _set(MaskedPaths=[])),
     [HARD + "test_masked_paths[proc.timer_list]", HARD + "test_masked_paths[sys.firmware]",
      HARD + "test_masked_paths[proc.acpi]"]),
    (Fault.on_create("no read-only paths", _set(ReadonlyPaths=[])),
     [HARD + "test_readonly_paths[proc.sys]", ESC + "test_sysctl_write[kernel.core_pattern]",
      ESC + "test_sysctl_write[vm.drop_caches]"]),
    (Fault.on_create("no-new-privileges dropped", _drop_security_opt("no-new-privileges")),
     [HARD + "test_no_new_privs_set[no-new-privileges]", HARD + "test_exec_inherits_restrictions[root]"]),
]


def _outcome(run, check: str) -> str:
    return run.outcome(check.split("/")[-1])


@pytest.fixture
def proxy_path(tmp_path) -> str:
    return os.path.join(str(tmp_path), "proxy.sock")


def test_control_run_through_proxy_passes(dockerd_socket: str, proxy_path: str, suite) -> None:
    """Without a fault, every check used below passes through the proxy."""
    selection = sorted({check for _, checks in FAULTS for check in checks})
    with FaultProxy(proxy_path, dockerd_socket) as url:
        run = suite(url, selection)
    for check in selection:
        assert _outcome(run, check) == "passed", f"{check} did not pass through a clean proxy:\n{run.output[-3000:]}"


@pytest.mark.parametrize("fault,checks", FAULTS, ids=[f.name for f, _ in FAULTS])
def test_fault_is_caught(dockerd_socket: str, proxy_path: str, suite, fault: Fault, checks: list[str]) -> None:
    with FaultProxy(proxy_path, dockerd_socket, fault) as url:
        run = suite(url, checks)
    assert fault.hits > 0, f"the fault {fault.name!r} never matched a request: the selection does not exercise it"
    for check in checks:
        outcome = _outcome(run, check)
        assert outcome == "failed", (f"with fault {fault.name!r}, {check} ended {outcome!r}, expected 'failed':\n"
                                     f"{run.output[-2000:]}")
    assert run.returncode != 0, "a run with a failed check must exit non-zero"
