"""Long-term memory with the real model, real embeddings, real Chroma and SQLite; summaries of
older turns."""

from __future__ import annotations

import json

import pytest

from engine import Engine, Finished, Settings
from engine.longterm import MemoryOffError
from memory.longterm import MemoryInputError
from memory.proposals import extract
from memory.store import Store
from memory.vectors import VectorIndex
from tests.conftest import events_of


@pytest.mark.parametrize(("message", "expected"), [
    ("I prefer metric units and short answers.", ("The user prefers metric units and short answers.", "preference")),
    ("btw, my name is Ada Lovelace.", ("The user's name is Ada Lovelace.", "fact")),
    ("We decided to move the budget review to Fridays.",
     ("The user decided to move the budget review to Fridays.", "decision")),
    ("Remember that my dog is called Rex.", ("The user's dog is called Rex.", "fact")),
    ("I never eat meat.", ("The user never eats meat.", "preference")),
    ("I'm a vegetarian.", ("The user is a vegetarian.", "fact")),
])
def test_lasting_statements_are_proposed(message: str, expected: tuple[str, str]) -> None:
    [proposal] = extract(message)
    assert (proposal.text, proposal.kind) == expected


@pytest.mark.parametrize("message", [
    "What is the capital of France?", "I am tired today.", "If I prefer tea, what then?", "I like it.",
    "Summarize this file for me.",
])
def test_questions_and_passing_states_are_not_proposed(message: str) -> None:
    assert extract(message) == []


def chroma_ids(home) -> set[int]:
    return VectorIndex(home / "chroma", collection="memories").ids()


async def test_a_stated_preference_is_proposed_accepted_and_recalled_later(engine: Engine, home) -> None:
    first = (await events_of(engine, "I prefer metric units for every measurement."))[-1]
    assert isinstance(first, Finished)
    [proposal] = first.proposals
    assert proposal["text"] == "The user prefers metric units for every measurement."
    assert await engine.memories.all() == []  # nothing is saved before the user says yes

    memory = await engine.memories.accept(proposal["id"])
    assert memory["source_conversation_id"] == first.conversation_id
    assert memory["source_message_id"] is not None
    assert chroma_ids(home) == {memory["id"]}

    events = await events_of(engine, "Which units should I use to measure flour for a cake?")  # a new chat
    started, finished = events[0], events[-1]
    assert [m.id for m in started.memories] == [memory["id"]]
    assert isinstance(finished, Finished) and not finished.proposals
    row = await engine.history.response(finished.response_id)
    assert json.loads(row["memory_ids"]) == [memory["id"]]
    assert (await engine.memories.get(memory["id"]))["use_count"] == 1
    spans = {s["name"]: s for s in (await engine.history.trace(finished.response_id))[1]}
    assert spans["memory recall"]["attrs"]["memories"] == [memory["id"]]

    # An unrelated question recalls nothing.
    unrelated = await events_of(engine, "Name a planet of the solar system.")
    assert unrelated[0].memories == ()


async def test_forgetting_removes_a_memory_from_sqlite_and_chroma(engine: Engine, home) -> None:
    kept = await engine.memories.add("The user's favourite editor is Helix.", "preference")
    gone = await engine.memories.add("The user lives in Lisbon.")
    assert chroma_ids(home) == {kept["id"], gone["id"]}
    assert (await engine.memories.search("Where does the user live?"))[0]["id"] == gone["id"]

    await engine.memories.forget(gone["id"])
    assert [m["id"] for m in await engine.memories.all()] == [kept["id"]]
    assert chroma_ids(home) == {kept["id"]}
    store = Store(home / "assistant.db")
    assert store.conn.execute("SELECT COUNT(*) FROM memories WHERE id = ?", [gone["id"]]).fetchone()[0] == 0
    store.close()

    edited = await engine.memories.edit(kept["id"], text="The user's favourite editor is Neovim.", pinned=True)
    assert edited["pinned"] == 1
    assert (await engine.memories.search("Which text editor?"))[0]["text"].endswith("Neovim.")
    with pytest.raises(MemoryInputError):
        await engine.memories.add("   ")
    with pytest.raises(MemoryInputError):
        await engine.memories.add("x", kind="rumour")


async def test_pinned_memories_are_always_recalled(engine: Engine) -> None:
    pinned = await engine.memories.add("Answer in one sentence.", "preference", pinned=True)
    events = await events_of(engine, "Name a planet of the solar system.")
    assert [m.id for m in events[0].memories] == [pinned["id"]]


async def test_memory_off_and_incognito_write_no_long_term_memory(engine: Engine) -> None:
    await engine.memories.add("The user lives in Lisbon.")
    await engine.memories.set_enabled(False)
    events = await events_of(engine, "I prefer tea. Where do I live?")
    assert events[0].memories == () and events[-1].proposals == ()
    with pytest.raises(MemoryOffError):
        await engine.memories.add("The user likes tea.")

    await engine.memories.set_enabled(True)
    async def ask(question: str, conversation: int | None = None, incognito: bool | None = None) -> list:
        async with __import__("contextlib").aclosing(
                engine.ask(question, conversation, incognito=incognito)) as stream:
            return [e async for e in stream]

    secret = await ask("I prefer tea over coffee.", incognito=True)
    conversation = secret[-1].conversation_id
    assert secret[-1].proposals == ()
    assert (await engine.history.conversation(conversation))["incognito"] == 1
    later = await ask("My name is Ada.", conversation)  # stays incognito
    assert later[-1].proposals == ()
    with pytest.raises(MemoryOffError):
        await engine.memories.add("The user likes tea.", conversation_id=conversation)
    assert [m["text"] for m in await engine.memories.all()] == ["The user lives in Lisbon."]


async def test_a_conversation_longer_than_the_context_keeps_working_with_a_summary(settings: Settings,
                                                                               home) -> None:
    engine = Engine(settings.replace(n_ctx=384, max_tokens=48, summary_tokens=60))
    conversation, started = None, []
    for i in range(10):
        events = await events_of(engine, f"Locker {i} holds item {i * 7}. Tell me a fact about the number {i}.",
                                 conversation)
        assert isinstance(events[-1], Finished), events[-1]
        conversation = events[-1].conversation_id
        started.append(events[0])
        assert events[0].prompt_tokens + events[-1].usage.completion_tokens <= 384
    await engine.close()  # waits for a summary being written

    assert any(s.dropped_messages for s in started)  # it outgrew the window...
    summarized = [s for s in started if s.summarized_messages]
    assert summarized, [(s.dropped_messages, s.summarized_messages) for s in started]  # ...and then used a summary
    store = Store(home / "assistant.db")
    summary = store.summary(conversation)
    assert summary and summary["text"] and summary["model"]
    store.close()
    # The summary stands for the oldest turns; the newest turns stay verbatim.
    assert summarized[-1].summarized_messages < 2 * len(started)


async def test_index_rebuild_recreates_the_memories_vectors(engine: Engine, home) -> None:
    import asyncio

    kept = await engine.memories.add("The user lives in Lisbon.")
    VectorIndex(home / "chroma", collection="memories").reset()  # the vector store is lost
    assert chroma_ids(home) == set()
    await asyncio.to_thread((await engine.knowledge()).rebuild)
    assert chroma_ids(home) == {kept["id"]}
    assert (await engine.memories.search("Where does the user live?"))[0]["id"] == kept["id"]
