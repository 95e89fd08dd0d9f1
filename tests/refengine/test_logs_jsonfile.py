"""The json-file log driver: records, partial lines, rotation, and reading with since/tail/timestamps/follow."""

from __future__ import annotations

import asyncio
import json

from refengine.engine.logs import JsonFileWriter, ReadOptions, frame, read


def _read(path: str, **opts) -> bytes:
    async def go() -> bytes:
        return b"".join([c async for c in read(path, ReadOptions(**opts))])
    return asyncio.run(go())


def test_lines_and_partial_lines(tmp_path) -> None:
    path = str(tmp_path / "c-json.log")
    w = JsonFileWriter(path)
    w.write("stdout", b"one\ntw")
    w.write("stderr", b"err\n")
    w.write("stdout", b"o\nthree")
    w.close()
    recs = [json.loads(line) for line in open(path)]
    assert [(r["stream"], r["log"]) for r in recs] == [("stdout", "one\n"), ("stderr", "err\n"), ("stdout", "two\n"),
                                                       ("stdout", "three")]
    assert _read(path) == frame(1, b"one\n") + frame(2, b"err\n") + frame(1, b"two\n") + frame(1, b"three")
    assert _read(path, stderr=False, tty=True) == b"one\ntwo\nthree"
    assert _read(path, tail=1, tty=True) == b"three"
    assert _read(path, tail=0) == b""
    stamped = _read(path, tty=True, timestamps=True, stderr=False).split(b"\n")[0]
    assert stamped.endswith(b"Z one") and stamped[:4].isdigit()


def test_rotation_keeps_max_file(tmp_path) -> None:
    path = str(tmp_path / "c-json.log")
    w = JsonFileWriter(path, max_size=300, max_file=2)
    for i in range(40):
        w.write("stdout", f"line {i:03d}\n".encode())
    w.close()
    assert (tmp_path / "c-json.log.1").exists() and not (tmp_path / "c-json.log.2").exists()
    text = _read(path, tty=True).decode()
    assert "line 039" in text and "line 000" not in text
    assert text.splitlines() == sorted(text.splitlines()), "rotated records must come out in order"


def test_follow_until_finished(tmp_path) -> None:
    path = str(tmp_path / "c-json.log")
    w = JsonFileWriter(path)
    w.write("stdout", b"before\n")

    async def go() -> bytes:
        finished = asyncio.Event()
        out = []

        async def writer() -> None:
            await asyncio.sleep(0.1)
            w.write("stdout", b"after\n")
            await asyncio.sleep(0.2)
            finished.set()
        task = asyncio.ensure_future(writer())
        async for chunk in read(path, ReadOptions(follow=True, tty=True), finished):
            out.append(chunk)
        await task
        return b"".join(out)
    assert asyncio.run(go()) == b"before\nafter\n"
    w.close()


def test_large_log_is_streamed_not_loaded(tmp_path) -> None:
    """A log larger than any sane buffer: the first piece comes out after reading a small part of the file
    (the reader held every record of a 100 MB log before sending any: the daemon grew by ~70 MB)."""
    path = str(tmp_path / "c-json.log")
    w = JsonFileWriter(path)
    line = b"x" * 999 + b"\n"
    for _ in range(4000):  # ~4 MB of records
        w.write("stdout", line)
    w.close()
    size = (tmp_path / "c-json.log").stat().st_size

    async def first_piece() -> tuple[int, int]:
        fh = open(path, "rb")
        gen = read(path, ReadOptions(), opened=[fh])
        piece = await gen.__anext__()
        at = fh.tell()
        await gen.aclose()
        return len(piece), at
    length, at = asyncio.run(first_piece())
    assert 0 < length <= 2 * 64 * 1024 and at < size // 4, (
        f"the first piece ({length} B) came after reading {at} of {size} B: the log is not streamed")
    assert _read(path, tail=3, tty=True) == line * 3
    assert len(_read(path, tty=True)) == 4000 * len(line)


def test_read_ends_at_what_the_file_held(tmp_path) -> None:
    """Without follow, records written while the response streams are not sent: a writer faster than the
    reader would otherwise keep the response open for ever."""
    path = str(tmp_path / "c-json.log")
    w = JsonFileWriter(path)
    line = b"y" * 999 + b"\n"
    for _ in range(400):  # several pieces' worth
        w.write("stdout", line)

    async def read_while_writing() -> int:
        total = 0
        async for piece in read(path, ReadOptions(tty=True)):
            total += len(piece)
            w.write("stdout", line)  # the container keeps writing
        return total
    assert asyncio.run(read_while_writing()) == 400 * len(line)
    w.close()
