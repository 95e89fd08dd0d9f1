"""HostConfig.Init: an init process (dockerd: docker-init, i.e. tini) as PID 1 in front of the command.

Each check fails on an engine that ignores Init: PID 1 is then the command itself, a `sleep` there
ignores SIGTERM (the kernel delivers no default-action signal to a namespace's init) and nothing
reaps orphans re-parented to it.
"""

from __future__ import annotations

import pytest

from conformance.client import ApiClient, error_message
from conformance.resources import Containers

# Prints PID 1's argv (NUL-separated) on one line, then the shell's own PID and parent.
SHOW_PID1 = "cat /proc/1/cmdline; echo; echo pid=$$ ppid=$PPID"


@pytest.mark.req("api.lifecycle.init-pid1")
def test_init_is_pid1(containers: Containers) -> None:
    cmd = ["sh", "-c", SHOW_PID1]
    run = containers.run_output(cmd, HostConfig={"Init": True})
    assert run.exit_code == 0, f"the command exited {run.exit_code}: {run.stdout!r} {run.stderr!r}"
    first, _, rest = run.stdout.partition("\n")
    argv = first.split("\0")
    if argv and argv[-1] == "":
        argv.pop()
    assert argv[1:] == ["--", *cmd], (
        f"with HostConfig.Init true, PID 1 ran {argv!r}; dockerd runs ['/sbin/docker-init', '--', *command] "
        f"(an init in front of {cmd!r})")
    ids = dict(part.split("=", 1) for part in rest.split())
    assert ids.get("pid") != "1" and ids.get("ppid") == "1", (
        f"the command ran as pid={ids.get('pid')} ppid={ids.get('ppid')}; behind an init it is PID 1's child")
    info = containers.inspect(run.cid)
    assert (info["Path"], info["Args"]) == (cmd[0], cmd[1:]), (
        f"inspect shows Path {info['Path']!r} Args {info['Args']!r}: the init is not part of the container's "
        f"command there (dockerd shows {cmd[0]!r} {cmd[1:]!r})")
    assert info["HostConfig"].get("Init") is True, f"inspect HostConfig.Init is {info['HostConfig'].get('Init')!r}"


@pytest.mark.req("api.lifecycle.init-forwards-signals")
def test_init_forwards_sigterm(api: ApiClient, containers: Containers) -> None:
    cid = containers.run_long(HostConfig={"Init": True})
    resp = api.post(f"/containers/{cid}/kill", params={"signal": "TERM"})
    assert resp.status_code == 204, f"kill -s TERM answered {resp.status_code} {error_message(resp)!r}"
    state = containers.wait_for_state(cid, "Running", False, timeout=10)
    assert not state["Running"], (
        "10 s after SIGTERM the `sleep` still runs: the signal did not reach it (as PID 1 without a handler "
        "the kernel drops it; an init forwards it)")
    assert state["ExitCode"] == 143, f"ExitCode {state['ExitCode']} after SIGTERM; dockerd's init exits 128+15"


@pytest.mark.req("api.lifecycle.init-reaps-orphans")
def test_init_reaps_orphans(containers: Containers) -> None:
    # the subshell starts a short sleep and exits: the sleep is re-parented to PID 1, then exits;
    # the shell then becomes `sleep 3600`, which reaps nothing
    cid = containers.run(["sh", "-c", "(sleep 0.2 & echo $! > /tmp/orphan); exec sleep 3600"],
                         HostConfig={"Init": True})
    probe = ("p=$(cat /tmp/orphan) || exit 2; for i in $(seq 50); do [ -e /proc/$p ] || exit 0; sleep 0.1; done; "
             "cat /proc/$p/stat; exit 1")
    res = containers.exec(cid, ["sh", "-c", probe])
    assert res.exit_code == 0, (
        f"5 s after the orphan (PID {res.stdout.split(' ')[0] or '?'}) exited it is still in /proc "
        f"({res.stdout.strip()[:80]!r}{res.stderr.strip()[:80]!r}): nothing reaped it; with Init, PID 1 reaps")


@pytest.mark.req("api.lifecycle.init-host-pid")
def test_init_not_inserted_with_host_pid(api: ApiClient, containers: Containers) -> None:
    body = containers.config(["sh", "-c", "ls /sbin/docker-init 2>/dev/null; echo ppid=$PPID"],
                             HostConfig={"Init": True, "PidMode": "host"})
    resp = api.post("/containers/create", body)
    if resp.status_code == 201:
        cid = containers.adopt(resp.json()["Id"])
        resp = api.post(f"/containers/{cid}/start")
    if resp.status_code >= 400:  # refusing the combination keeps the init out of the host's PID namespace too
        assert error_message(resp), f"Init with PidMode host refused with {resp.status_code} but no message"
        return
    code = containers.wait(cid)
    out = containers.output(cid)
    assert code == 0, f"the command exited {code}: {out!r}"
    assert "docker-init" not in out, (
        f"with PidMode host the container has {out.splitlines()[0]!r}: dockerd inserts an init only "
        "where the container has a PID namespace of its own (podman refuses the combination)")

