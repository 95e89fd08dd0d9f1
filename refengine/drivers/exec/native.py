"""The native exec driver: a container record's HostConfig → a libcontainer ContainerConfig.

Everything Docker-specific about *how* to run (PidMode, IpcMode, Binds, SecurityOpt, Ulimits ...)
is translated here; libcontainer below knows only namespaces, mounts, limits and the process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from ...libcontainer import cgroups
from ...libcontainer.config import (
    ConfigError,
    ContainerConfig,
    Device,
    ExecConfig,
    Mount,
    NamespaceSpec,
    Rlimit,
    default_mounts,
)


@dataclass
class RunSpec:
    """What the daemon decided for one start: the rootfs, where named volumes live, the files it wrote."""

    rootfs: str
    volume_dir: callable  # name -> host directory of a named volume  # type: ignore[valid-type]
    etc_files: dict[str, str] = field(default_factory=dict)  # container path -> host file (hosts, hostname...)
    peer_pid: callable = lambda ref: 0  # container ref -> PID (container:X modes)  # type: ignore[valid-type]
    anonymous: list[tuple[str, str]] = field(default_factory=list)  # (destination, host dir) of anonymous volumes


def _namespaces(hc: dict[str, Any], spec: RunSpec) -> list[NamespaceSpec]:
    out = [NamespaceSpec("mnt")]

    def mode(key: str, kind: str, private: tuple[str, ...]) -> None:
        value = hc.get(key) or ""
        if value == "host":
            return
        if value.startswith("container:"):
            pid = spec.peer_pid(value.split(":", 1)[1])
            out.append(NamespaceSpec(kind, f"/proc/{pid}/ns/{kind}"))
            return
        if value in private:
            out.append(NamespaceSpec(kind))
            return
        raise ConfigError(f"invalid {key}: {value!r}")

    mode("PidMode", "pid", ("",))
    mode("IpcMode", "ipc", ("", "private", "shareable", "none"))
    mode("UTSMode", "uts", ("",))
    net = hc.get("NetworkMode") or "default"
    if net != "host":
        if net.startswith("container:"):
            pid = spec.peer_pid(net.split(":", 1)[1])
            out.append(NamespaceSpec("net", f"/proc/{pid}/ns/net"))
        else:
            out.append(NamespaceSpec("net"))
    if (hc.get("CgroupnsMode") or "host") == "private":
        out.append(NamespaceSpec("cgroup"))
    return out


def _binds(hc: dict[str, Any], spec: RunSpec) -> list[Mount]:
    mounts = []
    for bind in hc.get("Binds") or []:
        parts = bind.split(":")
        if len(parts) < 2:
            raise ConfigError(f"invalid volume specification: '{bind}'")
        source, dest = parts[0], parts[1]
        opts = parts[2].split(",") if len(parts) > 2 else []
        host = source if source.startswith("/") else spec.volume_dir(source)
        if source.startswith("/") and not os.path.exists(host):
            os.makedirs(host, exist_ok=True)  # dockerd creates a missing bind source directory
        options = ["rbind"] + (["ro"] if "ro" in opts else [])
        options += [o for o in opts if o in ("rprivate", "private", "rslave", "slave", "rshared", "shared")]
        mounts.append(Mount(dest, "bind", host, options))
    for m in hc.get("Mounts") or []:
        kind = m.get("Type", "volume")
        target = m.get("Target", "")
        ro = ["ro"] if m.get("ReadOnly") else []
        if kind == "bind":
            prop = (m.get("BindOptions") or {}).get("Propagation")
            mounts.append(Mount(target, "bind", m.get("Source"), ["rbind", *ro, *([prop] if prop else [])]))
        elif kind == "volume":
            mounts.append(Mount(target, "bind", spec.volume_dir(m.get("Source") or ""), ["rbind", *ro]))
        elif kind == "tmpfs":
            opts = m.get("TmpfsOptions") or {}
            data = [f"size={opts['SizeBytes']}"] if opts.get("SizeBytes") else []
            mounts.append(Mount(target, "tmpfs", "tmpfs", ["nosuid", "nodev", *ro, *data]))
        else:
            raise ConfigError(f"mount type {kind!r} is not supported")
    for dest, opts in (hc.get("Tmpfs") or {}).items():
        mounts.append(Mount(dest, "tmpfs", "tmpfs", ["nosuid", "nodev", *[o for o in opts.split(",") if o]]))
    return mounts


def _devices(hc: dict[str, Any]) -> list[Device]:
    out = []
    for d in hc.get("Devices") or []:
        st = os.stat(d["PathOnHost"])
        import stat as statmod
        kind = "c" if statmod.S_ISCHR(st.st_mode) else "b"
        out.append(Device(d.get("PathInContainer") or d["PathOnHost"], kind, os.major(st.st_rdev),
                          os.minor(st.st_rdev)))
    return out


def container_config(cid: str, config: dict[str, Any], hc: dict[str, Any], spec: RunSpec) -> ContainerConfig:
    argv = (config.get("Entrypoint") or []) + (config.get("Cmd") or [])
    security = hc.get("SecurityOpt") or []
    seccomp: str | None = "default"
    nnp = False
    for opt in security:
        key, _, value = opt.replace(":", "=", 1).partition("=") if "=" in opt or ":" in opt else (opt, "", "")
        if key == "seccomp":
            seccomp = None if value == "unconfined" else value
        elif key == "no-new-privileges":
            nnp = value in ("", "true")
    mounts = default_mounts(hc.get("ShmSize") or 64 << 20, ipc_none=hc.get("IpcMode") == "none")
    mounts += [Mount(path, "bind", host, ["rbind"]) for path, host in spec.etc_files.items()]
    mounts += [Mount(dest, "bind", host, ["rbind"]) for dest, host in spec.anonymous]
    mounts += _binds(hc, spec)
    return ContainerConfig(
        rootfs=spec.rootfs, args=argv, id=cid, env=list(config.get("Env") or []),
        cwd=config.get("WorkingDir") or "/", user=config.get("User") or "",
        additional_groups=list(hc.get("GroupAdd") or []), hostname=config.get("Hostname") or None,
        domainname=config.get("Domainname") or None, namespaces=_namespaces(hc, spec), mounts=mounts,
        devices=_devices(hc), cgroup_name=cid, resources=cgroups.resources_from_host_config(hc),
        privileged=bool(hc.get("Privileged")), cap_add=list(hc.get("CapAdd") or []),
        cap_drop=list(hc.get("CapDrop") or []), seccomp=seccomp, no_new_privileges=nnp,
        masked_paths=hc.get("MaskedPaths"), readonly_paths=hc.get("ReadonlyPaths"),
        readonly_rootfs=bool(hc.get("ReadonlyRootfs")),
        rlimits=[Rlimit(u["Name"], u["Soft"], u["Hard"]) for u in hc.get("Ulimits") or []],
        sysctl=dict(hc.get("Sysctls") or {}), oom_score_adj=hc.get("OomScoreAdj") or None,
        tty=bool(config.get("Tty")))


def exec_config(body: dict[str, Any]) -> ExecConfig:
    return ExecConfig(args=list(body["Cmd"]), env=body.get("Env") or None, cwd=body.get("WorkingDir") or None,
                      user=body.get("User") or None, tty=bool(body.get("Tty")),
                      privileged=bool(body.get("Privileged")))
