"""Engine.ask end to end: real model, real SQLite; one response row however an answer ends."""

import asyncio
from pathlib import Path

from engine import Engine, Failed, Finished, Settings, Started, Token
from engine.errors import InvalidModelError
from tests.conftest import count_evaluated, events_of


async def test_answer_is_streamed_and_logged(engine: Engine) -> None:
    events = await events_of(engine, "What is the capital of France?")
    assert isinstance(events[0], Started)
    tokens = [e for e in events if isinstance(e, Token)]
    finished = events[-1]
    assert isinstance(finished, Finished) and len(tokens) >= 2  # the first piece comes alone
    assert finished.text == "".join(t.text for t in tokens)

    row = await engine.history.response(finished.response_id)
    assert row["status"] == "ok" and row["error"] is None
    assert row["backend"] == "local" and row["model"] == "SmolLM2-135M-Instruct.Q4_1"
    assert len(row["model_hash"]) == 64
    assert row["template"] == "system" and row["template_version"] == engine.template_version
    assert row["input_tokens"] == events[0].prompt_tokens > 0
    assert row["output_tokens"] == finished.usage.completion_tokens > 0
    assert 0 < row["ttft_ms"] <= row["total_ms"]
    assert row["tokens_per_s"] > 0 and row["cost"] == 0
    assert row["trace_id"]

    messages = await engine.history.messages(finished.conversation_id)
    assert [m["role"] for m in messages] == ["user", "assistant"]
    assert messages[1]["content"] == finished.text and messages[1]["response_id"] == row["id"]


async def test_conversation_continues_with_history(engine: Engine) -> None:
    first = (await events_of(engine, "My name is Ada."))[-1]
    second_events = await events_of(engine, "What is my name?", first.conversation_id)
    started, second = second_events[0], second_events[-1]
    assert second.conversation_id == first.conversation_id
    assert started.prompt_tokens > first.usage.prompt_tokens  # the first turn is in the prompt
    assert len(await engine.history.messages(first.conversation_id)) == 4


async def test_long_conversation_in_a_small_context(settings: Settings) -> None:
    engine = Engine(settings.replace(n_ctx=384, max_tokens=48))
    conversation = None
    dropped = []
    for i in range(8):
        events = await events_of(engine, f"Question {i}: tell me a fact about the number {i}.", conversation)
        assert isinstance(events[-1], Finished), events[-1]
        conversation = events[-1].conversation_id
        dropped.append(events[0].dropped_messages)
        assert events[0].prompt_tokens + events[-1].usage.completion_tokens <= 384
    assert any(dropped)  # older turns were left out (then summarized) instead of overflowing
    await engine.close()


async def test_bad_model_fails_clearly_and_keeps_the_question(settings: Settings, bad_model: Path) -> None:
    engine = Engine(settings.replace(model=str(bad_model)))
    events = await events_of(engine, "Are you there?")
    failed = events[-1]
    assert isinstance(failed, Failed) and isinstance(failed.error, InvalidModelError)
    assert "broken.gguf" in str(failed.error)
    row = await engine.history.response(failed.response_id)
    assert row["status"] == "error" and "not a GGUF model" in row["error"]
    assert row["message_id"] is None
    # The question is kept; its failed answer comes back as it was shown live: no text, no
    # message of its own, its response id and status.
    messages = await engine.history.messages(failed.conversation_id)
    assert [(m["role"], m["content"], m["id"] is None) for m in messages] == [
        ("user", "Are you there?", False), ("assistant", "", True)]
    assert messages[1]["response_id"] == failed.response_id and messages[1]["answer_status"] == "error"
    await engine.close()


async def test_cancelled_answer_is_logged_with_its_partial_text(settings: Settings) -> None:
    engine = Engine(settings.replace(max_tokens=400))
    seen: list[str] = []
    conversation: list[int] = []

    async def consume() -> None:
        async for event in engine.ask("Write a very long essay about the history of Rome."):
            if isinstance(event, Started):
                conversation.append(event.conversation_id)
            if isinstance(event, Token):
                seen.append(event.text)

    task = asyncio.create_task(consume())
    while len(seen) < 5:
        await asyncio.sleep(0.01)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)

    messages = await engine.history.messages(conversation[0])
    answer = messages[-1]
    assert answer["role"] == "assistant" and answer["status"] == "partial"
    assert answer["content"].startswith("".join(seen[:5]))
    row = await engine.history.response(answer["response_id"])
    assert row["status"] == "cancelled" and row["output_tokens"] < 400
    assert row["total_ms"] > 0
    await engine.close()


async def test_partial_answers_stay_out_of_the_next_prompt(settings: Settings) -> None:
    engine = Engine(settings.replace(max_tokens=120))  # long enough to stop mid-way, short for "Hello"
    conversation: list[int] = []

    async def consume() -> None:
        async for event in engine.ask("Write a long story."):
            if isinstance(event, Token):
                conversation.append(1)
            if isinstance(event, Started):
                cid = event.conversation_id
                conversation.insert(0, cid)

    task = asyncio.create_task(consume())
    while len(conversation) < 3:
        await asyncio.sleep(0.01)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    events = await events_of(engine, "Hello", conversation[0])
    # the question is kept; the stopped half answer is not fed back to the model
    expected = [
        {"role": "system", "content": settings.system_prompt},
        {"role": "user", "content": "Write a long story."},
        {"role": "user", "content": "Hello"},
    ]
    assert events[0].prompt_tokens == await asyncio.to_thread(engine.backend.count_tokens, expected)
    assert isinstance(events[-1], Finished)
    await engine.close()


async def test_rating_and_history(engine: Engine) -> None:
    finished = (await events_of(engine, "Say hello."))[-1]
    feedback_id = await engine.history.rate(finished.response_id, 1)
    await engine.history.comment(feedback_id, "friendly")
    await engine.history.rename_conversation(finished.conversation_id, "Greeting")
    conversations = await engine.history.conversations()
    assert conversations[0]["title"] == "Greeting"
    messages = await engine.history.messages(finished.conversation_id)
    assert messages[-1]["rating"] == 1
    await engine.history.delete_conversation(finished.conversation_id)
    assert await engine.history.conversations() == []


async def test_next_turn_is_evaluated_ahead(engine: Engine) -> None:
    """After an answer, the conversation so far and the opening of the next user turn are
    evaluated in the background: the next question evaluates only its own words and the
    assistant's opening, however long the conversation."""
    local = engine.router.backends["local"]
    question = "Tell me one short fact about the number {}."
    for prefill, n in ((True, 6), (False, 8)):  # other numbers: no cached answer
        engine.prefill_next_turn = prefill
        first = (await events_of(engine, question.format(n)))[-1]
        await local._run(lambda: None)  # whatever was queued after the answer has run
        sizes = count_evaluated(local._llm)
        second = await events_of(engine, question.format(n + 1), first.conversation_id)
        del local._llm.eval
        assert isinstance(second[-1], Finished)
        own_words = len(local._tokenize(question.format(n + 1), add_bos=False))
        if prefill:
            assert own_words < sizes[0] <= own_words + 6  # + the end of the question, the assistant's opening
        else:
            assert sizes[0] > own_words + 6
