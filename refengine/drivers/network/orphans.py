"""Kernel objects of refengine daemons that died without cleaning up (SIGKILL, a crash), found and removed.

Every daemon tags what it makes with its tag (its nft table name: `refengine`, or `refengine_<8 hex>` for a
daemon with private names, see daemon/netsetup.py) and holds the tag's lock file while it runs. At start a
daemon looks for other tags (nft tables, DOCKER-USER comments, bridge aliases `refengine:<id>@<tag>`); a tag
whose lock file exists and can be locked has no live owner; a private tag without a lock file (made by an
older daemon) is dead when no running refengined has the data root it derives from. A dead tag's tables,
rules and bridges are removed. A tag with a bridge
that still has ports is left alone: containers of that daemon may still run (a restart re-adopts them).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import re
import subprocess
from typing import IO

from .bridge import ALIAS_PREFIX
from .dockeruser import CHAIN, DockerUserAccept
from .netlink import ENODEV, NetlinkError, NetlinkWorker
from .nsutil import command_in_netns

STANDARD = "refengine"
TAG = re.compile(r"^refengine(_[0-9a-f]{8})?$")
LOCK_DIR = "/run"
log = logging.getLogger("refengine.network")


def lock_path(tag: str) -> str:
    suffix = "" if tag == STANDARD else "-" + tag[len(STANDARD) + 1:]
    return os.path.join(LOCK_DIR, f"refengine-network{suffix}.lock")


def try_lock(tag: str, create: bool = True) -> IO[str] | None:
    """The tag's lock, held until the file is closed; None if a live daemon holds it (or, with create=False,
    if there is no lock file: a daemon that does not use one may be alive)."""
    path = lock_path(tag)
    if not create and not os.path.exists(path):
        return None
    os.makedirs(LOCK_DIR, exist_ok=True)
    fh = open(path, "a")  # noqa: SIM115 - held by the caller
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.close()
        return None
    return fh


def release(fh: IO[str], tag: str) -> None:
    """Give the lock up; private tags' files go too (nothing of a daemon stays in /run)."""
    if tag != STANDARD:
        try:
            os.unlink(lock_path(tag))
        except FileNotFoundError:
            pass
    fh.close()


def private_tag(data_root: str) -> str:
    """The private tag of a daemon on `data_root` (its nft table name)."""
    return f"{STANDARD}_{hashlib.sha256(os.path.realpath(data_root).encode()).hexdigest()[:8]}"


def _live_private_tags() -> set[str]:
    """Private tags of the refengineds running now (from their command lines and working directories)."""
    tags = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                argv = [a.decode(errors="replace") for a in fh.read().split(b"\0")]
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            continue
        if not any(a.endswith("refengined") or a == "refengine.daemon.main" for a in argv):
            continue
        root = "/var/lib/refengine"
        for i, a in enumerate(argv):
            if a == "--data-root" and i + 1 < len(argv):
                root = argv[i + 1]
            elif a.startswith("--data-root="):
                root = a.split("=", 1)[1]
        tags.add(private_tag(os.path.join(cwd, root)))
    return tags


def _dead(tag: str, live: set[str]) -> IO[str] | None:
    """The tag's lock if its owner is dead (the caller releases it), else None."""
    if os.path.exists(lock_path(tag)) or tag == STANDARD:
        return try_lock(tag, create=False)
    return None if tag in live else try_lock(tag)


def _tables(netns: str | None) -> dict[str, set[str]]:
    res = subprocess.run(command_in_netns(["nft", "-j", "list", "tables"], netns), capture_output=True, text=True,
                         timeout=15)
    out: dict[str, set[str]] = {}
    for item in json.loads(res.stdout or '{"nftables": []}').get("nftables", []):
        table = item.get("table")
        if table and TAG.match(table.get("name", "")):
            out.setdefault(table["name"], set()).add(table["family"])
    return out


def _rule_tags(netns: str | None) -> set[str]:
    res = subprocess.run(command_in_netns(["iptables", "-w", "5", "-S", CHAIN], netns), capture_output=True,
                         text=True, timeout=15)
    tags = set()
    for line in res.stdout.splitlines() if res.returncode == 0 else []:
        words = line.split()
        if "--comment" in words:
            tag = words[words.index("--comment") + 1].strip('"')
            if TAG.match(tag):
                tags.add(tag)
    return tags


def _bridges(worker: NetlinkWorker) -> dict[str, list[tuple[int, bool]]]:
    """tag -> [(bridge index, has ports)] for bridges carrying a refengine alias."""
    def scan() -> dict[str, list[tuple[int, bool]]]:
        links = worker.host().get_links()
        masters = {link.get("master") for link in links if link.get("master")}
        out: dict[str, list[tuple[int, bool]]] = {}
        for link in links:
            alias, name = link.get("ifalias") or "", link.get("ifname") or ""
            if link.get(("linkinfo", "kind")) != "bridge" or not alias.startswith(ALIAS_PREFIX):
                continue
            tag = alias.rpartition("@")[2] if "@" in alias else ""
            legacy = re.match(r"^re([0-9a-f]{8})0$", name)  # private default bridges from before the alias tag
            tag = tag or (f"{STANDARD}_{legacy.group(1)}" if legacy else "")
            if TAG.match(tag):
                out.setdefault(tag, []).append((link["index"], link["index"] in masters))
        return out
    return worker.call(scan)


def collect(own_tag: str, worker: NetlinkWorker, netns: str | None = None) -> list[str]:
    """Remove the objects of dead daemons' tags; returns what was removed (for the log)."""
    tables, bridges = _tables(netns), _bridges(worker)
    removed: list[str] = []
    live = _live_private_tags()
    for tag in sorted((set(tables) | _rule_tags(netns) | set(bridges)) - {own_tag}):
        fh = _dead(tag, live)
        if fh is None:
            continue  # its daemon runs
        try:
            if any(busy for _index, busy in bridges.get(tag, [])):
                continue  # containers of that daemon still sit on it
            for index, _busy in bridges.get(tag, []):
                try:
                    worker.call(lambda i=index: worker.host().link("del", index=i))
                except NetlinkError as exc:
                    if exc.code != ENODEV:
                        raise
            for family in sorted(tables.get(tag, ())):
                subprocess.run(command_in_netns(["nft", "delete", "table", family, tag], netns),
                               capture_output=True, timeout=15)
            DockerUserAccept(tag, True, netns).remove_all()
            removed.append(f"{tag}: {len(bridges.get(tag, []))} bridge(s), tables {sorted(tables.get(tag, ()))}")
        finally:
            release(fh, tag)
    for line in removed:
        log.info("removed what a dead refengined left: %s", line)
    return removed
