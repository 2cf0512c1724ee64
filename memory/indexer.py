"""Index a folder: scan, load, chunk, embed, store; incrementally, resumably, one writer at a time.

Each file moves through states in SQLite: its chunks are written first with state 'embedding',
their vectors are stored in Chroma, then the file becomes 'indexed'. A run that dies anywhere
(Ctrl-C, kill -9, power loss) leaves files in 'embedding'; the next run's `reconcile()` embeds
every chunk that has no vector and deletes vectors whose chunk no longer exists, so SQLite and
Chroma always agree again. A rebuild records that it started in SQLite before it drops a vector,
so one killed half-way is finished by the next run too.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import filelock

from memory.chunker import CHUNKER_VERSION, TokenCounter, chunk_lines
from memory.corpus import Corpus
from memory.documents import Chunk, Line, LoaderError
from memory.embedder import Embedder
from memory.errors import AssistantError
from memory.scanner import scan
from memory.vectors import VectorIndex

BATCH_CHUNKS = 256  # chunks embedded and stored together: big enough for speed, small enough for flat memory
# Chunks embedded between two calls to `pace`: how long an answer that starts meanwhile shares the
# cores with indexing (~0.3 s of embedding on 2 cores), and one batch of the embedder's own.
PACE_CHUNKS = 32
# index_meta key while every vector is being redone: "reset" (drop them all first), then "refill"
# (dropped; embed what is missing). Absent: no rebuild in progress.
REBUILD_KEY = "vector_rebuild"
# index_meta key per folder: how its chunks were cut (`Indexer.chunking`). A folder cut another way
# (an older chunker, other sizes, chunks counted otherwise) is re-chunked whole on its next index.
CHUNKING_KEY = "chunking:{folder_id}"


class LoaderLookup(Protocol):
    def for_path(self, path: Path) -> tuple[Callable[[Path], list[Line]], str] | None: ...

    def kind_of(self, path: Path) -> str | None: ...


class IndexLockedError(AssistantError):
    """Another process is indexing and the caller chose not to wait."""


@dataclass
class Progress:
    folder: str
    files_total: int = 0
    files_done: int = 0
    chunks_done: int = 0
    current: str = ""
    started: float = field(default_factory=time.monotonic)
    waiting_for: str | None = None  # who holds the index lock, while we wait for it

    @property
    def elapsed(self) -> float:
        return max(time.monotonic() - self.started, 1e-9)

    @property
    def files_per_s(self) -> float:
        return self.files_done / self.elapsed

    @property
    def chunks_per_s(self) -> float:
        return self.chunks_done / self.elapsed

    @property
    def eta_s(self) -> float | None:
        if not self.files_done:
            return None
        return (self.files_total - self.files_done) / self.files_per_s


@dataclass
class Summary:
    folder: str
    files: int = 0  # supported files seen
    indexed: int = 0  # new or changed files (re)embedded
    unchanged: int = 0
    renamed: int = 0
    removed: int = 0
    skipped: int = 0
    failed: int = 0
    chunks_added: int = 0
    chunks_removed: int = 0
    resumed_chunks: int = 0  # chunks re-embedded from an interrupted run
    rechunked: bool = False  # every file was chunked again: its chunks had been cut another way
    seconds: float = 0.0
    skips: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "skips": [list(s) for s in self.skips]}


ProgressCallback = Callable[[Progress], None]


class Indexer:
    def __init__(
        self,
        corpus: Corpus,
        vectors: VectorIndex,
        embedder: Embedder,
        loaders: LoaderLookup,
        lock_path: Path,
        *,
        max_file_bytes: int = 20_000_000,
        chunk_tokens: int = 200,
        chunk_overlap: int = 40,
        follow_outside_links: bool = False,
        pace: Callable[[], int | None] | None = None,
        count_tokens: TokenCounter | None = None,
    ) -> None:
        self.corpus = corpus
        self.vectors = vectors
        self.embedder = embedder
        self.loaders = loaders
        self.lock_path = lock_path
        self.max_file_bytes = max_file_bytes
        self.chunk_tokens = chunk_tokens
        self.chunk_overlap = chunk_overlap
        self.follow_outside_links = follow_outside_links
        # Called between small batches of embedding: it may wait (an answer is streaming: the
        # user's wait comes first) and returns the torch threads to use now (None: as they are).
        self.pace = pace
        # Chunks are counted in the embedder's own word pieces and kept within what it reads
        # (the word estimate undercounted code: 128 of 794 chunks of Textual's docs were cut off
        # unseen). Another counter (benchmarks) sizes chunks by `chunk_tokens` alone.
        self.count_tokens = count_tokens

    @property
    def chunking(self) -> str:
        """How chunks are cut now, as recorded per folder (CHUNKING_KEY)."""
        return chunking(self.embedder, self.chunk_tokens, self.chunk_overlap, self.count_tokens)

    def _chunk_budget(self) -> int:
        return chunk_budget(self.embedder, self.chunk_tokens, self.count_tokens)

    def chunk(self, lines: list[Line], kind: str) -> list[Chunk]:
        """A loaded file's chunks, as indexing cuts them."""
        return chunk_lines(lines, kind, self._chunk_budget(), self.chunk_overlap,
                           self.count_tokens or self.embedder.count_tokens)

    def outdated_folders(self) -> list[str]:
        return outdated_folders(self.corpus, self.chunking)

    # the single writer ---------------------------------------------------------------------------

    def writer(self, progress: Progress | None = None, callback: ProgressCallback | None = None,
               wait: bool = True) -> _WriterLock:
        return _WriterLock(self.lock_path, progress, callback, wait)

    # public operations ---------------------------------------------------------------------------

    def index_folder(
        self,
        root: Path,
        callback: ProgressCallback | None = None,
        stop: threading.Event | None = None,
        wait: bool = True,
    ) -> Summary:
        root = Path(root).expanduser().resolve()
        if not root.is_dir():
            raise AssistantError(f"{root} is not a folder.", hint="Give the path of a folder to index.")
        progress = Progress(str(root))
        summary = Summary(str(root))
        started = time.monotonic()
        with self.writer(progress, callback, wait):
            summary.resumed_chunks = self.reconcile()
            folder_id = self.corpus.add_folder(root)
            known = self.corpus.files(folder_id)
            chunking = self.chunking
            summary.rechunked = bool(known) and self.corpus.meta(
                CHUNKING_KEY.format(folder_id=folder_id)) != chunking
            found = list(scan(root, self.loaders.kind_of, self.max_file_bytes, self.follow_outside_links))
            progress.files_total = len(found)
            seen: set[str] = set()
            batch = _Batch()
            renames = {} if summary.rechunked else self._renames(known, found)
            for result in found:
                if stop is not None and stop.is_set():
                    break
                seen.add(result.relative)
                progress.current = result.relative
                self._index_file(folder_id, result, known.get(result.relative), renames, batch, summary,
                                 summary.rechunked)
                if batch.chunks >= BATCH_CHUNKS:
                    self._flush(folder_id, batch, summary, progress)
                progress.files_done += 1
                if callback:
                    callback(progress)
            self._flush(folder_id, batch, summary, progress)
            if stop is None or not stop.is_set():
                for path in set(known) - seen - set(renames.values()):
                    self._drop(self.corpus.remove_file(folder_id, path), summary)
                    summary.removed += 1
                self.corpus.set_folder_indexed(folder_id)
                self.corpus.set_meta(CHUNKING_KEY.format(folder_id=folder_id), chunking)
            progress.files_done = progress.files_total
            if callback:
                callback(progress)
        summary.seconds = time.monotonic() - started
        return summary

    def forget_folder(self, root: Path) -> int:
        """Remove a folder from both stores (its files on disk are untouched); returns chunks removed."""
        folder = self.corpus.folder(Path(root).expanduser().resolve())
        with self.writer():
            ids = self.corpus.chunk_ids_of_folder(folder["id"])
            self.vectors.delete(ids)
            self.corpus.remove_folder(folder["id"])
            self.corpus.clear_meta(CHUNKING_KEY.format(folder_id=folder["id"]))
        return len(ids)

    def rebuild(self, callback: ProgressCallback | None = None) -> int:
        """Recreate every vector from the chunks in SQLite; returns the number embedded."""
        progress = Progress("all folders")
        with self.writer(progress, callback):
            # Recorded in SQLite before a vector is dropped: a rebuild killed at any point (kill -9
            # lost all 647 vectors for good, and the next run saw nothing to do) is finished by
            # the next run's reconcile() instead.
            self.corpus.set_meta(REBUILD_KEY, "reset")
            return self._repair(progress, callback)

    def reconcile(self) -> int:
        """Make Chroma agree with SQLite after an interrupted run or rebuild, a model change or lost
        vectors; returns the number of chunks embedded. Call with the writer lock held."""
        return self._repair()

    def _repair(self, progress: Progress | None = None, callback: ProgressCallback | None = None) -> int:
        """Finish a rebuild or model change in progress, then delete vectors whose chunk is gone
        and embed every chunk without a vector (whatever the files' states say). A chunk id is
        never reused and its text never changes, so a vector already stored is still right."""
        if self.corpus.meta("embedding_model") not in (None, self.embedder.model_id):
            self.corpus.set_meta(REBUILD_KEY, "reset")  # another model: every vector must be redone
        if self.corpus.meta(REBUILD_KEY) == "reset":
            self.corpus.mark_all_for_embedding()
            self.vectors.reset()
            self.corpus.set_meta(REBUILD_KEY, "refill")  # from here on, a killed run resumes
        self.corpus.set_meta("embedding_model", self.embedder.model_id)
        stored, chunks = self.vectors.ids(), self.corpus.chunk_ids()
        self.vectors.delete(sorted(stored - chunks))
        missing = sorted(chunks - stored)
        if progress is not None:
            progress.files_total = len(missing)
        for start in range(0, len(missing), BATCH_CHUNKS):
            rows = self.corpus.chunk_texts(missing[start : start + BATCH_CHUNKS])
            if rows:
                ids, folders, texts = zip(*rows, strict=True)
                self.vectors.add(list(ids), self._embed(list(texts)), list(folders))
            if progress is not None:
                progress.files_done = progress.chunks_done = min(start + BATCH_CHUNKS, len(missing))
                if callback:
                    callback(progress)
        self.corpus.mark_all_embedded()
        self.corpus.clear_meta(REBUILD_KEY)
        return len(missing)

    # steps -------------------------------------------------------------------------------------

    def _renames(self, known: dict[str, dict[str, Any]], found: list[Any]) -> dict[str, str]:
        """new path -> old path, for files that moved with the same content (no re-embedding)."""
        present = {r.relative for r in found}
        gone = {p: row for p, row in known.items() if p not in present and row["state"] == "indexed"}
        if not gone:
            return {}
        by_size: dict[int, list[str]] = {}
        for path, row in gone.items():
            by_size.setdefault(row["size"], []).append(path)
        renames: dict[str, str] = {}
        for result in found:
            if result.relative in known or result.skip_reason or result.size not in by_size:
                continue
            digest = _sha256(result.path)
            for old in by_size[result.size]:
                if gone[old]["sha256"] == digest and old not in renames.values():
                    renames[result.relative] = old
                    break
        return renames

    def _index_file(self, folder_id: int, result: Any, row: dict[str, Any] | None,
                    renames: dict[str, str], batch: _Batch, summary: Summary, rechunk: bool = False) -> None:
        if result.skip_reason:
            summary.skipped += 1
            summary.skips.append((result.relative, result.skip_reason))
            if row is None or row["state"] != "skipped" or row["reason"] != result.skip_reason:
                self._drop(self.corpus.mark_file(folder_id, result.relative, result.size,
                                                 result.mtime_ns, "skipped", result.skip_reason), summary)
            return
        summary.files += 1
        if result.relative in renames:
            self.corpus.rename_file(folder_id, renames[result.relative], result.relative, result.mtime_ns)
            summary.renamed += 1
            return
        # Fast path: same size and modification time as when it was indexed.
        same_stat = row is not None and (row["size"], row["mtime_ns"]) == (result.size, result.mtime_ns)
        if row and row["state"] == "indexed" and same_stat and not rechunk:
            summary.unchanged += 1
            return
        try:
            data = result.path.read_bytes()
        except OSError as exc:
            self._fail(folder_id, result, f"unreadable: {exc.strerror or exc}", summary)
            return
        digest = hashlib.sha256(data).hexdigest()
        if row and row["state"] == "indexed" and row["sha256"] == digest and not rechunk:  # touched only
            self.corpus.mark_file(folder_id, result.relative, result.size, result.mtime_ns, "indexed",
                                  sha256=digest)
            summary.unchanged += 1
            return
        loader, kind = self.loaders.for_path(result.path)  # type: ignore[misc]
        try:
            lines = loader(result.path)
        except LoaderError as exc:
            self._fail(folder_id, result, exc.message, summary)
            return
        chunks = self.chunk(lines, kind)
        if not chunks:
            self._drop(self.corpus.mark_file(folder_id, result.relative, result.size, result.mtime_ns,
                                             "skipped", "no text", sha256=digest), summary)
            summary.skipped += 1
            summary.skips.append((result.relative, "no text"))
            return
        batch.add(result.relative, result.size, result.mtime_ns, digest, chunks)

    def _fail(self, folder_id: int, result: Any, reason: str, summary: Summary) -> None:
        summary.failed += 1
        summary.skips.append((result.relative, reason))
        self._drop(self.corpus.mark_file(folder_id, result.relative, result.size, result.mtime_ns,
                                         "failed", reason), summary)

    def _drop(self, chunk_ids: list[int], summary: Summary) -> None:
        if chunk_ids:
            self.vectors.delete(chunk_ids)
            summary.chunks_removed += len(chunk_ids)

    def _flush(self, folder_id: int, batch: _Batch, summary: Summary, progress: Progress) -> None:
        if not batch.files:
            return
        removed, added = self.corpus.replace_chunks(folder_id, batch.files)
        self._drop(removed, summary)
        ids = [i for path, *_ in batch.files for i in added[path]]
        texts = [c.text for *_, chunks in batch.files for c in chunks]
        self.vectors.add(ids, self._embed(texts), [folder_id] * len(ids))
        self.corpus.mark_embedded(folder_id, added)
        summary.indexed += len(batch.files)
        summary.chunks_added += len(ids)
        progress.chunks_done += len(ids)
        batch.clear()


    def _embed(self, texts: list[str]) -> list[list[float]]:
        """The vectors of `texts`, embedded PACE_CHUNKS at a time with `pace` called before each
        slice. Sorted by length first, as the embedder does within one call, so slicing adds no
        padding; the vectors come back in the order of `texts`."""
        if self.pace is None:
            return self.embedder.embed(texts)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        vectors: list[list[float]] = [[] for _ in texts]
        for start in range(0, len(order), PACE_CHUNKS):
            part = order[start : start + PACE_CHUNKS]
            threads = self.pace()
            part_vectors = self.embedder.embed([texts[i] for i in part], threads=threads, job=len(texts))
            for i, vector in zip(part, part_vectors, strict=True):
                vectors[i] = vector
        return vectors


