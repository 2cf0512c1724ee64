"""Text that did not come from us (answers, file text, file names, server errors), made safe to show
on a terminal.

A terminal acts on what it is sent: OSC 52 writes the clipboard, OSC 0 sets the window title,
ESC[8m hides what follows, a carriage return or U+202E (right-to-left override) makes a line read
other than it is. Rich and Textual pass escape characters through to the terminal, so everything
printed from outside goes through one of these two first:

    terminal_text(text)  text of many lines (an answer): escape sequences and control characters
                         are removed; newlines and tabs stay
    terminal_line(text)  one line (a file name, a tool's result, a location): every control and
                         bidirectional-override character is shown escaped (`\\x1b`, `\\n`,
                         `\\u202e`), so the line shows what is really there

Each streamed piece of an answer can be cleaned on its own: ESC itself never survives, so a
sequence split across two pieces leaves harmless text, never a working sequence.
"""

from __future__ import annotations

import re

# A whole escape sequence, so its parameters (the clipboard's payload, a title) go with it:
# OSC ... BEL or ST (or unterminated), DCS / SOS / PM / APC strings, CSI, and two-character escapes.
_SEQUENCE = re.compile(
    r"\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"
    r"|\x1b[PX^_][^\x1b]*(?:\x1b\\)?"
    r"|\x1b\[[0-?]*[ -/]*[@-~]?"
    r"|\x1b[ -/]*[0-~]?"
)
# C0 controls but tab and newline, DEL, C1 controls (0x9b is a one-byte CSI), and the bidirectional
# embeddings, overrides and isolates (the marks U+200E/U+200F, which reorder nothing, stay).
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_LINE_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def terminal_text(text: str) -> str:
    """`text` without escape sequences or control characters; lines and tabs kept."""
    if text.isprintable():  # the common case, at the speed of a scan
        return text
    return _CONTROL.sub("", _SEQUENCE.sub("", text.replace("\r\n", "\n")))


def terminal_line(text: str) -> str:
    """`text` on one line, each control or bidirectional-override character shown escaped."""
    if text.isprintable():
        return text
    return _LINE_CONTROL.sub(_escaped, text)


def _escaped(match: re.Match[str]) -> str:
    char = match.group()
    if char in _NAMED:
        return _NAMED[char]
    return f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}"
