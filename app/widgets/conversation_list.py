"""The sidebar of past conversations: Enter or a click opens one.

Its keys are F2 (rename) and Delete: no letter, so a question typed while the list has focus can
never rename or delete anything (the chat screen sends printable keys on to the prompt).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from textual.binding import Binding
from textual.message import Message
from textual.widgets import Label, ListItem, ListView


def when(stamp: str | None, today: datetime | None = None) -> str:
    """A short local time: "21:44" today, "Dec 01 21:44" before (stamps are ISO, in UTC)."""
    if not stamp:
        return ""
    try:
        moment = datetime.fromisoformat(stamp).astimezone()
    except ValueError:
        return ""
    today = today or datetime.now().astimezone()
    return moment.strftime("%H:%M" if moment.date() == today.date() else "%b %d %H:%M")


class ConversationItem(ListItem):
    def __init__(self, row: dict[str, Any]) -> None:
        # The id and time tell apart conversations that share a title ("Tell me a joke.").
        meta = f"#{row['id']} · {when(row.get('updated_at') or row.get('created_at'))}".rstrip(" ·")
        super().__init__(Label(row["title"], markup=False, classes="conversation-title"),
                         Label(meta, markup=False, classes="conversation-meta"))
        self.conversation_id: int = row["id"]
        self.title = row["title"]
        self.meta = meta


class ConversationList(ListView):
    BINDINGS = [
        Binding("f2", "request('rename')", "Rename"),
        Binding("delete", "request('delete')", "Delete"),
    ]

    class RenameRequested(Message):
        """F2 on the list: rename the highlighted conversation."""

    class DeleteRequested(Message):
        """Delete on the list: delete the highlighted conversation (after asking)."""

    def action_request(self, what: str) -> None:
        self.post_message(self.RenameRequested() if what == "rename" else self.DeleteRequested())

    async def show(self, rows: list[dict[str, Any]], current: int | None) -> None:
        await self.clear()
        await self.extend(ConversationItem(row) for row in rows)
        self.refresh(layout=True)
        for index, row in enumerate(rows):
            if row["id"] == current:
                self.index = index

    def on_focus(self) -> None:
        """Focused by Tab or a click: a highlight to act on (Enter, F2, Delete)."""
        if self.index is None and self.children:
            self.index = 0

    @property
    def highlighted_conversation(self) -> ConversationItem | None:
        item = self.highlighted_child
        return item if isinstance(item, ConversationItem) else None