def chunk_budget(embedder: Embedder, chunk_tokens: int, count_tokens: TokenCounter | None = None) -> int:
    """Tokens per chunk: `chunk_tokens`, and never more than the embedder reads when counted by it."""
    return min(chunk_tokens, embedder.max_tokens) if count_tokens is None else chunk_tokens


def chunking(embedder: Embedder, chunk_tokens: int, chunk_overlap: int,
             count_tokens: TokenCounter | None = None) -> str:
    """How an indexer with these settings cuts chunks: recorded per folder (CHUNKING_KEY)."""
    counter = embedder.model_id if count_tokens is None else getattr(count_tokens, "__name__", "custom")
    return (f"chunker {CHUNKER_VERSION}, {chunk_budget(embedder, chunk_tokens, count_tokens)} tokens by "
            f"{counter}, overlap {chunk_overlap}")


def outdated_folders(corpus: Corpus, current: str) -> list[str]:
    """Folders with chunks cut otherwise than `current` (indexed before a chunker change, or with
    other chunk settings): their next index cuts them again; until then a chunk may be longer than
    the embedder reads. Reads SQLite only."""
    return [f["path"] for f in corpus.folders()
            if f["chunks"] and corpus.meta(CHUNKING_KEY.format(folder_id=f["id"])) != current]


