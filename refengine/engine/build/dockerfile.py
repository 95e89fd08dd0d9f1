"""Dockerfile text → instructions, and the builder's variable expansion ($VAR, ${VAR:-x}, ${VAR:+x}).

As the classic builder reads it: a `# escape=` parser directive before anything else, comment lines,
line continuations with the escape character, instruction names case-insensitive, `--flag=value`
options before the arguments of FROM/COPY/ADD/RUN.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..errors import InvalidParameter

INSTRUCTIONS = ("from", "run", "cmd", "entrypoint", "env", "arg", "label", "expose", "user", "workdir", "volume",
                "copy", "add", "stopsignal", "shell", "healthcheck", "onbuild", "maintainer")
_DIRECTIVE = re.compile(r"#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$")
_FLAG = re.compile(r"--([a-z-]+)(?:=(\S*))?\s*")


@dataclass
class Instruction:
    command: str          # lower case
    rest: str             # the arguments as written (flags removed)
    original: str         # the line as the build output shows it ("Step 2/5 : <original>")
    line: int
    flags: dict[str, str] = field(default_factory=dict)


def parse(text: str) -> list[Instruction]:
    """The instructions of a Dockerfile; InvalidParameter names the line of a parse error."""
    escape = "\\"
    lines = text.splitlines()
    start = 0
    while start < len(lines):  # parser directives: only before any other line
        m = _DIRECTIVE.match(lines[start].strip())
        if not m:
            break
        if m.group(1).lower() == "escape":
            if m.group(2) not in ("\\", "`"):
                raise InvalidParameter(f"invalid ESCAPE '{m.group(2)}'. Must be ` or \\")
            escape = m.group(2)
        start += 1
    out: list[Instruction] = []
    buf, first = "", 0
    for number, raw in enumerate(lines[start:], start + 1):
        stripped = raw.strip()
        if not buf and (not stripped or stripped.startswith("#")):
            continue
        if buf and stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if not buf:
            first = number
        if raw.rstrip().endswith(escape):
            buf += raw.rstrip()[:-1]
            continue
        buf += raw
        out.append(instruction(buf.strip(), first))
        buf = ""
    if buf.strip():
        out.append(instruction(buf.strip(), first))
    if not out:
        raise InvalidParameter("the Dockerfile cannot be empty")
    if out[0].command not in ("from", "arg"):
        raise InvalidParameter("failed to process \"" + out[0].original + "\": no build stage in current context")
    return out


def instruction(text: str, line: int) -> Instruction:
    """One instruction's text (an ONBUILD trigger is read with this too)."""
    name, _, rest = text.partition(" ")
    command = name.lower()
    if command not in INSTRUCTIONS:
        raise InvalidParameter(f"dockerfile parse error line {line}: unknown instruction: {name.upper()}")
    rest = rest.strip()
    flags: dict[str, str] = {}
    if command in ("from", "copy", "add", "run"):
        while rest.startswith("--"):
            m = _FLAG.match(rest)
            if not m:
                break
            flags[m.group(1)] = m.group(2) or ""
            rest = rest[m.end():]
    return Instruction(command, rest.strip(), text, line, flags)


_VAR = re.compile(r"\\\$|\$(?:\{([A-Za-z_][A-Za-z0-9_]*)(?:(:[-+])([^}]*))?\}|([A-Za-z_][A-Za-z0-9_]*))")


def expand(text: str, env: dict[str, str]) -> str:
    """The builder's substitution: $VAR and ${VAR}, ${VAR:-default}, ${VAR:+alternative}; \\$ is a `$`."""
    def one(m: re.Match[str]) -> str:
        if m.group(0) == "\\$":
            return "$"
        name = m.group(1) or m.group(4)
        value = env.get(name, "")
        if m.group(2) == ":-":
            return value if value else m.group(3)
        if m.group(2) == ":+":
            return m.group(3) if value else ""
        return value
    return _VAR.sub(one, text)


def env_dict(env: list[str] | None) -> dict[str, str]:
    return dict(e.split("=", 1) if "=" in e else (e, "") for e in env or [])
