"""The chat screen's conversations: the sidebar (listed, searched, shown or hidden), opening one
as it was left, a new chat, renaming and deleting."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from textual import on, work

from app.screens.base import EngineScreen, show_error
from app.screens.modals import ConfirmDialog, TextDialog
from app.widgets.chat_log import UserMessage, origin_text
from app.widgets.conversation_list import ConversationList
from engine import AssistantError

if TYPE_CHECKING:
    from app.widgets.answer import AnswerMessage


class ChatConversations(EngineScreen):
    """A part of ChatScreen (its conversation, prompt, status bar and answer log are used here)."""

    conversation_id: int | None
    backend_choice: str | None
    incognito: bool
    searching: bool

    @work(group="history", exclusive=True)
    async def refresh_conversations(self) -> None:
        await self.show_conversations()

    async def show_conversations(self) -> None:
        if self.searching:
            return  # search results stay until Ctrl+N
        try:
            rows = await self.engine.history.conversations()
        except AssistantError as exc:
            show_error(self, exc, "History")
            return
        await self.query_one(ConversationList).show(rows, self.conversation_id)

    async def action_new_chat(self) -> None:
        self.workers.cancel_group(self, "answer")
        if self.searching:
            self.searching = False
            self.refresh_conversations()
        self.conversation_id = None
        self.backend_choice = None
        self.incognito = self.status.incognito = False
        self.status.summarized = 0
        self.show_backend()
        self.select(None)
        await self.log_view.clear(welcome=True)
        self.status.context = None
        self.query_one(ConversationList).index = None
        self.prompt.focus()

    @on(ConversationList.Selected)
    async def open_selected(self, event: ConversationList.Selected) -> None:
        item = self.query_one(ConversationList).highlighted_conversation
        if item is not None:
            await self.open_conversation(item.conversation_id)

    async def open_conversation(self, conversation_id: int) -> None:
        self.workers.cancel_group(self, "answer")
        try:
            rows = await self.engine.history.messages(conversation_id)
            conversation = await self.engine.history.conversation(conversation_id)
        except AssistantError as exc:
            show_error(self, exc)
            return
        self.conversation_id = conversation_id
        self.engine.reopened(conversation_id)  # its model state comes back from disk while this draws
        self.backend_choice = conversation.get("backend")
        self.incognito = self.status.incognito = bool(conversation.get("incognito"))
        self.status.summarized = 0
        self.show_backend()
        self.select(None)
        log = self.log_view
        widgets = []
        for row in rows:
            if row["role"] == "user":
                widgets.append(UserMessage(row["content"]))
            elif row["role"] == "assistant":
                widgets.append(await self._reopened_answer(row))
        await log.clear()
        await log.mount_all(widgets)
        log.scroll_end(animate=False)
        self.prompt.focus()

    async def _reopened_answer(self, row: dict[str, Any]) -> AnswerMessage:
        """An answer from the history, with the footer it had live: who wrote it, its id and
        rating, "stopped" or "failed", a cache hit, the memories it used."""
        from app.widgets.answer import AnswerMessage  # after the first frame (Markdown): see ChatScreen

        origin = origin_text(row.get("model"), row.get("backend"), bool(row.get("remote")))
        answer = AnswerMessage(row["content"], row["response_id"], row.get("sources", ()), origin)
        answer.set_reactive(AnswerMessage.rating, row["rating"])
        answer.groundedness = row.get("groundedness")  # the footer it had live
        state = ""
        if row["status"] == "partial":  # a response row says why; none: the app died mid-answer
            state = "partial"
        if row["response_id"] is not None:
            try:
                response = await self.engine.history.response(row["response_id"])
            except AssistantError:
                response = {}
            state = {"cancelled": "stopped", "error": "error"}.get(response.get("status"), state)
            answer.cached_from = response.get("cached_from")
            answer.memories = len(json.loads(response.get("memory_ids") or "[]"))
            answer.tool_steps = tuple(row.get("tool_steps", ()))  # its 🔧 line, as shown live
        answer.set_reactive(AnswerMessage.state, state)
        return answer

    @work(group="search", exclusive=True)
    async def action_search(self) -> None:
        """Search every conversation; the sidebar then lists the ones that match (Ctrl+N: all)."""
        dialog = TextDialog("Search conversations", placeholder="words to find",
                            hint="Enter: search · Esc: cancel")
        query = await self.app.push_screen_wait(dialog)
        if not query or not query.strip():
            return
        try:
            rows = await self.engine.history.search_conversations(query)
        except AssistantError as exc:
            show_error(self, exc)
            return
        sidebar = self.query_one(ConversationList)
        sidebar.display = True
        await sidebar.show(rows, self.conversation_id)
        self.searching = True
        # Focus stays in the prompt: what is typed next is a question, never a key of the list.
        found = "1 conversation mentions" if len(rows) == 1 else f"{len(rows)} conversations mention"
        self.notify(f"{found} “{query.strip()}”: Tab (or a click) to pick one, Enter opens it. "
                    "Ctrl+N shows all again." if rows else f"No conversation mentions “{query.strip()}”.",
                    timeout=6, markup=False)

    def action_toggle_sidebar(self) -> None:
        sidebar = self.query_one(ConversationList)
        sidebar.display = not sidebar.display

    def _chosen_conversation(self) -> tuple[int, str] | None:
        sidebar = self.query_one(ConversationList)
        item = sidebar.highlighted_conversation if sidebar.has_focus else None
        if item is not None:
            return item.conversation_id, item.title
        for item in sidebar.query("ConversationItem"):
            if item.conversation_id == self.conversation_id:
                return item.conversation_id, item.title
        return None

    @on(ConversationList.RenameRequested)
    def rename_requested(self) -> None:
        self.action_rename_conversation()

    @on(ConversationList.DeleteRequested)
    def delete_requested(self) -> None:
        self.action_delete_conversation()

    @work(group="edit")
    async def action_rename_conversation(self) -> None:
        chosen = self._chosen_conversation()
        if chosen is None:
            self.notify("Open or highlight a conversation to rename it.", severity="warning")
            return
        title = await self.app.push_screen_wait(TextDialog("Rename conversation", chosen[1],
                                                           hint="Enter: rename · Esc: cancel"))
        if title and title.strip():
            try:
                await self.engine.history.rename_conversation(chosen[0], title.strip())
            except AssistantError as exc:
                show_error(self, exc)
            self.refresh_conversations()

    @work(group="edit")
    async def action_delete_conversation(self) -> None:
        chosen = self._chosen_conversation()
        if chosen is None:
            self.notify("Open or highlight a conversation to delete it.", severity="warning")
            return
        if not await self.app.push_screen_wait(ConfirmDialog(f"Delete “{chosen[1]}”?")):
            return
        try:
            await self.engine.history.delete_conversation(chosen[0])
        except AssistantError as exc:
            show_error(self, exc)
            return
        if chosen[0] == self.conversation_id:
            await self.action_new_chat()
        self.refresh_conversations()
