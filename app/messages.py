"""Messages screens post up to the App, which owns the long-running jobs (indexing, watching):
a screen says what the user asked for and the App decides how it runs (Textual's messages bubble
from a screen to its App, where `@on` handlers take them)."""

from __future__ import annotations

from pathlib import Path

from textual.message import Message


class IndexRequested(Message):
    """Index this folder (again): only what changed is redone."""

    def __init__(self, folder: Path) -> None:
        super().__init__()
        self.folder = folder


class WatchToggled(Message):
    """Start watching this folder for changes, or stop if it is watched."""

    def __init__(self, folder: Path) -> None:
        super().__init__()
        self.folder = folder


class FolderRemoved(Message):
    """This folder is about to leave the index: stop watching it first."""

    def __init__(self, folder: Path) -> None:
        super().__init__()
        self.folder = folder
