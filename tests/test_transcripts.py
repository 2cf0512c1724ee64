"""Export conversations to JSONL and Markdown, import them back, fork: real model, real store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine import Engine, Finished, Settings
from memory.transcripts import ImportFormatError
from tests.conftest import events_of
from tests.rag_corpus import write_mixed_folder


def without_ids(item: dict) -> dict:
    item = json.loads(json.dumps(item))
    item["conversation"].pop("id")
    return item


async def test_export_then_import_round_trips_with_citations_ratings_and_timings(
        settings: Settings, tmp_path: Path) -> None:
    folder = write_mixed_folder(tmp_path / "notes")
    engine = Engine(settings)
    knowledge = await engine.knowledge()
    await __import__("asyncio").to_thread(knowledge.index, folder)
    first = (await events_of(engine, "What budget did we decide for the garden project?"))[-1]
    assert isinstance(first, Finished) and first.sources
    second = (await events_of(engine, "And in one sentence?", first.conversation_id))[-1]
    await engine.history.rate(second.response_id, -1, "too vague")
    await engine.history.rate(first.response_id, 1)

    [exported] = await engine.history.export_conversations([first.conversation_id])
    messages = exported["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant"]
    assert messages[1]["rating"] == 1 and messages[3]["feedback"][0]["comment"] == "too vague"
    assert messages[1]["response"]["ttft_ms"] > 0 and messages[1]["response"]["model"]
    assert "notes/budget.md:" in messages[1]["sources"][0]["location"]

    # Back in on another machine (another database), then exported again: the same but for ids.
    await engine.close()
    other = Engine(settings, database=tmp_path / "other" / "assistant.db")
    await other.history.import_conversations([json.dumps({"format": "assistant.conversation/1", "conversation": {
        "title": "Already here"}, "messages": []})], "earlier.jsonl")
    imported = await other.history.import_conversations([json.dumps(exported)], "export.jsonl")
    [new_id] = imported.ids
    assert new_id != first.conversation_id and imported.already_there == []
    [again] = await other.history.export_conversations([new_id])
    assert without_ids(again) == without_ids(exported)
    # The imported conversation goes on like any other.
    more = (await events_of(other, "Thanks!", new_id))[-1]
    assert isinstance(more, Finished)
    await other.close()


async def test_a_bad_import_names_the_line_and_writes_nothing(engine: Engine) -> None:
    good = (await events_of(engine, "Hello"))[-1]
    [exported] = await engine.history.export_conversations([good.conversation_id])
    with pytest.raises(ImportFormatError, match="line 2"):
        await engine.history.import_conversations([json.dumps(exported), "{not json"], "mixed.jsonl")
    with pytest.raises(ImportFormatError, match="line 1"):
        await engine.history.import_conversations([json.dumps({"format": "other"})], "other.jsonl")
    assert len(await engine.history.conversations()) == 1


async def test_importing_what_is_already_there_skips_it(engine: Engine) -> None:
    first = (await events_of(engine, "Name a colour."))[-1]
    second = (await events_of(engine, "Name a fruit."))[-1]
    lines = [json.dumps(item) for item in await engine.history.export_conversations()]
    # Where it came from: both are there already, nothing is copied.
    done = await engine.history.import_conversations(lines, "chats.jsonl")
    assert (done.ids, done.already_there) == ([], [first.conversation_id, second.conversation_id])
    # A conversation that went on since the export is another one: imported.
    await events_of(engine, "Another?", first.conversation_id)
    done = await engine.history.import_conversations(lines, "chats.jsonl")
    assert len(done.ids) == 1 and done.already_there == [second.conversation_id]
    assert len(await engine.history.messages(done.ids[0])) == 2
    assert len(await engine.history.conversations()) == 3


async def test_fork_from_a_message_keeps_the_original(engine: Engine) -> None:
    first = (await events_of(engine, "Name a colour."))[-1]
    await events_of(engine, "Name another one.", first.conversation_id)
    fork_id = await engine.history.fork(first.conversation_id, first.message_id)
    forked = await engine.history.messages(fork_id)
    assert [m["content"] for m in forked] == ["Name a colour.", first.text]
    assert len(await engine.history.messages(first.conversation_id)) == 4
    went_on = (await events_of(engine, "Name a fruit.", fork_id))[-1]
    assert isinstance(went_on, Finished)
    assert len(await engine.history.messages(first.conversation_id)) == 4


def test_cli_exports_markdown_and_jsonl_and_imports(home: Path, tmp_path: Path) -> None:
    def run(*args: str, home: Path = home) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "app", *args], capture_output=True, text=True,
                              timeout=300, check=True, env={**os.environ, "ASSISTANT_HOME": str(home)})

    run("ask", "--max-tokens", "12", "--no-stats", "I prefer short answers. Name a colour.")
    run("export", "conversations", str(tmp_path / "all.jsonl"))
    run("export", "conversations", str(tmp_path / "all.md"), "--format", "markdown")
    markdown = (tmp_path / "all.md").read_text()
    assert markdown.startswith("# I prefer short answers") and "## Assistant (SmolLM2" in markdown
    # Into the database it came from: already there, so nothing is copied.
    assert "0 conversations imported, 1 already there." in run("import", str(tmp_path / "all.jsonl")).stdout
    assert "Fork of" in run("fork", "1").stdout + run("history").stdout
    run("export", "conversations", str(tmp_path / "both.jsonl"))
    other = tmp_path / "other-machine"
    assert "2 conversations imported (ids 1-2)." in run("import", str(tmp_path / "both.jsonl"), home=other).stdout
    # The same file twice: skipped, and said so.
    again = run("import", str(tmp_path / "both.jsonl"), home=other).stdout
    assert "0 conversations imported, 2 already there." in again
    assert run("history", home=other).stdout.count(" 2 msgs  ") == 2
    proposals = run("memory", "proposals").stdout
    assert "[1]" in proposals and "short answers" in proposals
    assert "Remembered #1" in run("memory", "accept", "1").stdout
    assert "short answers" in run("memory", "list").stdout
    assert "similarity" in run("memory", "search", "answer length").stdout
    assert "pinned" in run("memory", "edit", "1", "--pin").stdout
    run("memory", "export", str(tmp_path / "memories.jsonl"))
    assert "Forgot #1" in run("memory", "forget", "1").stdout
    assert run("memory", "list").stdout.startswith("No memories")
    assert "Added 1 of 1" in run("memory", "import", str(tmp_path / "memories.jsonl")).stdout
    assert "short answers" in run("memory", "list").stdout and "pinned" in run("memory", "list").stdout
    assert "Added 0 of 1" in run("memory", "import", str(tmp_path / "memories.jsonl")).stdout
    run("memory", "off")
    assert "is off" in run("memory", "status").stdout
