"""System jobs: version and info, from what this host and the daemon's stores say."""

from __future__ import annotations

import datetime as dt
import os
import platform
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .engine import Engine, Job

API_VERSION = "1.41"
MIN_API_VERSION = "1.24"
VERSION = "0.1.0"


def _os_release() -> str:
    try:
        with open("/etc/os-release") as fh:
            for line in fh:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return "Linux"


def mem_total() -> int:
    """The host's memory in bytes (MemTotal of /proc/meminfo)."""
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    return 0


def _arch() -> str:
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())


@dataclass
class SystemInfo:
    """What the rest of the daemon tells the system jobs (counts come from the stores as callables)."""

    root_dir: str
    graph_driver: str = "overlay2"
    cgroup_version: str = "1"
    cgroup_driver: str = "cgroupfs"
    counts: Callable[[], dict[str, int]] = lambda: {"Containers": 0, "ContainersRunning": 0,
                                                    "ContainersPaused": 0, "ContainersStopped": 0, "Images": 0}
    extra: dict[str, Any] = field(default_factory=dict)
    started: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))


def version_record() -> dict[str, Any]:
    uname = os.uname()
    return {
        "Platform": {"Name": "refengine"},
        "Components": [{"Name": "Engine", "Version": VERSION,
                        "Details": {"ApiVersion": API_VERSION, "MinAPIVersion": MIN_API_VERSION, "Os": "linux",
                                    "Arch": _arch(), "KernelVersion": uname.release, "Experimental": "false"}}],
        "Version": VERSION, "ApiVersion": API_VERSION, "MinAPIVersion": MIN_API_VERSION,
        "GitCommit": "", "GoVersion": f"python{platform.python_version()}", "Os": "linux", "Arch": _arch(),
        "KernelVersion": uname.release, "Experimental": False, "BuildTime": "",
    }


def info_record(si: SystemInfo) -> dict[str, Any]:
    counts = si.counts()
    uname = os.uname()
    return {
        "ID": si.extra.get("ID", socket.gethostname()),
        **counts,
        "Driver": si.graph_driver, "DriverStatus": [],
        "DockerRootDir": si.root_dir,
        "Plugins": {"Volume": ["local"], "Network": ["bridge", "host", "null"], "Authorization": [],
                    "Log": ["json-file"]},
        "MemoryLimit": True, "SwapLimit": True, "KernelMemory": False, "KernelMemoryTCP": False,
        "CpuCfsPeriod": True, "CpuCfsQuota": True, "CPUShares": True, "CPUSet": True, "PidsLimit": True,
        "OomKillDisable": True, "IPv4Forwarding": True, "BridgeNfIptables": True, "BridgeNfIp6tables": True,
        "Debug": False, "NFd": len(os.listdir("/proc/self/fd")), "NGoroutines": 0,
        "SystemTime": dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z"),
        "LoggingDriver": "json-file", "CgroupDriver": si.cgroup_driver, "CgroupVersion": si.cgroup_version,
        "NEventsListener": 0, "KernelVersion": uname.release, "OperatingSystem": _os_release(),
        "OSVersion": "", "OSType": "linux", "Architecture": platform.machine(),
        "IndexServerAddress": "https://index.docker.io/v1/",
        "RegistryConfig": {"AllowNondistributableArtifactsCIDRs": [], "AllowNondistributableArtifactsHostnames": [],
                           "InsecureRegistryCIDRs": ["127.0.0.0/8"], "IndexConfigs": {}, "Mirrors": []},
        "NCPU": os.cpu_count() or 1, "MemTotal": mem_total(), "GenericResources": [],
        "HttpProxy": "", "HttpsProxy": "", "NoProxy": "", "Name": socket.gethostname(), "Labels": [],
        "ExperimentalBuild": False, "ServerVersion": VERSION,
        "Runtimes": {"native": {"path": "refengine-libcontainer"}}, "DefaultRuntime": "native",
        "Swarm": {"NodeID": "", "NodeAddr": "", "LocalNodeState": "inactive", "ControlAvailable": False,
                  "Error": "", "RemoteManagers": None},
        "LiveRestoreEnabled": True, "Isolation": "default", "InitBinary": "",
        "ContainerdCommit": {"ID": "", "Expected": ""}, "RuncCommit": {"ID": "", "Expected": ""},
        "InitCommit": {"ID": "", "Expected": ""},
        "SecurityOptions": ["name=seccomp,profile=default"] + (["name=cgroupns"] if si.cgroup_version == "2" else []),
        "Warnings": [],
        **si.extra,
    }


def register(engine: Engine, si: SystemInfo) -> None:
    def version(job: Job) -> dict[str, Any]:
        return version_record()

    def info(job: Job) -> dict[str, Any]:
        return info_record(si)

    engine.register("version", version)
    engine.register("info", info)
