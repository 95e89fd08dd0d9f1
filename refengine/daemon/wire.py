"""HTTP/1.1 on the wire for the API server: request heads in, response heads out, chunk framing.

Written by hand rather than through h11 because that is where a request's time went: under load,
h11's event objects, header normalisation and state machine took over half of the daemon's CPU per
`GET /_ping` (see bench/README.md, "what limits /_ping"). This module is strict where request
smuggling lives (one framing per request: Content-Length *or* chunked, never both, no conflicting
lengths, no obsolete line folding, no control characters) and pure: no I/O, so it is unit-testable
and the connection logic (refengine/daemon/http.py) stays about sockets.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from http import HTTPStatus

MAX_HEAD = 64 * 1024  # request line + headers
MAX_CHUNK_LINE = 4096  # a chunk-size line (with extensions) or a trailer line

_TOKEN = rb"[-!#$%&'*+.^_`|~0-9A-Za-z]+"
_REQUEST_LINE = re.compile(rb"(" + _TOKEN + rb") ([^\x00-\x20\x7f]+) HTTP/([0-9])\.([0-9])")
# A header line: a token, a colon, a value of visible characters, SP and HTAB (no CTLs; a CR only
# right before the LF). _FIELDS validates a whole block of lines at once, _FIELD takes them apart.
_FIELDS = re.compile(rb"(?:" + _TOKEN + rb":[\t\x20-\x7e\x80-\xff]*\r?\n)*")
_FIELD = re.compile(rb"(" + _TOKEN + rb"):[ \t]*([^\r\n]*?)[ \t]*\r?\n")
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,16})[ \t]*(?:;.*)?")

REASONS: dict[int, str] = {s.value: s.phrase for s in HTTPStatus}
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class ProtocolError(Exception):
    """A request the server cannot parse: answered with `status` and the connection closed."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


@dataclass
class Head:
    """A parsed request head."""

    method: str
    target: str
    version: str  # "1.0" or "1.1"
    headers: dict[str, str]  # lower-case names; a repeated header keeps its last value
    length: int | None  # Content-Length, or None
    chunked: bool
    keep_alive: bool
    expect_continue: bool

    @property
    def has_body(self) -> bool:
        return self.chunked or bool(self.length)


def head_end(buf: bytes | bytearray) -> tuple[int, int] | None:
    """(end of the head, start of what follows it) once `buf` holds a whole head, else None.

    The head ends at the first empty line: LF CRLF or LF LF (bare LF line ends are tolerated, as most
    servers do). The head returned may keep a final CR, which parse_head ignores."""
    crlf, lf = buf.find(b"\n\r\n"), buf.find(b"\n\n")
    if lf >= 0 and (crlf < 0 or lf < crlf):
        return lf, lf + 2
    return (crlf, crlf + 3) if crlf >= 0 else None


def skip_blank_lines(buf: bytearray) -> None:
    """Drop empty lines before a request line (RFC 9112 2.2: a server should ignore at least one)."""
    while buf[:1] in (b"\r", b"\n"):
        if buf[:2] == b"\r\n":
            del buf[:2]
        elif buf[:1] == b"\n":
            del buf[:1]
        else:
            return  # a lone CR: not a blank line, the parser will refuse it


