"""How a failed start is reported: dockerd's reading of the runtime's message.

dockerd (daemon/errors.go, translateContainerdStartErr) classifies a start failure by words in the message:
the command not found → exit code 127, not executable (EACCES) → 126, a file mounted on a directory or the
reverse (ENOTDIR) → 127 with a hint; those three are the caller's configuration (400). Anything else is a
server error (500) and leaves exit code 128. Clients read these: the docker CLI maps the words to its
own exit status (127/126/125).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import EngineError, InvalidParameter

NOT_A_DIRECTORY_HINT = (": Are you trying to mount a directory onto a file (or vice-versa)? "
                        "Check if the specified host path exists and is the expected type")


@dataclass(frozen=True)
class StartFailure:
    message: str
    exit_code: int
    invalid_config: bool  # the caller's configuration (400), not the server (500)

    def error(self) -> EngineError:
        return (InvalidParameter if self.invalid_config else EngineError)(self.message)


def classify(path: str, message: str) -> StartFailure:
    """`path` is the container's command (State/inspect `Path`); `message` what the runtime said."""
    low = message.lower()
    code, invalid = 128, False
    # dockerd lowers the message, not the command: a command with capitals never matches (kept as it is)
    if path and path in low and ("executable file not found" in low or "no such file or directory" in low):
        code, invalid = 127, True
    if "permission denied" in low:
        code, invalid = 126, True
    if "not a directory" in low:
        message += NOT_A_DIRECTORY_HINT
        code, invalid = 127, True
    return StartFailure(message, code, invalid)
