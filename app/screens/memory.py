"""Long-term memory, in the open: every memory with where it came from, and the proposals
waiting for a yes or no. Add, edit, pin, forget, search; switch memory off."""

from __future__ import annotations

from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import DataTable, Footer, Input, Label

from app.screens.base import EngineScreen, row_at_cursor, shows_errors
from app.screens.modals import ConfirmDialog, TextDialog
from engine import Engine


class MemoryScreen(EngineScreen):
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("a", "add", "Add"),
        Binding("e", "edit", "Edit"),
        Binding("p", "pin", "Pin"),
        Binding("d,delete", "forget", "Forget"),
        Binding("y", "accept", "Accept proposal"),
        Binding("n", "reject", "Reject proposal"),
        Binding("o", "toggle_memory", "Memory on/off"),
        Binding("slash", "focus_search", "Search"),
    ]

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine)
        self.memories: list[dict[str, Any]] = []
        self.pending: list[dict[str, Any]] = []
        self.query_text = ""

    def compose(self) -> ComposeResult:
        with Vertical(id="memory"):
            yield Label("", id="memory-title", classes="title")
            yield Input(placeholder="/ search memories by meaning (Enter), empty: all", id="memory-search")
            yield Label("Proposed from what you said (y: remember · n: no)", classes="subtitle")
            yield DataTable(id="proposals", cursor_type="row", zebra_stripes=True)
            yield Label("Memories (a: add · e: edit · p: pin · d: forget)", classes="subtitle")
            yield DataTable(id="memories", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#proposals", DataTable).add_columns("id", "kind", "proposed memory", "conversation")
        self.query_one("#memories", DataTable).add_columns(
            "id", "kind", "memory", "from", "created", "last used", "uses", "📌")
        self.query_one("#memories", DataTable).focus()
        self.reload()

    @work(group="memory-load", exclusive=True)
    @shows_errors("Memory")
    async def reload(self) -> None:
        memories = self.engine.memories
        on_ = await memories.enabled()
        self.pending = await memories.proposals()
        self.memories = await (memories.search(self.query_text) if self.query_text else memories.all())
        state = "on" if on_ else "OFF (o: switch on)"
        found = f" matching “{self.query_text}”" if self.query_text else ""
        counts = f"{len(self.memories)} memories{found} · {len(self.pending)} proposals"
        self.query_one("#memory-title", Label).update(f"Long-term memory is {state} · {counts}")
        proposals = self.query_one("#proposals", DataTable)
        proposals.clear()
        for p in self.pending:
            proposals.add_row(str(p["id"]), p["kind"], p["text"], str(p["conversation_id"] or ""),
                              key=str(p["id"]))
        table = self.query_one("#memories", DataTable)
        table.clear()
        for m in self.memories:
            source = "by hand"
            if m["source_conversation_id"]:
                source = f"#{m['source_conversation_id']} {m.get('source_title') or ''}"
            table.add_row(str(m["id"]), m["kind"], m["text"], source[:30], m["created_at"][:10],
                          (m["last_used_at"] or "never")[:10], str(m["use_count"]),
                          "📌" if m["pinned"] else "", key=str(m["id"]))

    def _chosen(self, table_id: str, rows: list[dict[str, Any]]) -> dict[str, Any] | None:
        return row_at_cursor(self.query_one(table_id, DataTable), rows)

    def action_focus_search(self) -> None:
        self.query_one("#memory-search", Input).focus()

    @on(Input.Submitted, "#memory-search")
    def search(self, event: Input.Submitted) -> None:
        self.query_text = event.value.strip()
        self.query_one("#memories", DataTable).focus()
        self.reload()

    @work(group="memory-edit")
    async def action_add(self) -> None:
        dialog = TextDialog("Remember", placeholder="e.g. I prefer metric units")
        text = await self.app.push_screen_wait(dialog)
        if text and text.strip():
            await self._do(self.engine.memories.add(text), "Remembered.")

    @work(group="memory-edit")
    async def action_edit(self) -> None:
        memory = self._chosen("#memories", self.memories)
        if memory is None:
            return
        text = await self.app.push_screen_wait(TextDialog(f"Edit memory #{memory['id']}", memory["text"]))
        if text and text.strip() and text != memory["text"]:
            await self._do(self.engine.memories.edit(memory["id"], text=text), "Saved.")

    @work(group="memory-edit")
    async def action_pin(self) -> None:
        memory = self._chosen("#memories", self.memories)
        if memory is not None:
            pinned = not memory["pinned"]
            await self._do(self.engine.memories.edit(memory["id"], pinned=pinned),
                           "Pinned: recalled for every question." if pinned else "Unpinned.")

    @work(group="memory-edit")
    async def action_forget(self) -> None:
        memory = self._chosen("#memories", self.memories)
        if memory is None:
            return
        if await self.app.push_screen_wait(ConfirmDialog(f"Forget “{memory['text']}”?")):
            await self._do(self.engine.memories.forget(memory["id"]), "Forgotten.")

    @work(group="memory-edit")
    async def action_accept(self) -> None:
        proposal = self._chosen("#proposals", self.pending)
        if proposal is not None:
            await self._do(self.engine.memories.accept(proposal["id"]), "Remembered.")

    @work(group="memory-edit")
    async def action_reject(self) -> None:
        proposal = self._chosen("#proposals", self.pending)
        if proposal is not None:
            await self._do(self.engine.memories.reject(proposal["id"]), "Not remembered.")

    @work(group="memory-edit")
    @shows_errors("Memory")
    async def action_toggle_memory(self) -> None:
        on_ = not await self.engine.memories.enabled()
        done = "Long-term memory is on." if on_ else "Long-term memory is off: nothing recalled or saved."
        await self._do(self.engine.memories.set_enabled(on_), done)

    @shows_errors("Memory")
    async def _do(self, step: Any, done: str) -> None:
        await step
        self.notify(done, timeout=3)
        self.reload()
