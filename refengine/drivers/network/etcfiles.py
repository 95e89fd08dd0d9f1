"""/etc/hosts, /etc/resolv.conf and /etc/hostname for a container, as dockerd writes them.

The engine keeps these files in the container's state directory and bind-mounts them (HostsPath,
ResolvConfPath, HostnamePath in inspect). Writes are atomic (temp file + rename) so a container reading
them while a network is connected never sees half a file. Note for the mounting side: a rename replaces
the inode, so a file already bind-mounted keeps the old content; rewrite in place (`write(..., atomic=False)`)
for files that are mounted already.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterable

DEFAULT_DNS = ["8.8.8.8", "8.8.4.4"]  # dockerd's fallback when the host has only loopback resolvers
EMBEDDED_DNS = "127.0.0.11"

HOSTS_HEADER = """127.0.0.1\tlocalhost
::1\tlocalhost ip6-localhost ip6-loopback
fe00::0\tip6-localnet
ff00::0\tip6-mcastprefix
ff02::1\tip6-allnodes
ff02::2\tip6-allrouters
"""


def _is_loopback(addr: str) -> bool:
    try:
        return ipaddress.ip_address(addr.split("%")[0]).is_loopback
    except ValueError:
        return False


def parse_resolv(text: str) -> tuple[list[str], list[str], list[str]]:
    """(nameservers, search domains, options) of a resolv.conf."""
    ns: list[str] = []
    search: list[str] = []
    options: list[str] = []
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split(";", 1)[0].split()
        if not fields:
            continue
        if fields[0] == "nameserver" and len(fields) > 1:
            ns.append(fields[1])
        elif fields[0] in ("search", "domain"):
            search = fields[1:]  # the last search/domain line wins, as in glibc
        elif fields[0] == "options":
            options += fields[1:]
    return ns, search, options


def host_nameservers(text: str) -> list[str]:
    """The host's resolvers as the embedded DNS's upstreams (loopback ones included: it forwards from the host)."""
    return parse_resolv(text)[0]


def resolv_conf(host_text: str, user_network: bool, dns: Iterable[str] = (), dns_search: Iterable[str] = (),
                dns_options: Iterable[str] = ()) -> str:
    """The container's resolv.conf.

    User-defined networks: the embedded server plus `options ndots:0` (dockerd's; names resolve through
    127.0.0.11 first). Default bridge: the host's file without loopback nameservers (unreachable from a
    container's netns), falling back to Google's servers like dockerd when none remain. HostConfig.Dns,
    DnsSearch and DnsOptions replace the host's values.
    """
    ns, search, options = parse_resolv(host_text)
    dns, dns_search, dns_options = list(dns), list(dns_search), list(dns_options)
    if dns_search:
        search = dns_search
    if dns_options:
        options = dns_options
    lines = []
    if search:
        lines.append("search " + " ".join(search))
    if user_network:
        lines.append(f"nameserver {EMBEDDED_DNS}")
        opts = [o for o in options if not o.startswith("ndots:")]
        # dockerd keeps a user's ndots; it adds ndots:0 only when none was given
        ndots = [o for o in options if o.startswith("ndots:")] or ["ndots:0"]
        lines.append("options " + " ".join(ndots + opts))
    else:
        servers = dns or [s for s in ns if not _is_loopback(s)] or DEFAULT_DNS
        lines += [f"nameserver {s}" for s in servers]
        if options:
            lines.append("options " + " ".join(options))
    return "\n".join(lines) + "\n"


def hosts(hostname: str, addresses: Iterable[str], domainname: str = "",
          extra_hosts: Iterable[str] = ()) -> str:
    """The container's /etc/hosts: the standard block, ExtraHosts ("name:ip"), then its own addresses."""
    out = HOSTS_HEADER
    for entry in extra_hosts:
        name, _, ip = entry.partition(":")  # "host:ip"; an IPv6 ip keeps its colons after the first
        if name and ip:
            out += f"{ip}\t{name}\n"
    names = f"{hostname}.{domainname}\t{hostname}" if domainname else hostname
    for ip in addresses:
        if ip:
            out += f"{ip}\t{names}\n"
    return out


def hostname_file(hostname: str) -> str:
    return hostname + "\n"


def write(path: str, content: str, atomic: bool = True) -> None:
    if not atomic:
        with open(path, "w") as f:
            f.write(content)
        return
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(content)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def write_container_files(directory: str, hostname: str, addresses: Iterable[str], user_network: bool,
                          domainname: str = "", extra_hosts: Iterable[str] = (), dns: Iterable[str] = (),
                          dns_search: Iterable[str] = (), dns_options: Iterable[str] = (),
                          host_resolv: str = "/etc/resolv.conf") -> dict[str, str]:
    """Write hosts, resolv.conf and hostname under `directory`; returns {"hosts": path, ...}."""
    try:
        with open(host_resolv) as f:
            host_text = f.read()
    except OSError:
        host_text = ""
    paths = {n: os.path.join(directory, n) for n in ("hosts", "resolv.conf", "hostname")}
    write(paths["hosts"], hosts(hostname, addresses, domainname, extra_hosts))
    write(paths["resolv.conf"], resolv_conf(host_text, user_network, dns, dns_search, dns_options))
    write(paths["hostname"], hostname_file(hostname))
    return paths
