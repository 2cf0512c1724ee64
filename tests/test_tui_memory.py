"""Long-term memory in the app, driven with Pilot: proposals, /remember, the memory screen,
incognito and fork. Real model, embeddings, Chroma and SQLite."""

from __future__ import annotations

from textual.widgets import Button, DataTable

from app.screens.chat import ChatScreen
from app.screens.memory import MemoryScreen
from app.screens.modals import ConfirmDialog
from app.tui import AssistantApp
from app.widgets.answer import ProposalCard
from app.widgets.chat_log import UserMessage
from engine import Engine, Settings
from tests.conftest import wait_for
from tests.test_tui import ask, finished_answer, ready


async def test_proposal_remember_then_memory_screen_edit_pin_forget(settings: Settings) -> None:
    app = AssistantApp(Engine(settings))
    async with app.run_test(size=(140, 45)) as pilot:
        screen = await ready(app)
        await ask(pilot, "I prefer metric units for every measurement.")
        await finished_answer(app)
        await wait_for(lambda: bool(screen.query(ProposalCard)), what="a proposal card")
        card = screen.query_one(ProposalCard)
        assert "metric units" in card.proposal["text"]
        card.query_one("#remember", Button).press()
        await wait_for(lambda: not screen.query(ProposalCard), what="the card to go")
        [memory] = await app.engine.memories.all()
        assert memory["source_conversation_id"] == screen.conversation_id

        await ask(pilot, "/remember My cat is called Tom")
        await wait_for(lambda: len(app.engine.memories._memory.all()) == 2, what="a second memory")
        assert len(screen.query(UserMessage)) == 1  # a command, not a question

        await ask(pilot, "Which units should I use to weigh flour?")
        answer = await finished_answer(app, 2)
        assert "🧠 used" in answer.footer_text()

        await pilot.press("f10")
        await wait_for(lambda: isinstance(app.screen, MemoryScreen), what="memory screen")
        memories = app.screen.query_one("#memories", DataTable)
        await wait_for(lambda: memories.row_count == 2, what="two rows")
        await pilot.press("p")  # pin the newest (the cat)
        await wait_for(lambda: any(m["pinned"] for m in app.engine.memories._memory.all()), what="pinned")
        await wait_for(lambda: memories.row_count == 2 and "📌" in str(memories.get_row_at(0)), what="refresh")
        await pilot.press("d")
        await wait_for(lambda: isinstance(app.screen, ConfirmDialog), what="confirm")
        await pilot.press("y")
        await wait_for(lambda: len(app.engine.memories._memory.all()) == 1, what="forgotten")
        await pilot.press("escape")
        await wait_for(lambda: isinstance(app.screen, ChatScreen))


async def test_incognito_conversation_proposes_nothing_and_fork_copies(settings: Settings) -> None:
    app = AssistantApp(Engine(settings))
    async with app.run_test(size=(140, 45)) as pilot:
        screen = await ready(app)
        await ask(pilot, "/incognito")
        await wait_for(lambda: screen.status.incognito, what="incognito")
        await ask(pilot, "I prefer tea over coffee.")
        await finished_answer(app)
        original = screen.conversation_id
        assert (await app.engine.history.conversation(original))["incognito"] == 1
        assert not screen.query(ProposalCard) and await app.engine.memories.proposals() == []

        await ask(pilot, "/fork")
        await wait_for(lambda: screen.conversation_id not in (None, original), what="the fork opened")
        fork = await app.engine.history.conversation(screen.conversation_id)
        assert fork["title"].startswith("Fork of") and fork["incognito"] == 1
        assert [m["content"] for m in await app.engine.history.messages(screen.conversation_id)] == \
            [m["content"] for m in await app.engine.history.messages(original)]
