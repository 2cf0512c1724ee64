"""Prompt templates: shipped files, user overrides, versions on response rows, the CLI, and an A/B
split of new conversations compared by stats."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from engine import Engine, Finished, Settings
from engine.prompts import all_templates, built_in, load
from memory.store import Store
from tests.conftest import events_of


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "app", *args], capture_output=True, text=True, timeout=120)


def test_templates_are_files_with_versions_and_can_be_overridden(settings: Settings, home: Path) -> None:
    shipped = built_in("system")
    assert shipped is not None and load("system", settings) == shipped
    assert {t.name for t in all_templates(settings)} >= {"system", "sources"}
    (home / "prompts").mkdir(parents=True)
    (home / "prompts" / "system.md").write_text("You answer like a pirate.\n")
    mine = load("system", settings)
    assert mine.text == "You answer like a pirate." and mine.version != shipped.version
    assert mine.origin.endswith("system.md")
    assert load("system", settings.replace(system_prompt="Be brief.")).origin == "setting system_prompt"
    listed = run("prompts", "list")
    assert listed.returncode == 0 and mine.version in listed.stdout and "sources" in listed.stdout
    diff = run("prompts", "diff", "system").stdout
    assert "-You are a helpful assistant" in diff and "+You answer like a pirate." in diff
    assert "pirate" in run("prompts", "show", "system").stdout
    assert run("prompts", "show", "nope").returncode == 1


async def test_each_answer_records_its_templates_and_an_ab_split_compares_them(settings: Settings,
                                                                               home: Path) -> None:
    (home / "prompts").mkdir(parents=True)
    (home / "prompts" / "terse.md").write_text("You are terse: answer in at most five words.\n")
    engine = Engine(settings.replace(ab_system_prompt="terse", cache=False))
    answers = [(await events_of(engine, f"Name a colour, please ({i})."))[-1] for i in range(4)]
    follow_up = (await events_of(engine, "Another one?", answers[0].conversation_id))[-1]
    await engine.close()
    assert all(isinstance(a, Finished) for a in [*answers, follow_up])
    store = Store(home / "assistant.db")
    rows = {r["conversation_id"]: r for r in store.db.query("SELECT * FROM responses")}
    terse, system = load("terse", settings), load("system", settings)
    names = [rows[a.conversation_id]["template"] for a in answers]
    assert names == ["terse", "system", "terse", "system"]  # every other new conversation
    assert {rows[a.conversation_id]["template_version"] for a in answers} == {terse.version, system.version}
    follow = next(store.db.query("SELECT * FROM responses WHERE id = ?", [follow_up.response_id]))
    assert follow["template"] == "terse"  # a conversation keeps its template
    store.close()
    compared = run("stats", "--by", "template", "--json")
    import json
    groups = json.loads(compared.stdout)["groups"]
    assert groups[f"terse {terse.version}"]["answers"] == 3 and groups[f"system {system.version}"]["answers"] == 2
