"""Detach keys of an attach: the `detachKeys` query value, and spotting the sequence in stdin.

As dockerd: a comma-separated list of keys, each a single character or `ctrl-<c>` (`ctrl-a` …
`ctrl-z`, `ctrl-@`, `ctrl-[`, `ctrl-\\`, `ctrl-]`, `ctrl-^`, `ctrl-_`); the default is ctrl-p,ctrl-q.
Only TTY attaches watch for it (a framed stream carries binary data).
"""

from __future__ import annotations

DEFAULT = b"\x10\x11"  # ctrl-p, ctrl-q
_CTRL_PUNCT = {"@": 0, "[": 27, "\\": 28, "]": 29, "^": 30, "_": 31}


class InvalidDetachKeys(ValueError):
    pass


def parse(spec: str | None) -> bytes:
    """The byte sequence of a `detachKeys` value (DEFAULT when empty); InvalidDetachKeys otherwise."""
    if not spec:
        return DEFAULT
    out = bytearray()
    for key in spec.split(","):
        if len(key) == 1:
            out.append(key.encode()[0])  # dockerd takes the key's first byte
            continue
        lowered = key.lower()
        if lowered.startswith("ctrl-") and len(lowered) == 6:
            ch = lowered[5]
            if "a" <= ch <= "z":
                out.append(ord(ch) - ord("a") + 1)
                continue
            if ch in _CTRL_PUNCT:
                out.append(_CTRL_PUNCT[ch])
                continue
        raise InvalidDetachKeys(f"Invalid detach keys ({spec}) provided")
    return bytes(out)


class Watcher:
    """Feeds stdin through; holds back bytes that may be the start of the sequence."""

    def __init__(self, keys: bytes) -> None:
        self.keys = keys
        self.matched = 0

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        """(bytes to pass on, whether the whole sequence was typed: then the attach ends)."""
        out = bytearray()
        for b in data:
            if b == self.keys[self.matched]:
                self.matched += 1
                if self.matched == len(self.keys):
                    self.matched = 0
                    return bytes(out), True
                continue
            if self.matched:  # a broken sequence: what was held back is ordinary input after all
                out += self.keys[:self.matched]
                self.matched = 0
                if b == self.keys[0]:
                    self.matched = 1
                    continue
            out.append(b)
        return bytes(out), False
