"""The `assistant` command: the chat app by default, and one subcommand per thing to do. (Bare
`assistant`, the chat app alone, starts without click: app/launch.py, the entry point.)

Commands live by topic, each module listing its own in COMMANDS; what they share (settings, running
a coroutine, errors as clean exits, the log file) is in common.py:

    ask.py            ask
    conversations.py  history, feedback, fork, import, export, review, trace
    data.py           index, folders, forget, backup, restore, prune
    system.py         doctor, backends, stats, prompts, plugins
    memory.py         memory ...
    models.py         models ...
    evals.py          eval ...
    serve.py          serve, mcp, web
"""

from __future__ import annotations

import importlib
import os

import click

from app.logfile import log_to_file

# Which module holds each command: a command's module is imported only when it runs (or for
# --help), so `assistant` and `assistant ask` do not pay for the other commands' imports.
# tests/test_cli.py checks this against each module's COMMANDS.
COMMAND_MODULES = {
    "ask": "ask",
    **dict.fromkeys(("history", "feedback", "fork", "import", "export", "review", "trace"), "conversations"),
    **dict.fromkeys(("index", "folders", "forget", "backup", "restore", "prune"), "data"),
    **dict.fromkeys(("doctor", "backends", "stats", "prompts", "plugins"), "system"),
    "memory": "memory",
    "models": "models",
    "eval": "evals",
    **dict.fromkeys(("serve", "mcp", "web"), "serve"),
}


class LazyGroup(click.Group):
    """click's documented pattern for subcommands loaded on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMAND_MODULES)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        topic = COMMAND_MODULES.get(cmd_name)
        if topic is None:
            return None
        module = importlib.import_module(f"app.cli.{topic}")
        return next(c for c in module.COMMANDS if c.name == cmd_name)


@click.group(cls=LazyGroup, invoke_without_command=True,
             context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="assistant", prog_name="assistant")
@click.option("--model", "-m", help="GGUF file path, or a model name in models_dir.")
@click.option("--no-plugins", is_flag=True, help="Start without third-party plugins.")
@click.pass_context
def main(ctx: click.Context, model: str | None, no_plugins: bool) -> None:
    """A local-first AI assistant. With no command, opens the chat app.

    \b
    Keys in the chat app: Enter sends, Ctrl+J inserts a newline, Esc stops the answer,
    Ctrl+G / Ctrl+B rate an answer up / down, Ctrl+P opens the command palette.
    """
    ctx.obj = {"model": model}
    if no_plugins:
        os.environ["ASSISTANT_PLUGINS"] = "0"  # for every settings read in this run
    log_to_file()
    if ctx.invoked_subcommand is None:
        from app.tui import run_chat  # Textual is only imported for the TUI

        run_chat(model)
