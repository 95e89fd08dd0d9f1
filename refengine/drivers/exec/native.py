"""The native exec driver: a container record's HostConfig → a libcontainer ContainerConfig.

Everything Docker-specific about *how* to run (PidMode, IpcMode, Binds, SecurityOpt, Ulimits ...)
is translated here; libcontainer below knows only namespaces, mounts, limits and the process.
"""

from __future__ import annotations

import os
import shutil
import stat as statmod
from dataclasses import dataclass, field
from typing import Any

from ...libcontainer import cgroups
from ...libcontainer import propagation as propagation_mod
from ...libcontainer.config import (
    ConfigError,
    ContainerConfig,
    Device,
    ExecConfig,
    HostSetupError,
    Mount,
    NamespaceSpec,
    Rlimit,
    default_mounts,
)

IPC_MODES = ("", "private", "shareable", "none", "host")
TMPFS_DEFAULTS = ("nosuid", "nodev", "noexec")  # dockerd's for Tmpfs and Mounts of type tmpfs
PROPAGATIONS = ("rprivate", "private", "rslave", "slave", "rshared", "shared")
INIT_BINARY = "docker-init"  # dockerd's DefaultInitBinary, looked up in PATH (Debian: tini-static)
INIT_DEST = "/sbin/docker-init"  # where dockerd binds it in the container


@dataclass(frozen=True)
class InitOptions:
    """The daemon's init settings: `--init` (containers whose HostConfig.Init is null get one too)
    and `--init-path` (else docker-init from PATH)."""

    default: bool = False
    path: str | None = None

    def binary(self) -> str:
        """The host file to bind on INIT_DEST; found at start, as dockerd looks it up then."""
        path = self.path or shutil.which(INIT_BINARY)
        if not path:
            raise HostSetupError(f'exec: "{INIT_BINARY}": executable file not found in $PATH')
        if not os.path.isfile(path):
            raise HostSetupError(f"init binary {path}: no such file")
        return os.path.realpath(path)  # the bind source: a symlink would be resolved by mount anyway


def wants_init(hc: dict[str, Any], default: bool) -> bool:
    """HostConfig.Init (null: the daemon's default), only where the container has a PID namespace of
    its own: with PidMode host or container:X dockerd runs the command as given."""
    pid_mode = hc.get("PidMode") or ""
    init = hc.get("Init")
    wanted = default if init is None else bool(init)
    return wanted and pid_mode != "host" and not pid_mode.startswith("container:")


@dataclass
class RunSpec:
    """What the daemon decided for one start: the rootfs, where named volumes live, the files it wrote."""

    rootfs: str
    volume_dir: callable  # name -> host directory of a named volume  # type: ignore[valid-type]
    etc_files: dict[str, str] = field(default_factory=dict)  # container path -> host file (hosts, hostname...)
    peer_pid: callable = lambda ref, kind: 0  # (container ref, namespace kind) -> PID  # type: ignore[valid-type]
    anonymous: list[tuple[str, str]] = field(default_factory=list)  # (destination, host dir) of anonymous volumes
    shm_path: str | None = None  # a host directory bound on /dev/shm (IpcMode shareable, container:X, host)
    init: InitOptions = InitOptions()


def _namespaces(hc: dict[str, Any], spec: RunSpec) -> list[NamespaceSpec]:
    out = [NamespaceSpec("mnt")]

    def mode(key: str, kind: str, joinable: bool) -> None:
        # as dockerd: host, container:<ref> where it can be joined, anything else a private namespace
        value = hc.get(key) or ""
        if value == "host":
            return
        if joinable and value.startswith("container:"):
            pid = spec.peer_pid(value.split(":", 1)[1], kind)
            out.append(NamespaceSpec(kind, f"/proc/{pid}/ns/{kind}"))
            return
        out.append(NamespaceSpec(kind))

    ipc = hc.get("IpcMode") or ""
    if ipc not in IPC_MODES and not ipc.startswith("container:"):
        raise HostSetupError(f"Invalid IPC mode: {ipc}")  # dockerd finds it only at start (500)
    mode("PidMode", "pid", True)
    mode("IpcMode", "ipc", True)
    mode("UTSMode", "uts", False)  # dockerd 20.10 knows no container:<ref> UTS mode
    net = hc.get("NetworkMode") or "default"
    if net != "host":
        if net.startswith("container:"):
            pid = spec.peer_pid(net.split(":", 1)[1], "net")
            out.append(NamespaceSpec("net", f"/proc/{pid}/ns/net"))
        else:
            out.append(NamespaceSpec("net"))
    if (hc.get("CgroupnsMode") or "host") == "private":
        out.append(NamespaceSpec("cgroup"))
    return out


def _host_bind(dest: str, host: str, ro: bool, propagation: str | None) -> Mount:
    """A bind of a host path: rprivate unless asked otherwise (dockerd's default), and a shared or
    slave mode only where the source's host mount can carry it (dockerd's ensureShared/OrSlave)."""
    prop = propagation or "rprivate"
    if prop in ("shared", "rshared", "slave", "rslave"):
        propagation_mod.require(host, shared_only=prop.endswith("shared"))
    return Mount(dest, "bind", host, ["rbind", *(["ro"] if ro else []), prop])


