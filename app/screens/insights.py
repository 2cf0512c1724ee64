"""What the log says: an answer's trace, the stats with plots and alerts, and the review queue."""

from __future__ import annotations

import asyncio
from typing import Any

from rich.console import Group
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, DataTable, Footer, Label, Static, TextArea

from app.screens.base import EngineScreen, row_at_cursor, shows_errors
from app.stats_view import stats_tables, trace_lines
from engine import Engine


class TraceDialog(ModalScreen[None]):
    """Why was this answer slow? Its inputs, and each step on a time axis."""

    BINDINGS = [Binding("escape", "dismiss(None)", "Close")]

    def __init__(self, response: dict[str, Any], spans: list[dict[str, Any]]) -> None:
        super().__init__()
        self.lines = trace_lines(response, spans)
        self.response_id = response["id"]

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog trace-dialog"):
            yield Label(f"Trace of answer #{self.response_id}", markup=False)
            with VerticalScroll():
                yield Static(Text("\n".join(self.lines)), id="trace-text")
            yield Label("Esc: close", classes="dialog-help")


BY = [None, "model", "backend", "template", "folder", "feature"]
SINCE = [None, "24h", "7d", "30d"]


class StatsScreen(EngineScreen):
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("g", "next_grouping", "Group by"),
        Binding("w", "next_window", "Time window"),
        Binding("r", "refresh", "Refresh"),
    ]

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine)
        self.by: str | None = None
        self.since: str | None = None
        self.result: dict[str, Any] | None = None

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="stats"):
            yield Label("", id="stats-title", classes="title")
            yield Static("", id="alerts")
            yield Static("", id="stats-tables")
            yield Static("", id="stats-plots")
        yield Footer()

    def on_mount(self) -> None:
        self.action_refresh()

    @work(group="stats", exclusive=True)
    @shows_errors()
    async def action_refresh(self) -> None:
        self.query_one("#stats-title", Label).update(self._title("loading…"))
        self.result = await self.engine.history.stats(self.since, self.by)
        alerts = await self.engine.history.alerts()
        from engine import stats_plots

        width = max(40, min(self.size.width - 4, 110))
        drawn = await asyncio.to_thread(stats_plots, self.result, width)  # plotext: import and drawing
        answers = self.result["overall"]["answers"]
        self.query_one("#stats-title", Label).update(self._title(f"{answers} answers"))
        self.query_one("#alerts", Static).update(
            Text("\n".join(f"⚠ {a.message}" for a in alerts), style="bold yellow") if alerts else "No alerts."
        )
        self.query_one("#stats-tables", Static).update(Group(*stats_tables(self.result)))
        # plotext ends each line with an ANSI reset: parsed, not shown as "[0m"
        self.query_one("#stats-plots", Static).update(Text.from_ansi("\n\n".join(text for _, text in drawn)))

    def _title(self, status: str) -> str:
        return (f"Stats · {self.since or 'all time'} · by {self.by or 'nothing'} · {status}"
                "   (g: group by · w: time window · r: refresh)")

    def action_next_grouping(self) -> None:
        self.by = BY[(BY.index(self.by) + 1) % len(BY)]
        self.action_refresh()

    def action_next_window(self) -> None:
        self.since = SINCE[(SINCE.index(self.since) + 1) % len(SINCE)]
        self.action_refresh()


class ReviewScreen(EngineScreen):
    """Thumbs-down answers and refusals: read the question, answer and trace, write the better
    answer (used by `assistant export sft|dpo`), or dismiss."""

    BINDINGS = [Binding("escape", "app.pop_screen", "Back"), Binding("r", "refresh", "Refresh")]

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine)
        self.rows: list[dict[str, Any]] = []

    def compose(self) -> ComposeResult:
        with Horizontal(id="review"):
            yield DataTable(id="review-table", cursor_type="row")
            with Vertical(id="review-detail"):
                with VerticalScroll():
                    yield Static("", id="review-text")
                yield Label("Better answer:")
                yield TextArea(id="better")
                with Horizontal(classes="dialog-buttons"):
                    yield Button("Save better answer", id="save", variant="primary")
                    yield Button("Nothing to fix", id="dismiss")
        yield Footer()

    async def on_mount(self) -> None:
        self.query_one(DataTable).add_columns("#", "reason", "model", "question")
        await self.refresh_queue()

    async def action_refresh(self) -> None:
        await self.refresh_queue()

    @shows_errors()
    async def refresh_queue(self) -> None:
        self.rows = await self.engine.history.reviews()
        table = self.query_one(DataTable)
        table.clear()
        for row in self.rows:
            question = (row["question"] or "").replace("\n", " ")[:50]
            table.add_row(str(row["response_id"]), row["reason"], row["model"], question)
        if not self.rows:
            self.query_one("#review-text", Static).update(
                "Nothing to review: thumbs-down answers and refusals land here.")
        self.show_selected()

    def selected(self) -> dict[str, Any] | None:
        return row_at_cursor(self.query_one(DataTable), self.rows)

    @on(DataTable.RowHighlighted)
    @work(group="review-detail", exclusive=True)
    @shows_errors()
    async def show_selected(self) -> None:
        row = self.selected()
        if row is None:
            return
        response, spans = await self.engine.history.trace(row["response_id"])
        text = "\n".join([f"Question:\n{row['question'] or '(not stored)'}", "",
                          f"Answer:\n{row['answer'] or '(none)'}", "",
                          "Trace:", *trace_lines(response, spans)])
        self.query_one("#review-text", Static).update(Text(text))
        self.query_one("#better", TextArea).load_text(row["answer"] or "")

    @on(Button.Pressed, "#save")
    async def save(self) -> None:
        await self._review(self.query_one("#better", TextArea).text.strip() or None)

    @on(Button.Pressed, "#dismiss")
    async def dismiss_one(self) -> None:
        await self._review(None)

    @shows_errors()
    async def _review(self, better: str | None) -> None:
        row = self.selected()
        if row is None:
            return
        await self.engine.history.mark_reviewed(row["response_id"], better)
        self.notify(f"Answer #{row['response_id']} reviewed.", timeout=3)
        await self.refresh_queue()
