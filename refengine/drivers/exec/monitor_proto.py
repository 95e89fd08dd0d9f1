"""What the per-container monitor and the daemon share: file names, message kinds, the socket path.

Messages travel over SOCK_SEQPACKET unix sockets (one message = one record, no framing needed):
the first byte says what it is, the rest is the payload.

    daemon -> monitor   STDIN data · CLOSE_STDIN · RESIZE "rows cols" · SIGNAL "signo"
                        GO · ABORT message       (answers to CREATED, during the start only)
    monitor -> daemon   CREATED "pid"            (the init waits: run the network hook, answer)
                        STARTED json             {"pid", "monitor_pid"}
                        FAILED json              {"message", "code"} (the start failed; the monitor exits)
                        STDOUT data · STDERR data · OUTPUT_EOF (every output stream closed)
                        HELLO json               {"pid"} first message to a (re)connecting daemon
                        EXITED json              {"code", "oom", "finished_at"} (then the monitor exits)

Lean on purpose: a monitor re-executed into a bare interpreter (no zygote) imports it (only `os` here).
"""

from __future__ import annotations

import os

MARKER = "refengine-monitor"  # in the monitor's argv with the container id: tools find monitors by it

SOCKET = "monitor.sock"
INIT_FILE = "monitor-init.json"  # the libcontainer init dict: what a restarted daemon needs for exec
EXIT_FILE = "monitor-exit.json"  # written before the monitor exits: the status outlives a daemon restart
LOG_FILE = "monitor.log"  # the monitor's own stderr (Python errors), for debugging

STDIN, CLOSE_STDIN, RESIZE, SIGNAL, GO, ABORT = b"i", b"c", b"r", b"k", b"g", b"a"
CREATED, STARTED, FAILED, STDOUT, STDERR, OUTPUT_EOF, HELLO, EXITED = b"p", b"s", b"f", b"1", b"2", b"e", b"h", b"x"

MAX_MESSAGE = 1 << 17  # a SEQPACKET record larger than the receive size would be truncated
CHUNK = 1 << 16  # stdin and output are carried in pieces of at most this


def socket_address(dir_fd: int) -> str:
    """The socket's path through an O_PATH fd of the container directory: a unix socket path is
    limited to 108 bytes, and a data root plus a 64-hex container id is often longer."""
    return f"/proc/self/fd/{dir_fd}/{SOCKET}"


def open_dir(path: str) -> int:
    return os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
