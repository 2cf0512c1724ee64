"""The multi-line prompt: Enter sends, Ctrl+J (or Shift+Enter where the terminal tells them
apart) inserts a newline.

A long paste (a log, a whole file) is kept aside and shown as one placeholder line, expanded again
when the question is sent: laying out a megabyte in the text area would freeze the app for seconds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from textual import events
from textual.binding import Binding
from textual.message import Message
from textual.widgets import TextArea

from app.slash import complete

PASTE_INLINE_CHARS = 10_000  # longer pastes become a placeholder
_PLACEHOLDER = re.compile(r"\[pasted text #(\d+): [\d,]+ characters\]")


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
        self._pastes: dict[int, str] = {}

    @property
    def question(self) -> str:
        """The text with every long paste put back in place of its placeholder."""
        return _PLACEHOLDER.sub(lambda m: self._pastes.get(int(m[1]), m[0]), self.text)

    def _placeholder(self, text: str) -> str:
        number = len(self._pastes) + 1
        self._pastes[number] = text
        return f"[pasted text #{number}: {len(text):,} characters]"

    async def _on_paste(self, event: events.Paste) -> None:
        if len(event.text) <= PASTE_INLINE_CHARS or self.read_only:
            await super()._on_paste(event)
            return
        event.stop()
        event.prevent_default()
        self.insert(self._placeholder(event.text))
        self.focus()

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
            self.post_message(self.Submitted(self, self.question))
            return
        await super()._on_key(event)

    def on_text_area_changed(self, event: TextArea.Changed) -> None:
        self.post_message(self.Typed(self.text))

    def action_newline(self) -> None:
        self.insert("\n")

    def clear(self):  # noqa: ANN201 - TextArea's EditResult
        self._pastes.clear()
        return super().clear()

    def restore(self, text: str) -> None:
        """Put back a question that could not be answered, unless the user typed anew."""
        if not self.text.strip():
            self.load_text(text if len(text) <= PASTE_INLINE_CHARS else self._placeholder(text))
            self.move_cursor(self.document.end)
