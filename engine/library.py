"""The indexed folders as the answer pipeline and the history see them: async, off the event loop,
and loaded only when something is indexed (plain chat never imports Chroma, torch or the loaders).

`engine.knowledge.Knowledge` does the work (blocking); this opens it on first use and asks it the
few questions an answer has: is anything indexed, what to search, what was found, by id.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.config import Settings
from engine.toolloop import Reach
from memory.corpus import Corpus
from memory.retriever import Passage
from memory.store import Store
from plugins.hookspecs import PluginHost, ToolContext

if TYPE_CHECKING:
    from engine.knowledge import Knowledge

MemorySearch = Callable[[str], list[dict]]  # blocking: a tool calls it from its thread


class Library:
    def __init__(self, settings: Settings, store: Callable[[], Awaitable[Store]], folder: Path,
                 plugins: Callable[[], PluginHost]) -> None:
        self.settings = settings
        self._store = store
        self._folder = folder
        self._plugins = plugins  # the one plugin manager (its loaders read the files)
        self._knowledge: Knowledge | None = None
        self._lock = asyncio.Lock()

    @property
    def opened(self) -> bool:
        """Whether the folders' index (Chroma, the embedder, the loaders) has been opened."""
        return self._knowledge is not None

    async def knowledge(self) -> Knowledge:
        """The indexed folders (created on first use: it loads the plugins' loaders)."""
        store = await self._store()
        async with self._lock:
            if self._knowledge is None:
                from engine.knowledge import Knowledge

                self._knowledge = await asyncio.to_thread(Knowledge, self.settings, store, self._folder,
                                                          self._plugins)
        return self._knowledge

    async def anything_indexed(self) -> bool:
        """Cheap: answered from SQLite without loading Chroma, torch or the loaders."""
        return await asyncio.to_thread(Corpus(await self._store()).has_chunks)

    async def search(self, question: str, conversation_id: int, attrs: dict[str, Any]) -> list[Passage]:
        """Passages from the conversation's folders relevant to the question; none, without
        loading anything, when no folder is indexed. `attrs` (the trace's) gets the folders
        searched, what was found, and how much of it was relevant enough to use."""
        if self.settings.rag_top_k <= 0:
            return []
        if not await self.anything_indexed():
            return []  # plain chat: Chroma, torch and the loaders stay unloaded
        knowledge = await self.knowledge()
        folder_ids = await asyncio.to_thread(knowledge.searchable, conversation_id)
        if not folder_ids:
            return []
        passages = await asyncio.to_thread(knowledge.search, question, conversation_id, attrs)
        attrs.update(folders=len(folder_ids), passages=len(passages),
                     found_in=sorted({p.folder for p in passages}),
                     min_similarity=self.settings.rag_min_similarity)
        return passages

    async def index_state(self, conversation_id: int) -> list[Any]:
        """What `search` would search for this conversation, read without embedding anything.
        Once the folders are open, one trip to a thread: every cache lookup asks this."""
        if self.settings.rag_top_k <= 0:
            return []
        if self._knowledge is None and not await self.anything_indexed():
            return []
        return await asyncio.to_thread((await self.knowledge()).state, conversation_id)

    async def passages(self, chunk_ids: list[int]) -> list[Passage]:
        """Passages by chunk id, from SQLite (nothing is searched): a cached answer's, a saved one's."""
        if not chunk_ids:
            return []
        return await asyncio.to_thread((await self.knowledge()).passages, chunk_ids)

    async def tool_reach(self, conversation_id: int, recall: MemorySearch) -> Reach:
        """What tools may reach: this conversation's indexed folders, search, long-term memory
        (`recall`); and whether one of those folders is private."""
        folders: list[Path] = []
        private = False
        search: Callable[[str], list[dict]] = lambda query: []  # noqa: E731
        if await self.anything_indexed():
            knowledge = await self.knowledge()
            ids = set(await asyncio.to_thread(knowledge.searchable, conversation_id))
            reachable = [f for f in await asyncio.to_thread(knowledge.folders) if f["id"] in ids]
            folders = [Path(f["path"]) for f in reachable]
            private = any(f.get("private") for f in reachable)

            def search(query: str) -> list[dict]:
                found = knowledge.search(query, conversation_id)
                return [{"location": p.location, "text": p.text} for p in found]

        return Reach(ToolContext(folders, search, recall, conversation_id), private)
