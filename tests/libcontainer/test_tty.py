"""A terminal: a pty from the container's own devpts; the payload gets the slave as its controlling
terminal and stdio, the parent gets the master."""

from __future__ import annotations

import os
import select
import time

from refengine.libcontainer import ExecConfig


def read_until(fd: int, needle: bytes, timeout: float = 10) -> bytes:
    buf = b""
    deadline = time.monotonic() + timeout
    while needle not in buf and time.monotonic() < deadline:
        r, _, _ = select.select([fd], [], [], 0.2)
        if r:
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # EIO: the slave side is closed
                break
            if not chunk:
                break
            buf += chunk
    return buf


def test_tty_payload(lc) -> None:
    c = lc.make(["sh", "-c", "tty; [ -t 0 ] && [ -t 1 ] && echo is-a-tty; ls -l /dev/console; "
                             "ps -o pid,tty,comm | head -3"], tty=True)
    p = c.start()
    assert p.console is not None and p.stdout is None
    out = read_until(p.console, b"sh")
    assert c.wait(10) == 0
    text = out.decode().replace("\r", "")
    assert text.startswith("/dev/pts/0\nis-a-tty\n")
    assert "/dev/console" in text
    lines = text.splitlines()
    assert any(line.split() == ["1", "136,0", "sh"] for line in lines[3:]), "PID 1's controlling tty is pts/0"


def test_tty_input_and_controlling_terminal(lc) -> None:
    c = lc.make(["sh", "-c", "read line; echo got:$line; cat /proc/self/stat"], tty=True)
    p = c.start()
    os.write(p.console, b"hello\n")
    out = read_until(p.console, b"got:hello").decode()
    assert "got:hello" in out
    c.wait(10)


def test_tty_resize(lc) -> None:
    c = lc.make(["sh", "-c", "read go; stty size"], tty=True)
    p = c.start()
    p.resize(33, 111)
    os.write(p.console, b"go\n")
    out = read_until(p.console, b"111").decode()
    assert "33 111" in out
    c.wait(10)


def test_tty_ctrl_c_reaches_the_foreground(lc) -> None:
    c = lc.make(["sh", "-c", "trap 'echo trapped; exit 3' INT; echo ready; while :; do sleep 0.1; done"], tty=True)
    p = c.start()
    assert b"ready" in read_until(p.console, b"ready")
    os.write(p.console, b"\x03")
    assert b"trapped" in read_until(p.console, b"trapped")
    assert c.wait(10) == 3


def test_exec_with_tty(lc) -> None:
    c = lc.start(["sleep", "60"])
    p = c.exec(ExecConfig(["sh", "-c", "tty; [ -t 0 ] && echo yes"], tty=True))
    out = read_until(p.console, b"yes").decode().replace("\r", "")
    assert out.startswith("/dev/pts/") and "yes" in out
    assert p.wait(10) == 0
    p.close()
