"""Turning a create request into a container's Config and HostConfig, as dockerd does.

Validation answers 400 with dockerd's wording where the conformance checks pin it; the image's
config is merged in (Env by key, Labels by key, Cmd only when no Entrypoint was given ...).
"""

from __future__ import annotations

import copy
import os
import re
import signal
from typing import Any

from ...libcontainer import capabilities, cgroups
from ..errors import InvalidParameter

NAME_RE = re.compile(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
RESTART_POLICIES = ("", "no", "always", "unless-stopped", "on-failure")
MIN_MEMORY = 6 * 1024 * 1024

# Docker's defaults for a Linux container (oci/defaults.go), shown in HostConfig.
MASKED_PATHS = ["/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware"]
READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]

CONFIG_DEFAULTS: dict[str, Any] = {
    "Hostname": "", "Domainname": "", "User": "", "AttachStdin": False, "AttachStdout": False,
    "AttachStderr": False, "Tty": False, "OpenStdin": False, "StdinOnce": False, "Env": None, "Cmd": None,
    "Image": "", "Volumes": None, "WorkingDir": "", "Entrypoint": None, "OnBuild": None, "Labels": {},
}

HOST_CONFIG_DEFAULTS: dict[str, Any] = {
    "Binds": None, "ContainerIDFile": "", "LogConfig": {"Type": "json-file", "Config": {}},
    "NetworkMode": "default", "PortBindings": {}, "RestartPolicy": {"Name": "", "MaximumRetryCount": 0},
    "AutoRemove": False, "VolumeDriver": "", "VolumesFrom": None, "CapAdd": None, "CapDrop": None,
    "CgroupnsMode": "", "Dns": [], "DnsOptions": [], "DnsSearch": [], "ExtraHosts": None, "GroupAdd": None,
    "IpcMode": "private", "Cgroup": "", "Links": None, "OomScoreAdj": 0, "PidMode": "", "Privileged": False,
    "PublishAllPorts": False, "ReadonlyRootfs": False, "SecurityOpt": None, "UTSMode": "", "UsernsMode": "",
    "ShmSize": 67108864, "Runtime": "native", "ConsoleSize": [0, 0], "Isolation": "default", "CpuShares": 0,
    "Memory": 0, "NanoCpus": 0, "CgroupParent": "", "BlkioWeight": 0, "BlkioWeightDevice": [],
    "BlkioDeviceReadBps": None, "BlkioDeviceWriteBps": None, "BlkioDeviceReadIOps": None,
    "BlkioDeviceWriteIOps": None, "CpuPeriod": 0, "CpuQuota": 0, "CpuRealtimePeriod": 0, "CpuRealtimeRuntime": 0,
    "CpusetCpus": "", "CpusetMems": "", "Devices": [], "DeviceCgroupRules": None, "DeviceRequests": None,
    "KernelMemory": 0, "KernelMemoryTCP": 0, "MemoryReservation": 0, "MemorySwap": 0, "MemorySwappiness": None,
    "OomKillDisable": False, "PidsLimit": None, "Ulimits": None, "CpuCount": 0, "CpuPercent": 0,
    "IOMaximumIOps": 0, "IOMaximumBandwidth": 0, "MaskedPaths": MASKED_PATHS, "ReadonlyPaths": READONLY_PATHS,
}

RESOURCE_KEYS = ("CpuShares", "Memory", "NanoCpus", "CgroupParent", "BlkioWeight", "BlkioWeightDevice",
                 "BlkioDeviceReadBps", "BlkioDeviceWriteBps", "BlkioDeviceReadIOps", "BlkioDeviceWriteIOps",
                 "CpuPeriod", "CpuQuota", "CpuRealtimePeriod", "CpuRealtimeRuntime", "CpusetCpus", "CpusetMems",
                 "Devices", "DeviceCgroupRules", "DeviceRequests", "KernelMemory", "KernelMemoryTCP",
                 "MemoryReservation", "MemorySwap", "MemorySwappiness", "OomKillDisable", "PidsLimit", "Ulimits",
                 "CpuCount", "CpuPercent", "IOMaximumIOps", "IOMaximumBandwidth")