class _Batch:
    def __init__(self) -> None:
        self.files: list[tuple[str, int, int, str, list[Chunk]]] = []
        self.chunks = 0

    def add(self, path: str, size: int, mtime_ns: int, digest: str, chunks: list[Chunk]) -> None:
        self.files.append((path, size, mtime_ns, digest, chunks))
        self.chunks += len(chunks)

    def clear(self) -> None:
        self.files, self.chunks = [], 0


class _WriterLock:
    """One indexer at a time across processes. A second one waits, saying who holds the lock."""

    def __init__(self, path: Path, progress: Progress | None, callback: ProgressCallback | None,
                 wait: bool) -> None:
        self.path, self.progress, self.callback, self.wait = path, progress, callback, wait
        self.lock = filelock.FileLock(str(path))
        self.info = path.with_suffix(".holder")

    def __enter__(self) -> None:
        try:
            self.lock.acquire(timeout=0)
        except filelock.Timeout:
            holder = self._holder()
            if not self.wait:
                raise IndexLockedError(f"The index is being written by {holder}.",
                                       hint="Wait for it to finish, or stop it.") from None
            if self.progress is not None:
                self.progress.waiting_for = holder
                if self.callback:
                    self.callback(self.progress)
            self.lock.acquire()
            if self.progress is not None:
                self.progress.waiting_for = None
                self.progress.started = time.monotonic()
        self.info.write_text(json.dumps({"pid": os.getpid(), "since": time.time()}))

    def __exit__(self, *exc: Any) -> None:
        self.lock.release()

    def _holder(self) -> str:
        try:
            pid = json.loads(self.info.read_text())["pid"]
            return f"another assistant process (pid {pid})"
        except (OSError, ValueError, KeyError):
            return "another assistant process"


def _sha256(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None
