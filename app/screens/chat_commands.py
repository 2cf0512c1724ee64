"""The chat screen's slash commands: the hint while one is typed, running one (built in or a
plugin's, in a thread), and what they ask the screen to do, in one table."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textual import on, work
from textual.widgets import Static

from app.screens.base import EngineScreen, show_error, shows_errors
from app.slash import matches
from app.widgets.prompt import PromptInput
from engine import AssistantError

if TYPE_CHECKING:
    from engine import Engine
    from plugins.hookspecs import Command


class ChatCommands(EngineScreen):
    """A part of ChatScreen (its conversation, prompt, status bar and actions are used here)."""

    commands: dict[str, Command]  # slash commands, built in and the plugins'
    commands_loaded: asyncio.Event  # set once `commands` holds the plugins' too (or they failed)
    started: Callable[[], Awaitable[Engine]]  # the engine, once the App has built it
    conversation_id: int | None
    incognito: bool
    selected: Any

    @on(PromptInput.Typed)
    def show_command_hint(self, event: PromptInput.Typed) -> None:
        """While a slash command is typed: every one that matches. With their help, one a line,
        when they fit in a third of the screen; else their names, wrapped (never a partial list)."""
        hint = self.query_one("#slash-hint", Static)
        found = matches(event.text, list(self.commands))
        hint.display = bool(found)
        if not found:
            return
        if len(found) + 1 <= max(3, self.size.height // 3):
            lines = [f"/{n}  {self.commands[n].help}" for n in found] + ["(Tab completes)"]
        else:
            width = max(20, hint.content_region.width or self.size.width - 34)
            lines = [""]
            for name in found:
                word = f"/{name}"
                if lines[-1] and len(lines[-1]) + 2 + len(word) > width:
                    lines.append("")
                lines[-1] += f"  {word}" if lines[-1] else word
            lines.append("(Tab completes · type more for each one's help)")
        hint.update("\n".join(lines))

    @work(group="commands")
    async def load_commands(self) -> None:
        try:
            self.commands = await asyncio.to_thread(self.engine.commands)
        except AssistantError as exc:
            show_error(self, exc, "Plugins")
        finally:
            self.commands_loaded.set()
        self.prompt.commands = list(self.commands)

    @work(group="commands")
    async def run_command(self, name: str, args: str) -> None:
        """A slash command, built in or a plugin's; it runs in a thread and may ask the app to act.
        One sent at launch, before the engine and the plugins were there, waits for them."""
        from plugins.hookspecs import CommandContext

        await self.started()
        await self.commands_loaded.wait()
        command = self.commands.get(name)
        if command is None:
            known = ", ".join(f"/{n}" for n in sorted(self.commands))
            self.notify(f"Unknown command /{name}. Commands: {known}. (//text sends /text as a question.)",
                        severity="warning", timeout=8)
            return

        def action(what: str, text: str) -> None:
            self.app.call_from_thread(self.command_action, what, text)

        try:
            tools = await asyncio.to_thread(self.engine.tools)
            context = CommandContext(self.conversation_id, tools, action)
            shown = await asyncio.to_thread(command.run, args, context)
        except AssistantError as exc:
            show_error(self, exc, f"/{name}")
            return
        except Exception as exc:  # a plugin's bug: reported by name, the app goes on
            self.notify(f"/{name} failed: {type(exc).__name__}: {exc}", title="Plugin", severity="error")
            return
        if shown:  # plain text: a plugin's "[x]" is not markup
            self.notify(str(shown), title=f"/{name}", timeout=10, markup=False)

    def command_action(self, what: str, args: str) -> None:
        """What a slash command asks the app to do (an unknown request is ignored)."""
        actions: dict[str, Callable[[], object]] = {
            "remember": lambda: self.remember(args) if args else self.notify("Usage: /remember TEXT",
                                                                             severity="warning"),
            "memory": self.action_memory,
            "model": self.action_pick_model,
            "backend": self.action_pick_backend,
            "folders": self.action_folders,
            "export": lambda: self.export_conversation(args),
            "incognito": self.action_incognito,
            "fork": self.action_fork,
            "help": self.show_commands,
        }
        if act := actions.get(what):
            act()

    def show_commands(self) -> None:
        # plain text: "[FILE]" is not markup
        self.notify("\n".join(f"/{n}  {c.help}" for n, c in sorted(self.commands.items())),
                    title="Slash commands", timeout=15, markup=False)

    @work(group="history")
    async def export_conversation(self, target: str) -> None:
        if self.conversation_id is None:
            self.notify("There is no conversation to export yet.", severity="warning")
            return
        path = Path(target or f"conversation-{self.conversation_id}.md").expanduser()
        try:
            [text] = await self.engine.history.export_markdown([self.conversation_id])
            await asyncio.to_thread(path.write_text, text + "\n", "utf-8")
        except AssistantError as exc:
            show_error(self, exc)
            return
        except OSError as exc:
            self.notify(f"Cannot write {path}: {exc.strerror}.", severity="error")
            return
        self.notify(f"Exported to {path.resolve()}", timeout=6)

    @work(group="memory")
    @shows_errors("Memory")
    async def remember(self, text: str) -> None:
        memory = await self.engine.memories.add(text, conversation_id=self.conversation_id)
        self.notify(f"Remembered: {memory['text']}", title="🧠 Memory", timeout=4, markup=False)

    @work(group="memory")
    @shows_errors()
    async def action_incognito(self) -> None:
        self.incognito = not self.incognito
        if self.conversation_id is not None:
            await self.engine.history.set_incognito(self.conversation_id, self.incognito)
        self.status.incognito = self.incognito
        self.notify("Incognito: this conversation writes no long-term memory." if self.incognito
                    else "Incognito off.", timeout=4)

    @work(group="history")
    @shows_errors()
    async def action_fork(self) -> None:
        if self.conversation_id is None:
            self.notify("There is no conversation to fork yet.", severity="warning")
            return
        message_id = None
        if self.selected is not None and self.selected.response_id is not None:
            message_id = (await self.engine.history.response(self.selected.response_id))["message_id"]
        new_id = await self.engine.history.fork(self.conversation_id, message_id)
        await self.open_conversation(new_id)
        self.refresh_conversations()
        self.notify(f"Forked as conversation {new_id}: the original is unchanged.", timeout=4)