_TYPES: dict[str, tuple[type, ...]] = {
    "Hostname": (str,), "Domainname": (str,), "User": (str,), "Tty": (bool,), "OpenStdin": (bool,),
    "StdinOnce": (bool,), "AttachStdin": (bool,), "AttachStdout": (bool,), "AttachStderr": (bool,),
    "Env": (list, type(None)), "Cmd": (list, str, type(None)), "Entrypoint": (list, str, type(None)),
    "Image": (str,), "WorkingDir": (str,), "Labels": (dict, type(None)), "Volumes": (dict, type(None)),
    "ExposedPorts": (dict, type(None)), "StopSignal": (str,), "StopTimeout": (int, type(None)),
    "HostConfig": (dict, type(None)), "NetworkingConfig": (dict, type(None)),
}
_INT_RESOURCES = ("CpuShares", "Memory", "NanoCpus", "BlkioWeight", "CpuPeriod", "CpuQuota", "MemoryReservation",
                  "MemorySwap", "KernelMemory", "ShmSize", "OomScoreAdj", "CpuCount", "CpuPercent")


def check_name(name: str) -> str:
    """A valid container name, with its leading slash."""
    if not NAME_RE.match(name):
        raise InvalidParameter(f"Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
    return name if name.startswith("/") else "/" + name


def _as_list(value: Any) -> list[str] | None:
    if value is None:
        return None
    return [value] if isinstance(value, str) else list(value)


def check_types(body: dict[str, Any]) -> None:
    for key, kinds in _TYPES.items():
        if key in body and not isinstance(body[key], kinds) or (
                key in body and isinstance(body[key], bool) and bool not in kinds):
            raise InvalidParameter(f"invalid type for {key}: {type(body[key]).__name__}")
    for key in ("Env", "Cmd", "Entrypoint"):
        value = body.get(key)
        if isinstance(value, list) and not all(isinstance(v, str) for v in value):
            raise InvalidParameter(f"{key} must be a list of strings")
    hc = body.get("HostConfig") or {}
    if hc.get("Init") is not None and not isinstance(hc["Init"], bool):
        raise InvalidParameter(f"invalid type for HostConfig.Init: {type(hc['Init']).__name__} (a boolean or null)")
    check_mounts(hc.get("Mounts"))  # dockerd checks mounts, then ports, before it looks at the image
    check_port_bindings(hc.get("PortBindings"))
    check_resources(hc)
    check_capabilities(hc)
    check_modes(body, hc)


def check_capabilities(hc: dict[str, Any]) -> None:
    """CapAdd/CapDrop names as dockerd normalises them ("chown" -> CAP_CHOWN, ALL allowed); an unknown
    one is the client's error at create, not a start failure."""
    for key in ("CapAdd", "CapDrop"):
        value = hc.get(key)
        if value is None:
            continue
        if not isinstance(value, list) or not all(isinstance(c, str) for c in value):
            raise InvalidParameter(f"invalid type for HostConfig.{key}: expected a list of strings")
        for cap in value:
            name = cap.strip().upper()
            name = name if name.startswith("CAP_") or name == "ALL" else "CAP_" + name
            try:
                capabilities.normalize(name)
            except capabilities.CapabilityError:
                raise InvalidParameter(f'invalid {key}: unknown capability: "{name}"') from None


def check_modes(body: dict[str, Any], hc: dict[str, Any]) -> None:
    """The namespace modes dockerd refuses at create (others, e.g. an unknown IpcMode, fail at start)."""
    if hc.get("UTSMode") == "host" and body.get("Hostname"):
        raise InvalidParameter("conflicting options: hostname and the UTS mode")
    cgroupns = hc.get("CgroupnsMode") or ""
    if cgroupns not in ("", "host", "private"):
        raise InvalidParameter(f"invalid cgroup namespace mode: {cgroupns}")


def discard_unsupported(hc: dict[str, Any]) -> list[str]:
    """dockerd's create warnings: settings this host cannot apply are dropped from the HostConfig
    (so inspect shows what is in force) and named in the answer's Warnings."""
    warnings = []
    if hc.get("KernelMemory"):
        # kept, but never applied (dockerd 20.10 still stores it, runc ignores it on current kernels)
        warnings.append("Specifying a kernel memory limit is deprecated and will be removed in a future release.")
    support = cgroups.blkio_support()
    if hc.get("BlkioWeight") and not support.weight:
        warnings.append("Your kernel does not support Block I/O weight or the cgroup is not mounted. Weight discarded.")
        hc["BlkioWeight"] = 0
    if hc.get("BlkioWeightDevice") and not support.weight_device:
        warnings.append("Your kernel does not support Block I/O weight_device or the cgroup is not mounted. "
                        "Weight-device discarded.")
        hc["BlkioWeightDevice"] = []
    if hc.get("OomKillDisable") and not (hc.get("Memory") or 0) > 0:
        warnings.append("OOM killer is disabled for the container, but no memory limit is set, this can result in "
                        "the system running out of resources.")
    return warnings


_UINT16 = re.compile(r"[0-9]{1,5}")
PROPAGATIONS = ("private", "rprivate", "slave", "rslave", "shared", "rshared")


def _mount_problem(m: dict[str, Any]) -> str | None:
    """What dockerd's ValidateMountConfig says of one HostConfig.Mounts entry (None: it is fine)."""
    target, source, kind = m.get("Target") or "", m.get("Source") or "", m.get("Type") or ""
    if not target:
        return "field Target must not be empty"
    if target == "/":
        return "invalid specification: destination can't be '/'"
    if not target.startswith("/"):
        return f"invalid mount path: '{target}' mount path must be absolute"
    if kind == "bind":
        propagation = (m.get("BindOptions") or {}).get("Propagation")
        if not source:
            return "field Source must not be empty"
        if propagation and propagation not in PROPAGATIONS:
            return f"invalid propagation mode: {propagation}"
        if m.get("VolumeOptions") is not None:
            return "field VolumeOptions must not be specified"
        if not source.startswith("/"):
            return f"invalid mount path: '{source}' mount path must be absolute"
        if not os.path.exists(source):  # the daemon's own view of the host, as dockerd's
            return f"bind source path does not exist: {source}"
    elif kind in ("volume", "tmpfs"):
        if m.get("BindOptions") is not None:
            return "field BindOptions must not be specified"
        if kind == "volume" and not source and m.get("ReadOnly"):
            return "must not set ReadOnly mode when using anonymous volumes"
        if kind == "tmpfs" and source:
            return "field Source must not be specified"
    else:
        return "mount type unknown"
    return None


def check_mounts(mounts: Any) -> None:
    if mounts is None:
        return
    if not isinstance(mounts, list) or not all(isinstance(m, dict) for m in mounts):
        raise InvalidParameter("invalid type for HostConfig.Mounts: expected a list of objects")
    for m in mounts:
        problem = _mount_problem(m)
        if problem:
            raise InvalidParameter(f"invalid mount config for type \"{m.get('Type') or ''}\": {problem}")


def _port_ok(text: str, allow_range: bool) -> bool:
    """Go's nat.ParsePort ("" or 0-65535) or, for host ports, nat.ParsePortRange ("lo-hi", lo <= hi)."""
    if not text:
        return True
    parts = text.split("-") if allow_range else [text]
    if not all(_UINT16.fullmatch(p) and int(p) <= 65535 for p in parts[:2]):
        return False
    return len(parts) == 1 or int(parts[0]) <= int(parts[1])


def check_port_bindings(bindings: Any) -> None:
    """HostConfig.PortBindings keys ("80/tcp") and HostPorts ("8080", "8000-8010") as dockerd parses them."""
    if bindings is None:
        return
    if not isinstance(bindings, dict):
        raise InvalidParameter("invalid type for HostConfig.PortBindings: expected an object")
    for key, entries in bindings.items():
        port = key.split("/")[0]  # the number of "80/tcp" (nat.SplitProtoPort)
        if not _port_ok(port, allow_range=False):
            raise InvalidParameter(f"invalid port specification: \"{port}\"")
        if entries is not None and not isinstance(entries, list):
            raise InvalidParameter(f"invalid type for the port bindings of {key}: expected a list")
        for b in entries or []:
            host_port = (b.get("HostPort") or "") if isinstance(b, dict) else None
            if not isinstance(host_port, str):
                raise InvalidParameter(f"invalid port binding for {key}: expected {{\"HostIp\", \"HostPort\"}}")
            if not _port_ok(host_port.split("/")[0], allow_range=True):
                raise InvalidParameter(f"invalid port specification: \"{host_port}\"")


def check_resources(hc: dict[str, Any]) -> None:
    for key in _INT_RESOURCES:
        if key in hc and hc[key] is not None and (not isinstance(hc[key], int) or isinstance(hc[key], bool)):
            raise InvalidParameter(f"invalid type for HostConfig.{key}: {type(hc[key]).__name__}")
    memory = hc.get("Memory") or 0
    if memory < 0 or (0 < memory < MIN_MEMORY):
        raise InvalidParameter("Minimum memory limit allowed is 6MB")
    swap = hc.get("MemorySwap") or 0
    if memory and swap > 0 and swap < memory:
        raise InvalidParameter("Minimum memoryswap limit should be larger than memory limit, see usage")
    if (hc.get("NanoCpus") or 0) and ((hc.get("CpuQuota") or 0) or (hc.get("CpuPeriod") or 0)):
        raise InvalidParameter("Conflicting options: Nano CPUs and CPU Period cannot both be set")
    if (hc.get("NanoCpus") or 0) < 0:
        raise InvalidParameter("Range of CPUs is from 0.01 to the number of CPUs available")
    period = hc.get("CpuPeriod") or 0
    if period and not 1000 <= period <= 1000000:
        raise InvalidParameter("CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)")
    quota = hc.get("CpuQuota") or 0
    if quota and quota > 0 and quota < 1000:
        raise InvalidParameter("CPU cfs quota can not be less than 1ms (i.e. 1000)")
    weight = hc.get("BlkioWeight") or 0
    if weight and not 10 <= weight <= 1000:
        raise InvalidParameter("Range of blkio weight is from 10 to 1000")
    check_cpusets(hc)
    check_restart_policy(hc.get("RestartPolicy"), bool(hc.get("AutoRemove")))


# key, the word in dockerd's format error, the kernel's list of online ones, the words of its "not available"
_CPUSETS = (("CpusetCpus", "cpus", "/sys/devices/system/cpu/online", "CPUs"),
            ("CpusetMems", "mems", "/sys/devices/system/node/online", "memory nodes"))


def parse_cpuset(text: str) -> set[int] | None:
    """The kernel's list format ("0-2,4") as a set; None where it is not that format."""
    out: set[int] = set()
    for part in text.split(","):
        lo, dash, hi = part.partition("-")
        if not lo.isdigit() or (dash and not hi.isdigit()) or (dash and int(hi) < int(lo)):
            return None
        out.update(range(int(lo), int(hi if dash else lo) + 1))
    return out


def check_cpusets(hc: dict[str, Any]) -> None:
    """CpusetCpus/CpusetMems as dockerd checks them at create and update: the format, then only CPUs
    and memory nodes this host has online (the cgroup write would fail only at start otherwise)."""
    for key, what, online_file, words in _CPUSETS:
        value = hc.get(key)
        if not value:
            continue
        if not isinstance(value, str):
            raise InvalidParameter(f"invalid type for HostConfig.{key}: {type(value).__name__}")
        wanted = parse_cpuset(value)
        if wanted is None:
            raise InvalidParameter(f"Invalid value {value} for cpuset {what}: invalid format: {value}")
        try:
            with open(online_file) as fh:
                online_text = fh.read().strip()
        except OSError:  # no NUMA information: node 0 only, as the kernel without CONFIG_NUMA
            online_text = "0"
        if not wanted <= (parse_cpuset(online_text) or set()):
            raise InvalidParameter(f"Requested {words} are not available - requested {value}, available: {online_text}")


def check_restart_policy(policy: Any, auto_remove: bool = False) -> None:
    if policy is None:
        return
    if not isinstance(policy, dict):
        raise InvalidParameter("invalid restart policy: expected an object")
    name = policy.get("Name", "") or ""
    if name not in RESTART_POLICIES:
        raise InvalidParameter(f"invalid restart policy '{name}'")
    retries = policy.get("MaximumRetryCount", 0) or 0
    if not isinstance(retries, int) or retries < 0:
        raise InvalidParameter("maximum retry count cannot be negative")
    if retries and name != "on-failure":
        raise InvalidParameter(f"maximum retry count cannot be used with restart policy '{name}'")
    if auto_remove and name not in ("", "no"):
        raise InvalidParameter("can't create 'AutoRemove' container with restart policy")


def check_signal(value: str | None) -> None:
    if not value:
        return
    if value.isdigit():
        if not 0 < int(value) < 65:
            raise InvalidParameter(f"Invalid signal: {value}")
        return
    name = value.upper()
    name = name if name.startswith("SIG") else "SIG" + name
    if not hasattr(signal.Signals, name) and name not in ("SIGRTMIN", "SIGRTMAX"):
        raise InvalidParameter(f"Invalid signal: {value}")


def _env_merge(image_env: list[str] | None, env: list[str] | None) -> list[str] | None:
    if not image_env and not env:
        return env if env is not None else image_env
    out: dict[str, str] = {}
    for item in (image_env or []) + (env or []):
        key = item.split("=", 1)[0]
        out.pop(key, None)  # later ones win, in the later one's position
        out[key] = item
    return list(out.values())


def merge(body: dict[str, Any], image_config: dict[str, Any], image_ref: str) -> dict[str, Any]:
    """The container's Config: the request's fields over the image's (dockerd's merge rules)."""
    img = image_config or {}
    cfg = copy.deepcopy(CONFIG_DEFAULTS)
    for key in list(CONFIG_DEFAULTS) + ["ExposedPorts", "StopSignal", "StopTimeout", "Healthcheck", "ArgsEscaped",
                                        "NetworkDisabled", "MacAddress", "Shell"]:
        if key in body and body[key] is not None:
            cfg[key] = copy.deepcopy(body[key])
    cfg["Image"] = image_ref
    cfg["Cmd"] = _as_list(cfg.get("Cmd"))
    cfg["Entrypoint"] = _as_list(cfg.get("Entrypoint"))
    if body.get("Entrypoint") is None:
        cfg["Entrypoint"] = _as_list(img.get("Entrypoint"))
        if not cfg["Cmd"]:
            cfg["Cmd"] = _as_list(img.get("Cmd"))
    elif body.get("Cmd") is None:
        cfg["Cmd"] = None  # an Entrypoint given at create drops the image's Cmd
    cfg["Env"] = _env_merge(img.get("Env"), cfg.get("Env"))
    labels = dict(img.get("Labels") or {})
    labels.update(cfg.get("Labels") or {})
    cfg["Labels"] = labels
    for key in ("WorkingDir", "User", "StopSignal"):
        if not cfg.get(key) and img.get(key):
            cfg[key] = img[key]
    for key in ("ExposedPorts", "Volumes"):
        merged = dict(img.get(key) or {})
        merged.update(cfg.get(key) or {})
        cfg[key] = merged or None
    if cfg.get("ExposedPorts") is None:
        cfg.pop("ExposedPorts", None)
    if not cfg.get("Entrypoint") and not cfg.get("Cmd"):
        raise InvalidParameter("No command specified")
    check_signal(cfg.get("StopSignal"))
    return cfg


def default_cgroupns() -> str:
    """dockerd's default CgroupnsMode: private where the controllers are on cgroup v2, host on v1."""
    try:
        return "private" if cgroups.detect().version == 2 else "host"
    except Exception:  # noqa: BLE001 - no cgroups readable: the v1 default, as dockerd without cgroup v2
        return "host"


def host_config(body: dict[str, Any]) -> dict[str, Any]:
    hc = copy.deepcopy(HOST_CONFIG_DEFAULTS)
    given = body.get("HostConfig") or {}
    for key, value in given.items():
        if value is not None or key in ("PidsLimit", "MemorySwappiness"):
            hc[key] = copy.deepcopy(value)
    # "" in the defaults above: a mode of its own there would hide the cgroup-version dependent default
    hc["CgroupnsMode"] = hc.get("CgroupnsMode") or default_cgroupns()
    if not hc.get("NetworkMode"):
        hc["NetworkMode"] = "default"
    if not (hc.get("RestartPolicy") or {}).get("Name"):
        hc["RestartPolicy"] = {"Name": "", "MaximumRetryCount": 0}
    if hc.get("Privileged"):
        hc["MaskedPaths"], hc["ReadonlyPaths"] = None, None
    return hc
