"""The builder's Dockerfile reading, $VAR expansion and COPY checksum."""

from __future__ import annotations

import io
import tarfile

import pytest

from refengine.engine.build.builder import _contents_digest
from refengine.engine.build.dockerfile import expand, parse
from refengine.engine.errors import InvalidParameter


def test_continuations_comments_flags_and_case() -> None:
    steps = parse("# a comment\nfrom base AS one\nRUN echo a \\\n  # inside\n  && echo b\n\n"
                  "copy --from=one --chown=1:2 /a /b\n")
    assert [(s.command, s.line) for s in steps] == [("from", 2), ("run", 3), ("copy", 7)]
    assert steps[1].rest == "echo a   && echo b"
    assert steps[2].flags == {"from": "one", "chown": "1:2"} and steps[2].rest == "/a /b"


def test_escape_directive() -> None:
    steps = parse("# escape=`\nFROM base\nRUN dir c:\\ `\n  /w\n")
    assert steps[1].rest == "dir c:\\   /w"


@pytest.mark.parametrize("text,message", [
    ("FROM base\nFROBNICATE x\n", "line 2: unknown instruction: FROBNICATE"),
    ("", "cannot be empty"),
    ("RUN true\n", "no build stage"),
])
def test_refused(text: str, message: str) -> None:
    with pytest.raises(InvalidParameter, match=message):
        parse(text)


def test_expand() -> None:
    env = {"A": "1", "EMPTY": ""}
    assert expand("$A-${A}-${B:-dflt}-${A:+alt}-${EMPTY:-e}-${B:+x}-\\$A", env) == "1-1-dflt-alt-e--$A"


def test_copy_checksum_ignores_times_not_modes() -> None:
    """The COPY cache key (builder._contents_digest): a touched file keeps it, a chmod or new bytes change it."""
    def tar(data: bytes, mode: int, mtime: int) -> io.BytesIO:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as t:
            info = tarfile.TarInfo("a/file")
            info.size, info.mode, info.mtime = len(data), mode, mtime
            t.addfile(info, io.BytesIO(data))
        buf.seek(0)
        return buf

    base = _contents_digest(tar(b"x", 0o644, 1))
    assert _contents_digest(tar(b"x", 0o644, 2)) == base
    assert _contents_digest(tar(b"x", 0o755, 1)) != base
    assert _contents_digest(tar(b"y", 0o644, 1)) != base
