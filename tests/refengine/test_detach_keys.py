"""Detach keys of an attach: parsing dockerd's notation, and spotting the sequence in a stdin stream."""

from __future__ import annotations

import pytest

from refengine.daemon import detachkeys


@pytest.mark.parametrize("spec,keys", [
    ("", b"\x10\x11"), (None, b"\x10\x11"), ("ctrl-x", b"\x18"), ("ctrl-p,ctrl-q", b"\x10\x11"),
    ("CTRL-A,q", b"\x01q"), ("ctrl-@,ctrl-[,ctrl-\\,ctrl-],ctrl-^,ctrl-_", bytes([0, 27, 28, 29, 30, 31])),
])
def test_parse(spec: str | None, keys: bytes) -> None:
    assert detachkeys.parse(spec) == keys


@pytest.mark.parametrize("spec", ["not-a-key", "ctrl-", "ctrl-1", "ctrl-ab", "a,,b"])
def test_parse_refuses(spec: str) -> None:
    with pytest.raises(detachkeys.InvalidDetachKeys, match=r"Invalid detach keys \(.*\) provided"):
        detachkeys.parse(spec)


def test_watcher_detaches_and_holds_back_the_sequence() -> None:
    w = detachkeys.Watcher(b"\x10\x11")
    assert w.feed(b"echo hi\n") == (b"echo hi\n", False)
    assert w.feed(b"ab\x10") == (b"ab", False)  # a possible start: held back
    assert w.feed(b"\x11rest") == (b"", True)
    w = detachkeys.Watcher(b"\x10\x11")
    assert w.feed(b"\x10x") == (b"\x10x", False)  # a broken sequence is ordinary input
    assert w.feed(b"\x10\x10\x11") == (b"\x10", True)
