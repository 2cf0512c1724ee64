"""The Textual app: the chat screen over the engine, folder indexing in the background (the App
owns those jobs; screens ask for them with app.messages), and the command palette entries."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

from textual import on
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.reactive import reactive
from textual.screen import Screen

from app.indexing import IndexingJobs
from app.messages import FolderRemoved, IndexRequested, WatchToggled
from app.screens.chat import ChatScreen
from app.screens.chat_keys import palette_commands
from engine import Engine


class AssistantApp(App):
    CSS_PATH = "assistant.tcss"
    TITLE = "assistant"
    # Every key of the screen, the ones the footer has no room for too (Ctrl+P: every command).
    BINDINGS = [Binding("f1", "toggle_keys", "Keys")]

    indexing_text: reactive[str] = reactive("")  # what the indexer is doing; "" when idle

    def __init__(self, engine: Engine) -> None:
        super().__init__()
        self.engine = engine
        self.jobs = IndexingJobs(self, engine, lambda text: setattr(self, "indexing_text", text))

    @property
    def watched_folders(self) -> dict[str, threading.Event]:
        return self.jobs.watched

    def on_mount(self) -> None:
        self.push_screen(ChatScreen(self.engine, self.jobs))

    def notify(self, message: str, *, title: str = "", severity: Any = "information",
               timeout: float | None = None, markup: bool = True) -> None:
        """Notifications carry text from outside (server errors, file names, plugin output): never
        read as Rich markup, so `[...]` in it is shown, not taken for a style or swallowed."""
        super().notify(message, title=title, severity=severity, timeout=timeout, markup=False)

    def action_toggle_keys(self) -> None:
        if self.screen.query("HelpPanel"):
            self.action_hide_help_panel()
        else:
            self.action_show_help_panel()

    async def on_unmount(self) -> None:
        self.jobs.stop()
        await self.engine.close()

    @on(IndexRequested)
    def index_folder(self, message: IndexRequested) -> None:
        self.jobs.index(message.folder)

    @on(WatchToggled)
    def toggle_watch(self, message: WatchToggled) -> None:
        self.jobs.toggle_watch(message.folder)

    @on(FolderRemoved)
    def stop_watching(self, message: FolderRemoved) -> None:
        self.jobs.stop_watching(message.folder)

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        if isinstance(screen, ChatScreen):
            yield from palette_commands(screen)
