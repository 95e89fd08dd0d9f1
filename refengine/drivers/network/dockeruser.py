"""ACCEPT rules for refengine's bridges in dockerd's DOCKER-USER chain (coexistence, see nat.py).

Why: where dockerd runs, its `filter FORWARD` chain has policy DROP and, with br_netfilter, drops the
forwarded traffic of every other bridge (egress and even container to container on one bridge). DOCKER-USER
is the chain dockerd documents for other tools' rules; it is jumped to first from FORWARD. Per bridge we add

    -i <bridge> -j ACCEPT                                            (from the bridge: egress, same bridge)
    -o <bridge> -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT (replies)

each tagged with the comment `refengine:<table>`. An accept only ends dockerd's base chain: the isolation,
internal and icc drops in refengine's own nft table still apply. Only rules carrying our comment are ever
deleted; nothing happens when the chain does not exist (no dockerd) or iptables is missing.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from dataclasses import dataclass, field

from .bridge import check_ifname
from .nsutil import command_in_netns

CHAIN = "DOCKER-USER"
TIMEOUT = 15
log = logging.getLogger("refengine.network")


def _rules(bridge: str, tag: str) -> list[list[str]]:
    check_ifname(bridge)
    comment = ["-m", "comment", "--comment", tag]
    return [["-i", bridge, *comment, "-j", "ACCEPT"],
            ["-o", bridge, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", *comment, "-j", "ACCEPT"]]


@dataclass
class DockerUserAccept:
    """Keeps one pair of ACCEPT rules per refengine bridge in DOCKER-USER (when the chain exists)."""

    tag: str = "refengine"
    enabled: bool = True
    netns: str | None = None
    bridges: set[str] = field(default_factory=set)

    def _iptables(self, *args: str) -> subprocess.CompletedProcess[str]:
        argv = command_in_netns(["iptables", "-w", "5", *args], self.netns)
        return subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT)

    def available(self) -> bool:
        if not self.enabled or shutil.which("iptables") is None:
            return False
        return self._iptables("-S", CHAIN).returncode == 0

    def add(self, bridge: str) -> bool:
        """Insert the bridge's rules at the top of DOCKER-USER; False if there is no such chain (or disabled)."""
        if not self.available():
            return False
        for rule in reversed(_rules(bridge, self.tag)):
            if self._iptables("-C", CHAIN, *rule).returncode != 0:
                res = self._iptables("-I", CHAIN, "1", *rule)
                if res.returncode != 0:
                    log.warning("iptables -I %s failed: %s", CHAIN, res.stderr.strip())
                    return False
        self.bridges.add(bridge)
        return True

    def remove(self, bridge: str) -> None:
        self.bridges.discard(bridge)
        if not self.enabled or shutil.which("iptables") is None:
            return
        for rule in _rules(bridge, self.tag):
            while self._iptables("-C", CHAIN, *rule).returncode == 0:  # exact spec, with our comment
                if self._iptables("-D", CHAIN, *rule).returncode != 0:
                    break

    def ours(self) -> list[str]:
        """Bridges that have rules with our tag in the chain now (leftovers of a crashed daemon included)."""
        if not self.enabled or shutil.which("iptables") is None:
            return []
        res = self._iptables("-S", CHAIN)
        if res.returncode != 0:
            return []
        found = []
        for line in res.stdout.splitlines():
            words = line.split()
            if "--comment" in words and words[words.index("--comment") + 1].strip('"') == self.tag:
                for flag in ("-i", "-o"):
                    if flag in words:
                        found.append(words[words.index(flag) + 1])
        return sorted(set(found))

    def remove_all(self, keep: set[str] | frozenset[str] = frozenset()) -> None:
        for bridge in set(self.ours()) | set(self.bridges):
            if bridge not in keep:
                self.remove(bridge)
