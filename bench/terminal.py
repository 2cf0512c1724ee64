"""A command in a real terminal (tmux) for the benches that time what a person sees. A bare pty
is not enough: Textual waits for a terminal's answers to its queries."""

from __future__ import annotations

import itertools
import os
import subprocess
import time
from collections.abc import Callable

_sessions = itertools.count()


class Terminal:
    """`command` running in a new tmux session; `started` is when it was launched."""

    def __init__(self, command: str, width: int = 120, height: int = 40) -> None:
        self.session = f"bench{os.getpid()}-{next(_sessions)}"
        for _ in range(5):  # the server of a session just killed may still be exiting
            self.started = time.perf_counter()
            done = subprocess.run(["tmux", "new-session", "-d", "-s", self.session, "-x", str(width),
                                   "-y", str(height), command], capture_output=True)
            if done.returncode == 0:
                return
            time.sleep(0.2)
        raise RuntimeError(f"tmux could not start {command}: {done.stderr.decode()}")

    def __enter__(self) -> Terminal:
        return self

    def __exit__(self, *exc_info: object) -> None:
        subprocess.run(["tmux", "kill-session", "-t", self.session], capture_output=True)

    def screen(self) -> str:
        return subprocess.run(["tmux", "capture-pane", "-p", "-t", self.session], capture_output=True,
                              text=True).stdout

    def wait(self, ready: Callable[[str], bool], timeout: float, what: str, every: float = 0.005) -> str:
        """The screen once `ready` holds for it; TimeoutError naming `what` after `timeout` s."""
        end = time.perf_counter() + timeout
        while True:
            screen = self.screen()
            if ready(screen):
                return screen
            if time.perf_counter() > end:
                raise TimeoutError(f"{what} did not happen in {timeout} s; the screen:\n{screen}")
            time.sleep(every)

    def type(self, text: str) -> None:
        subprocess.run(["tmux", "send-keys", "-t", self.session, "-l", text], check=True)

    def press(self, *keys: str) -> None:
        subprocess.run(["tmux", "send-keys", "-t", self.session, *keys], check=True)
