"""The `assistant` command's entry point. Bare `assistant` (the chat app, with `--model` or
`--no-plugins` at most) opens the app without importing click and the CLI: every millisecond
before the first frame is one the user waits (issue 20). Anything else goes to the CLI (app/cli)."""

from __future__ import annotations

import os
import sys
from typing import Any


def main(**click_options: Any) -> None:
    chat = chat_options(sys.argv[1:])
    if chat is None:
        from app.cli import main as cli

        cli(**click_options)
        return
    model, no_plugins = chat
    if no_plugins:  # as the CLI's group does (app/cli/__init__.py)
        os.environ["ASSISTANT_PLUGINS"] = "0"
    from app.logfile import log_to_file
    from app.tui import run_chat

    log_to_file()
    run_chat(model)


def chat_options(args: list[str]) -> tuple[str | None, bool] | None:
    """(model, no_plugins) when `args` only open the chat app; None for anything else (a command,
    --help, --version, a typo: click parses those and answers as it always does)."""
    model, no_plugins = None, False
    rest = list(args)
    while rest:
        arg = rest.pop(0)
        if arg == "--no-plugins":
            no_plugins = True
        elif arg in ("--model", "-m") and rest:
            model = rest.pop(0)
        elif arg.startswith("--model="):
            model = arg.removeprefix("--model=")
        else:
            return None
    return model, no_plugins
