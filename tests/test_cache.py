"""The exact response cache, with the real model, real embeddings and a real indexed folder."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

from engine import Engine, Finished, Settings
from tests.conftest import events_of


def spans_of(home: Path, response_id: int) -> dict[str, str | None]:
    db = sqlite3.connect(home / "assistant.db")
    try:
        return dict(db.execute("SELECT name, attrs FROM spans WHERE response_id = ?", [response_id]).fetchall())
    finally:
        db.close()


def response(home: Path, response_id: int) -> sqlite3.Row:
    db = sqlite3.connect(home / "assistant.db")
    db.row_factory = sqlite3.Row
    try:
        return db.execute("SELECT * FROM responses WHERE id = ?", [response_id]).fetchone()
    finally:
        db.close()


async def test_a_repeated_deterministic_question_is_a_logged_cache_hit(settings: Settings, home: Path) -> None:
    engine = Engine(settings)  # temperature 0
    first = (await events_of(engine, "What is the capital of France?"))[-1]
    second_events = await events_of(engine, "What is the capital of France?")  # a new conversation
    second = second_events[-1]
    assert isinstance(first, Finished) and isinstance(second, Finished)
    assert second.cached_from == first.response_id and first.cached_from is None
    assert second.text == first.text and second_events[0].cached_from == first.response_id
    row = response(home, second.response_id)
    assert (row["cache_hit"], row["cached_from"], row["endpoint"], row["cost"]) == (1, first.response_id, "cache", 0)
    spans = spans_of(home, second.response_id)
    assert "cache lookup" in spans and '"hit": true' in spans["cache lookup"] and "generation" not in spans
    # Regenerate: generated anew, and the new answer replaces the cached one.
    third = [e async for e in engine.ask("What is the capital of France?", regenerate=True)][-1]
    assert third.cached_from is None and "generation" in spans_of(home, third.response_id)
    fourth = (await events_of(engine, "What is the capital of France?"))[-1]
    assert fourth.cached_from == third.response_id
    # Another question, or the same one continuing a conversation, is not a hit.
    assert (await events_of(engine, "What is the capital of Spain?"))[-1].cached_from is None
    assert (await events_of(engine, "What is the capital of France?", first.conversation_id))[-1].cached_from is None
    await engine.close()


async def test_sampled_and_unlogged_answers_are_not_cached(settings: Settings, home: Path) -> None:
    for changes in ({"temperature": 0.7}, {"log_content": False}, {"cache": False}):
        engine = Engine(settings.replace(**changes))
        await events_of(engine, "Say hello.")
        again = (await events_of(engine, "Say hello."))[-1]
        await engine.close()
        assert again.cached_from is None, changes
        assert "cache lookup" not in spans_of(home, again.response_id)


async def test_entries_expire(settings: Settings, home: Path) -> None:
    engine = Engine(settings.replace(cache_ttl_hours=0.5 / 3600))  # half a second
    await events_of(engine, "Say hello.")
    await asyncio.sleep(0.6)
    assert (await events_of(engine, "Say hello."))[-1].cached_from is None
    await engine.close()


async def test_editing_a_cited_file_invalidates(settings: Settings, home: Path, tmp_path: Path) -> None:
    notes = tmp_path / "notes"
    notes.mkdir()
    plan = notes / "plan.md"
    plan.write_text("# Launch\n\nThe launch date of project Heron is the 14th of March.\n")
    engine = Engine(settings)
    knowledge = await engine.knowledge()
    await asyncio.to_thread(knowledge.index, notes)
    question = "When is the launch date of project Heron?"
    first = (await events_of(engine, question))[-1]
    assert first.sources
    assert (await events_of(engine, question))[-1].cached_from == first.response_id
    plan.write_text("# Launch\n\nThe launch date of project Heron moved to the 2nd of May.\n")
    await asyncio.to_thread(knowledge.index, notes)
    after = (await events_of(engine, question))[-1]
    assert after.cached_from is None
    await engine.close()


async def test_a_hit_is_answered_before_any_embedding(settings: Settings, home: Path, tmp_path: Path,
                                                      monkeypatch) -> None:
    """Found in the app: a cache hit reported "first token 12,780 ms": retrieval embedded the
    question first, on a CPU busy indexing. The exact lookup now comes first (its key holds the
    folders' version, not the passages found), and a hit embeds nothing."""
    from memory.embedder import Embedder

    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "plan.md").write_text("# Launch\n\nThe launch date of project Heron is the 14th of March.\n")
    embed, embedded = Embedder.embed, []

    def busy_embed(self, texts: list[str]) -> list[list[float]]:  # the real model on a busy CPU
        embedded.append(texts)
        time.sleep(1.0)
        return embed(self, texts)

    engine = Engine(settings)
    await asyncio.to_thread((await engine.knowledge()).index, notes)
    monkeypatch.setattr(Embedder, "embed", busy_embed)
    question = "When is the launch date of project Heron?"
    first = (await events_of(engine, question))[-1]
    assert embedded and first.sources  # a miss searches the folder
    embedded.clear()
    again = await events_of(engine, question)
    assert again[-1].cached_from == first.response_id and embedded == []
    assert [s.passage.chunk_id for s in again[-1].sources] == [s.passage.chunk_id for s in first.sources]
    assert again[-1].text == first.text
    row = response(home, again[-1].response_id)
    assert row["ttft_ms"] < 1000  # no second of "busy" embedding in it
    assert "retrieval" not in spans_of(home, again[-1].response_id)
    await engine.close()


