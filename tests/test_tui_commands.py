"""Slash commands in the app: completion, the example plugin's command, built-ins; a tool with side
effects asks first in a dialog. Pilot, real model and database."""

from __future__ import annotations

import asyncio

import pytest
from textual.widgets import Static

from app.screens.modals import ConfirmDialog
from app.tui import AssistantApp
from app.widgets.prompt import PromptInput
from engine import Engine, Settings
from tests.conftest import wait_for
from tests.test_tools import SideEffects
from tests.test_tui import answers, ask, chat, finished_answer, ready


def notes(app: AssistantApp) -> list[str]:
    return [n.message for n in app._notifications]


async def test_slash_commands_complete_and_run(settings: Settings) -> None:
    app = AssistantApp(Engine(settings))
    async with app.run_test(size=(140, 45)) as pilot:
        screen = chat(app)
        await wait_for(lambda: "wordcount" in screen.commands, what="commands loaded")
        prompt = screen.query_one(PromptInput)
        prompt.focus()
        await pilot.press("/", "w", "o")
        hint = screen.query_one("#slash-hint", Static)
        await wait_for(lambda: hint.display and "/wordcount" in str(hint.render()), what="the hint")
        await pilot.press("tab")
        assert prompt.text == "/wordcount "
        await pilot.press(*"one two three", "enter")
        await wait_for(lambda: "3 words, 1 sentence, 13 characters." in notes(app), what="the command's answer")
        assert not answers(app) and prompt.text == ""  # a command, not a question

        await ask(pilot, "/tools")
        await wait_for(lambda: any("calculator:" in n for n in notes(app)), what="the tools list")
        await ask(pilot, "/nosuch")
        await wait_for(lambda: any("Unknown command /nosuch" in n for n in notes(app)), what="unknown")


async def test_a_side_effecting_tool_asks_in_a_dialog(settings: Settings) -> None:
    engine = Engine(settings.replace(tool_calling="always", tool_choice="required", tools=("send_email",)))
    plugin = SideEffects()
    (await asyncio.to_thread(engine.plugins)).register(plugin, name="side-effects")
    app = AssistantApp(engine)
    async with app.run_test(size=(140, 45)) as pilot:
        await ready(app)
        await ask(pilot, "Email bob@example.com: lunch at noon.")
        await wait_for(lambda: isinstance(app.screen, ConfirmDialog), what="the confirmation", timeout=90)
        assert "send_email" in app.screen.question
        await pilot.press("y")
        answer = await finished_answer(app)
        assert len(plugin.sent) == 1 and "🔧 send_email" in answer.footer_text()


@pytest.mark.parametrize("size", [(80, 24), (160, 45)])
async def test_a_slash_lists_every_command_and_help_keeps_brackets(settings: Settings,
                                                                  size: tuple[int, int]) -> None:
    app = AssistantApp(Engine(settings))
    async with app.run_test(size=size) as pilot:
        screen = chat(app)
        await wait_for(lambda: "wordcount" in screen.commands, what="commands loaded")
        assert len(screen.commands) > 8
        screen.query_one(PromptInput).focus()
        await pilot.press("/")
        hint = screen.query_one("#slash-hint", Static)
        await wait_for(lambda: hint.display, what="the hint")
        await pilot.pause()
        shown = str(hint.render())
        assert all(f"/{name}" in shown for name in screen.commands), shown
        assert hint.size.height == len(shown.splitlines())  # every line on screen, none scrolled off
        if size[1] >= 45:  # room for what each one does
            assert "/export  export this conversation to Markdown" in shown
        await pilot.press("backspace")
        await wait_for(lambda: not hint.display)

        await ask(pilot, "/help")
        await wait_for(lambda: any("/wordcount" in n for n in notes(app)), what="the help")
        [shown_help] = [n for n in app._notifications if "/wordcount" in n.message]
        assert "(/export [FILE])" in shown_help.message and not shown_help.markup
