"""Launching the chat app (issue 20): the first frame is drawn before the engine exists, and what
the user does in the moment before it is built waits for it instead of being lost or crashing."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

from app.launch import chat_options
from app.screens.chat import ChatScreen
from app.tui import AssistantApp
from app.widgets.answer import AnswerMessage
from app.widgets.chat_log import UserMessage
from app.widgets.prompt import PromptInput
from engine import Engine, Settings
from tests.conftest import wait_for

ROOT = Path(__file__).resolve().parent.parent


def test_the_first_frame_imports_neither_the_engine_nor_markdown_nor_click() -> None:
    """What bare `assistant` imports before its first frame; each of these was 10-100 ms of it."""
    later = ["engine.engine", "engine.answer", "engine.events", "app.widgets.answer", "textual.widgets._markdown",
             "markdown_it", "textual.widgets._data_table", "click", "app.cli", "pluggy"]
    code = f"import sys, app.launch, app.tui; print(' '.join(m for m in {later!r} if m in sys.modules))"
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert found.stdout.split() == []


@pytest.mark.parametrize(("args", "expected"), [
    ([], (None, False)),
    (["--no-plugins"], (None, True)),
    (["--model", "x.gguf"], ("x.gguf", False)),
    (["-m", "x.gguf", "--no-plugins"], ("x.gguf", True)),
    (["--model=x.gguf"], ("x.gguf", False)),
    (["ask", "hi"], None),  # a command: the CLI's
    (["--help"], None),
    (["--version"], None),
    (["--model"], None),  # no value: click says so
    (["--modle", "x"], None),  # a typo: click says so
])
def test_only_a_bare_chat_launch_skips_the_cli(args: list[str], expected: tuple | None) -> None:
    assert chat_options(args) == expected


async def test_what_is_typed_before_the_engine_is_built_is_kept_and_answered(settings: Settings) -> None:
    built = threading.Event()
    release = threading.Event()

    def start() -> Engine:  # as `assistant` builds it, held back until the test lets it go
        release.wait(30)
        built.set()
        return Engine(settings)

    app = AssistantApp(start=start)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = app.screen
        assert isinstance(screen, ChatScreen) and screen.engine is None
        prompt = screen.query_one(PromptInput)
        assert prompt.has_focus  # typed keys land in the prompt from the first frame
        await pilot.press(*"Say hi.")
        assert prompt.text == "Say hi."
        await pilot.press("enter")
        await wait_for(lambda: [w.text for w in screen.query(UserMessage)] == ["Say hi."], what="question shown")
        assert prompt.text == ""
        await pilot.press("ctrl+f")  # a key that needs the engine: it waits for it
        await pilot.pause(0.2)
        assert not built.is_set() and app.screen is screen and not screen.query(".error")

        release.set()
        await wait_for(lambda: app.screen is not screen, what="the folders screen, once the engine is built")
        assert type(app.screen).__name__ == "FoldersScreen"
        await pilot.press("escape")
        await wait_for(lambda: app.screen is screen, what="back in the chat")
        answers = list(screen.query(AnswerMessage))
        await wait_for(lambda: answers[0].response_id is not None, what="the early question answered")
        assert answers[0].text.strip() and answers[0].state == ""
        assert screen.status.model  # the status bar names the model once the engine is there
        rows = await app.engine.history.messages(screen.conversation_id)
        assert [r["role"] for r in rows] == ["user", "assistant"] and rows[0]["content"] == "Say hi."


async def test_escape_before_the_engine_is_built_stops_the_early_question(settings: Settings) -> None:
    release = threading.Event()

    def start() -> Engine:
        release.wait(30)
        return Engine(settings)

    app = AssistantApp(start=start)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = app.screen
        await pilot.press(*"Hello?", "enter")
        await wait_for(lambda: bool(screen.query(AnswerMessage)), what="the question shown")
        await pilot.press("escape")  # Esc needs no engine: it acts at once
        answer = screen.query_one(AnswerMessage)
        await wait_for(lambda: answer.state == "stopped", what="stopped")
        release.set()
        await wait_for(lambda: screen.status.state == "ready", what="model loaded")
        assert await app.engine.history.conversations() == []  # nothing was asked


async def test_an_engine_that_cannot_be_built_ends_the_app_with_its_message(settings: Settings) -> None:
    from engine import ConfigError

    def start() -> Engine:
        raise ConfigError("Provider 'x' has kind 'nope', which no plugin provides.")

    app = AssistantApp(start=start)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press(*"Hi", "enter")
        await wait_for(lambda: app.return_code == 1, what="the app ending")
    assert app.return_code == 1
