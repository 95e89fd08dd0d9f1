"""Fixtures for the cgroups area: the cgroup version to expect, and reading cgroup files from both sides.

Host-side reads go through the `hostside` fixture (read only; it skips on remote targets). In-container
reads exec busybox `cat` and decide the layout by what is mounted at /sys/fs/cgroup inside (cgroup2
magic → v2 paths, tmpfs of v1 hierarchies → v1 paths). Nothing here writes to a cgroup file.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from conformance.capabilities import Capabilities
from conformance.catalogue import api_tuple
from conformance.client import ApiClient
from conformance.host import Host
from conformance.resources import Containers, Result

from . import files
from .files import Expect

MiB = 1024 * 1024
# Prints the statfs magic of /sys/fs/cgroup, then each named file as "@@@ <path>" and its content (or
# cat's error: the paths of both versions are read, so one of each pair is missing; found on a v2 VM).
# With a cgroup namespace of the host's on v2, /sys/fs/cgroup is the whole hierarchy and the container's own
# files are below its path from /proc/self/cgroup ("0::<path>"): those are printed as "@@@ own:<path>".
READ_SCRIPT = ('stat -f -c %t /sys/fs/cgroup; own=$(sed -n "s/^0:://p" /proc/self/cgroup); '
               'for f in "$@"; do echo "@@@ $f"; cat "$f" 2>&1 || true; '
               'case "$own" in ""|/) ;; *) echo "@@@ own:$f"; cat "/sys/fs/cgroup$own/${f#/sys/fs/cgroup/}" 2>&1 || true;; '
               'esac; done')
STATS_TIMEOUT = 30


def poll(fn: Callable[[], Any], timeout: float = 10, interval: float = 0.05) -> Any:
    """Call fn until it returns something truthy or the deadline passes; returns the last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def poll_value(fn: Callable[[], Any], good: Callable[[Any], bool], timeout: float = 10,
               interval: float = 0.05) -> tuple[bool, Any]:
    """Call fn until good(value) or the deadline; (whether it got good, the last value)."""
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if good(value):
            return True, value
        if time.monotonic() > deadline:
            return False, value
        time.sleep(interval)


@dataclass
class InsideView:
    """What a container read of cgroup files showed: its layout and each file's content."""

    layout: int | None
    magic: str
    contents: dict[str, str]
    result: Result

    def raw(self, expect: Expect) -> str:
        path = expect.inside_path()
        found = self.contents.get(path)
        own = self.contents.get("own:" + path)
        if self.layout == 2 and own is not None and (found is None or found.startswith("cat: ")) \
                and not own.startswith("cat: "):
            return own  # the host's cgroup namespace: the container's own directory inside the whole tree
        return found if found is not None else "<not read>"


def parse_inside(result: Result) -> tuple[str, dict[str, str]]:
    lines = result.stdout.splitlines()
    magic = lines[0].strip() if lines else ""
    contents: dict[str, str] = {}
    current: str | None = None
    for line in lines[1:]:
        if line.startswith("@@@ "):
            current = line[4:]
            contents[current] = ""
        elif current is not None:
            contents[current] += line + "\n"
    return magic, contents


