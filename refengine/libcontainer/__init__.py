"""refengine's libcontainer: namespaces, rootfs, capabilities, seccomp, cgroups, the container init.

The bottom of the engine, in the spirit of runc's libcontainer: kernel-facing code only, no daemon
logic. Public API (imported lazily: the container init imports this package too and must start fast):

    Container, ContainerConfig, ExecConfig, NamespaceSpec, Mount, IDMap, Rlimit, Device,
    Process, StartError, ConfigError, active_faults, FAULTS, shutdown_forkserver, cgroups (subpackage)

Modules: config (the records), container (config -> init dict with faults applied, cgroup, start /
exec / signal / stop / destroy), process (parent side of the init protocol, Process, fork server
handle), init (the container init: namespaces, rootfs, user, caps, seccomp, exec), forkserver
(pre-warmed init), rootfs, capabilities, seccomp, userns, syscalls (ctypes), faults.
"""

from __future__ import annotations

_EXPORTS = {
    "Container": "container", "build_init": "container", "unmount_under": "container",
    "RlimitWarning": "container",
    "ContainerConfig": "config", "ExecConfig": "config", "NamespaceSpec": "config", "Mount": "config",
    "IDMap": "config", "Rlimit": "config", "Device": "config", "ConfigError": "config",
    "default_mounts": "config", "default_namespaces": "config",
    "DOCKER_MASKED_PATHS": "config", "DOCKER_READONLY_PATHS": "config",
    "Process": "process", "StartError": "process", "shutdown_forkserver": "process",
    "active_faults": "faults", "FAULTS": "faults", "FaultsRefused": "faults",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> object:
    # no importlib/typing here: the init imports this package and pays for every import at each start
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(__import__(f"{__name__}.{module}", fromlist=[name]), name)
    globals()[name] = value
    return value