def evaluated(home: Path, response_id: int) -> int:
    import json

    return json.loads(spans_of(home, response_id)["prompt evaluation"])["tokens"]


async def test_prompt_prefix_is_reused_across_turns_and_conversations(settings: Settings, home: Path) -> None:
    history = "Tell me about the history of Paris, its bridges and its markets. " * 20
    for cache_mb in (256, 0):
        engine = Engine(settings.replace(cache=False, prompt_cache_mb=cache_mb))
        first = await events_of(engine, history)
        conversation = first[-1].conversation_id
        second = await events_of(engine, "And in one sentence?", conversation)
        await events_of(engine, "What is 2 + 2?")  # another conversation in between
        back = await events_of(engine, "And in two sentences?", conversation)
        await engine.close()
        assert evaluated(home, first[-1].response_id) == first[0].prompt_tokens  # nothing to reuse yet
        # The next turn evaluates only what is new: the last answer's prefix is still in the model.
        assert evaluated(home, second[-1].response_id) < second[0].prompt_tokens / 5
        returning = evaluated(home, back[-1].response_id)
        if cache_mb:  # the saved state of the conversation comes back
            assert returning < back[0].prompt_tokens / 5
        else:  # only the system prompt is shared with the conversation in between
            assert returning > back[0].prompt_tokens / 2


async def test_kept_model_states_hold_no_logits_and_no_stale_tokens(settings: Settings) -> None:
    """llama-cpp-python keeps up to n_batch rows of logits with each state (100 MB here) outside
    its capacity, and stale tokens past the state's end that it compares with the next prompt."""
    engine = Engine(settings.replace(cache=False))
    first = await events_of(engine, "Tell me about Paris in two sentences.")
    await events_of(engine, "And about Rome?", first[-1].conversation_id)
    states = list(engine.router.backends["local"]._llm.cache.cache_state.values())
    assert len(states) == 2
    for state in states:
        assert state.scores.shape[0] == 1
        assert (state.input_ids[state.n_tokens :] == -1).all()
    await engine.close()


async def test_semantic_cache_hits_a_paraphrase_and_misses_another_question(settings: Settings, home: Path) -> None:
    engine = Engine(settings.replace(semantic_cache=True))
    first = (await events_of(engine, "What is the capital city of France?"))[-1]
    paraphrase_events = await events_of(engine, "Which city is the capital of France?")
    paraphrase = paraphrase_events[-1]
    assert paraphrase.cached_from == first.response_id and paraphrase.text == first.text
    assert paraphrase_events[0].similar_question == "What is the capital city of France?"
    assert '"hit": "semantic"' in spans_of(home, paraphrase.response_id)["cache lookup"]
    other = (await events_of(engine, "How many legs does a spider have?"))[-1]
    assert other.cached_from is None
    # Not in a conversation: the earlier turns could change what the question means.
    follow = (await events_of(engine, "Which city is the capital of France?", other.conversation_id))[-1]
    assert follow.cached_from is None
    await engine.close()
    off = Engine(settings)  # off by default
    assert (await events_of(off, "Which one is the capital city of France?"))[-1].cached_from is None
    await off.close()


async def test_an_empty_answer_is_not_cached(home: Path) -> None:
    """Found by tests/test_resources.py: an answer with no text was cached, and every repeat of
    the question got the empty answer back for a week."""
    from engine import load_settings
    from tests.openai_server import FakeOpenAI
    from tests.test_remote import configure, provider

    with FakeOpenAI() as server:
        configure(home, provider(server.url), backends=["fake"], allow_cloud=True)
        server.then([], ["Now", " with", " words."])
        engine = Engine(load_settings().replace(temperature=0.0, seed=42, max_tokens=16))
        try:
            first = (await events_of(engine, "Say something."))[-1]
            again = (await events_of(engine, "Say something."))[-1]
        finally:
            await engine.close()
    assert isinstance(first, Finished) and first.text == ""
    assert again.text == "Now with words." and again.cached_from is None
    assert len(server.requests) == 2
