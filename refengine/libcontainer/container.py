"""A container: config -> init dict (faults applied), its cgroup, its process; exec, signals, stop, destroy.

    c = Container(ContainerConfig(rootfs, ["sh", "-c", "echo hi"], cgroup_name="c1",
                                  resources=cgroups.Resources(memory=64 << 20)))
    p = c.start(stdout=subprocess.PIPE)     # returns once the payload exec'd (StartError otherwise)
    p.stdout.read(); c.wait(); c.destroy()  # destroy: kill the whole cgroup, reap, remove the cgroup
"""

from __future__ import annotations

import base64
import dataclasses
import logging
import os
import resource
import threading
import time
import warnings
from collections.abc import Callable
from signal import SIGKILL, SIGTERM
from typing import Any

from . import capabilities, cgroups, faults, rootfs, seccomp, syscalls, userns
from .config import (
    DOCKER_MASKED_PATHS,
    DOCKER_READONLY_PATHS,
    RLIM_INFINITY,
    ConfigError,
    ContainerConfig,
    ExecConfig,
)
from .process import Process, StartError, spawn

log = logging.getLogger("refengine.libcontainer")

# setns order: the user namespace first (it decides what we may join next), the mount namespace last
JOIN_ORDER = ("user", "ipc", "uts", "net", "pid", "cgroup", "mnt")


class RlimitWarning(UserWarning):
    pass


