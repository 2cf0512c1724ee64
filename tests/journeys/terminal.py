"""The installed `assistant` in a real pseudo-terminal, read back the way a person sees it.

pexpect gives the program a pty of a given size; pyte plays what it writes onto a virtual screen,
so tests assert on the characters a terminal would show, not on widgets. Keys are sent as the
bytes a terminal sends for them.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pexpect
import pyte
import wcwidth

# What a terminal sends for each key (xterm); Textual decodes these.
KEYS = {
    "enter": "\r", "tab": "\t", "escape": "\x1b", "backspace": "\x7f",
    "up": "\x1b[A", "down": "\x1b[B", "right": "\x1b[C", "left": "\x1b[D",
    "f1": "\x1bOP", "f2": "\x1bOQ", "f3": "\x1bOR", "f4": "\x1bOS", "f5": "\x1b[15~",
    "f8": "\x1b[19~", "f9": "\x1b[20~", "f10": "\x1b[21~", "f12": "\x1b[24~",
    **{f"ctrl+{c}": chr(ord(c) - 96) for c in "abcdefghklnoprstuvwxy"},
}


def assistant_command() -> str:
    """The `assistant` script installed beside this Python (the venv's), as a user runs it."""
    script = Path(sys.executable).with_name("assistant")
    found = str(script) if script.exists() else shutil.which("assistant")
    assert found, "the assistant command is not installed (make install)"
    return found


class Terminal:
    """One running `assistant` in a pty of `columns` x `lines`."""

    def __init__(self, args: list[str], env: dict[str, str], columns: int = 160, lines: int = 45,
                 cwd: str | Path | None = None) -> None:
        self.screen = pyte.Screen(columns, lines)
        self.stream = pyte.ByteStream(self.screen)
        self.lock = threading.Lock()
        self.child = pexpect.spawn(assistant_command(), args, env={**env, "TERM": "xterm-256color",
                                   "COLUMNS": str(columns), "LINES": str(lines)},
                                   dimensions=(lines, columns), cwd=str(cwd) if cwd else None)
        self.writes = 0  # how many times the program wrote to the terminal: repaints are writes
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                data = self.child.read_nonblocking(65536, timeout=0.05)
            except pexpect.TIMEOUT:
                continue
            except (pexpect.EOF, OSError):
                return
            with self.lock:
                self.stream.feed(data)
                self.writes += 1

    def text(self) -> str:
        """The screen as lines of text, as a person reads it."""
        with self.lock:
            return "\n".join(line.rstrip() for line in self.screen.display)

    def line_with(self, needle: str) -> str:
        return next((line for line in self.text().splitlines() if needle in line), "")

    def wait_for(self, condition: str | Callable[[str], bool], timeout: float = 60.0) -> str:
        """Wait until the screen shows `condition` (text or a regex match, or a predicate)."""
        if isinstance(condition, str):
            pattern = re.compile(re.escape(condition))
            check: Callable[[str], bool] = lambda screen: bool(pattern.search(screen))  # noqa: E731
        else:
            check = condition
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            screen = self.text()
            if check(screen):
                return screen
            if not self.child.isalive():
                break
            time.sleep(0.05)
        raise AssertionError(f"the screen never showed {condition!r} in {timeout} s; it shows:\n{self.text()}")

    def press(self, *keys: str, pause: float = 0.15) -> None:
        for key in keys:
            self.child.send(KEYS[key])
            time.sleep(pause)  # Textual tells Esc from an escape sequence by a short wait

    def click_text(self, needle: str) -> None:
        """Click (SGR mouse report, as xterm sends it) on the first place the screen shows `needle`."""
        for y, line in enumerate(self.text().splitlines()):
            x = line.find(needle)
            if x >= 0:
                # pyte rows are lines of characters; a wide character before x takes two cells
                cells = sum(2 if _wide(c) else 1 for c in line[:x])
                self.child.send(f"\x1b[<0;{cells + 2};{y + 1}M\x1b[<0;{cells + 2};{y + 1}m")
                time.sleep(0.15)
                return
        raise AssertionError(f"{needle!r} is not on the screen:\n{self.text()}")

    def type(self, text: str) -> None:
        self.child.send(text)
        time.sleep(0.1)

    def close(self) -> None:
        if self.child.isalive():
            self.child.sendcontrol("q")
            try:
                self.child.expect(pexpect.EOF, timeout=10)
            except pexpect.TIMEOUT:
                self.child.terminate(force=True)
        self.child.close()


def _wide(char: str) -> bool:
    return wcwidth.wcwidth(char) == 2


def environment(user: Path, **extra: str) -> dict[str, str]:
    """A clean environment for one user: data in `user`/data, config in `user`/config.toml."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASSISTANT_")}
    env.update(ASSISTANT_HOME=str(user / "data"), HF_HUB_OFFLINE="1", ANONYMIZED_TELEMETRY="False",
               ASSISTANT_CONFIG=str(user / "config.toml"), **extra)
    return env