class Cgroups:
    """The area's helper: expectations for this target's cgroup version, host and in-container reads."""

    def __init__(self, api: ApiClient, containers: Containers, version: int, request: pytest.FixtureRequest) -> None:
        self.api, self.containers, self.version, self._request = api, containers, version, request

    # --- host side ---------------------------------------------------------------------------
    @property
    def host(self) -> Host:
        """The hostside fixture (skips the check when host-side facts can't be read)."""
        return self._request.getfixturevalue("hostside")

    def pid(self, cid: str) -> int:
        pid = int(self.containers.inspect(cid)["State"].get("Pid") or 0)
        assert pid > 0, f"container {cid[:12]} has State.Pid {pid}; expected it running with a PID"
        return pid

    def host_raw(self, pid: int, expect: Expect) -> str:
        return self.host.cgroup_file(pid, expect.controller, expect.file)

    def host_dir(self, pid: int, controller: str) -> str:
        return self.host.cgroup_dir(pid, controller if self.version == 1 else "")

    def assert_host(self, pid: int, expect: Expect, where: str = "host side") -> None:
        try:
            raw = self.host_raw(pid, expect)
        except FileNotFoundError:
            pytest.fail(f"{where}: the container's cgroup has no {expect.file} "
                        f"(in {self.host_dir(pid, expect.controller)}); with {expect.what} it must read "
                        f"{expect.wanted()}", pytrace=False)
        assert expect.accepts(raw), expect.explain(raw, where)

    def host_int(self, pid: int, expect: Expect) -> int:
        value = expect.read(self.host_raw(pid, expect))
        try:
            return int(value)
        except ValueError:
            pytest.fail(f"host side: {expect.file} of pid {pid} reads {value!r}, not a number", pytrace=False)

    # --- inside the container ---------------------------------------------------------------
    def read_inside(self, cid: str, make: Callable[[int], list[Expect]]) -> tuple[InsideView, list[Expect]]:
        """Exec a reader in a running container; the expectations built for the layout it sees."""
        paths = sorted({e.inside_path() for v in (1, 2) for e in make(v)})
        result = self.containers.exec(cid, ["sh", "-c", READ_SCRIPT, "sh", *paths], timeout=15)
        return self._view(result, make)

    def run_inside(self, make: Callable[[int], list[Expect]], **create: Any) -> tuple[InsideView, list[Expect]]:
        """Run a container whose command reads the files, to its end."""
        paths = sorted({e.inside_path() for v in (1, 2) for e in make(v)})
        result = self.containers.run_output(["sh", "-c", READ_SCRIPT, "sh", *paths], timeout=30, **create)
        return self._view(result, make)

    def _view(self, result: Result, make: Callable[[int], list[Expect]]) -> tuple[InsideView, list[Expect]]:
        assert result.exit_code == 0, f"reading cgroup files inside the container failed: {result.describe()}"
        magic, contents = parse_inside(result)
        layout = files.layout_from_magic(magic)
        assert layout is not None, (
            f"inside the container /sys/fs/cgroup has filesystem magic {magic!r}: neither cgroup2 nor the tmpfs "
            f"of v1 hierarchies; a container must see its cgroup there ({result.describe()})")
        return InsideView(layout, magic, contents, result), make(layout)

    def assert_inside(self, view: InsideView, expects: list[Expect]) -> None:
        for e in expects:
            raw = view.raw(e)
            assert e.accepts(raw), e.explain(raw, f"inside the container ({e.inside_path()})")

    # --- API ----------------------------------------------------------------------------------
    def stats(self, cid: str) -> dict[str, Any]:
        """One stats sample; `one-shot` (API 1.41) skips dockerd's second sample a second later."""
        params = {"stream": "false"}
        if api_tuple(self.api.version or "1.41") >= (1, 41):
            params["one-shot"] = "true"
        resp = self.api.get(f"/containers/{cid}/stats", params=params, timeout=STATS_TIMEOUT)
        assert resp.status_code == 200, (
            f"GET /containers/{{id}}/stats?stream=false answered {resp.status_code} {resp.text[:200]!r}; expected 200")
        body = resp.json()
        assert isinstance(body, dict), f"the stats body is {body!r}; expected a JSON object"
        return body

    def update(self, cid: str, body: dict[str, Any]) -> None:
        resp = self.api.post(f"/containers/{cid}/update", body)
        assert resp.status_code == 200, (
            f"POST /containers/{{id}}/update {body} answered {resp.status_code} {resp.text[:300]!r}; expected 200")


@pytest.fixture(scope="session")
def cgroup_version(capabilities: Capabilities) -> int:
    """The cgroup version the daemon reports in /info (CgroupVersion)."""
    if str(capabilities.cgroup_version) not in ("1", "2"):
        pytest.skip(f"the target reports CgroupVersion {capabilities.cgroup_version!r} in /info; "
                    "the cgroup checks need 1 or 2 to know which interface files to expect")
    return int(str(capabilities.cgroup_version))


@pytest.fixture
def cg(api: ApiClient, containers: Containers, cgroup_version: int, request: pytest.FixtureRequest) -> Cgroups:
    return Cgroups(api, containers, cgroup_version, request)


def needs(expect: Expect | None, version: int, what: str) -> Expect:
    """The expectation, or skip: this cgroup version has no file for it."""
    if expect is None:
        pytest.skip(files.unsupported_reason(version, what))
    return expect