def parse_head(data: bytes) -> Head:
    """Parse a request line and its header lines (without the final blank line)."""
    if data.endswith(b"\n"):  # a head given with its last line end (head_end cuts before it)
        data = data[:-1]
    first, _, rest = data.partition(b"\n")
    m = _REQUEST_LINE.fullmatch(first[:-1] if first.endswith(b"\r") else first)
    if m is None:
        raise ProtocolError(400, f"malformed request line: {first[:200]!r}")
    method, target, major, minor = m.groups()
    if (major, minor) not in ((b"1", b"1"), (b"1", b"0")):
        raise ProtocolError(505, f"HTTP version {major.decode()}.{minor.decode()} is not supported")
    block = rest + b"\n" if rest else b""
    if not _FIELDS.fullmatch(block):  # one C-level pass validates every line; then they are split
        raise ProtocolError(400, _bad_field(block))
    pairs = _FIELD.findall(block)
    headers = {name.decode("ascii").lower(): value.decode("latin-1") for name, value in pairs}
    hosts = 1 if "host" in headers else 0
    lengths: set[bytes] = set()
    encodings: list[bytes] = []
    if len(headers) != len(pairs) or "content-length" in headers or "transfer-encoding" in headers:
        # Repeated names or a body: framing headers must not be collapsed, count and compare them.
        hosts = 0
        for raw_name, raw_value in pairs:
            name = raw_name.decode("ascii").lower()
            if name == "host":
                hosts += 1
            elif name == "content-length":
                lengths.update(v.strip() for v in raw_value.split(b","))
            elif name == "transfer-encoding":
                encodings.extend(v.strip().lower() for v in raw_value.split(b",") if v.strip())
    version = "1.1" if minor == b"1" else "1.0"
    if version == "1.1" and hosts != 1:
        raise ProtocolError(400, "missing required Host header" if not hosts else "more than one Host header")
    length: int | None = None
    if encodings:
        if lengths:
            raise ProtocolError(400, "both Transfer-Encoding and Content-Length in one request")
        if encodings != [b"chunked"]:
            raise ProtocolError(501, f"unsupported transfer coding: {b', '.join(encodings).decode('latin-1')}")
        if version == "1.0":
            raise ProtocolError(400, "chunked transfer coding in an HTTP/1.0 request")
    elif lengths:
        if len(lengths) != 1:
            raise ProtocolError(400, "conflicting Content-Length values")
        (text,) = lengths
        if not text.isdigit() or len(text) > 18:
            raise ProtocolError(400, f"invalid Content-Length: {text[:40]!r}")
        length = int(text)
    connection = headers.get("connection")
    keep_alive = version == "1.1" and not (connection and "close" in {t.strip().lower() for t in connection.split(",")})
    expect = headers.get("expect")
    return Head(method=method.decode("ascii"), target=target.decode("latin-1"), version=version,
                headers=headers, length=length, chunked=bool(encodings), keep_alive=keep_alive,
                expect_continue=version == "1.1" and expect is not None and expect.lower() == "100-continue")


def _bad_field(block: bytes) -> str:
    """Which header line is malformed (only on the error path)."""
    for line in block.split(b"\n")[:-1]:
        if not _FIELDS.fullmatch(line + b"\n"):
            if line[:1] in (b" ", b"\t"):
                return "obsolete line folding in the request head is not accepted"
            return f"malformed header line: {line[:200]!r}"
    return "malformed request head"


def chunk_size(line: bytes) -> int:
    """The size in a chunk-size line (extensions ignored)."""
    m = _CHUNK_SIZE.fullmatch(line[:-1] if line.endswith(b"\r") else line)
    if m is None:
        raise ProtocolError(400, f"malformed chunk size line: {line[:100]!r}")
    return int(m.group(1), 16)


def encode_headers(headers: list[tuple[str, str]]) -> bytes:
    """Header lines (each ending in CRLF). A name or value that would break the framing is a ValueError:
    handlers may echo client data into headers, and a CR or LF there would let it write its own."""
    text = "".join([f"{name}: {value}\r\n" for name, value in headers])
    # One check for the whole block: legal characters, and exactly one line per header (a CRLF inside
    # a value would otherwise pass as a line of its own).
    if not _OUT_FIELDS.fullmatch(text) or text.count("\n") != len(headers):
        bad = next((h for h in headers if not _OUT_FIELDS.fullmatch(f"{h[0]}: {h[1]}\r\n")), headers)
        raise ValueError(f"invalid response header: {str(bad)[:200]}")
    return text.encode("latin-1")


_OUT_FIELDS = re.compile("(?:" + _TOKEN.decode() + ": [\t\x20-\x7e\x80-\xff]*\r\n)*")


def status_line(status: int, reason: str | None = None) -> bytes:
    return f"HTTP/1.1 {status} {REASONS.get(status, '') if reason is None else reason}\r\n".encode("latin-1")


def chunk(data: bytes) -> bytes:
    """One chunk of a chunked body."""
    return b"%x\r\n%b\r\n" % (len(data), data)


LAST_CHUNK = b"0\r\n\r\n"
