"""The engine's side of long-term memory: async, off the event loop, for the TUI and the CLI.

The memories themselves (SQLite + Chroma) live in `memory.longterm`; this adds the settings
(recall size and threshold, proposals on or off), the on/off switch and incognito conversations.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from engine.config import Settings
from engine.errors import ConfigError
from memory.longterm import LongTermMemory, Recalled
from memory.store import Store
from memory.vectors import VectorIndex

T = TypeVar("T")


def memory_vectors(settings: Settings, folder: Path) -> VectorIndex:
    """The "memories" collection, next to the chunks' (local, or on the Chroma server)."""
    from engine.paths import ensure_private_dir

    url = settings.vector_store_url
    return VectorIndex(None if url else ensure_private_dir(folder / "chroma"), url, collection="memories")


class MemoryOffError(ConfigError):
    """Long-term memory is switched off, or the conversation is incognito."""


class Memories:
    def __init__(self, settings: Settings, store: Callable[[], Awaitable[Store]], folder: Path) -> None:
        self.settings = settings
        self._store = store
        self._folder = folder
        self._memory: LongTermMemory | None = None
        self._lock = threading.Lock()

    async def long_term(self) -> LongTermMemory:
        """The memories themselves (blocking: call their methods from a worker thread)."""
        store = await self._store()
        with self._lock:
            if self._memory is None:
                self._memory = LongTermMemory(store, self._open_vectors)
            return self._memory

    def _open_vectors(self) -> VectorIndex:
        return memory_vectors(self.settings, self._folder)

    async def _run(self, work: Callable[[LongTermMemory], T]) -> T:
        """`work(memories)` in a worker thread (SQLite, Chroma, the embedder)."""
        memory = await self.long_term()
        return await asyncio.to_thread(work, memory)

    async def tool_search(self) -> Callable[[str], list[dict[str, Any]]]:
        """What a tool's `recall` runs, in its own thread: the memories most similar to a query."""
        memory, threshold = await self.long_term(), self.settings.memory_threshold
        return lambda query: memory.search(query, 5, threshold)

    # what the engine uses while answering ------------------------------------------------------

    async def recall(self, question: str) -> list[Recalled]:
        """Memories for the prompt; none when memory is off (nothing is loaded when there are none)."""
        if self.settings.memory_top_k <= 0 or not await self.enabled():
            return []
        s = self.settings
        return await self._run(lambda m: m.recall(question, s.memory_top_k, s.memory_threshold))

    async def propose(
        self, question: str, conversation_id: int, message_id: int, incognito: bool
    ) -> list[dict[str, Any]]:
        # With log_content off no question text may be stored, so nothing is proposed either.
        s = self.settings
        if incognito or not s.memory_proposals or not s.log_content or not await self.enabled():
            return []
        return await self._run(lambda m: m.propose(question, conversation_id, message_id))

    # what the user does ------------------------------------------------------------------------

    async def any(self) -> bool:
        return await self._run(LongTermMemory.has_any)

    async def enabled(self) -> bool:
        return await self._run(LongTermMemory.enabled)

    async def set_enabled(self, on: bool) -> None:
        await self._run(lambda m: m.set_enabled(on))

    async def add(self, text: str, kind: str = "fact", conversation_id: int | None = None,
                  pinned: bool = False) -> dict[str, Any]:
        if not await self.enabled():
            raise MemoryOffError("Long-term memory is off: nothing is remembered.",
                                 hint="`assistant memory on` switches it back on.")
        if conversation_id is not None:
            conversation = await asyncio.to_thread((await self._store()).conversation, conversation_id)
            if conversation.get("incognito"):
                raise MemoryOffError("This conversation is incognito: it writes no long-term memory.",
                                     hint="Use /incognito to switch incognito off first.")
        return await self._run(lambda m: m.add(text, kind, conversation_id, pinned=pinned))

    async def all(self) -> list[dict[str, Any]]:
        return await self._run(LongTermMemory.all)

    async def get(self, memory_id: int) -> dict[str, Any]:
        return await self._run(lambda m: m.get(memory_id))

    async def search(self, query: str, k: int = 20) -> list[dict[str, Any]]:
        return await self._run(lambda m: m.search(query, k))

    async def edit(self, memory_id: int, text: str | None = None, kind: str | None = None,
                   pinned: bool | None = None) -> dict[str, Any]:
        return await self._run(lambda m: m.edit(memory_id, text, kind, pinned))

    async def forget(self, memory_id: int) -> dict[str, Any]:
        return await self._run(lambda m: m.forget(memory_id))

    async def proposals(self) -> list[dict[str, Any]]:
        return await self._run(LongTermMemory.proposals)

    async def accept(self, proposal_id: int, text: str | None = None) -> dict[str, Any]:
        return await self._run(lambda m: m.accept(proposal_id, text))

    async def reject(self, proposal_id: int) -> None:
        await self._run(lambda m: m.reject(proposal_id))

    async def export(self) -> list[dict[str, Any]]:
        return await self._run(LongTermMemory.export)

    async def import_rows(self, rows: list[dict[str, Any]]) -> int:
        return await self._run(lambda m: m.import_rows(rows))

    async def rebuild(self) -> int:
        return await self._run(LongTermMemory.rebuild)
