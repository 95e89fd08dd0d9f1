"""Fault injection: switch one isolation property off so the conformance suite can prove it notices.

    REFENGINE_ALLOW_FAULTS=1 REFENGINE_FAULTS=no-pidns,no-seccomp refengined ...

REFENGINE_FAULTS is honoured only with REFENGINE_ALLOW_FAULTS=1; set without it, every container start
is refused (FaultsRefused), so a stray variable can never silently weaken a real engine. Faults act in
the parent, on the config before it is sent to the init (the cgroup ones drop the Resources field
before it reaches the cgroups layer), so the init itself has no fault code.
"""

from __future__ import annotations

import os

# name -> what it disables
FAULTS: dict[str, str] = {
    "no-pidns": "no new PID namespace (the payload sees host PIDs and is not PID 1)",
    "no-utsns": "no new UTS namespace (hostname/domainname stay the host's; a configured hostname is dropped)",
    "no-ipcns": "no new IPC namespace (SysV IPC and POSIX mqueues are the host's)",
    "no-netns": "no new network namespace (the host's interfaces)",
    "no-mountns": "no new mount namespace: the container's mounts are made in the host's namespace; the root "
                  "changes with chroot, as pivot_root there would move every host process's root",
    "no-cgroupns": "no new cgroup namespace (host cgroup paths visible)",
    "no-userns": "no new user namespace even when a uid/gid mapping is configured (container root = host root)",
    "no-masked-paths": "masked paths are not masked (/proc/kcore, /proc/keys, /sys/firmware ... readable)",
    "no-readonly-paths": "read-only paths stay writable (/proc/sys, /proc/sysrq-trigger ...)",
    "no-readonly-rootfs": "a read-only rootfs stays writable",
    "no-seccomp": "no seccomp filter is loaded",
    "no-caps-drop": "capabilities are not reduced: the payload keeps every capability the engine holds",
    "no-nnp": "no_new_privileges is not set even when asked for",
    "no-user": "the configured user is ignored: the payload runs as root",
    "no-rlimits": "configured rlimits are not applied",
    "no-memory-limit": "the memory limits (memory, memory_swap, memory_reservation) are not applied",
    "no-pids-limit": "the pids limit is not applied",
    "no-cpu-limit": "the CPU limits (quota, period, shares) are not applied",
    "no-devices-cgroup": "the device cgroup allows every device",
}


class FaultsRefused(RuntimeError):
    pass


def active_faults(environ: os._Environ[str] | dict[str, str] | None = None) -> frozenset[str]:
    env = os.environ if environ is None else environ
    raw = env.get("REFENGINE_FAULTS", "").strip()
    if not raw:
        return frozenset()
    if env.get("REFENGINE_ALLOW_FAULTS") != "1":
        raise FaultsRefused("REFENGINE_FAULTS is set but REFENGINE_ALLOW_FAULTS is not 1: refusing to run "
                            "containers with isolation faults injected by accident")
    names = frozenset(n.strip() for n in raw.split(",") if n.strip())
    unknown = sorted(names - set(FAULTS))
    if unknown:
        raise FaultsRefused(f"unknown fault(s) in REFENGINE_FAULTS: {', '.join(unknown)} "
                            f"(known: {', '.join(sorted(FAULTS))})")
    return names


NS_FAULTS = {"no-pidns": "pid", "no-utsns": "uts", "no-ipcns": "ipc", "no-netns": "net", "no-mountns": "mnt",
             "no-cgroupns": "cgroup", "no-userns": "user"}
