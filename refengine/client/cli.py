"""`refengine`: the client CLI for the common verbs, speaking the Engine API to refengined (or any daemon).

Errors are one line on stderr and a non-zero exit (125 for daemon errors, as the docker CLI);
`run` exits with the container's status.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import signal
import sys
import threading
from typing import Any

from .api import ApiError, Client, demux_frames, quote_ref
from .transport import DEFAULT_HOST, Host, HostError, TLSOptions


def _env_bool(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0", "false")


def _client(args: argparse.Namespace) -> Client:
    url = args.host or os.environ.get("DOCKER_HOST") or DEFAULT_HOST
    cert_path = os.environ.get("DOCKER_CERT_PATH", "")
    tlsverify = args.tlsverify or _env_bool("DOCKER_TLS_VERIFY")

    def pick(value: str | None, name: str) -> str | None:
        if value:
            return value
        candidate = os.path.join(cert_path, name)
        return candidate if cert_path and os.path.exists(candidate) else None
    tls = TLSOptions(verify=tlsverify, cacert=pick(args.tlscacert, "ca.pem"), cert=pick(args.tlscert, "cert.pem"),
                     key=pick(args.tlskey, "key.pem"))
    return Client(Host.parse(url), tls if (args.tls or tls.enabled) else None)


def _print_table(rows: list[list[str]], head: list[str]) -> None:
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows, strict=True)] if rows else [len(h) for h in head]
    for row in [head, *rows]:
        print("   ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


def _kv(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items or []:
        k, _, v = item.partition("=")
        out[k] = v
    return out


def _ports(specs: list[str]) -> tuple[dict[str, list[dict[str, str]]], dict[str, dict]]:
    """`-p [ip:][host:]ctr[/proto]` → PortBindings and ExposedPorts."""
    bindings: dict[str, list[dict[str, str]]] = {}
    for spec in specs or []:
        spec, _, proto = spec.partition("/")
        parts = spec.split(":")
        ip, hostport, ctr = ("", "", parts[0]) if len(parts) == 1 else \
            ("", parts[0], parts[1]) if len(parts) == 2 else (parts[0], parts[1], parts[2])
        bindings.setdefault(f"{ctr}/{proto or 'tcp'}", []).append({"HostIp": ip, "HostPort": hostport})
    return bindings, {k: {} for k in bindings}


def _memory(value: str | None) -> int | None:
    if not value:
        return None
    units = {"b": 1, "k": 1024, "m": 1024 ** 2, "g": 1024 ** 3}
    v = value.lower()
    return int(float(v[:-1]) * units[v[-1]]) if v[-1] in units else int(v)


def _stream_output(sock, tty: bool) -> None:
    buf = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except OSError:
            return
        if not chunk:
            return
        if tty:
            os.write(sys.stdout.fileno(), chunk)
            continue
        frames, buf = demux_frames(buf + chunk)
        for stream, data in frames:
            os.write((sys.stderr if stream == 2 else sys.stdout).fileno(), data)


def _pump_stdin(sock, done: threading.Event) -> None:
    fd = sys.stdin.fileno()
    while not done.is_set():
        ready, _, _ = select.select([fd], [], [], 0.2)
        if not ready:
            continue
        data = os.read(fd, 65536)
        if not data:
            try:
                sock.shutdown(1)  # half-close: the container sees EOF on stdin
            except OSError:
                pass
            return
        sock.sendall(data)


def _interactive(client: Client, sock, tty: bool, stdin: bool, resize_path: str | None) -> None:
    """Copy the terminal to and from a hijacked connection; raw mode with a TTY."""
    done = threading.Event()
    old = None
    if tty and sys.stdin.isatty():
        import termios
        import tty as ttymod
        old = termios.tcgetattr(sys.stdin.fileno())
        ttymod.setraw(sys.stdin.fileno())
        if resize_path:
            def resize(*_: Any) -> None:
                size = os.get_terminal_size(sys.stdout.fileno())
                try:
                    client.post(resize_path, h=size.lines, w=size.columns)
                except ApiError:
                    pass
            signal.signal(signal.SIGWINCH, resize)
            resize()
    try:
        if stdin:
            threading.Thread(target=_pump_stdin, args=(sock, done), daemon=True).start()
        _stream_output(sock, tty)
    finally:
        done.set()
        if old is not None:
            import termios
            termios.tcsetattr(sys.stdin.fileno(), termios.TCSADRAIN, old)
        sock.close()


def cmd_run(c: Client, a: argparse.Namespace) -> int:
    bindings, exposed = _ports(a.publish)
    host_config: dict[str, Any] = {"AutoRemove": a.rm, "Binds": a.volume or None, "PortBindings": bindings,
                                   "Privileged": a.privileged, "CapAdd": a.cap_add or None,
                                   "CapDrop": a.cap_drop or None, "Memory": _memory(a.memory) or 0,
                                   "SecurityOpt": a.security_opt or None, "ReadonlyRootfs": a.read_only}
    if a.network:
        host_config["NetworkMode"] = a.network
    if a.pids_limit:
        host_config["PidsLimit"] = a.pids_limit
    if a.cpus:
        host_config["NanoCpus"] = int(a.cpus * 1e9)
    if a.init:
        host_config["Init"] = True
    body: dict[str, Any] = {"Image": a.image, "Cmd": a.command or None, "Env": a.env or None, "Tty": a.tty,
                            "OpenStdin": a.interactive, "StdinOnce": a.interactive, "AttachStdin": a.interactive,
                            "AttachStdout": not a.detach, "AttachStderr": not a.detach, "User": a.user or "",
                            "WorkingDir": a.workdir or "", "Labels": _kv(a.label), "ExposedPorts": exposed or None,
                            "HostConfig": host_config}
    if a.entrypoint is not None:
        body["Entrypoint"] = [a.entrypoint] if a.entrypoint else []
    if a.hostname:
        body["Hostname"] = a.hostname
    cid = c.post("/containers/create", body, name=a.name)["Id"]
    if a.detach:
        _start(c, cid)
        print(cid)
        return 0
    sock = c.hijack(f"/containers/{cid}/attach", {"stream": 1, "stdout": 1, "stderr": 1,
                                                  "stdin": 1 if a.interactive else 0})
    waiter = Client(c.host, c.tls, None)
    condition = "removed" if a.rm else "next-exit"
    result: dict[str, Any] = {}

    def wait() -> None:
        try:
            result.update(waiter.post(f"/containers/{cid}/wait", condition=condition))
        except ApiError as exc:
            result["error"] = str(exc)
    t = threading.Thread(target=wait, daemon=True)
    t.start()
    _start(c, cid)
    _interactive(c, sock, a.tty, a.interactive, f"/containers/{cid}/resize")
    t.join()
    if "error" in result:
        raise ApiError(0, result["error"])
    return int(result.get("StatusCode", 0))


def cmd_ps(c: Client, a: argparse.Namespace) -> int:
    filters: dict[str, list[str]] = {}
    for f in a.filter or []:
        k, _, v = f.partition("=")
        filters.setdefault(k, []).append(v)
    rows = c.get("/containers/json", all=a.all, filters=filters or None)
    if a.quiet:
        for r in rows:
            print(r["Id"][:12])
        return 0
    _print_table([[r["Id"][:12], r["Image"], json.dumps(r["Command"])[:30], r["Status"],
                   ", ".join(r["Names"]).lstrip("/")] for r in rows],
                 ["CONTAINER ID", "IMAGE", "COMMAND", "STATUS", "NAMES"])
    return 0


def cmd_logs(c: Client, a: argparse.Namespace) -> int:
    tty = c.get(f"/containers/{a.container}/json")["Config"].get("Tty", False)
    buf = b""
    for chunk in c.raw_stream(f"/containers/{a.container}/logs",
                              {"stdout": 1, "stderr": 1, "follow": a.follow, "timestamps": a.timestamps,
                               "tail": a.tail}):
        if tty:
            os.write(sys.stdout.fileno(), chunk)
            continue
        frames, buf = demux_frames(buf + chunk)
        for stream, data in frames:
            os.write((sys.stderr if stream == 2 else sys.stdout).fileno(), data)
    return 0


def cmd_exec(c: Client, a: argparse.Namespace) -> int:
    body = {"Cmd": a.command, "Tty": a.tty, "AttachStdin": a.interactive, "AttachStdout": not a.detach,
            "AttachStderr": not a.detach, "Env": a.env or None, "User": a.user or "", "WorkingDir": a.workdir or "",
            "Privileged": a.privileged}
    eid = c.post(f"/containers/{a.container}/exec", body)["Id"]
    if a.detach:
        c.post(f"/exec/{eid}/start", {"Detach": True, "Tty": a.tty})
        return 0
    sock = c.hijack(f"/exec/{eid}/start", body={"Detach": False, "Tty": a.tty})
    _interactive(c, sock, a.tty, a.interactive, f"/exec/{eid}/resize")
    return int(c.get(f"/exec/{eid}/json").get("ExitCode") or 0)


def cmd_images(c: Client, a: argparse.Namespace) -> int:
    rows = c.get("/images/json", all=a.all)
    if a.quiet:
        for r in rows:
            print(r["Id"].removeprefix("sha256:")[:12])
        return 0
    out = []
    for r in rows:
        for tag in r.get("RepoTags") or ["<none>:<none>"]:
            repo, _, t = tag.rpartition(":")
            out.append([repo, t, r["Id"].removeprefix("sha256:")[:12], f"{r['Size'] / 1e6:.1f}MB"])
    _print_table(out, ["REPOSITORY", "TAG", "IMAGE ID", "SIZE"])
    return 0


def cmd_load(c: Client, a: argparse.Namespace) -> int:
    data = open(a.input, "rb").read() if a.input else sys.stdin.buffer.read()
    for msg in c.json_stream("POST", "/images/load", {"quiet": a.quiet}, data=data,
                             headers={"Content-Type": "application/x-tar"}):
        if msg.get("error"):
            raise ApiError(0, msg["error"])
        if msg.get("stream"):
            sys.stdout.write(msg["stream"])
    return 0


def _each(items: list[str], fn) -> int:
    rc = 0
    for item in items:
        try:
            fn(item)
            print(item)
        except ApiError as exc:
            print(f"Error: {exc}", file=sys.stderr)
            rc = 1
    return rc


def cmd_rm(c: Client, a: argparse.Namespace) -> int:
    return _each(a.containers, lambda x: c.delete(f"/containers/{x}", force=a.force, v=a.volumes))


def cmd_rmi(c: Client, a: argparse.Namespace) -> int:
    return _each(a.images, lambda x: c.delete(f"/images/{quote_ref(x)}", force=a.force))


def cmd_stop(c: Client, a: argparse.Namespace) -> int:
    return _each(a.containers, lambda x: c.request("POST", f"/containers/{x}/stop", {"t": a.time}))


def cmd_kill(c: Client, a: argparse.Namespace) -> int:
    return _each(a.containers, lambda x: c.request("POST", f"/containers/{x}/kill", {"signal": a.signal}))


def cmd_inspect(c: Client, a: argparse.Namespace) -> int:
    out, rc = [], 0
    for ref in a.objects:
        for path in (f"/containers/{ref}/json", f"/images/{quote_ref(ref)}/json", f"/volumes/{ref}", f"/networks/{ref}"):
            try:
                out.append(c.get(path))
                break
            except ApiError as exc:
                if exc.status != 404:
                    raise
        else:
            print(f"Error: No such object: {ref}", file=sys.stderr)
            rc = 1
    print(json.dumps(out, indent=4))
    return rc


def cmd_volume(c: Client, a: argparse.Namespace) -> int:
    if a.action == "ls":
        _print_table([[v["Driver"], v["Name"]] for v in c.get("/volumes")["Volumes"]], ["DRIVER", "VOLUME NAME"])
    elif a.action == "create":
        print(c.post("/volumes/create", {"Name": a.names[0] if a.names else "", "Labels": _kv(a.label)})["Name"])
    elif a.action == "rm":
        return _each(a.names, lambda x: c.delete(f"/volumes/{x}", force=a.force))
    elif a.action == "inspect":
        print(json.dumps([c.get(f"/volumes/{n}") for n in a.names], indent=4))
    elif a.action == "prune":
        print(json.dumps(c.post("/volumes/prune")))
    return 0


def cmd_network(c: Client, a: argparse.Namespace) -> int:
    if a.action == "ls":
        _print_table([[n["Id"][:12], n["Name"], n["Driver"], n["Scope"]] for n in c.get("/networks")],
                     ["NETWORK ID", "NAME", "DRIVER", "SCOPE"])
    elif a.action == "create":
        body: dict[str, Any] = {"Name": a.names[0], "Driver": a.driver, "Labels": _kv(a.label)}
        if a.subnet:
            body["IPAM"] = {"Config": [{"Subnet": a.subnet}]}
        print(c.post("/networks/create", body)["Id"])
    elif a.action == "rm":
        return _each(a.names, lambda x: c.delete(f"/networks/{x}"))
    elif a.action == "inspect":
        print(json.dumps([c.get(f"/networks/{n}") for n in a.names], indent=4))
    elif a.action in ("connect", "disconnect"):
        net, ctr = a.names[0], a.names[1]
        c.post(f"/networks/{net}/{a.action}", {"Container": ctr})
    return 0


def cmd_version(c: Client, a: argparse.Namespace) -> int:
    v = c.get("/version")
    print(f"Server: {v.get('Platform', {}).get('Name', '')} {v['Version']} (API {v['ApiVersion']}, "
          f"min {v.get('MinAPIVersion', '?')}), {v['Os']}/{v['Arch']}, kernel {v.get('KernelVersion', '')}")
    return 0


def cmd_info(c: Client, a: argparse.Namespace) -> int:
    i = c.get("/info")
    for key in ("Containers", "ContainersRunning", "ContainersPaused", "ContainersStopped", "Images", "Driver",
                "CgroupDriver", "CgroupVersion", "KernelVersion", "OperatingSystem", "NCPU", "MemTotal",
                "DockerRootDir", "ServerVersion"):
        print(f"{key}: {i.get(key)}")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="refengine", description="client for refengined (and other Engine API daemons)")
    p.add_argument("-H", "--host", help=f"daemon: unix:///path, tcp://host:port or fd://N (default $DOCKER_HOST, "
                                        f"then {DEFAULT_HOST})")
    p.add_argument("--tls", action="store_true", help="use TLS (implied by --tlsverify)")
    p.add_argument("--tlsverify", action="store_true", help="use TLS and verify the daemon")
    p.add_argument("--tlscacert")
    p.add_argument("--tlscert")
    p.add_argument("--tlskey")
    sub = p.add_subparsers(dest="cmd", required=True)

    r = sub.add_parser("run", help="create and start a container")
    r.add_argument("-d", "--detach", action="store_true")
    r.add_argument("-i", "--interactive", action="store_true")
    r.add_argument("-t", "--tty", action="store_true")
    r.add_argument("--rm", action="store_true")
    r.add_argument("--name")
    r.add_argument("-e", "--env", action="append")
    r.add_argument("-l", "--label", action="append")
    r.add_argument("-v", "--volume", action="append")
    r.add_argument("-p", "--publish", action="append")
    r.add_argument("-u", "--user")
    r.add_argument("-w", "--workdir")
    r.add_argument("-m", "--memory")
    r.add_argument("--cpus", type=float)
    r.add_argument("--pids-limit", type=int)
    r.add_argument("--network")
    r.add_argument("--hostname")
    r.add_argument("--entrypoint")
    r.add_argument("--privileged", action="store_true")
    r.add_argument("--read-only", action="store_true")
    r.add_argument("--init", action="store_true", help="run an init inside the container (signals, reaping)")
    r.add_argument("--cap-add", action="append")
    r.add_argument("--cap-drop", action="append")
    r.add_argument("--security-opt", action="append")
    r.add_argument("image")
    r.add_argument("command", nargs=argparse.REMAINDER)
    r.set_defaults(fn=cmd_run)

    s = sub.add_parser("ps", help="list containers")
    s.add_argument("-a", "--all", action="store_true")
    s.add_argument("-q", "--quiet", action="store_true")
    s.add_argument("-f", "--filter", action="append")
    s.set_defaults(fn=cmd_ps)

    s = sub.add_parser("logs", help="a container's output")
    s.add_argument("-f", "--follow", action="store_true")
    s.add_argument("-t", "--timestamps", action="store_true")
    s.add_argument("--tail", default="all")
    s.add_argument("container")
    s.set_defaults(fn=cmd_logs)

    s = sub.add_parser("exec", help="run a command in a running container")
    for flag, dest in (("-d", "detach"), ("-i", "interactive"), ("-t", "tty")):
        s.add_argument(flag, dest=dest, action="store_true")
    s.add_argument("--privileged", action="store_true")
    s.add_argument("-e", "--env", action="append")
    s.add_argument("-u", "--user")
    s.add_argument("-w", "--workdir")
    s.add_argument("container")
    s.add_argument("command", nargs=argparse.REMAINDER)
    s.set_defaults(fn=cmd_exec)

    s = sub.add_parser("images", help="list images")
    s.add_argument("-a", "--all", action="store_true")
    s.add_argument("-q", "--quiet", action="store_true")
    s.set_defaults(fn=cmd_images)

    s = sub.add_parser("load", help="load images from a docker-save or OCI tar")
    s.add_argument("-i", "--input")
    s.add_argument("-q", "--quiet", action="store_true")
    s.set_defaults(fn=cmd_load)

    s = sub.add_parser("rm", help="remove containers")
    s.add_argument("-f", "--force", action="store_true")
    s.add_argument("-v", "--volumes", action="store_true")
    s.add_argument("containers", nargs="+")
    s.set_defaults(fn=cmd_rm)

    s = sub.add_parser("rmi", help="remove images")
    s.add_argument("-f", "--force", action="store_true")
    s.add_argument("images", nargs="+")
    s.set_defaults(fn=cmd_rmi)

    s = sub.add_parser("stop", help="stop containers")
    s.add_argument("-t", "--time", type=int, default=10)
    s.add_argument("containers", nargs="+")
    s.set_defaults(fn=cmd_stop)

    s = sub.add_parser("kill", help="signal containers")
    s.add_argument("-s", "--signal", default="KILL")
    s.add_argument("containers", nargs="+")
    s.set_defaults(fn=cmd_kill)

    s = sub.add_parser("inspect", help="low-level information on containers, images, volumes, networks")
    s.add_argument("objects", nargs="+")
    s.set_defaults(fn=cmd_inspect)

    for name, fn, actions in (("volume", cmd_volume, ("ls", "create", "rm", "inspect", "prune")),
                              ("network", cmd_network, ("ls", "create", "rm", "inspect", "connect", "disconnect"))):
        s = sub.add_parser(name, help=f"manage {name}s")
        s.add_argument("action", choices=actions)
        s.add_argument("names", nargs="*")
        s.add_argument("-f", "--force", action="store_true")
        s.add_argument("-l", "--label", action="append")
        if name == "network":
            s.add_argument("-d", "--driver", default="bridge")
            s.add_argument("--subnet")
        s.set_defaults(fn=fn)

    sub.add_parser("version", help="the daemon's version").set_defaults(fn=cmd_version)
    sub.add_parser("info", help="system-wide information").set_defaults(fn=cmd_info)
    return p


class StartRefused(ApiError):
    """`run`'s start refused: the exit status is read from the daemon's words, as the docker CLI does:
    127 the command was not found, 126 it could not be invoked, 125 anything else."""

    @property
    def exit_status(self) -> int:
        message = str(self)
        if "executable file not found" in message or "no such file or directory" in message:
            return 127
        if "permission denied" in message or "is a directory" in message:
            return 126
        return 125


def _start(c: Client, cid: str) -> None:
    try:
        c.post(f"/containers/{cid}/start")
    except ApiError as exc:
        raise StartRefused(exc.status, str(exc)) from None


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if getattr(args, "command", None) is not None and args.cmd in ("run", "exec") and args.command[:1] == ["--"]:
        args.command = args.command[1:]
    if args.cmd == "exec" and not args.command:
        print("refengine: exec needs a command", file=sys.stderr)
        return 125
    try:
        return args.fn(_client(args), args)
    except HostError as exc:
        print(f"refengine: {exc}", file=sys.stderr)
        return 125
    except ApiError as exc:
        print(f"Error response from daemon: {exc}" if exc.status else f"refengine: {exc}", file=sys.stderr)
        return exc.exit_status if isinstance(exc, StartRefused) else 125
    except OSError as exc:
        print(f"refengine: {exc}", file=sys.stderr)
        return 125
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
