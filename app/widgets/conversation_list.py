"""The sidebar of past conversations: Enter or a click opens one."""

from __future__ import annotations

from typing import Any

from textual.binding import Binding
from textual.widgets import Label, ListItem, ListView


class ConversationItem(ListItem):
    def __init__(self, row: dict[str, Any]) -> None:
        super().__init__(Label(row["title"], markup=False))
        self.conversation_id: int = row["id"]
        self.title = row["title"]


class ConversationList(ListView):
    BINDINGS = [
        Binding("r", "screen.rename_conversation", "Rename"),
        Binding("delete,d", "screen.delete_conversation", "Delete"),
    ]

    async def show(self, rows: list[dict[str, Any]], current: int | None) -> None:
        await self.clear()
        await self.extend(ConversationItem(row) for row in rows)
        self.refresh(layout=True)
        for index, row in enumerate(rows):
            if row["id"] == current:
                self.index = index

    @property
    def highlighted_conversation(self) -> ConversationItem | None:
        item = self.highlighted_child
        return item if isinstance(item, ConversationItem) else None
