"""A container's record: what was asked for at create, what the daemon made of it, and its state."""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field
from typing import Any

from ..clock import now_rfc3339 as now_rfc3339  # re-exported: the containers package's name for it

ZERO_TIME = "0001-01-01T00:00:00Z"


def parse_rfc3339(value: str) -> dt.datetime:
    if value == ZERO_TIME or not value:
        return dt.datetime(1, 1, 1, tzinfo=dt.UTC)
    head, _, frac = value.rstrip("Z").partition(".")
    return dt.datetime.fromisoformat(head + ("." + frac[:6] if frac else "")).replace(tzinfo=dt.UTC)


@dataclass
class State:
    status: str = "created"  # created running paused restarting removing exited dead
    running: bool = False
    paused: bool = False
    restarting: bool = False
    oom_killed: bool = False
    dead: bool = False
    pid: int = 0
    exit_code: int = 0
    error: str = ""
    started_at: str = ZERO_TIME
    finished_at: str = ZERO_TIME

    def api(self) -> dict[str, Any]:
        return {"Status": self.status, "Running": self.running, "Paused": self.paused,
                "Restarting": self.restarting, "OOMKilled": self.oom_killed, "Dead": self.dead, "Pid": self.pid,
                "ExitCode": self.exit_code, "Error": self.error, "StartedAt": self.started_at,
                "FinishedAt": self.finished_at}


@dataclass
class Container:
    id: str
    name: str  # with the leading slash, as the API shows it
    created: str
    image_id: str
    path: str
    args: list[str]
    config: dict[str, Any]  # the API's ContainerConfig after merging the image's
    host_config: dict[str, Any]  # the API's HostConfig with defaults filled
    networking: dict[str, Any] = field(default_factory=dict)  # NetworkingConfig.EndpointsConfig as given
    state: State = field(default_factory=State)
    restart_count: int = 0
    driver: str = ""
    rootfs: str = ""
    log_path: str = ""
    hostname_path: str = ""
    hosts_path: str = ""
    resolv_conf_path: str = ""
    mounts: list[dict[str, Any]] = field(default_factory=list)  # MountPoint records
    network_settings: dict[str, Any] = field(default_factory=dict)
    has_been_started: bool = False
    manually_stopped: bool = False

    @property
    def short_id(self) -> str:
        return self.id[:12]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Container:
        data = dict(data)
        data["state"] = State(**data.get("state", {}))
        return cls(**data)
