"""Slash commands typed in the prompt: `/name args`. `//text` sends `/text` as a question."""

from __future__ import annotations

import os


def parse(line: str) -> tuple[str, str] | None:
    """(name, args) of a slash command, or None when the line is a question."""
    line = line.strip()
    if not line.startswith("/") or line.startswith("//") or len(line) == 1:
        return None
    name, _, args = line[1:].partition(" ")
    if not name or not name.replace("-", "_").isidentifier():
        return None  # "/usr/bin is..." or "/ 2": a question that starts with a slash
    return name.lower(), args.strip()


def unescape(line: str) -> str:
    return line[1:] if line.lstrip().startswith("//") else line


def matches(typed: str, names: list[str]) -> list[str]:
    """Command names that complete what was typed after the slash (no space yet)."""
    if not typed.startswith("/") or " " in typed or typed.startswith("//"):
        return []
    return sorted(n for n in names if n.startswith(typed[1:].lower()))


def complete(typed: str, names: list[str]) -> str | None:
    """The longest completion everything matching shares; a unique match gets a space after it."""
    found = matches(typed, names)
    if not found:
        return None
    if len(found) == 1:
        return f"/{found[0]} "
    common = os.path.commonprefix(found)
    return f"/{common}" if len(common) + 1 > len(typed) else None
