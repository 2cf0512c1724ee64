"""The Evals screen: recorded eval runs, one run's metrics, plot and cases, and two runs compared."""

from __future__ import annotations

import asyncio
from typing import Any

from rich.console import Group
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Label, Static

from app.eval_view import cases_table, compare_table, summary_table, worse_table
from app.screens.base import row_at_cursor, shows_errors
from engine import EvalHistory, flat_metrics, format_metric, score_plot

HELP = "b: compare others with this run · c: clear the comparison · r: refresh · Esc: back"
# Only commands that work for an installed user: the sample dataset lives in a checkout, not in
# the package.
NO_RUNS = """No eval runs yet. In a terminal:

  assistant eval from-review cases.jsonl    your thumbs-down and reviewed answers as cases
  assistant eval cases.jsonl                run them through the engine, scored and recorded

or write cases.jsonl yourself, one JSON object a line:
  {"id": "capital", "question": "What is the capital of France?", "reference": "Paris."}
(`assistant eval run --help`: the options). Then come back here (F12)."""


class EvalsScreen(Screen):
    """Runs are recorded by `assistant eval DATASET.jsonl`; this screen reads them."""

    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("b", "mark_base", "Compare with this"),
        Binding("c", "clear_base", "No comparison"),
        Binding("r", "refresh", "Refresh"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.runs: list[dict[str, Any]] = []
        self.base: dict[str, Any] | None = None
        self._history: EvalHistory | None = None

    def compose(self) -> ComposeResult:
        with Horizontal(id="evals"):
            yield DataTable(id="eval-runs", cursor_type="row")
            with VerticalScroll(id="eval-detail"):
                yield Label(HELP, id="eval-title", classes="title")
                yield Static("", id="eval-summary")
                yield Static("", id="eval-plot")
                yield Static("", id="eval-cases")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(DataTable).add_columns("run", "when", "dataset", "model", "pass", "ROUGE-L", "p95 ms")
        self.action_refresh()

    async def on_unmount(self) -> None:
        if self._history is not None:
            await asyncio.to_thread(self._history.close)

    async def _read(self, method: str, *args: Any) -> Any:
        """An EvalHistory call, in a thread (SQLite)."""
        if self._history is None:
            self._history = await asyncio.to_thread(EvalHistory)
        return await asyncio.to_thread(getattr(self._history, method), *args)

    @work(group="eval-runs", exclusive=True)
    @shows_errors()
    async def action_refresh(self) -> None:
        self.runs = await self._read("runs", 200)
        table = self.query_one(DataTable)
        table.clear()
        for run in self.runs:
            values = flat_metrics(run.get("summary") or {})
            mark = " ★" if run["baselines"] else ""
            table.add_row(f"{run['id']}{mark}", run["started_at"][5:16].replace("T", " "),
                          run["dataset_name"], run["model"][:24],
                          format_metric("passed", values["passed"]),
                          format_metric("rouge_l", values["rouge_l"]),
                          format_metric("total_p95_ms", values["total_p95_ms"]))
        if not self.runs:
            self.query_one("#eval-summary", Static).update(Text(NO_RUNS))
            return
        self.show_selected()

    def selected(self) -> dict[str, Any] | None:
        return row_at_cursor(self.query_one(DataTable), self.runs)

    @on(DataTable.RowHighlighted)
    @work(group="eval-detail", exclusive=True)
    @shows_errors()
    async def show_selected(self) -> None:
        run = self.selected()
        if run is None:
            return
        base = self.base if self.base and self.base["id"] != run["id"] else None
        results = await self._read("results", run["id"])
        comparison = await self._read("compare", base["id"], run["id"]) if base else None
        width = max(40, min(self.query_one("#eval-detail").size.width - 2, 100))
        labels = (f"run {base['id']}", f"run {run['id']}") if base else ("", "")
        plot = await asyncio.to_thread(score_plot, run.get("summary") or {},
                                       base.get("summary") if base else None, width, labels)
        title = f"Run {run['id']}: {run['dataset_name']} · {run['status']}"
        if base:
            title += f" · compared with run {base['id']}"
        self.query_one("#eval-title", Label).update(f"{title}    ({HELP})")
        tables = [compare_table(comparison), worse_table(comparison)] if comparison else [summary_table(run)]
        self.query_one("#eval-summary", Static).update(Group(*tables))
        self.query_one("#eval-plot", Static).update(Text(plot))
        self.query_one("#eval-cases", Static).update(cases_table(results))

    def action_mark_base(self) -> None:
        self.base = self.selected()
        if self.base is not None:
            self.notify(f"Other runs are now compared with run {self.base['id']}.", timeout=3)
        self.show_selected()

    def action_clear_base(self) -> None:
        self.base = None
        self.show_selected()
