"""Start the chat app in a pseudo-terminal, wait until it says the model is ready, quit with
Ctrl+Q, and fail unless it exits cleanly: proof that an installed or frozen `assistant` starts.

    python packaging/smoke_tui.py PATH/TO/assistant [ARGS...]
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import sys
import termios
import time

ANSI = re.compile(rb"\x1b\[[0-9;?]*[a-zA-Z]|\x1b\][^\x07]*\x07|\x1b[()][0-9A-Z]")


def main(argv: list[str]) -> int:
    started = time.monotonic()
    pid, fd = pty.fork()
    if pid == 0:
        os.environ["TERM"] = "xterm-256color"
        os.execv(argv[0], argv)
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    seen, ready_at, closed = b"", None, False
    deadline = started + 180
    while time.monotonic() < deadline:
        readable, _, _ = select.select([] if closed else [fd], [], [], 0.2)
        if readable:
            try:
                seen += os.read(fd, 1 << 16)
            except OSError:  # the app exited and closed the terminal
                closed = True
        if ready_at is None and b"ready" in ANSI.sub(b"", seen):
            ready_at = time.monotonic()
            os.write(fd, b"\x11")  # Ctrl+Q
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            code = os.waitstatus_to_exitcode(status)
            if ready_at is not None and code == 0:
                print(f"the chat app started, loaded its model in {ready_at - started:.1f} s "
                      "and quit cleanly")
                return 0
            print(f"the chat app exited with {code} before it was ready:\n"
                  + ANSI.sub(b"", seen).decode(errors="replace")[-2000:])
            return 1
    os.kill(pid, 9)
    text = ANSI.sub(b"", seen).decode(errors="replace")
    what = "quit" if ready_at else "become ready"
    print(f"the chat app did not {what} in time; it showed:\n{text[-2000:]}")
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
