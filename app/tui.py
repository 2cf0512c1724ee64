"""The Textual app: the chat screen over the engine, folder indexing in the background, and
command palette entries."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.reactive import reactive
from textual.screen import Screen

from app.screens.chat import ChatScreen
from engine import AssistantError, Engine


class AssistantApp(App):
    CSS_PATH = "assistant.tcss"
    TITLE = "assistant"
    # Every key of the screen, the ones the footer has no room for too (Ctrl+P: every command).
    BINDINGS = [Binding("f1", "toggle_keys", "Keys")]

    indexing_text: reactive[str] = reactive("")  # what the indexer is doing; "" when idle

    def __init__(self, engine: Engine) -> None:
        super().__init__()
        self.engine = engine
        self.watched_folders: dict[str, threading.Event] = {}
        self._stop_indexing = threading.Event()

    def on_mount(self) -> None:
        self.push_screen(ChatScreen(self.engine))

    def notify(self, message: str, *, title: str = "", severity: Any = "information",
               timeout: float | None = None, markup: bool = True) -> None:
        """Notifications carry text from outside (server errors, file names, plugin output): never
        read as Rich markup, so `[...]` in it is shown, not taken for a style or swallowed."""
        super().notify(message, title=title, severity=severity, timeout=timeout, markup=False)

    def action_toggle_keys(self) -> None:
        if self.screen.query("HelpPanel"):
            self.action_hide_help_panel()
        else:
            self.action_show_help_panel()

    async def on_unmount(self) -> None:
        self._stop_indexing.set()
        for stop in self.watched_folders.values():
            stop.set()
        await self.engine.close()

    # indexing, in threads: the event loop only sees progress messages ---------------------------

    def start_indexing(self, folder: Path) -> None:
        self.run_worker(self._index(folder), group="index")

    async def _index(self, folder: Path) -> None:
        try:
            knowledge = await self.engine.knowledge()
            summary = await asyncio.to_thread(knowledge.index, folder, self._progress, self._stop_indexing)
        except AssistantError as exc:
            self.notify(str(exc), title="Indexing", severity="error", timeout=15)
        else:
            self._report_summary(summary)
        finally:
            self.indexing_text = ""

    def toggle_watch(self, folder: Path) -> None:
        if str(folder) in self.watched_folders:
            self.stop_watching(folder)
        else:
            stop = threading.Event()
            self.watched_folders[str(folder)] = stop
            self.run_worker(self._watch(folder, stop), group="watch")

    def stop_watching(self, folder: Path) -> None:
        stop = self.watched_folders.pop(str(folder), None)
        if stop is not None:
            stop.set()

    async def _watch(self, folder: Path, stop: threading.Event) -> None:
        def on_summary(summary: Any) -> None:
            self.call_from_thread(self._watched_summary, summary)

        try:
            knowledge = await self.engine.knowledge()
            await asyncio.to_thread(knowledge.watch, folder, on_summary, self._progress, stop)
        except AssistantError as exc:
            self.notify(str(exc), title="Watching", severity="error", timeout=15)
        finally:
            self.watched_folders.pop(str(folder), None)
            self.indexing_text = ""

    def _watched_summary(self, summary: Any) -> None:
        self.indexing_text = ""
        if summary.indexed or summary.removed or summary.renamed:
            self._report_summary(summary)

    def _progress(self, progress: Any) -> None:
        """Called in the indexing thread."""
        if progress.waiting_for:
            text = f"waiting for {progress.waiting_for} to finish indexing"
        else:
            eta = f" · ETA {progress.eta_s:.0f} s" if progress.eta_s is not None else ""
            text = (f"indexing {Path(progress.folder).name}: {progress.files_done}/{progress.files_total}"
                    f" files · {progress.files_per_s:.0f} files/s{eta}")
        self.call_from_thread(setattr, self, "indexing_text", text)

    def _report_summary(self, summary: Any) -> None:
        self.notify(
            f"{summary.files} files: {summary.indexed} indexed, {summary.unchanged} unchanged, "
            f"{summary.skipped} skipped, {summary.failed} failed; {summary.chunks_added} chunks "
            f"in {summary.seconds:.1f} s.",
            title=f"Indexed {Path(summary.folder).name}",
        )

    # command palette -----------------------------------------------------------------------------

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        if not isinstance(screen, ChatScreen):
            return
        commands = [
            ("New chat", "Start a new conversation (Ctrl+N)", screen.action_new_chat),
            ("Stop answer", "Stop the answer in flight (Esc)", screen.action_stop),
            ("Thumbs up", "Rate the selected or latest answer (Ctrl+G)", lambda: screen.action_rate(1)),
            ("Thumbs down", "Rate the selected or latest answer (Ctrl+B)", lambda: screen.action_rate(-1)),
            ("Copy answer", "Copy the selected or latest answer (Ctrl+O)", screen.action_copy_answer),
            ("Open source", "Open the first source of the selected or latest answer (Ctrl+R)",
             screen.action_open_source),
            ("Folders", "Index folders, watch them, choose what this chat searches (Ctrl+F)",
             screen.action_folders),
            ("Backend", "Pick the backend and model of this conversation (Ctrl+L)",
             screen.action_pick_backend),
            ("Model", "Load another local model; the current one is unloaded (F9)", screen.action_pick_model),
            ("Trace", "Why was it slow? The steps of the selected or latest answer (Ctrl+T)",
             screen.action_show_trace),
            ("Stats", "Latency, speed, tokens, cost, thumbs, errors, with plots and alerts (F3)",
             screen.action_stats),
            ("Review", "Thumbs-down answers and refusals: write the better answer (F4)",
             screen.action_review),
            ("Evals", "Eval runs: metrics, plot, cases, and two runs compared (F12)", screen.action_evals),
            ("Regenerate", "Answer the last question anew, not from the cache (F5)",
             screen.action_regenerate),
            ("Search conversations", "Find conversations by the words in them (F8)", screen.action_search),
            ("Memory", "What the assistant remembers about you: edit, pin, forget, proposals (F10)",
             screen.action_memory),
            ("Incognito", "This conversation writes no long-term memory (/incognito)",
             screen.toggle_incognito),
            ("Fork conversation", "Copy it up to the selected answer and go on there (/fork)", screen.fork),
            ("Rename conversation", "Rename the current conversation (F2)",
             screen.action_rename_conversation),
            ("Delete conversation", "Delete the current conversation (Delete in the sidebar)",
             screen.action_delete_conversation),
            ("Toggle sidebar", "Show or hide past conversations (Ctrl+S)", screen.action_toggle_sidebar),
        ]
        for title, help_text, callback in commands:
            yield SystemCommand(title, help_text, callback)
