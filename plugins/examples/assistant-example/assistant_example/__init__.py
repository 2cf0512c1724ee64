"""An example plugin for assistant: adds a tool, a file loader and a slash command.

- tool `word_stats`: counts words, sentences and characters of a text (the model may call it);
- loader for `.todo` files: one line per task, done tasks marked, so a to-do list can be indexed
  and asked about ("which tasks are still open?") with citations to the line;
- slash command `/wordcount TEXT`: the same count, typed in the chat app's prompt.

The tutorial that builds it step by step is docs/plugins.md in the assistant repository.
"""

from __future__ import annotations

import re
from pathlib import Path

from memory.documents import Line, LoaderError
from plugins.hookspecs import Command, CommandContext, Tool, ToolContext, ToolError, hookimpl

TASK = re.compile(r"^\s*[-*]\s*\[( |x|X)\]\s*(.+)$")


def word_stats(text: str) -> dict[str, int]:
    return {"words": len(re.findall(r"\w+", text)),
            "sentences": len([s for s in re.split(r"[.!?]+", text) if s.strip()]),
            "characters": len(text)}


def describe(text: str) -> str:
    """"3 words, 2 sentences, 15 characters"."""
    return ", ".join(f"{n} {what if n != 1 else what[:-1]}" for what, n in word_stats(text).items())


def _word_stats_tool(arguments: dict, context: ToolContext) -> str:
    text = arguments["text"]
    if not text.strip():
        raise ToolError("there is no text to count")
    return describe(text)


def load_todo(path: Path) -> list[Line]:
    """A `.todo` file: `- [ ] open task` and `- [x] done task` lines; other lines are kept as is."""
    try:
        raw = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise LoaderError(f"unreadable to-do list ({exc.__class__.__name__})") from exc
    lines = []
    for number, text in enumerate(raw.splitlines(), 1):
        task = TASK.match(text)
        if task:
            state = "done" if task.group(1).lower() == "x" else "open"
            text = f"Task ({state}): {task.group(2).strip()}"
        lines.append(Line(text, number))
    return lines


def _wordcount_command(args: str, context: CommandContext) -> str:
    if not args.strip():
        return "Usage: /wordcount TEXT"
    return describe(args) + "."


@hookimpl
def register_tools(register) -> None:
    register(Tool(
        name="word_stats",
        description="Count the words, sentences and characters of a text.",
        parameters={"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"],
                    "additionalProperties": False},
        function=_word_stats_tool,
    ))


@hookimpl
def register_loaders(register) -> None:
    register([".todo"], load_todo, "text")


@hookimpl
def register_commands(register) -> None:
    register(Command("wordcount", "count the words of TEXT", _wordcount_command))
