"""The conversation as a column of messages: what the chat screen's first frame draws (the
welcome, questions). The answers' widgets, which stream into Markdown, are in app/widgets/answer.py:
Markdown and the engine's text helpers (~50 ms of imports) load after the first frame."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.containers import VerticalScroll
from textual.widgets import Static

if TYPE_CHECKING:
    from app.widgets.answer import AnswerMessage

SHOWN_CHARS = 4_000  # of a question; a pasted megabyte laid out in full would stall every repaint


class UserMessage(Static):
    def __init__(self, text: str) -> None:
        shown = text
        if len(text) > SHOWN_CHARS:
            shown = f"{text[:SHOWN_CHARS]}\n… {len(text) - SHOWN_CHARS:,} more characters (kept in full)"
        super().__init__(shown, markup=False)
        self.text = text


WELCOME = """\
Type a question below and press Enter.

  Ctrl+F  answer from a folder of your files
  F8      search past conversations
  /       slash commands, e.g. /remember
  F1      every key · Ctrl+P: every command"""


class Welcome(Static):
    """What to do first, on an empty chat; it goes with the first question."""

    def __init__(self) -> None:
        super().__init__(WELCOME, markup=False, id="welcome")


class ChatLog(VerticalScroll, can_focus=False):
    """Holds the messages; keeps the newest in view while an answer streams."""

    def answers(self) -> list[AnswerMessage]:
        from app.widgets.answer import AnswerMessage  # loaded by now: there is an answer to find

        return list(self.query(AnswerMessage))

    async def clear(self, welcome: bool = False) -> None:
        """Remove every message; an empty new chat shows the welcome hint."""
        await self.remove_children()
        if welcome:
            await self.mount(Welcome())


def origin_text(model: str | None, backend: str | None, remote: bool) -> str:
    """"SmolLM2 · local", or "↗ gpt-4o-mini · openai" for an answer written off this machine."""
    if not model:
        return ""
    return f"{'↗ ' if remote else ''}{model} · {backend}"
