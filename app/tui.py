"""The Textual app: the chat screen over the engine, folder indexing in the background (the App
owns those jobs; screens ask for them with app.messages), and the command palette entries.

`assistant` draws the chat screen before the engine exists: importing and building it (~110 ms,
the answer pipeline's modules) would come before the first frame. The App builds it in a thread
after that frame (`started`) while the prompt already takes keys; a chat screen key pressed that
early runs once the engine is there (`run_action`), a question sent that early is answered then.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import sys
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from textual import on
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.reactive import reactive
from textual.screen import Screen

from app.indexing import IndexingJobs
from app.messages import FolderRemoved, IndexRequested, WatchToggled
from app.screens.chat import ChatScreen
from app.screens.chat_keys import palette_commands, waits_for_engine
from engine import AssistantError

if TYPE_CHECKING:
    from textual.actions import ActionParseResult
    from textual.dom import DOMNode

    from engine import Engine


class AssistantApp(App):
    CSS_PATH = "assistant.tcss"
    TITLE = "assistant"
    # Every key of the screen, the ones the footer has no room for too (Ctrl+P: every command).
    BINDINGS = [Binding("f1", "toggle_keys", "Keys")]

    indexing_text: reactive[str] = reactive("")  # what the indexer is doing; "" when idle

    def __init__(self, engine: Engine | None = None, *, start: Callable[[], Engine] | None = None) -> None:
        """`engine`, ready; or `start`, which builds it and is called in a thread after the first
        frame (`assistant` itself)."""
        super().__init__()
        if (engine is None) == (start is None):
            raise ValueError("AssistantApp takes an engine or a way to start one, not both")
        self.engine = engine
        self._start = start
        self._building: asyncio.Future[Engine] | None = None
        self.jobs = IndexingJobs(self, self.started, lambda text: setattr(self, "indexing_text", text))
        self._display_core = contextlib.ExitStack()

    def on_mount(self) -> None:
        from engine import keep_a_core_for_the_display  # a small module (engine/cpu_budget.py)

        self._display_core.enter_context(keep_a_core_for_the_display())

    async def started(self) -> Engine:
        """The engine; the first call starts building it in a thread, the others wait for the same
        one. If it cannot be built (a provider no plugin provides...), the app ends with the error."""
        if self.engine is None:
            if self._building is None:
                assert self._start is not None
                self._building = asyncio.ensure_future(asyncio.to_thread(self._start))
            try:
                self.engine = await asyncio.shield(self._building)
            except AssistantError as exc:
                self.exit(return_code=1, message=f"Error: {exc}")
                await asyncio.Future()  # never: the app is closing, which cancels this wait
        return self.engine

    @property
    def watched_folders(self) -> dict[str, threading.Event]:
        return self.jobs.watched

    def get_default_screen(self) -> Screen:
        # The chat screen is the bottom of the stack, drawn in the first frame: pushed over
        # Textual's blank default screen, it came one refresh cycle later.
        return ChatScreen(self.engine, self.jobs)

    async def run_action(self, action: str | ActionParseResult, default_namespace: DOMNode | None = None,
                         namespaces: Any = None) -> bool:
        """A chat screen key (or palette command) that needs the engine, pressed before it is
        built, runs once it is, in the order pressed; the others (Esc, copy, F1...) run at once."""
        screen = default_namespace
        if isinstance(screen, ChatScreen) and screen.engine is None and waits_for_engine(action):
            self.run_worker(self._run_when_started(screen, action, namespaces), group="early-keys")
            return True
        return await super().run_action(action, default_namespace, namespaces)

    async def _run_when_started(self, screen: ChatScreen, action: str | ActionParseResult,
                                namespaces: Any) -> None:
        await screen.started()
        await super().run_action(action, screen, namespaces)

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
        self._display_core.close()
        self.jobs.stop()
        if self.engine is None and self._building is not None:  # closed while it was being built
            with contextlib.suppress(AssistantError):
                self.engine = await self._building
        if self.engine is not None:
            await self.engine.close()

    @on(IndexRequested)
    def index_folder(self, message: IndexRequested) -> None:
        self.jobs.index(message.folder)

    @on(WatchToggled)
    def toggle_watch(self, message: WatchToggled) -> None:
        self.jobs.toggle_watch(message.folder)

    @on(FolderRemoved)
    def stop_watching(self, message: FolderRemoved) -> None:
        self.jobs.stop_watching(message.folder)

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        if isinstance(screen, ChatScreen):
            yield from palette_commands(screen)


def run_chat(model: str | None) -> None:
    """`assistant` (app/launch.py, or the CLI with no command): the settings are read first, so a
    bad config file ends the command with its message before anything is drawn; the engine is
    built after the first frame."""
    from engine import load_settings

    try:
        settings = load_settings().replace(model=model)  # None: not given
    except AssistantError as exc:
        sys.exit(f"Error: {exc}")

    def start() -> Engine:
        from engine import Engine

        return Engine(settings)

    app = AssistantApp(start=start)
    # What is loaded by now lives as long as the process: out of the collector's sight, the full
    # collection that came right after the first frame (~20 ms on the main thread, scanning every
    # module's objects) no longer holds back the first keys typed.
    gc.freeze()
    app.run()
    if app.return_code:
        sys.exit(app.return_code)
