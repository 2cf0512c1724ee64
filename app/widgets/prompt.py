"""The multi-line prompt: Enter sends, Ctrl+J (or Shift+Enter where the terminal tells them
apart) inserts a newline."""

from __future__ import annotations

from dataclasses import dataclass

from textual import events
from textual.binding import Binding
from textual.message import Message
from textual.widgets import TextArea

from app.slash import complete


class PromptInput(TextArea):
    BINDINGS = [Binding("ctrl+j,shift+enter", "newline", "Newline", show=False)]

    @dataclass
    class Submitted(Message):
        prompt: PromptInput
        text: str

    def __init__(self, **kwargs) -> None:
        super().__init__(
            soft_wrap=True,
            show_line_numbers=False,
            placeholder="Ask anything  (Enter: send · Ctrl+J: newline · Esc: stop)",
            **kwargs,
        )

    commands: list[str] = []  # slash command names, for Tab completion

    @dataclass
    class Typed(Message):
        """The text changed (the screen shows matching slash commands)."""

        text: str

    async def _on_key(self, event: events.Key) -> None:
        if event.key == "tab" and (completed := complete(self.text, self.commands)):
            event.stop()
            event.prevent_default()
            self.load_text(completed)
            self.move_cursor(self.document.end)
            return
        if event.key == "enter":
            event.stop()
            event.prevent_default()
            self.post_message(self.Submitted(self, self.text))
            return
        await super()._on_key(event)

    def on_text_area_changed(self, event: TextArea.Changed) -> None:
        self.post_message(self.Typed(self.text))

    def action_newline(self) -> None:
        self.insert("\n")

    def restore(self, text: str) -> None:
        """Put back a question that could not be answered, unless the user typed anew."""
        if not self.text.strip():
            self.load_text(text)
            self.move_cursor(self.document.end)
