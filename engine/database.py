"""The database of one engine: opened on first use, in a worker thread, and handed to every part
that reads or writes rows (router, memories, summaries, history, the answer pipeline)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from engine.paths import ensure_private_dir
from memory.store import Store


class Database:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._store: Store | None = None
        self._lock = asyncio.Lock()

    @property
    def folder(self) -> Path:
        """The data folder: the vector store, the logs and the index lock live next to the database."""
        return self.path.parent

    async def store(self) -> Store:
        async with self._lock:
            if self._store is None:
                ensure_private_dir(self.path.parent)
                self._store = await asyncio.to_thread(Store, self.path)
        return self._store

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
