"""What the chat screen opens: the memory, folders, stats, review and evals screens, and the
model, backend and trace dialogs."""

from __future__ import annotations

import asyncio

from textual import work

from app.indexing import IndexingJobs
from app.screens.base import EngineScreen, show_error
from app.screens.modals import AUTOMATIC, BackendDialog, ModelDialog
from engine import AssistantError


class ChatPanels(EngineScreen):
    """A part of ChatScreen (its conversation, status bar and selected answer are used here)."""

    jobs: IndexingJobs
    conversation_id: int | None
    backend_choice: str | None

    def action_memory(self) -> None:
        from app.screens.memory import MemoryScreen

        self.app.push_screen(MemoryScreen(self.engine))

    def action_folders(self) -> None:
        from app.screens.folders import FoldersScreen

        self.app.push_screen(FoldersScreen(self.engine, self.jobs, self.conversation_id))

    @work(group="edit")
    async def action_pick_model(self) -> None:
        """Swap the local model: the old one is unloaded, the new one loads in the background."""
        from engine import model_catalog

        settings = self.engine.settings
        rows = await asyncio.to_thread(model_catalog, settings.model, settings.models_dir)
        local = self.engine.router.backends.get("local")
        current = local.model_path if local is not None else None
        picked = await self.app.push_screen_wait(ModelDialog(rows, str(current) if current else None))
        if picked is None or picked == str(current):
            return
        if self.answering:
            self.notify("Stop the answer first (Esc), then switch models.", severity="warning")
            return
        self.status.state = "loading model…"
        try:
            backend = await self.engine.switch_model(picked)
        except AssistantError as exc:
            self.status.state = "model failed to load"
            show_error(self, exc, "Model", timeout=15)
            return
        self.show_backend()
        self.status.state = "ready"
        row = next(row for row in rows if row["path"] == picked)
        keep = (f"model = \"{row['name']}\" in the config file" if row["source"] == "models_dir"
                else f"assistant models use {row['name']}")
        self.notify(f"Now answering with {backend.model_name}. To keep it as the default: {keep}",
                    title="Model", timeout=6)

    @work(group="edit")
    async def action_pick_backend(self) -> None:
        try:
            report = await self.engine.backends_report()
        except AssistantError as exc:
            show_error(self, exc)
            return
        picked = await self.app.push_screen_wait(
            BackendDialog(report, self.backend_choice, list(self.engine.settings.backends))
        )
        if picked is None:
            return
        choice = None if picked == AUTOMATIC else picked
        if self.conversation_id is not None:
            try:
                await self.engine.set_conversation_backend(self.conversation_id, choice)
            except AssistantError as exc:
                show_error(self, exc)
                return
        self.backend_choice = choice
        self.show_backend()
        backend = self.engine.router.primary(choice)
        if backend.remote and not self.engine.settings.allow_cloud:
            self.notify("Cloud is off: questions stay local until allow_cloud = true is set.",
                        severity="warning", timeout=8)
        else:
            self.notify(f"Next answers: {backend.name} ({backend.model_name}).", timeout=3)

    @work(group="edit")
    async def action_show_trace(self) -> None:
        from app.screens.insights import TraceDialog

        answer = await self.saved_target("trace")
        if answer is None:
            return
        try:
            response, spans = await self.engine.history.trace(answer.response_id)
        except AssistantError as exc:
            show_error(self, exc)
            return
        await self.app.push_screen_wait(TraceDialog(response, spans))

    def action_stats(self) -> None:
        from app.screens.insights import StatsScreen

        self.app.push_screen(StatsScreen(self.engine))

    def action_review(self) -> None:
        from app.screens.insights import ReviewScreen

        self.app.push_screen(ReviewScreen(self.engine))

    def action_evals(self) -> None:
        from app.screens.evals import EvalsScreen

        self.app.push_screen(EvalsScreen())
