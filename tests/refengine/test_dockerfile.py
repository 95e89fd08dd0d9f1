"""The builder's Dockerfile reading and $VAR expansion."""

from __future__ import annotations

import pytest

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