def _ns_id(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def effective_resources(res: cgroups.Resources | None, active: frozenset[str]) -> cgroups.Resources | None:
    """The Resources handed to the cgroups layer, with the fault-dropped fields removed."""
    if res is None:
        return cgroups.Resources(devices=[cgroups.ALLOW_ALL]) if "no-devices-cgroup" in active else None
    drop: list[str] = []
    if "no-memory-limit" in active:
        drop += ["memory", "memory_swap", "memory_reservation"]
    if "no-pids-limit" in active:
        drop += ["pids_limit"]
    if "no-cpu-limit" in active:
        drop += ["cpu_quota", "cpu_period", "cpu_shares"]
    if "no-devices-cgroup" in active:
        return dataclasses.replace(res, **{f: None for f in drop}, devices=[cgroups.ALLOW_ALL])
    return dataclasses.replace(res, **{f: None for f in drop}) if drop else res


def clamp_rlimits(rlimits: list[tuple[int, int, int, str]]) -> tuple[list[list[int]], list[str]]:
    """Hard limits above our own cannot be set without CAP_SYS_RESOURCE (not held on this host):
    clamp them to ours (soft to at most the hard) and say so."""
    can_raise = capabilities.has_cap("SYS_RESOURCE")
    out, notes = [], []

    def above(a: int, b: int) -> bool:  # a > b with -1 = infinity
        return b != RLIM_INFINITY and (a == RLIM_INFINITY or a > b)

    for num, soft, hard, name in rlimits:
        if not can_raise:
            _cur_soft, cur_hard = resource.getrlimit(num)
            if above(hard, cur_hard):
                notes.append(f"rlimit {name}: hard limit {hard} is above the engine's own ({cur_hard}) and "
                             f"CAP_SYS_RESOURCE is not held: clamped to {cur_hard}")
                hard = cur_hard
                if above(soft, hard):  # only what the clamp made inconsistent; a given soft > hard is refused
                    soft = hard
        out.append([num, soft, hard])
    return out, notes


def _mount_dict(m: Any) -> dict[str, Any]:
    return {"destination": m.destination, "type": m.type, "source": m.source, "options": list(m.options)}


def build_init(cfg: ContainerConfig, active: frozenset[str] = frozenset(),
               available_caps: int | None = None) -> tuple[dict[str, Any], list[str]]:
    """The plain dict the init runs from, with the faults applied; and warnings for the caller."""
    notes: list[str] = []
    ns = {n.type: n for n in cfg.namespaces}
    for fault, kind in faults.NS_FAULTS.items():
        if fault in active and kind in ns and ns[kind].path is None:
            del ns[kind]
    join = [[k, ns[k].path] for k in JOIN_ORDER if k in ns and ns[k].path]
    unshare = 0
    for kind in ("mnt", "pid", "net", "ipc", "uts"):
        if kind in ns and ns[kind].path is None:
            unshare |= syscalls.NS_FLAGS[kind]
    mntns = "host" if "mnt" not in ns else ("new" if ns["mnt"].path is None else "join")
    hostname, domainname = cfg.hostname, cfg.domainname
    if "uts" not in ns or ns["uts"].path is not None:
        hostname = domainname = None  # only reached through a fault: validate() refuses it otherwise
    bset = capabilities.bounding_set() if available_caps is None else available_caps
    caps = capabilities.resolve(cfg.cap_add, cfg.cap_drop, cfg.privileged, base=cfg.capabilities, available=bset)
    if "no-caps-drop" in active:
        caps = bset
    mounts = [_mount_dict(m) for m in cfg.mounts]
    if cfg.privileged and not cfg.readonly_rootfs:
        # moby: a privileged container gets /sys and /sys/fs/cgroup read-write
        for m in mounts:
            if m["destination"] in ("/sys", "/sys/fs/cgroup"):
                m["options"] = [o for o in m["options"] if o != "ro"]
    dev = any(m["destination"].rstrip("/") == "/dev" and m["type"] == "tmpfs" for m in mounts)
    devices = rootfs.default_devices()
    if cfg.privileged:
        devices += [d for d in rootfs.host_devices() if d["path"] not in {x["path"] for x in devices}]
    devices += [dataclasses.asdict(d) for d in cfg.devices]
    masked = list(cfg.masked_paths) if cfg.masked_paths is not None else \
        ([] if cfg.privileged else list(DOCKER_MASKED_PATHS))
    readonly = list(cfg.readonly_paths) if cfg.readonly_paths is not None else \
        ([] if cfg.privileged else list(DOCKER_READONLY_PATHS))
    if "no-masked-paths" in active:
        masked = []
    if "no-readonly-paths" in active:
        readonly = []
    sec = None if cfg.privileged or "no-seccomp" in active else seccomp.program_for(cfg.seccomp, caps)
    rl, rl_notes = clamp_rlimits([(r.number, r.soft, r.hard, r.type) for r in cfg.rlimits])
    notes += rl_notes
    in_userns = "user" in ns and "no-userns" not in active
    init = {
        "mode": "create",
        "rootfs": os.path.abspath(cfg.rootfs),
        "args": list(cfg.args), "env": list(cfg.env), "cwd": cfg.cwd,
        "user": "" if "no-user" in active else cfg.user,
        "groups": [] if "no-user" in active else list(cfg.additional_groups),
        "join": join, "unshare": unshare,
        "userns": "user" in ns and ns["user"].path is None, "in_userns": in_userns,
        "cgroupns": "cgroup" in ns and ns["cgroup"].path is None,
        "mntns": mntns, "propagation": cfg.rootfs_propagation,
        "mounts": mounts, "dev": dev, "devices": devices,
        "hostname": hostname, "domainname": domainname, "sysctl": dict(cfg.sysctl),
        "readonly_paths": readonly, "masked_paths": masked,
        "readonly_rootfs": cfg.readonly_rootfs and "no-readonly-rootfs" not in active,
        "rlimits": [] if "no-rlimits" in active else rl,
        "caps": caps, "bounding": caps, "last_cap": capabilities.last_cap(),
        "nnp": cfg.no_new_privileges and "no-nnp" not in active,
        "seccomp": base64.b64encode(sec).decode() if sec else None,
        "tty": cfg.tty,
    }
    return init, notes


_drivers: dict[str, Any] = {}


def _driver(parent: str) -> Any:
    """One cgroup driver per parent name (detection reads the mount table)."""
    drv = _drivers.get(parent)
    if drv is None:
        drv = _drivers[parent] = cgroups.detect(parent)
    return drv


def _merge_env(base: list[str], extra: list[str]) -> list[str]:
    env = {e.partition("=")[0]: e for e in base}
    for e in extra:
        env[e.partition("=")[0]] = e
    return list(env.values())


class Container:
    """One container: start once, exec any number of times, stop/kill, destroy (cleanup)."""

    def __init__(self, config: ContainerConfig) -> None:
        self.config = config
        self.id = config.id or config.cgroup_name or ""
        self.cgroup: cgroups.CgroupHandle | None = None
        self.process: Process | None = None
        self.execs: list[Process] = []
        self.exit_code: int | None = None
        self.warnings: list[str] = []
        self._init: dict[str, Any] | None = None
        self._faults: frozenset[str] = frozenset()
        self._lock = threading.Lock()

    # -- state

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def status(self) -> str:
        if self.process is None:
            return "stopped" if self.exit_code is not None else "created"
        return "running" if self.process.poll() is None else "stopped"

    def ns_path(self, kind: str) -> str:
        if self.process is None:
            raise RuntimeError("the container has no process")
        return f"/proc/{self.process.pid}/ns/{kind}"

    # -- start

    def start(self, stdin: Any = None, stdout: Any = None, stderr: Any = None,
              before_release: Callable[[int], None] | None = None, timeout: float = 30.0) -> Process:
        """Create the namespaces and cgroup, run the payload. before_release(pid) runs while the payload
        waits (in its cgroup, before its rootfs is set up): the place for the veth handshake."""
        with self._lock:
            if self.process is not None or self.exit_code is not None:
                raise RuntimeError("a container starts once")
            cfg = self.config
            cfg.validate()
            self._faults = active = faults.active_faults()
            if cfg.creates("user") and "no-userns" not in active:
                userns.validate(cfg.uid_mappings, "uid")
                userns.validate(cfg.gid_mappings, "gid")
            try:
                init, notes = build_init(cfg, active)
            except (capabilities.CapabilityError, seccomp.SeccompError) as e:
                raise ConfigError(str(e)) from None
            if "no-userns" in active and init["userns"]:
                init["userns"] = False
            for note in notes:
                warnings.warn(note, RlimitWarning, stacklevel=2)
                log.warning("%s: %s", self.id or "container", note)
            self.warnings = notes
            self._init = init
            resources = effective_resources(cfg.resources, active)

            def make_cgroup() -> None:
                # runs while the init creates its namespaces (both take a few ms; 2 cores here)
                if cfg.cgroup_name:
                    self.cgroup = _driver(cfg.cgroup_parent).create(cfg.cgroup_name, resources)

            def maps(pid: int) -> None:
                userns.write_maps(pid, cfg.uid_mappings, cfg.gid_mappings)

            def release(pid: int) -> None:
                if self.cgroup is not None:
                    self.cgroup.add(pid)
                if cfg.oom_score_adj is not None:
                    with open(f"/proc/{pid}/oom_score_adj", "w") as fh:
                        fh.write(str(cfg.oom_score_adj))
                if before_release is not None:
                    before_release(pid)

            try:
                self.process = spawn(init, stdin=stdin, stdout=stdout, stderr=stderr, userns_maps=maps,
                                     before_release=release, timeout=timeout, warnings=notes,
                                     while_starting=make_cgroup, go_info=self._go_info)
            except StartError as e:
                self.exit_code = e.exit_code
                self._cleanup()
                raise
            except BaseException:
                self._cleanup()
                raise
            return self.process

    def init_state(self) -> dict[str, Any]:
        """What another process needs to adopt this started container (see `adopt`): plain JSON."""
        if self._init is None:
            raise RuntimeError("the container was not started")
        return {"init": self._init, "faults": sorted(self._faults)}

    @classmethod
    def adopt(cls, config: ContainerConfig, state: dict[str, Any], process: Any) -> Container:
        """A container started elsewhere (a monitor process): `state` from its init_state(), `process`
        a handle with the Process interface (pid, poll, wait, signal, close). Its cgroup is loaded by
        name; exec, signals, pause and destroy then work as for one started here."""
        c = cls(config)
        c._init, c._faults, c.process = state["init"], frozenset(state.get("faults") or ()), process
        if config.cgroup_name:
            try:
                c.cgroup = _driver(config.cgroup_parent).load(config.cgroup_name)
            except cgroups.CgroupError:
                c.cgroup = None  # gone already (the container ended): nothing to manage there
        return c

    def _go_info(self) -> dict[str, Any]:
        cg = self.cgroup
        return {"cgroup_dirs": sorted(set(cg.paths.values()))} if cg is not None else {}

    # -- exec

    def exec(self, ec: ExecConfig, stdin: Any = None, stdout: Any = None, stderr: Any = None,
             timeout: float = 30.0) -> Process:
        """Run a process inside the running container: setns into every namespace of its PID 1 (user
        first), fork so the PID namespace applies, with its own user/env/cwd; the container's
        capabilities (all when privileged), no_new_privs, seccomp and rlimits; added to its cgroup."""
        if self.process is None or self.process.poll() is not None or self._init is None:
            raise RuntimeError("the container is not running")
        base = self._init
        pid = self.process.pid
        join = []
        for kind in JOIN_ORDER:
            target = f"/proc/{pid}/ns/{kind}"
            theirs, ours = _ns_id(target), _ns_id(f"/proc/self/ns/{kind}")
            if theirs is None:
                continue
            if theirs != ours:
                join.append([kind, target])
        caps = base["caps"]
        sec = base["seccomp"]
        if ec.privileged:
            caps = capabilities.bounding_set()
            if sec is not None:  # the same profile, for the larger capability set
                prog = seccomp.program_for(self.config.seccomp, caps)
                sec = base64.b64encode(prog).decode() if prog else None
        env = _merge_env(base["env"], ec.env or [])
        init = {
            "mode": "exec", "args": list(ec.args), "env": env, "cwd": ec.cwd or base["cwd"],
            "user": base["user"] if ec.user is None else ("" if "no-user" in self._faults else ec.user),
            "groups": base["groups"] if ec.additional_groups is None else list(ec.additional_groups),
            "join": join, "unshare": 0, "userns": False, "cgroupns": False,
            "rlimits": base["rlimits"], "caps": caps, "bounding": caps, "last_cap": base["last_cap"],
            "nnp": base["nnp"], "seccomp": sec, "tty": ec.tty,
            "chroot": base["rootfs"] if base.get("mntns") == "host" else None,
        }
        cg = self.cgroup

        def release(p: int) -> None:
            if cg is not None:
                cg.add(p)

        proc = spawn(init, stdin=stdin, stdout=stdout, stderr=stderr, before_release=release, timeout=timeout)
        self.execs.append(proc)
        return proc

    # -- signals and lifecycle

    def signal(self, sig: int = SIGTERM, all_processes: bool = False) -> None:
        """Signal PID 1 (through its pidfd), or every process in the container's cgroup."""
        if all_processes and self.cgroup is not None:
            self.cgroup.kill_all(sig)
        elif self.process is not None:
            self.process.signal(sig)

    kill = signal

    def wait(self, timeout: float | None = None) -> int:
        if self.process is None:
            if self.exit_code is not None:
                return self.exit_code
            raise RuntimeError("the container was not started")
        self.exit_code = self.process.wait(timeout)
        return self.exit_code

    def stop(self, timeout: float = 10.0, sig: int = SIGTERM) -> int:
        """`docker stop`: sig to PID 1, then after `timeout` SIGKILL to the whole cgroup."""
        if self.process is None:
            return self.exit_code if self.exit_code is not None else 0
        if self.process.poll() is None:
            self.process.signal(sig)
            try:
                return self.wait(timeout)
            except TimeoutError:
                pass
            self._kill_everything()
        return self.wait()

    def pause(self) -> None:
        if self.cgroup is None:
            raise RuntimeError("pausing needs the container's cgroup")
        self.cgroup.freeze()

    def resume(self) -> None:
        if self.cgroup is None:
            raise RuntimeError("resuming needs the container's cgroup")
        self.cgroup.thaw()

    def _kill_everything(self) -> None:
        if self.cgroup is not None:
            try:
                self.cgroup.kill_all(SIGKILL)
            except cgroups.CgroupError as e:
                log.warning("killing the cgroup of %s: %s", self.id, e)
        for p in [self.process, *self.execs]:
            if p is not None:
                p.signal(SIGKILL)

    def destroy(self, timeout: float = 10.0) -> None:
        """Kill everything left (the whole cgroup), reap our children, remove the cgroup, and unmount
        what a host-mount-namespace container left under its rootfs. Idempotent."""
        with self._lock:
            if self.process is not None and self.process.poll() is None:
                if self.cgroup is not None and self.cgroup.frozen():
                    self.cgroup.thaw()
                self._kill_everything()
            for p in [self.process, *self.execs]:
                if p is None:
                    continue
                if p.poll() is None:
                    p.signal(SIGKILL)
                try:
                    rc = p.wait(timeout)
                except TimeoutError:
                    log.error("process %d did not die after SIGKILL within %ss", p.pid, timeout)
                    continue
                if p is self.process:
                    self.exit_code = rc
                p.close()
            self.execs = []
            self._cleanup()

    def _cleanup(self) -> None:
        if self.cgroup is not None:
            self.cgroup.destroy()
            self.cgroup = None
        if self._init is not None and self._init.get("mntns") == "host":
            unmount_under(self._init["rootfs"])


def unmount_under(path: str) -> list[str]:
    """Lazily unmount every mount at or below `path` in our mount namespace, deepest first."""
    path = os.path.realpath(path)
    found = []
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            mp = line.split()[4].replace("\\040", " ")
            if mp == path or mp.startswith(path.rstrip("/") + "/"):
                found.append(mp)
    for mp in sorted(set(found), key=len, reverse=True):
        for _ in range(found.count(mp)):
            try:
                syscalls.umount2(mp, syscalls.MNT_DETACH)
            except OSError:
                break
    return found


def wait_all(containers: list[Container], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for c in containers:
        c.wait(max(0.0, deadline - time.monotonic()))
