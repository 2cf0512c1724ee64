"""The folders screen: add, remove, re-index and watch folders; mark them private; choose which
ones this conversation searches; see skipped files and why."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, DataTable, Footer, Input, Label, Static

from app.indexing import IndexingJobs
from app.messages import FolderRemoved, IndexRequested, WatchToggled
from app.screens.base import EngineScreen, row_at_cursor, shows_errors
from engine import Engine


class FoldersScreen(EngineScreen):
    """Indexing and watching are the App's jobs (they outlive this screen): it asks for them with
    messages, and reads from `jobs` which folders are watched."""

    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("i", "reindex", "Re-index"),
        Binding("w", "toggle_watch", "Watch on/off"),
        Binding("u", "toggle_use", "Use in this chat"),
        Binding("p", "toggle_private", "Private on/off"),
        Binding("delete,x", "remove", "Remove"),
    ]

    def __init__(self, engine: Engine, jobs: IndexingJobs, conversation_id: int | None) -> None:
        super().__init__(engine)
        self.jobs = jobs
        self.conversation_id = conversation_id
        self.rows: list[dict[str, Any]] = []

    def compose(self) -> ComposeResult:
        with Vertical(id="folders"):
            yield Label("Indexed folders", classes="title")
            with Horizontal(id="add-folder"):
                yield Input(placeholder="Folder to index, e.g. ~/notes", id="folder-path")
                yield Button("Add and index", id="add", variant="primary")
            yield DataTable(id="folder-table", cursor_type="row", zebra_stripes=True)
            yield Static("", id="indexing-status")
            yield Label("Skipped files", classes="title")
            yield DataTable(id="skipped-table", cursor_type="row")
        yield Footer()

    async def on_mount(self) -> None:
        table = self.query_one("#folder-table", DataTable)
        table.add_columns("folder", "files", "chunks", "last indexed", "skipped", "failed", "watching",
                          "private", "this chat")
        self.query_one("#skipped-table", DataTable).add_columns("file", "state", "reason")
        self.watch(self.app, "indexing_text", self._indexing_changed)
        await self.refresh_folders()

    def _indexing_changed(self, text: str) -> None:
        self.query_one("#indexing-status", Static).update(text)
        if not text:  # a run ended: show its counts
            self._redraw()

    @shows_errors()
    async def refresh_folders(self) -> None:
        knowledge = await self.engine.knowledge()
        self.rows = await asyncio.to_thread(knowledge.folders)
        active = set(await asyncio.to_thread(knowledge.active_folder_ids, self.conversation_id))
        table = self.query_one("#folder-table", DataTable)
        cursor = table.cursor_row
        table.clear()
        for row in self.rows:
            last = (row["last_indexed_at"] or "never")[:16].replace("T", " ")
            table.add_row(
                row["path"], str(row["files"]), str(row["chunks"]), last, str(row["skipped"]),
                str(row["failed"]), "yes" if self.jobs.is_watched(row["path"]) else "",
                "🔒 yes" if row["private"] else "", "yes" if row["id"] in active else "no",
                key=str(row["id"]),
            )
        if self.rows:
            table.move_cursor(row=min(cursor, len(self.rows) - 1))
        self.show_skipped()

    def selected(self) -> dict[str, Any] | None:
        return row_at_cursor(self.query_one("#folder-table", DataTable), self.rows)

    @on(DataTable.RowHighlighted, "#folder-table")
    @work(group="skipped", exclusive=True)
    @shows_errors()
    async def show_skipped(self) -> None:
        folder = self.selected()
        items = []
        if folder is not None:
            knowledge = await self.engine.knowledge()
            items = await asyncio.to_thread(knowledge.skipped_files, folder["id"])
        table = self.query_one("#skipped-table", DataTable)
        table.clear()  # after the read, with no await in between: never two lists mixed
        for item in items:
            table.add_row(item["path"], item["state"], item["reason"] or "")

    @on(Button.Pressed, "#add")
    @on(Input.Submitted, "#folder-path")
    def add_folder(self) -> None:
        field = self.query_one("#folder-path", Input)
        path = Path(field.value.strip()).expanduser()
        if not field.value.strip():
            return
        if not path.is_dir():
            self.notify(f"{path} is not a folder.", severity="error")
            return
        field.value = ""
        self.post_message(IndexRequested(path.resolve()))
        self.query_one("#folder-table", DataTable).focus()  # the keys below act on the table

    def action_reindex(self) -> None:
        if folder := self.selected():
            self.post_message(IndexRequested(Path(folder["path"])))

    def action_toggle_watch(self) -> None:
        if folder := self.selected():
            # Both in the App's queue, which takes them in order: the table is redrawn once the
            # App has started or stopped the watcher.
            self.app.post_message(WatchToggled(Path(folder["path"])))
            self.app.call_later(self._redraw)

    def _redraw(self) -> None:
        self.run_worker(self.refresh_folders(), group="folders", exclusive=True)

    @work(group="folders-edit")
    @shows_errors()
    async def action_toggle_use(self) -> None:
        folder = self.selected()
        if folder is None:
            return
        if self.conversation_id is None:
            self.notify("Start or open a conversation first: the choice is kept per conversation.",
                        severity="warning")
            return
        knowledge = await self.engine.knowledge()
        active = folder["id"] in await asyncio.to_thread(knowledge.active_folder_ids,
                                                         self.conversation_id)
        await asyncio.to_thread(knowledge.set_folder_active, self.conversation_id,
                                folder["id"], not active)
        await self.refresh_folders()

    @work(group="folders-edit")
    @shows_errors()
    async def action_toggle_private(self) -> None:
        folder = self.selected()
        if folder is None:
            return
        knowledge = await self.engine.knowledge()
        private = not folder["private"]
        await asyncio.to_thread(knowledge.set_private, Path(folder["path"]), private)
        self.notify(f"{folder['path']}: its passages never leave this machine (except to trusted servers)."
                    if private else f"{folder['path']} is no longer private.", timeout=4)
        await self.refresh_folders()

    @work(group="folders-edit")
    @shows_errors()
    async def action_remove(self) -> None:
        from app.screens.modals import ConfirmDialog

        folder = self.selected()
        if folder is None:
            return
        if not await self.app.push_screen_wait(
            ConfirmDialog(f"Remove {folder['path']} from the index? Your files are not touched.")
        ):
            return
        self.post_message(FolderRemoved(Path(folder["path"])))
        knowledge = await self.engine.knowledge()
        removed = await asyncio.to_thread(knowledge.forget, Path(folder["path"]))
        self.notify(f"Removed {folder['path']}: {removed} chunks.")
        await self.refresh_folders()
