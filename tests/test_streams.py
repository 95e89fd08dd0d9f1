"""Multiplexed-stream framing: 1 byte stream, 3 zero bytes, uint32 BE length, payload."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conformance.streams import FramingError, demux, parse_frames


def frame(stream: int, data: bytes) -> bytes:
    return struct.pack(">BxxxI", stream, len(data)) + data


@given(st.lists(st.tuples(st.sampled_from([1, 2]), st.binary(max_size=300)), max_size=20), st.integers(1, 64))
def test_frames_roundtrip_in_any_chunking(parts: list[tuple[int, bytes]], chunk: int) -> None:
    wire = b"".join(frame(s, d) for s, d in parts)
    got: list[tuple[int, bytes]] = []
    tail = b""
    for i in range(0, len(wire), chunk):
        frames, tail = parse_frames(tail + wire[i:i + chunk])
        got += [(f.stream, f.data) for f in frames]
    assert tail == b""
    assert got == parts


def test_demux_joins_streams() -> None:
    assert demux(frame(1, b"a") + frame(2, b"b") + frame(1, b"c")) == {1: b"ac", 2: b"b"}


def test_bad_header_is_refused() -> None:
    with pytest.raises(FramingError):
        demux(b"\x01\x00\x01\x00\x00\x00\x00\x01x")
    with pytest.raises(FramingError):
        demux(b"\x07\x00\x00\x00\x00\x00\x00\x00")


def test_truncated_stream_is_refused() -> None:
    with pytest.raises(FramingError):
        demux(frame(1, b"hello")[:-2])
