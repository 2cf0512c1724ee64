"""An answer in the conversation: its Markdown (streamed into), its sources (a click opens one),
its footer line (state, origin, rating, id), and the "Remember this?" card that may follow it.

Imported after the chat screen's first frame (Markdown and markdown-it are ~40 ms of imports):
the screen warms it up in a thread while the prompt already takes keys (app/screens/chat.py).
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.reactive import reactive
from textual.widgets import Button, Markdown, Static
from textual.widgets.markdown import MarkdownStream

from engine import evidence_segments, printable_line, printable_text

RATING_MARKS = {1: "👍", -1: "👎", None: ""}


class SourceLine(Static):
    """One source of an answer; a click opens it at its line."""

    def __init__(self, source: Any) -> None:
        passage = source.passage
        mark = f"[{source.number}]" if source.cited else " · "
        # Subtly apart: a citation the model wrote, one the assistant matched to a sentence after
        # the answer (engine.attribution), and a source that supports nothing in it.
        note = ("  (retrieved, not cited)" if not source.cited
                else "  (matched)" if getattr(source, "kind", "") == "attributed" else "")
        shown = Text(f"{mark} {printable_line(passage.location)}{note}")
        # The line(s) that matched, the question's and the answer's words marked: checkable at a glance.
        for line in getattr(source, "evidence", ()):
            shown.append(f"\n    {line.line}: ", style="dim")
            for run, matched in evidence_segments(line):
                shown.append(printable_line(run), style="bold underline" if matched else "")
        super().__init__(shown, classes="source")
        self.source = source

    def on_click(self, event: Any) -> None:
        event.stop()
        self.post_message(SourceClicked(self.source))


class SourceClicked(Message):
    def __init__(self, source: Any) -> None:
        super().__init__()
        self.source = source


class AnswerMarkdown(Markdown):
    """An answer's Markdown: Textual passes escape sequences through to the terminal, and an answer
    (a remote server's, or one quoting a file) may hold some, so every way in is cleaned."""

    def __init__(self, markdown: str | None = None, **kwargs: Any) -> None:
        super().__init__(printable_text(markdown or ""), **kwargs)

    def update(self, markdown: str):  # noqa: ANN201 - Textual's AwaitComplete
        return super().update(printable_text(markdown))

    def append(self, markdown: str):  # noqa: ANN201 - what the answer's stream writes through
        return super().append(printable_text(markdown))


class AnswerMessage(Vertical, can_focus=False):
    """One answer: its Markdown, its sources, and a footer line with its state and rating."""

    rating: reactive[int | None] = reactive(None)
    state: reactive[str] = reactive("")  # "", "stopped", "error", "partial"

    def __init__(self, text: str = "", response_id: int | None = None, sources: Any = (),
                 origin: str = "", **kwargs) -> None:
        super().__init__(**kwargs)
        self.text = text
        self.response_id = response_id
        self.sources = tuple(sources)
        self.origin = origin  # which model wrote it, and "↗" when the question left the machine
        self.cached_from: int | None = None
        self.memories = 0  # long-term memories in its prompt
        self.tool_steps: tuple = ()  # tools the model called before answering
        self.groundedness: float | None = None  # share of its claims its sources support

    def compose(self):
        yield AnswerMarkdown(self.text)
        yield Vertical(*(SourceLine(s) for s in self.sources), classes="sources")
        # Filled now: a reopened answer's footer has no later event to fill it (on_mount runs
        # before the widget counts as mounted, so refresh_footer would skip it).
        yield Static(self.footer_text(), classes="answer-footer", markup=False)

    async def show_sources(self, sources: Any) -> None:
        self.sources = tuple(sources)
        panel = self.query_one(".sources", Vertical)
        await panel.remove_children()
        await panel.mount_all(SourceLine(s) for s in self.sources)

    @property
    def markdown(self) -> Markdown:
        return self.query_one(Markdown)

    def markdown_stream(self) -> MarkdownStream:
        """Where the answer's tokens are written as they come."""
        return Markdown.get_stream(self.markdown)

    def on_click(self) -> None:
        self.post_message(AnswerClicked(self))

    def footer_text(self) -> str:
        parts = []
        if self.state:
            parts.append({"stopped": "⏹ stopped", "error": "⚠ failed", "partial": "⏹ partial"}[self.state])
        if self.origin:
            parts.append(self.origin)
        if self.cached_from:
            parts.append(f"⚡ cached (#{self.cached_from}; F5 regenerates)")
        for step in self.tool_steps:
            mark = "→" if step.status == "ok" else f"✗ {step.status}:"
            parts.append(f"🔧 {step.call.name} {mark} {printable_line(step.result[:40])}")
        if self.memories:
            parts.append(f"🧠 used {self.memories} memor{'y' if self.memories == 1 else 'ies'}")
        if self.groundedness is not None:  # set only for answers that had sources
            parts.append(f"grounded {self.groundedness:.0%}")  # README: "Sources and groundedness"
        if self.rating is not None:
            parts.append(RATING_MARKS[self.rating])
        if self.response_id is not None:
            parts.append(f"#{self.response_id}")
        return "  ".join(parts)

    def watch_rating(self) -> None:
        self.refresh_footer()

    def watch_state(self) -> None:
        self.refresh_footer()

    def refresh_footer(self) -> None:
        for footer in self.query(".answer-footer").results(Static):  # none before compose
            footer.update(self.footer_text())


class AnswerClicked(Message):
    def __init__(self, answer: AnswerMessage) -> None:
        super().__init__()
        self.answer = answer


class ProposalCard(Horizontal):
    """After an answer: “Remember this?” for a fact the question stated, with yes, edit, no."""

    def __init__(self, proposal: dict[str, Any]) -> None:
        super().__init__(classes="proposal")
        self.proposal = proposal

    def compose(self):
        yield Static(f"🧠 Remember “{printable_line(self.proposal['text'])}”?", markup=False,
                     classes="proposal-text")
        yield Button("Remember", id="remember", variant="success", compact=True)
        yield Button("Edit", id="edit", compact=True)
        yield Button("No", id="no", compact=True)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.post_message(ProposalAnswered(self, event.button.id or "no"))


class ProposalAnswered(Message):
    def __init__(self, card: ProposalCard, choice: str) -> None:
        super().__init__()
        self.card, self.choice = card, choice
