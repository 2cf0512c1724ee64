"""Open a cited source where it was found: in $VISUAL/$EDITOR at its line, or the system viewer
for paged documents."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

PAGED = {".pdf", ".docx"}


def editor_command(path: str, line: int, environ: dict[str, str] | None = None) -> list[str]:
    """`$EDITOR +LINE PATH` (vi, vim, nvim, nano, emacs, micro, helix), or the GUI editors' own
    form; VISUAL wins over EDITOR, as in every Unix tool."""
    env = os.environ if environ is None else environ
    editor = env.get("VISUAL") or env.get("EDITOR") or "vi"
    argv = shlex.split(editor)
    name = Path(argv[0]).name
    if name in ("code", "codium"):
        return [*argv, "--goto", f"{path}:{line}"]
    if name in ("subl", "zed"):
        return [*argv, f"{path}:{line}"]
    return [*argv, f"+{line}", path]


def is_paged(path: str) -> bool:
    return Path(path).suffix.lower() in PAGED
