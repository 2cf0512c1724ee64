"""The chat app driven with Pilot: real model, real database."""

import asyncio
from pathlib import Path

import pytest
from textual.widgets import Label, Static

from app.screens.chat import ChatScreen
from app.screens.modals import ConfirmDialog, TextDialog
from app.tui import AssistantApp
from app.widgets.answer import AnswerMessage
from app.widgets.chat_log import UserMessage
from app.widgets.conversation_list import ConversationItem, ConversationList
from app.widgets.prompt import PromptInput
from engine import Engine, Settings
from tests.conftest import events_of, wait_for


def chat(app: AssistantApp) -> ChatScreen:
    assert isinstance(app.screen, ChatScreen)
    return app.screen


async def ready(app: AssistantApp) -> ChatScreen:
    """The chat screen, once its model has loaded."""
    screen = chat(app)
    await wait_for(lambda: screen.status.state == "ready", what="model loaded")
    return screen


def answers(app: AssistantApp) -> list[AnswerMessage]:
    return list(app.screen.query(AnswerMessage))


async def ask(pilot, question: str) -> None:
    prompt = pilot.app.screen.query_one(PromptInput)
    prompt.focus()
    prompt.load_text(question)
    await pilot.press("enter")


async def finished_answer(app: AssistantApp, count: int = 1) -> AnswerMessage:
    await wait_for(lambda: len(answers(app)) >= count and answers(app)[count - 1].response_id is not None,
                   what="an answer with a response id")
    return answers(app)[count - 1]


async def test_question_streams_an_answer_and_thumbs_up_is_stored(settings: Settings) -> None:
    app = AssistantApp(Engine(settings))
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await ready(app)
        await ask(pilot, "What is the capital of France?")
        answer = await finished_answer(app)
        assert screen.query_one(PromptInput).text == ""  # the prompt was cleared on send
        assert answer.markdown.source.strip() and answer.text == answer.markdown.source
        assert [w.text for w in screen.query(UserMessage)] == ["What is the capital of France?"]
        assert screen.status.tokens_per_s and screen.status.ttft_ms
        assert screen.status.context[1] == settings.n_ctx

        await pilot.press("ctrl+g")
        await wait_for(lambda: isinstance(app.screen, TextDialog), what="comment dialog")
        await pilot.press(*"clear", "enter")
        await wait_for(lambda: isinstance(app.screen, ChatScreen))
        await wait_for(lambda: answer.rating == 1)
        feedback = await app.engine.history.messages(screen.conversation_id)
        assert feedback[-1]["rating"] == 1
        store = await app.engine.store()
        assert store.feedback(answer.response_id)[0]["comment"] == "clear"
        assert "👍" in answer.footer_text()


async def test_escape_stops_the_answer_and_typing_never_stalls(settings: Settings) -> None:
    # stop_loops off: the embedded model loops on this essay and would end before Esc is pressed.
    app = AssistantApp(Engine(settings.replace(max_tokens=1500, stop_loops=False)))
    async with app.run_test(size=(120, 40)) as pilot:
        screen = chat(app)
        await ask(pilot, "Write a very long essay about the history of Rome.")
        await wait_for(lambda: answers(app) and len(answers(app)[0].markdown.source) > 20, what="streaming")
        # typing while the answer streams lands in the prompt at once
        await pilot.press(*"next")
        assert screen.query_one(PromptInput).text == "next"
        assert screen.answering
        await pilot.press("escape")
        await wait_for(lambda: not screen.answering, what="answer stopped")
        answer = answers(app)[0]
        assert answer.state == "stopped"
        rows = await app.engine.history.messages(screen.conversation_id)
        assert rows[-1]["status"] == "partial"
        response = await app.engine.history.response(rows[-1]["response_id"])
        assert response["status"] == "cancelled" and response["output_tokens"] < 1500
        assert screen.query_one(PromptInput).text == "next"  # what the user typed is still there


