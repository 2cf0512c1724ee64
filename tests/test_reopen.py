"""What an answer showed live, it shows again when its conversation is reopened (issue 17): the
🔧 line of the tools it called, and a stopped answer's #id, even when it was stopped before the
engine's first event. tests/journeys/test_tui_journeys.py walks the same in a real terminal."""

from __future__ import annotations

import asyncio
import contextlib

from engine import Engine, Finished, Settings
from plugins.hookspecs import hookimpl

TOOLS = {"tool_calling": "always", "tool_choice": "required", "tools": ("calculator",), "max_tokens": 24}


def shown(steps) -> list[tuple[str, str, str]]:  # noqa: ANN001
    """What the 🔧 line is made of."""
    return [(s.call.name, s.status, s.result) for s in steps]


async def answer_with_a_tool(engine: Engine) -> tuple[list, dict]:
    async with contextlib.aclosing(engine.ask("What is 12 times 7?")) as stream:
        events = [e async for e in stream]
    assert isinstance(events[-1], Finished), events[-1]
    rows = await engine.history.messages(events[-1].conversation_id)
    return events, next(r for r in rows if r["role"] == "assistant")


class Observer:
    def __init__(self) -> None:
        self.spans: list[dict] = []

    @hookimpl
    def on_response_logged(self, response: dict, spans: list[dict]) -> None:
        self.spans += spans


async def test_a_reopened_answer_has_the_tool_steps_it_showed_live_and_observers_get_no_result(
        settings: Settings) -> None:
    engine = Engine(settings.replace(**TOOLS))
    observer = Observer()
    (await asyncio.to_thread(engine.plugins)).register(observer, name="observer")
    events, row = await answer_with_a_tool(engine)
    await engine.close()
    live = shown(events[0].tool_steps)
    assert live and live[0][:2] == ("calculator", "ok") and live[0][2]  # a result was shown
    assert shown(row["tool_steps"]) == live  # reopened, the 🔧 line is the same
    assert [s["attrs"]["status"] for s in observer.spans if s["name"] == "tool calculator"] == ["ok"]
    assert not any("result" in s["attrs"] for s in observer.spans)  # content never leaves through observers


async def test_without_logged_content_a_tool_result_is_not_stored(settings: Settings) -> None:
    from engine.history import tool_steps

    engine = Engine(settings.replace(log_content=False, **TOOLS))
    async with contextlib.aclosing(engine.ask("What is 12 times 7?")) as stream:
        events = [e async for e in stream]
    _, spans = await engine.history.trace(events[-1].response_id)
    await engine.close()
    live = shown(events[0].tool_steps)
    assert live and live[0][2]  # shown live
    assert shown(tool_steps(spans)) == [(name, status, "") for name, status, _ in live]  # stored: no result
    assert not any("result" in s["attrs"] for s in spans)


async def test_a_question_stopped_before_the_first_event_has_a_stopped_answer_with_an_id(
        settings: Settings) -> None:
    """Esc while the model still loads: the answer had no #id, so it could not be rated."""
    engine = Engine(settings)
    saved: list[tuple[int, int]] = []
    events: list = []
    tasks: list[asyncio.Task] = []

    def stop_once_saved(conversation_id: int, question_id: int) -> None:
        saved.append((conversation_id, question_id))
        if len(saved) == 2:
            tasks[-1].cancel()  # lands at the next step, long before the model could answer

    async def consume() -> None:
        async with contextlib.aclosing(engine.ask("Tell me about the Moon.", saved=stop_once_saved)) as stream:
            async for event in stream:
                events.append(event)

    for moment in ("while the question is saved", "right after it was saved"):
        tasks.append(asyncio.create_task(consume()))
        if moment == "while the question is saved":
            await asyncio.sleep(0)  # the ask has begun, nothing is saved yet
            tasks[-1].cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await tasks[-1]
    assert events == []  # both stopped before the engine's first event
    assert len(saved) == 2
    for conversation_id, question_id in saved:
        response = await engine.history.answer_to(question_id)
        assert response is not None and response["status"] == "cancelled", (conversation_id, response)
        assert response["conversation_id"] == conversation_id and response["backend"] == "local"
        await engine.history.rate(response["id"], 1)  # it is an answer: it can be rated
        # Reopened, the question is followed by that answer, as it was shown live: no text, its
        # id and rating; it is no message (no number for `fork --at`).
        rows = await engine.history.messages(conversation_id)
        assert [(r["role"], r["id"] is None) for r in rows] == [("user", False), ("assistant", True)]
        assert rows[1]["response_id"] == response["id"] and rows[1]["rating"] == 1
        assert rows[1]["content"] == "" and rows[1]["answer_status"] == "cancelled"
    await engine.close()

