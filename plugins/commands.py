"""Built-in slash commands, registered through the same `register_commands` hook as third-party
ones. Most ask the app to do something (`context.action(name, args)`); the app decides how."""

from __future__ import annotations

from plugins.hookspecs import Command, CommandContext, hookimpl


def _action(name: str):  # noqa: ANN202 - a small factory of `run` functions
    def run(args: str, context: CommandContext) -> None:
        context.action(name, args.strip())

    return run


def _tools(args: str, context: CommandContext) -> str:
    if not context.tools:
        return "No tools are enabled (setting `tools`)."
    marks = {True: " (asks first: side effects)", False: ""}
    return "\n".join(f"{t.name}: {t.description}{marks[t.side_effects]}" for t in context.tools.values())


COMMANDS = [
    Command("remember", "remember TEXT as a long-term memory", _action("remember")),
    Command("memory", "open the memory screen", _action("memory")),
    Command("model", "load another local model (F9)", _action("model")),
    Command("backend", "pick the backend of this conversation: local or a provider (Ctrl+L)",
            _action("backend")),
    Command("folders", "index folders and choose what this conversation searches", _action("folders")),
    Command("export", "export this conversation to Markdown (/export [FILE])", _action("export")),
    Command("incognito", "this conversation writes no long-term memory (again: off)", _action("incognito")),
    Command("fork", "copy this conversation up to the selected answer, and go on there", _action("fork")),
    Command("tools", "list the tools the model may call", _tools),
    Command("help", "list the slash commands", _action("help")),
]


@hookimpl
def register_commands(register) -> None:  # noqa: ANN001 - the hook's own signature
    for command in COMMANDS:
        register(command)