async def test_reopening_a_past_conversation_shows_its_messages(settings: Settings) -> None:
    engine = Engine(settings)
    first = (await events_of(engine, "Tell me about cats."))[-1]
    second = (await events_of(engine, "Tell me about dogs."))[-1]
    app = AssistantApp(engine)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = chat(app)
        sidebar = screen.query_one(ConversationList)
        await wait_for(lambda: len(sidebar.query(ConversationItem)) == 2, what="sidebar filled")
        titles = [i.title for i in sidebar.query(ConversationItem)]
        assert titles == ["Tell me about dogs.", "Tell me about cats."]
        sidebar.focus()
        for _ in range(3):  # move the cursor to the older one: cats
            if sidebar.highlighted_conversation and sidebar.highlighted_conversation.title.endswith("cats."):
                break
            await pilot.press("down")
        await pilot.press("enter")
        await wait_for(lambda: screen.conversation_id == first.conversation_id, what="conversation opened")
        await wait_for(lambda: len(answers(app)) == 1)
        assert [w.text for w in screen.query(UserMessage)] == ["Tell me about cats."]
        assert answers(app)[0].text == first.text and answers(app)[0].response_id == first.response_id

        # continue it: the new answer joins the same conversation
        await ask(pilot, "And their lifespan?")
        await finished_answer(app, 2)
        assert len(await engine.history.messages(first.conversation_id)) == 4
        assert second.conversation_id != first.conversation_id


async def test_rate_an_earlier_answer(settings: Settings) -> None:
    engine = Engine(settings)
    first = (await events_of(engine, "One?"))[-1]
    await events_of(engine, "Two?", first.conversation_id)
    app = AssistantApp(engine)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = chat(app)
        await screen.open_conversation(first.conversation_id)
        await pilot.press("alt+up", "alt+up")  # latest, then the one before
        assert screen.selected is answers(app)[0]
        await pilot.press("ctrl+b")
        await wait_for(lambda: isinstance(app.screen, TextDialog))
        await pilot.press("escape")  # no comment
        await wait_for(lambda: answers(app)[0].rating == -1)
        rows = await engine.history.messages(first.conversation_id)
        assert [r["rating"] for r in rows if r["role"] == "assistant"] == [-1, None]


async def test_rename_delete_and_new_chat(settings: Settings) -> None:
    engine = Engine(settings)
    done = (await events_of(engine, "Plan a trip."))[-1]
    app = AssistantApp(engine)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = chat(app)
        await screen.open_conversation(done.conversation_id)
        await wait_for(lambda: len(screen.query(ConversationItem)) == 1)
        await pilot.press("f2")
        await wait_for(lambda: isinstance(app.screen, TextDialog))
        dialog_input = app.screen.query_one("Input")
        dialog_input.value = "Holiday"
        await pilot.press("enter")
        await wait_for(lambda: [i.title for i in screen.query(ConversationItem)] == ["Holiday"])

        screen.query_one(ConversationList).focus()
        await pilot.press("delete")  # a key no question types
        await wait_for(lambda: isinstance(app.screen, ConfirmDialog))
        await pilot.press("y")
        await wait_for(lambda: not screen.query(ConversationItem), what="conversation deleted")
        assert await engine.history.conversations() == []
        assert screen.conversation_id is None and not answers(app)

        await ask(pilot, "Fresh start?")
        await finished_answer(app)
        await pilot.press("ctrl+n")
        assert not answers(app) and screen.conversation_id is None


async def test_bad_model_is_reported_and_the_question_restored(settings: Settings, bad_model: Path) -> None:
    app = AssistantApp(Engine(settings.replace(model=str(bad_model))))
    # Every notification shown, kept: on a loaded machine one can expire before it is looked at.
    shown: list[str] = []
    notify = app.notify
    app.notify = lambda message, *args, **kwargs: (shown.append(str(message)), notify(message, *args, **kwargs))[1]
    async with app.run_test(size=(120, 40)) as pilot:
        screen = chat(app)
        await wait_for(lambda: screen.status.state == "model failed to load")
        assert any("broken.gguf" in message for message in shown)
        await ask(pilot, "Are you working?")
        await wait_for(lambda: answers(app) and answers(app)[0].state == "error")
        assert screen.query_one(PromptInput).text == "Are you working?"


