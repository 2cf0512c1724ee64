"""`assistant plugins` and `--no-plugins`, with a real installed plugin (a dist-info with entry
points on the path, as pip leaves it) and a broken one."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path


def write_plugin_dist(folder: Path) -> None:
    """A real installed distribution, as pip leaves it: a module and a dist-info whose entry
    points name it and a module that does not exist."""
    (folder / "good_assistant_plugin.py").write_text(
        "from plugins.hookspecs import hookimpl\n"
        "from plugins.loaders import load_text\n"
        "@hookimpl\n"
        "def register_loaders(register):\n"
        "    register(['.good'], load_text, 'text')\n"
        "@hookimpl\n"
        "def on_response_logged(response, spans):\n"
        "    pass\n"
    )
    info = folder / "assistant_test_plugins-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: assistant-test-plugins\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[assistant.plugins]\ngood = good_assistant_plugin\nmissing = no_such_module_for_assistant\n")


def install_plugins(folder: Path) -> dict[str, str]:
    """The environment of a process that has the plugin distribution installed."""
    write_plugin_dist(folder)
    return {**os.environ, "PYTHONPATH": str(folder)}


def plugins_json(env: dict[str, str], *options: str) -> dict:
    done = subprocess.run([sys.executable, "-m", "app", *options, "plugins", "--json"], capture_output=True,
                          text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_plugins_lists_what_each_registers_and_what_failed(tmp_path: Path) -> None:
    env = install_plugins(tmp_path)
    listed = plugins_json(env)
    by_name = {p["name"]: p for p in listed["plugins"]}
    assert by_name["plugins.loaders"]["source"] == "built-in"
    assert "card number" in by_name["plugins.guardrails"]["registers"]["guardrails"]
    good = by_name["good"]
    assert good["source"] == "assistant-test-plugins 1.0"
    assert good["registers"]["loaders"] == [".good"] and "on_response_logged" in good["hooks"]
    assert listed["errors"] == ["plugin missing: could not be loaded: ModuleNotFoundError: "
                                "No module named 'no_such_module_for_assistant'"]
    text = subprocess.run([sys.executable, "-m", "app", "plugins"], capture_output=True, text=True,
                          timeout=120, env=env).stdout
    assert "good  (assistant-test-plugins 1.0)" in text and "observes: on_response_logged" in text
    assert "plugin missing: could not be loaded" in text


def test_no_plugins_starts_without_third_party_plugins(tmp_path: Path) -> None:
    env = install_plugins(tmp_path)
    listed = plugins_json(env, "--no-plugins")
    assert {p["name"] for p in listed["plugins"]} == {"plugins.loaders", "plugins.guardrails", "plugins.tools",
                                                      "plugins.commands", "plugins.backends"}
    assert listed["errors"] == [] and listed["third_party"] is False


# the example plugin package, installed like any third-party plugin (make install) ----------------


async def test_the_example_plugins_tool_loader_and_command_work_end_to_end(tmp_path: Path) -> None:
    import contextlib

    from engine import Engine, Finished, load_settings
    from plugins.hookspecs import CommandContext

    folder = tmp_path / "plans"
    folder.mkdir()
    (folder / "week.todo").write_text("Week 12\n- [ ] renew the passport\n- [x] pay the rent\n")
    engine = Engine(load_settings().replace(temperature=0.0, seed=42, max_tokens=24, tool_calling="always",
                                            tool_choice="required", tools=("word_stats",)))
    summary = await asyncio.to_thread((await engine.knowledge()).index, folder)
    assert summary.indexed == 1  # the plugin's loader read the .todo file
    async with contextlib.aclosing(engine.ask("How many words are in: 'the quick brown fox'?")) as stream:
        events = [e async for e in stream]
    assert isinstance(events[-1], Finished)
    [step] = events[0].tool_steps
    assert step.call.name == "word_stats" and step.status == "ok" and "words" in step.result
    assert events[0].passages == ()  # a word count is not what the to-do list is about
    top = (await asyncio.to_thread((await engine.knowledge()).search, "Is renewing the passport on my list?", None))[0]
    assert top.file == "week.todo" and "Task (open): renew the passport" in top.text
    command = (await asyncio.to_thread(engine.commands))["wordcount"]
    assert command.run("one two three", CommandContext(None, {})) == "3 words, 1 sentence, 13 characters."
    await engine.close()


def test_a_plugin_that_raises_in_register_tools_is_disabled_and_the_rest_work() -> None:
    from plugins.hookspecs import hookimpl
    from plugins.manager import command_registry, get_plugin_manager, tool_registry

    class Broken:
        @hookimpl
        def register_tools(self, register) -> None:
            raise RuntimeError("no tools today")

        @hookimpl
        def register_commands(self, register) -> None:
            register("not a command")

    pm = get_plugin_manager(load_entry_points=False)
    pm.register(Broken(), name="broken")
    assert "calculator" in tool_registry(pm)
    assert "help" in command_registry(pm)
    assert pm.errors == ["plugin broken: register_tools failed: RuntimeError: no tools today"]
    assert pm.get_plugin("broken") is None  # disabled: its commands are gone too
