"""The Textual app: one chat screen over the engine, plus command palette entries."""

from __future__ import annotations

from collections.abc import Iterable

from textual.app import App, SystemCommand
from textual.screen import Screen

from app.screens.chat import ChatScreen
from engine import Engine


class AssistantApp(App):
    CSS_PATH = "assistant.tcss"
    TITLE = "assistant"

    def __init__(self, engine: Engine) -> None:
        super().__init__()
        self.engine = engine

    def on_mount(self) -> None:
        self.push_screen(ChatScreen(self.engine))

    async def on_unmount(self) -> None:
        await self.engine.close()

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        if not isinstance(screen, ChatScreen):
            return
        yield SystemCommand("New chat", "Start a new conversation (Ctrl+N)", screen.action_new_chat)
        yield SystemCommand("Stop answer", "Stop the answer in flight (Esc)", screen.action_stop)
        yield SystemCommand("Thumbs up", "Rate the selected or latest answer (Ctrl+G)",
                            lambda: screen.action_rate(1))
        yield SystemCommand("Thumbs down", "Rate the selected or latest answer (Ctrl+B)",
                            lambda: screen.action_rate(-1))
        yield SystemCommand("Copy answer", "Copy the selected or latest answer (Ctrl+O)",
                            screen.action_copy_answer)
        yield SystemCommand("Rename conversation", "Rename the current conversation (F2)",
                            screen.action_rename_conversation)
        yield SystemCommand("Delete conversation", "Delete the current conversation",
                            screen.action_delete_conversation)
        yield SystemCommand("Toggle sidebar", "Show or hide past conversations (Ctrl+S)",
                            screen.action_toggle_sidebar)
