"""engine.containers.starterr: a refused start read the way dockerd reads runc's message."""

from __future__ import annotations

import pytest

from refengine.engine.containers import starterr
from refengine.engine.errors import EngineError, InvalidParameter

PREFIX = "failed to create shim task: OCI runtime create failed: "


@pytest.mark.parametrize("path,message,code,status", [
    ("/no/such/exe", PREFIX + 'exec: "/no/such/exe": no such file or directory', 127, 400),
    ("nosuchcommand", PREFIX + 'exec: "nosuchcommand": executable file not found in $PATH', 127, 400),
    ("/etc/passwd", PREFIX + 'exec: "/etc/passwd": permission denied', 126, 400),
    ("sh", "mount /etc/hostname on /merged/etc: Not a directory", 127, 400),
    # a missing file that is not the command (a device) is the server's: dockerd answers 500
    ("true", 'error gathering device information while adding custom device "/dev/x": no such file or directory',
     128, 500),
    ("true", PREFIX + "unable to find user nobody-here: no matching entries in passwd file", 128, 500),
    # dockerd lowers the message only: a command with capitals is not found in it
    ("/bin/NoSuch", PREFIX + 'exec: "/bin/NoSuch": no such file or directory', 128, 500),
])
def test_classify(path: str, message: str, code: int, status: int) -> None:
    failure = starterr.classify(path, message)
    assert (failure.exit_code, failure.error().http_status) == (code, status)
    assert isinstance(failure.error(), InvalidParameter if status == 400 else EngineError)


def test_not_a_directory_hint() -> None:
    failure = starterr.classify("sh", "mount /a on /b: not a directory")
    assert failure.message == "mount /a on /b: not a directory" + starterr.NOT_A_DIRECTORY_HINT
    assert starterr.classify("sh", "no such user").message == "no such user"