async def test_copy_and_command_palette_entries(settings: Settings) -> None:
    app = AssistantApp(Engine(settings))
    async with app.run_test(size=(120, 40)) as pilot:
        screen = chat(app)
        await ask(pilot, "Say hello.")
        answer = await finished_answer(app)
        await pilot.press("ctrl+o")
        assert app.clipboard == answer.text
        titles = [c.title for c in app.get_system_commands(screen)]
        for title in ("New chat", "Stop answer", "Thumbs up", "Thumbs down", "Copy answer",
                      "Rename conversation", "Delete conversation"):
            assert title in titles


@pytest.mark.parametrize("key", ["ctrl+j"])
async def test_newline_key_and_enter_sends(settings: Settings, key: str) -> None:
    app = AssistantApp(Engine(settings))
    async with app.run_test(size=(120, 40)) as pilot:
        prompt = app.screen.query_one(PromptInput)
        prompt.focus()
        await pilot.press(*"line one", key, *"line two")
        assert prompt.text == "line one\nline two"
        await pilot.press("enter")
        await finished_answer(app)
        assert [w.text for w in app.screen.query(UserMessage)] == ["line one\nline two"]


async def test_sources_panel_and_opening_a_source(settings: Settings, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from app.widgets.answer import SourceLine
    from tests.rag_corpus import write_mixed_folder

    folder = write_mixed_folder(tmp_path / "docs")
    monkeypatch.setenv("EDITOR", "myeditor")
    engine = Engine(settings.replace(index_max_file_mb=0.03))
    knowledge = await engine.knowledge()
    await asyncio.to_thread(knowledge.index, folder)
    app = AssistantApp(engine)
    async with app.run_test(size=(120, 40)) as pilot:
        await ask(pilot, "Where will the team offsite take place?")
        answer = await finished_answer(app)
        await wait_for(lambda: len(answer.query(SourceLine)) > 0, what="sources panel")
        lines = [str(line.source.passage.location) for line in answer.query(SourceLine)]
        assert any("notes/travel.txt:" in line for line in lines)
        await pilot.press("ctrl+r")  # headless: no terminal to hand over, so the command is shown
        first = answer.sources[0].passage
        await wait_for(lambda: any(f"myeditor +{first.start_line} {first.path}" in n.message
                                   for n in app._notifications), what="editor command")


async def test_folders_screen_indexes_in_the_background(settings: Settings, tmp_path: Path) -> None:
    from app.screens.folders import FoldersScreen
    from tests.rag_corpus import write_mixed_folder

    folder = write_mixed_folder(tmp_path / "docs")
    app = AssistantApp(Engine(settings.replace(index_max_file_mb=0.03)))
    progress: list[str] = []
    async with app.run_test(size=(140, 45)) as pilot:
        app.watch(app, "indexing_text", lambda text: progress.append(text) if text else None)
        await pilot.press("ctrl+f")
        await wait_for(lambda: isinstance(app.screen, FoldersScreen))
        screen = app.screen
        screen.query_one("#folder-path").value = str(folder)
        await pilot.press("enter")
        await wait_for(lambda: len(screen.rows) == 1 and screen.rows[0]["chunks"] > 0, timeout=120,
                       what="folder indexed")
        assert any("indexing docs" in text for text in progress)  # shown while it ran
        skipped = screen.query_one("#skipped-table")
        await wait_for(lambda: skipped.row_count >= 3, what="skipped files listed")
        reasons = {str(skipped.get_row_at(i)[2]) for i in range(skipped.row_count)}
        assert "binary file" in reasons
        await pilot.press("u")  # per conversation: there is none yet, so it says so
        await wait_for(lambda: any("conversation first" in n.message for n in app._notifications))
        await pilot.press("w")  # watch on: a real watcher thread
        await wait_for(lambda: str(folder.resolve()) in app.watched_folders)
        await wait_for(lambda: screen.rows[0]["watch"] == 1, timeout=60, what="watching recorded")
        await pilot.press("w")  # and off again
        await wait_for(lambda: not app.watched_folders, timeout=30, what="watch stopped")
        await pilot.press("p")  # private: never sent to an untrusted remote backend
        await wait_for(lambda: screen.rows[0]["private"] == 1, what="marked private")
        assert "🔒" in str(screen.query_one("#folder-table").get_row_at(0)[7])
        await pilot.press("x")
        await wait_for(lambda: isinstance(app.screen, ConfirmDialog))
        await pilot.press("y")
        await wait_for(lambda: screen.rows == [], what="folder removed")
        await pilot.press("escape")
        assert isinstance(app.screen, ChatScreen)


async def test_pick_a_remote_backend_per_conversation(home: Path) -> None:
    from app.screens.modals import BackendDialog
    from engine import load_settings
    from tests.openai_server import FakeOpenAI
    from tests.test_remote import configure, provider

    with FakeOpenAI() as server:
        configure(home, provider(server.url, max_retries=0), backends=["local", "fake"], allow_cloud=True,
                  breaker_failures=1, breaker_cooldown_s=600)
        app = AssistantApp(Engine(load_settings().replace(temperature=0.0, seed=42, max_tokens=16)))
        notes: list[str] = []  # every notification, however soon it expires on screen
        notify = app.notify
        app.notify = lambda message, **kw: (notes.append(message), notify(message, **kw))[1]
        async with app.run_test(size=(140, 40)) as pilot:
            screen = chat(app)
            await wait_for(lambda: screen.status.state == "ready", what="model loaded")
            assert screen.status.backend == "local" and not screen.status.remote
            await pilot.press("ctrl+l")
            await wait_for(lambda: isinstance(app.screen, BackendDialog))
            await pilot.press("down", "down", "enter")  # Automatic, local, fake
            await wait_for(lambda: isinstance(app.screen, ChatScreen))
            assert screen.backend_choice == "fake" and screen.status.remote
            await ask(pilot, "Hello?")
            answer = await finished_answer(app)
            assert answer.text == "".join(server.words)
            assert "↗ fake-model · fake" in answer.footer_text()
            assert "↗ fake-model · fake" in str(screen.status.render())
            assert any("Sent to fake" in note for note in notes)
            # The server fails now: the answer comes from the local model, the breaker shows.
            server.default = "500"
            await ask(pilot, "And again?")
            second = await finished_answer(app, 2)
            assert "· local" in second.footer_text() and "↗" not in second.footer_text()
            assert any("HTTP 500" in note for note in notes), notes
            await wait_for(lambda: "breaker open: fake" in str(screen.status.render()), what="breaker shown")
            # Reopened, each answer still says who wrote it; the choice stuck to the conversation.
            conversation = screen.conversation_id
            await pilot.press("ctrl+n")
            assert screen.backend_choice is None and screen.status.backend == "local"
            await screen.open_conversation(conversation)
            await pilot.pause()
            origins = [a.origin for a in answers(app)]
            assert origins[0] == "↗ fake-model · fake" and origins[1].endswith("· local")
            assert screen.backend_choice == "fake"


async def test_trace_stats_and_review_screens(settings: Settings) -> None:
    from textual.widgets import Static, TextArea

    from app.screens.insights import ReviewScreen, StatsScreen, TraceDialog

    app = AssistantApp(Engine(settings))
    async with app.run_test(size=(150, 45)) as pilot:
        await ready(app)
        await ask(pilot, "What is the capital of France?")
        answer = await finished_answer(app)
        await pilot.press("ctrl+t")
        await wait_for(lambda: isinstance(app.screen, TraceDialog), what="trace dialog")
        text = str(app.screen.query_one("#trace-text", Static).render())
        assert "prompt evaluation" in text and "SmolLM2" in text
        await pilot.press("escape")
        await pilot.press("ctrl+b")  # thumbs down: the answer goes to the review queue
        await wait_for(lambda: isinstance(app.screen, TextDialog))
        await pilot.press("escape")
        await wait_for(lambda: answer.rating == -1)
        await pilot.press("f3")
        await wait_for(lambda: isinstance(app.screen, StatsScreen))
        stats = app.screen
        await wait_for(lambda: stats.result is not None, what="stats computed")
        assert stats.result["overall"]["answers"] == 1 and stats.result["overall"]["thumbs_down"] == 1
        plots = str(stats.query_one("#stats-plots", Static).render())
        assert "Answer latency" in plots and "Cost per day" in plots
        # A local answer costs nothing: the cost axis starts at 0, never below; no escape codes.
        assert "-1.00" not in plots and "0.00┤" in plots
        assert "\x1b" not in plots
        await pilot.press("g")  # group by model
        await wait_for(lambda: stats.by == "model" and "groups" in (stats.result or {}))
        await pilot.press("escape")
        await pilot.press("f4")
        await wait_for(lambda: isinstance(app.screen, ReviewScreen))
        review = app.screen
        await wait_for(lambda: len(review.rows) == 1, what="queued answer listed")
        await wait_for(lambda: "Question:" in str(review.query_one("#review-text", Static).render()))
        review.query_one("#better", TextArea).load_text("Paris.")
        await pilot.click("#save")
        await wait_for(lambda: review.rows == [], what="reviewed")
        done = await app.engine.history.reviews(pending=False)
        assert done[0]["better_answer"] == "Paris." and done[0]["response_id"] == answer.response_id
        await pilot.press("escape", "ctrl+n")  # the same question in a new chat: from the cache
        await ask(pilot, "What is the capital of France?")
        cached = await finished_answer(app)
        assert cached.cached_from == answer.response_id and "⚡ cached" in cached.footer_text()
        await pilot.press("f5")  # regenerate
        fresh = await finished_answer(app, 2)
        assert fresh.cached_from is None and fresh.response_id > cached.response_id


async def test_search_conversations(settings: Settings) -> None:
    engine = Engine(settings)
    for question in ("Tell me about the Zanzibar archipelago.", "What is the capital of France?"):
        await events_of(engine, question)
    app = AssistantApp(engine)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = chat(app)
        sidebar = screen.query_one(ConversationList)
        await wait_for(lambda: len(sidebar.children) == 2, what="both conversations listed")
        await pilot.press("f8")
        await wait_for(lambda: isinstance(app.screen, TextDialog), what="search dialog")
        await pilot.press(*"zanzibar", "enter")
        await wait_for(lambda: screen.searching and len(sidebar.children) == 1, what="one match")
        assert "Zanzibar" in sidebar.children[0].title
        await pilot.press("ctrl+n")
        await wait_for(lambda: len(sidebar.children) == 2, what="all conversations again")


async def test_alerts_are_shown_in_the_app(settings: Settings, home: Path) -> None:
    from memory.store import Store
    from tests.test_observability import seed

    home.mkdir(parents=True, exist_ok=True)
    store = Store(home / "assistant.db")
    seed(store, [{"total_ms": 100.0} for _ in range(200)] + [{"total_ms": 900.0} for _ in range(20)])
    store.close()
    app = AssistantApp(Engine(settings))
    notes: list[str] = []
    notify = app.notify
    app.notify = lambda message, **kw: (notes.append(message), notify(message, **kw))[1]
    async with app.run_test(size=(120, 40)):
        await wait_for(lambda: any(note.startswith("Latency spike") for note in notes), what="alert shown")


def footer_shown(answer: AnswerMessage) -> str:
    """The footer line as it is on screen (not as the widget would compute it)."""
    return str(answer.query_one(".answer-footer", Static).render())


async def test_typing_after_a_search_lands_in_the_prompt(settings: Settings) -> None:
    engine = Engine(settings)
    for question in ("Tell me about Jupiter.", "What is the capital of France?"):
        await events_of(engine, question)
    app = AssistantApp(engine)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await ready(app)
        sidebar = screen.query_one(ConversationList)
        await wait_for(lambda: len(sidebar.children) == 2, what="both conversations listed")
        await pilot.press("f8")
        await wait_for(lambda: isinstance(app.screen, TextDialog), what="search dialog")
        assert "Enter: search · Esc: cancel" in str(app.screen.query_one(".dialog-help", Label).render())
        await pilot.press(*"Jupiter", "enter")
        await wait_for(lambda: screen.searching and len(sidebar.children) == 1, what="one match")
        # Letters of sidebar keys (r rename, d delete), and a Down key, as a person types on.
        question = "Describe Jupiter's red spot."
        await pilot.press("down", *question)
        assert isinstance(app.screen, ChatScreen) and screen.focused is screen.prompt
        assert screen.prompt.text == question
        await pilot.press("enter")
        answer = await finished_answer(app)
        assert answer.text and [w.text for w in screen.query(UserMessage)] == [question]
        assert len(await engine.history.conversations()) == 3  # nothing deleted, the question saved
        assert not [n for n in app._notifications if "rename" in n.message or "delete" in n.message]

        # Even with the list focused on purpose, a letter starts a question; Delete asks first.
        await pilot.press("tab")  # as the search's notification says
        await wait_for(lambda: screen.focused is sidebar, what="the sidebar focused")
        await pilot.press("d")
        assert screen.focused is screen.prompt and screen.prompt.text == "d"
        assert isinstance(app.screen, ChatScreen)
        sidebar.focus()
        await pilot.press("delete")
        await wait_for(lambda: isinstance(app.screen, ConfirmDialog), what="delete confirmation")
        await pilot.press("n")
        await wait_for(lambda: isinstance(app.screen, ChatScreen))
        assert screen.focused is screen.prompt  # every dialog hands the keys back to the prompt
        assert len(await engine.history.conversations()) == 3


async def test_a_stopped_answer_is_an_answer_and_reopens_as_it_was(settings: Settings) -> None:
    # stop_loops off: the embedded model loops on the essay and would end before Esc is pressed.
    app = AssistantApp(Engine(settings.replace(max_tokens=400, stop_loops=False)))
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await ready(app)
        await ask(pilot, "Say hello.")
        first = await finished_answer(app)
        await ask(pilot, "Write a very long essay about the history of Rome.")
        await wait_for(lambda: len(answers(app)) == 2 and len(answers(app)[1].markdown.source) > 20,
                       what="streaming")
        await pilot.press("escape", "ctrl+g")  # rate it right away: the stopped one is the latest
        await wait_for(lambda: isinstance(app.screen, TextDialog), what="comment dialog")
        await pilot.press("escape")
        stopped = answers(app)[1]
        await wait_for(lambda: stopped.rating == 1, what="the stopped answer rated")
        assert first.rating is None and stopped.state == "stopped"
        rows = await app.engine.history.messages(screen.conversation_id)
        assert stopped.response_id == rows[-1]["response_id"] != first.response_id
        assert rows[-1]["rating"] == 1 and stopped.text == stopped.markdown.source
        assert "⏹ stopped" in footer_shown(stopped) and f"#{stopped.response_id}" in footer_shown(stopped)
        await pilot.press("alt+up", "alt+up", "ctrl+b")  # and the first one down
        await wait_for(lambda: isinstance(app.screen, TextDialog), what="comment dialog")
        await pilot.press("escape")
        await wait_for(lambda: first.rating == -1)
        live = [footer_shown(a) for a in answers(app)]
        assert "👎" in live[0] and "👍" in live[1] and all("SmolLM2" in f for f in live)

        conversation = screen.conversation_id
        await pilot.press("ctrl+n")
        assert not answers(app)
        sidebar = screen.query_one(ConversationList)
        await wait_for(lambda: len(sidebar.children) == 1, what="listed")
        sidebar.focus()
        sidebar.index = 0
        await pilot.press("enter")
        await wait_for(lambda: screen.conversation_id == conversation and len(answers(app)) == 2,
                       what="reopened")
        await pilot.pause()
        assert [footer_shown(a) for a in answers(app)] == live
        assert [a.text for a in answers(app)] == [first.text, stopped.text]


async def test_first_screen_says_what_to_do_and_the_footer_fits(settings: Settings) -> None:
    from textual.widgets import Footer

    from app.widgets.chat_log import Welcome

    def cut_keys() -> list[str]:
        """Footer keys that do not fit: past the edge, or under the palette key at the right."""
        keys = list(app.screen.query_one(Footer).query("FooterKey"))
        right = min((k.region.x for k in keys if k.key == "ctrl+p"), default=app.size.width)
        return [k.description for k in keys if k.key != "ctrl+p" and k.region.right > right]

    app = AssistantApp(Engine(settings))
    async with app.run_test(size=(160, 45)) as pilot:
        screen = await ready(app)
        welcome = str(screen.query_one(Welcome).render())
        for hint in ("Type a question", "Ctrl+F", "F1", "Ctrl+P"):
            assert hint in welcome
        assert not cut_keys()
        await pilot.press("f1")  # every key, the ones the footer has no room for too
        await wait_for(lambda: bool(screen.query("HelpPanel")), what="the keys panel")
        await pilot.press("f1")
        await wait_for(lambda: not screen.query("HelpPanel"))
        await pilot.press("f4")
        await wait_for(lambda: not isinstance(app.screen, ChatScreen))
        await pilot.pause()
        assert not cut_keys()
        await pilot.press("escape")
        await wait_for(lambda: app.screen is screen)
        await pilot.pause()
        assert not cut_keys() and screen.focused is screen.prompt

        await ask(pilot, "Say hello.")
        await finished_answer(app)
        assert not screen.query(Welcome)  # gone with the first question
        await pilot.press("ctrl+n")
        await wait_for(lambda: bool(screen.query(Welcome)), what="the hint on a new chat")


async def test_same_titled_conversations_are_told_apart_in_the_sidebar(settings: Settings) -> None:
    engine = Engine(settings)
    ids = [(await events_of(engine, "Tell me a joke."))[-1].conversation_id for _ in range(2)]
    app = AssistantApp(engine)
    async with app.run_test(size=(120, 40)):
        sidebar = chat(app).query_one(ConversationList)
        await wait_for(lambda: len(sidebar.query(".conversation-meta")) == 2, what="both listed")
        metas = [str(item.query_one(".conversation-meta", Label).render()) for item in sidebar.children]
        assert [m.split(" · ")[0] for m in metas] == [f"#{i}" for i in reversed(ids)]
        assert all(len(m.split(" · ")) == 2 and ":" in m for m in metas)  # and when: "21:44"


async def test_evals_screen_without_runs_names_commands_an_installed_user_has(settings: Settings) -> None:
    from app.screens.evals import EvalsScreen

    app = AssistantApp(Engine(settings))
    async with app.run_test(size=(140, 40)) as pilot:
        await pilot.press("f12")
        await wait_for(lambda: isinstance(app.screen, EvalsScreen), what="evals screen")
        summary = app.screen.query_one("#eval-summary", Static)
        await wait_for(lambda: "No eval runs yet" in str(summary.render()), what="the hint")
        hint = str(summary.render())
        assert "docs/evals" not in hint  # a checkout's path: not there for a pipx install
        assert "assistant eval from-review cases.jsonl" in hint and "assistant eval cases.jsonl" in hint


async def test_at_80_columns_the_chat_gets_the_room_and_f1_stays_in_the_footer(settings: Settings) -> None:
    from textual.widgets import Footer

    app = AssistantApp(Engine(settings))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = chat(app)
        sidebar = screen.query_one(ConversationList)
        assert not sidebar.display and screen.log_view.size.width > 70
        footer = screen.query_one(Footer)  # its keys come a refresh after the first frame, as in Textual's own
        await wait_for(lambda: bool(footer.query("FooterKey")), what="the footer's keys")
        first = next(iter(footer.query("FooterKey")))
        assert first.key == "f1" and first.region.right <= 80  # the way to every other key
        await pilot.press("ctrl+s")
        assert sidebar.display


async def test_a_notification_shows_square_brackets_from_outside_as_written(settings: Settings) -> None:
    """A server's error or a file name with `[...]` in it is not Rich markup: nothing is swallowed."""
    from textual.widgets._toast import Toast

    app = AssistantApp(Engine(settings))
    async with app.run_test(size=(120, 40), notifications=True) as pilot:
        await ready(app)
        chat(app).notify("Server said: [bold]no[/bold] for [FILE]", severity="error")
        await pilot.pause()
        await wait_for(lambda: bool(app.screen.query(Toast)), what="the toast")
        shown = "".join(str(toast.render()) for toast in app.screen.query(Toast))
        assert "[bold]no[/bold] for [FILE]" in shown
