"""The example plugin on its own: each part, then loaded the way assistant loads it."""

from __future__ import annotations

from pathlib import Path

import assistant_example
import pytest

from plugins.hookspecs import CommandContext, ToolContext, ToolError
from plugins.manager import command_registry, get_plugin_manager, loader_registry, tool_registry


def test_word_stats_tool() -> None:
    tool = tool_registry(get_plugin_manager())["word_stats"]
    assert tool.function({"text": "One two. Three!"}, ToolContext()) == "3 words, 2 sentences, 15 characters"
    with pytest.raises(ToolError):
        tool.function({"text": "  "}, ToolContext())


def test_todo_loader(tmp_path: Path) -> None:
    path = tmp_path / "week.todo"
    path.write_text("Week 12\n- [ ] renew the passport\n- [x] pay the rent\n")
    loader, kind = loader_registry(get_plugin_manager()).for_path(path)
    assert kind == "text"
    assert [(line.text, line.line) for line in loader(path)] == [
        ("Week 12", 1), ("Task (open): renew the passport", 2), ("Task (done): pay the rent", 3)]


def test_wordcount_command() -> None:
    command = command_registry(get_plugin_manager())["wordcount"]
    assert command.run("a b c", CommandContext(None, {})) == "3 words, 1 sentence, 5 characters."
    assert command.run("", CommandContext(None, {})).startswith("Usage")


def test_it_is_installed_as_an_entry_point() -> None:
    names = [p for p in get_plugin_manager().get_plugins() if p is assistant_example]
    assert names, "install it: pip install -e plugins/examples/assistant-example"
