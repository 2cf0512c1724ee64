"""The user's indexed folders as the engine sees them: indexing, watching, retrieval.

Blocking throughout (Chroma, torch, SQLite): callers on an event loop use a thread.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine.config import Settings
from engine.cpu_budget import CpuBudget, in_background_thread, process_budget
from engine.errors import NotFoundError
from engine.paths import data_dir, ensure_private_dir
from engine.plugin_host import default_plugins
from memory.corpus import Corpus
from memory.embedder import Embedder
from memory.indexer import Indexer, LoaderLookup, Progress, Summary, chunking, outdated_folders
from memory.retriever import Passage, retrieve
from memory.store import Store
from memory.vectors import VectorIndex
from plugins.hookspecs import PluginHost


class Knowledge:
    def __init__(self, settings: Settings, store: Store, folder: Path | None = None,
                 plugins: Callable[[], PluginHost] | None = None) -> None:
        """`plugins` gives the one plugin manager of the process (its loaders read the files)."""
        self.settings = settings
        self._plugins = plugins or (lambda: default_plugins(settings))
        self.corpus = Corpus(store)
        self.folder = folder or data_dir()
        self.embedder = Embedder()
        # Indexing yields to answers: it pauses between small batches while one streams, runs at
        # background priority, and embeds on the cores other work leaves free.
        self.budget: CpuBudget = process_budget()
        self._loaders: LoaderLookup | None = None
        self._vectors: VectorIndex | None = None
        self._lock = threading.Lock()

    @property
    def vectors(self) -> VectorIndex:
        """Opened on first use: importing Chroma takes a while, and plain chat never needs it."""
        with self._lock:
            if self._vectors is None:
                path = None if self.settings.vector_store_url else ensure_private_dir(self.folder / "chroma")
                self._vectors = VectorIndex(path, self.settings.vector_store_url)
            return self._vectors

    @property
    def loaders(self) -> LoaderLookup:
        with self._lock:
            if self._loaders is None:
                self._loaders = self._plugins().loaders()
            return self._loaders

    @property
    def indexer(self) -> Indexer:
        return Indexer(
            self.corpus, self.vectors, self.embedder, self.loaders, self.folder / "index.lock",
            max_file_bytes=int(self.settings.index_max_file_mb * 1_000_000),
            chunk_tokens=self.settings.chunk_tokens, chunk_overlap=self.settings.chunk_overlap,
            follow_outside_links=self.settings.index_follow_outside_links,
            pace=self.budget.pace_background,
        )

    def index(self, folder: Path, callback: Callable[[Progress], None] | None = None,
              stop: threading.Event | None = None) -> Summary:
        """In a thread of its own at background priority: an answer the user is waiting for,
        in this process or another, keeps the cores (engine/cpu_budget.py)."""
        stop = stop or threading.Event()
        indexer = self.indexer
        return in_background_thread(lambda: indexer.index_folder(folder, callback, stop), "indexing", stop)

    def watch(self, folder: Path, on_summary: Callable[[Summary], None],
              callback: Callable[[Progress], None] | None = None,
              stop: threading.Event | None = None, debounce_ms: int = 1500) -> None:
        """Index `folder`, then again after every burst of changes, until `stop` is set."""
        import watchfiles

        folder = Path(folder).expanduser().resolve()
        folder_id = self.corpus.add_folder(folder)
        self.corpus.set_watch(folder_id, True)
        first = True
        try:
            # The first full pass runs once the watcher is up (the first empty yield), so a change
            # made while it runs is seen afterwards instead of lost.
            for changes in watchfiles.watch(folder, debounce=debounce_ms, stop_event=stop,
                                            raise_interrupt=False, yield_on_timeout=True,
                                            rust_timeout=200):
                if first or changes:
                    first = False
                    on_summary(self.index(folder, callback, stop))
        finally:
            self.corpus.set_watch(folder_id, False)

    def warm_up(self) -> None:
        """Load the embedding model and open the vector store ahead of the first question
        (seconds of torch and Chroma start-up that would otherwise delay the first answer)."""
        self.embedder.embed(["warm up"])
        self.vectors.count()

    def set_private(self, folder: Path, private: bool) -> None:
        """A private folder's passages never go to an untrusted remote backend."""
        self.corpus.set_private(self.corpus.folder(folder.expanduser().resolve())["id"], private)

    def forget(self, folder: Path) -> int:
        return self.indexer.forget_folder(folder)

    def rebuild(self, callback: Callable[[Progress], None] | None = None) -> int:
        """Recreate the vector store from the database: chunks, then long-term memories."""
        rebuilt = self.indexer.rebuild(callback)
        from engine.longterm import memory_vectors
        from memory.longterm import LongTermMemory

        vectors = memory_vectors(self.settings, self.folder)
        LongTermMemory(self.corpus.store, lambda: vectors, self.embedder).rebuild()
        return rebuilt

    def folders(self) -> list[dict[str, Any]]:
        return self.corpus.folders()

    def outdated_folders(self) -> list[str]:
        """Folders whose chunks were cut before the chunker changed (their next index cuts them again)."""
        current = chunking(self.embedder, self.settings.chunk_tokens, self.settings.chunk_overlap)
        return outdated_folders(self.corpus, current)

    def skipped_files(self, folder_id: int) -> list[dict[str, Any]]:
        """The files of a folder that were skipped or failed, each with its reason."""
        return self.corpus.skipped_files(folder_id)

    def active_folder_ids(self, conversation_id: int | None) -> list[int]:
        """The folders this conversation searches."""
        return self.corpus.active_folder_ids(conversation_id)

    def set_folder_active(self, conversation_id: int, folder_id: int, active: bool) -> None:
        """Whether this conversation searches the folder (kept per conversation)."""
        self.corpus.set_folder_active(conversation_id, folder_id, active)

    def searchable(self, conversation_id: int | None) -> list[int]:
        """Active folders of the conversation that have chunks; [] means: do not search."""
        active = set(self.corpus.active_folder_ids(conversation_id))
        return [i for i in self.corpus.folder_ids_with_chunks() if i in active]

    def state(self, conversation_id: int | None) -> list[Any]:
        """What a search for this conversation depends on besides the question: its folders and
        their content's version (SQLite only: nothing embedded, Chroma not opened)."""
        folder_ids = self.searchable(conversation_id)
        return [folder_ids, self.corpus.version()] if folder_ids and self.settings.rag_top_k > 0 else []

    def search(self, question: str, conversation_id: int | None, attrs: dict[str, Any] | None = None,
               ) -> list[Passage]:
        """The passages relevant to `question` (`rag_min_similarity`); `attrs` (a trace's) gets how
        many were found before that floor."""
        folder_ids = self.searchable(conversation_id)
        if not folder_ids or self.settings.rag_top_k <= 0:
            return []
        return retrieve(self.corpus, self.vectors, self.embedder, question, folder_ids,
                        k=self.settings.rag_top_k, min_similarity=self.settings.rag_min_similarity,
                        attrs=attrs)

    def indexed_file(self, requested: str) -> Path:
        """The file `requested` names (absolute, or relative to an indexed folder), only if the
        index holds it: what the index skipped or never saw (.env, git-ignored, binary, outside
        every folder) is refused, and so is a file whose links now lead out of its folder. For
        tools that read around a passage; a NotFoundError says why not."""
        given = Path(requested).expanduser()
        if not requested.strip():
            raise NotFoundError("No path was given.", hint="Use a path from a search result.")
        for folder in self.corpus.folders():
            root = Path(folder["path"])
            # abspath: ".." is resolved in the text, links are not (they are checked below).
            asked = Path(os.path.abspath(given if given.is_absolute() else root / given))
            if not asked.is_relative_to(root):
                continue
            row = self.corpus.files(folder["id"]).get(asked.relative_to(root).as_posix())
            if row is None or row["state"] != "indexed":
                why = f" (skipped: {row['reason']})" if row is not None and row["reason"] else ""
                raise NotFoundError(f"{requested} is not in the index{why}: only indexed files are read.",
                                    hint="Use a path from a search result.")
            real = asked.resolve()
            if not real.is_relative_to(root.resolve()):
                raise NotFoundError(f"{requested} leads outside its indexed folder (a symbolic link).")
            return real
        raise NotFoundError(f"{requested} is not inside an indexed folder.",
                            hint="`assistant folders` lists them; use a path from a search result.")

    def passages(self, chunk_ids: list[int]) -> list[Passage]:
        """Passages for chunk ids recorded on a response, in that order (deleted ones left out)."""
        rows = self.corpus.chunk_rows(chunk_ids)
        return [Passage.from_row(r) for i in chunk_ids if (r := rows.get(i))]


def open_knowledge(settings: Settings, plugins: PluginHost | None = None) -> Knowledge:
    """For the CLI: the indexed folders of the data folder, outside any event loop; `plugins`:
    the process's plugin manager."""
    from engine.paths import database_file

    return Knowledge(settings, Store(database_file()), plugins=(lambda: plugins) if plugins else None)
