"""Indexing and watching folders for the chat app, in threads: the event loop sees only progress
lines and summaries. The App owns one of these; screens ask for work with app.messages."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textual.app import App

from engine import AssistantError

if TYPE_CHECKING:
    from engine import Engine


class IndexingJobs:
    """One indexing run at a time per request, any number of watched folders; all stop with `stop()`.

    `engine()` is the App's engine, awaited (it may still be being built at launch); `show(text)`
    gets what the indexer is doing ("" when idle), on the event loop."""

    def __init__(self, app: App, engine: Callable[[], Awaitable[Engine]],
                 show: Callable[[str], None]) -> None:
        self.app = app
        self.engine = engine
        self.show = show
        self.watched: dict[str, threading.Event] = {}  # folder -> its watcher's stop
        self._stop_indexing = threading.Event()

    def is_watched(self, folder: str) -> bool:
        return folder in self.watched

    def index(self, folder: Path) -> None:
        self.app.run_worker(self._index(folder), group="index")

    def toggle_watch(self, folder: Path) -> None:
        if str(folder) in self.watched:
            self.stop_watching(folder)
        else:
            stop = threading.Event()
            self.watched[str(folder)] = stop
            self.app.run_worker(self._watch(folder, stop), group="watch")

    def stop_watching(self, folder: Path) -> None:
        stop = self.watched.pop(str(folder), None)
        if stop is not None:
            stop.set()

    def stop(self) -> None:
        """The app is closing: every run and watcher stops at its next file."""
        self._stop_indexing.set()
        for stop in self.watched.values():
            stop.set()

    async def _index(self, folder: Path) -> None:
        try:
            knowledge = await (await self.engine()).knowledge()
            summary = await asyncio.to_thread(knowledge.index, folder, self._progress, self._stop_indexing)
        except AssistantError as exc:
            self.app.notify(str(exc), title="Indexing", severity="error", timeout=15)
        else:
            self._report(summary)
        finally:
            self.show("")

    async def _watch(self, folder: Path, stop: threading.Event) -> None:
        def on_summary(summary: Any) -> None:
            self.app.call_from_thread(self._watched_summary, summary)

        try:
            knowledge = await (await self.engine()).knowledge()
            await asyncio.to_thread(knowledge.watch, folder, on_summary, self._progress, stop)
        except AssistantError as exc:
            self.app.notify(str(exc), title="Watching", severity="error", timeout=15)
        finally:
            self.watched.pop(str(folder), None)
            self.show("")

    def _watched_summary(self, summary: Any) -> None:
        self.show("")
        if summary.indexed or summary.removed or summary.renamed:
            self._report(summary)

    def _progress(self, progress: Any) -> None:
        """Called in the indexing thread."""
        if progress.waiting_for:
            text = f"waiting for {progress.waiting_for} to finish indexing"
        else:
            eta = f" · ETA {progress.eta_s:.0f} s" if progress.eta_s is not None else ""
            text = (f"indexing {Path(progress.folder).name}: {progress.files_done}/{progress.files_total}"
                    f" files · {progress.files_per_s:.0f} files/s{eta}")
        self.app.call_from_thread(self.show, text)

    def _report(self, summary: Any) -> None:
        self.app.notify(
            f"{summary.files} files: {summary.indexed} indexed, {summary.unchanged} unchanged, "
            f"{summary.skipped} skipped, {summary.failed} failed; {summary.chunks_added} chunks "
            f"in {summary.seconds:.1f} s.",
            title=f"Indexed {Path(summary.folder).name}",
        )