def _binds(hc: dict[str, Any], spec: RunSpec) -> list[Mount]:
    mounts = []
    for bind in hc.get("Binds") or []:
        parts = bind.split(":")
        if len(parts) < 2:
            raise ConfigError(f"invalid volume specification: '{bind}'")
        source, dest = parts[0], parts[1]
        opts = parts[2].split(",") if len(parts) > 2 else []
        prop = next((o for o in opts if o in PROPAGATIONS), None)
        if not source.startswith("/"):  # a named volume: no propagation mode of its own
            mounts.append(Mount(dest, "bind", spec.volume_dir(source), ["rbind", *(["ro"] if "ro" in opts else [])]))
            continue
        if not os.path.exists(source):
            os.makedirs(source, exist_ok=True)  # dockerd creates a missing bind source directory
        mounts.append(_host_bind(dest, source, "ro" in opts, prop))
    for m in hc.get("Mounts") or []:
        kind = m.get("Type", "volume")
        target = m.get("Target", "")
        ro = ["ro"] if m.get("ReadOnly") else []
        if kind == "bind":
            prop = (m.get("BindOptions") or {}).get("Propagation")
            mounts.append(_host_bind(target, m.get("Source") or "", bool(ro), prop))
        elif kind == "volume" and m.get("Source"):
            mounts.append(Mount(target, "bind", spec.volume_dir(m["Source"]), ["rbind", *ro]))
        elif kind == "volume":  # anonymous: made at create, bound from spec.anonymous
            continue
        elif kind == "tmpfs":
            opts = m.get("TmpfsOptions") or {}
            data = [f"size={opts['SizeBytes']}"] if opts.get("SizeBytes") else []
            data += [f"mode={opts['Mode']:o}"] if opts.get("Mode") else []
            mounts.append(Mount(target, "tmpfs", "tmpfs", [*TMPFS_DEFAULTS, *ro, *data]))
        else:
            raise ConfigError(f"mount type {kind!r} is not supported")
    for dest, opts in (hc.get("Tmpfs") or {}).items():  # the given options override the defaults
        mounts.append(Mount(dest, "tmpfs", "tmpfs", [*TMPFS_DEFAULTS, *[o for o in opts.split(",") if o]]))
    return mounts


def _devices(hc: dict[str, Any]) -> list[Device]:
    out = []
    for d in hc.get("Devices") or []:
        try:
            st = os.stat(d["PathOnHost"])
        except OSError as exc:  # dockerd's words (a server error there too)
            raise HostSetupError(f"error gathering device information while adding custom device "
                                 f"\"{d['PathOnHost']}\": {os.strerror(exc.errno or 0).lower()}") from None
        if not (statmod.S_ISCHR(st.st_mode) or statmod.S_ISBLK(st.st_mode)):
            raise HostSetupError(f"error gathering device information while adding custom device "
                                 f"\"{d['PathOnHost']}\": not a device node")
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
    # /dev/shm: a tmpfs of its own unless the IPC mode shares one (a host directory) or has none
    mounts = default_mounts(hc.get("ShmSize") or 64 << 20,
                            ipc_none=hc.get("IpcMode") == "none" or spec.shm_path is not None)
    if spec.shm_path is not None:
        mounts.append(Mount("/dev/shm", "bind", spec.shm_path, ["rbind", "rprivate"]))
    mounts += [Mount(path, "bind", host, ["rbind"]) for path, host in spec.etc_files.items()]
    mounts += [Mount(dest, "bind", host, ["rbind"]) for dest, host in spec.anonymous]
    mounts += _binds(hc, spec)
    if wants_init(hc, spec.init.default):
        # PID 1 is the init (tini): it forwards signals to the command and reaps orphans
        mounts.append(Mount(INIT_DEST, "bind", spec.init.binary(), ["rbind", "ro"]))
        argv = [INIT_DEST, "--", *argv]
    hostname, domainname = config.get("Hostname") or None, config.get("Domainname") or None
    if hc.get("UTSMode") == "host":
        # the host's UTS namespace: its names stay as they are (dockerd leaves the spec's hostname
        # empty); a domain name would be set with the kernel.domainname sysctl, which runc refuses
        hostname = None
        if domainname:
            raise HostSetupError('sysctl "kernel.domainname" is not in a separate kernel namespace')
    shared = any("shared" in m.options or "rshared" in m.options for m in mounts)
    return ContainerConfig(
        rootfs=spec.rootfs, args=argv, id=cid, env=list(config.get("Env") or []),
        cwd=config.get("WorkingDir") or "/", user=config.get("User") or "",
        additional_groups=list(hc.get("GroupAdd") or []), hostname=hostname,
        domainname=domainname, namespaces=_namespaces(hc, spec), mounts=mounts,
        # a shared bind needs / shared in the container too, else it would only reach its own copy
        # (dockerd sets the spec's rootfsPropagation to "shared" then)
        rootfs_propagation="shared" if shared else "rslave",
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
