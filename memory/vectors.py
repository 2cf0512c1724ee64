"""Vectors in Chroma: a PersistentClient in the data folder, or a Chroma server by URL.

Chroma only holds vectors keyed by chunk id (with the folder id, for filtering); the text and
everything else stays in SQLite, so the collection can always be rebuilt.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from memory.errors import StoreError

COLLECTION = "chunks"
log = logging.getLogger(__name__)


class VectorStoreError(StoreError):
    """Chroma could not be opened, read or written."""


class VectorIndex:
    def __init__(
        self, path: Path | None = None, url: str | None = None, collection: str = COLLECTION
    ) -> None:
        self.where = url or str(path)
        self.name = collection
        # The vectors the last `similarities` read (a retrieval's candidates), as read then, so the
        # answer's attribution gets its passages' vectors without reading them again.
        self._last_read: dict[int, Any] = {}
        os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
        try:
            import chromadb
            from chromadb.config import Settings

            settings = Settings(anonymized_telemetry=False, allow_reset=True)
            if url:
                parts = urlsplit(url if "://" in url else f"http://{url}")
                self.client = chromadb.HttpClient(
                    host=parts.hostname or "localhost", port=parts.port or 8000,
                    ssl=parts.scheme == "https", settings=settings,
                )
            else:
                assert path is not None
                path.mkdir(parents=True, exist_ok=True, mode=0o700)
                self.client = chromadb.PersistentClient(path=str(path), settings=settings)
            self.collection = self._collection()
            self.max_batch = self.client.get_max_batch_size()
        except Exception as exc:  # chromadb raises many kinds; all mean "cannot use it"
            raise VectorStoreError(
                f"The vector store at {self.where} cannot be opened: {exc}.",
                hint="`assistant index --rebuild` recreates it from the database.",
            ) from exc

    def _collection(self) -> Any:
        return self.client.get_or_create_collection(
            self.name, embedding_function=None, metadata={"hnsw:space": "cosine"}
        )

    def _call(self, what: str, method: str, *args: Any, **kwargs: Any) -> Any:
        """`method` of the collection; once more on a fresh handle when the collection was
        recreated meanwhile (`index --rebuild` in another process or object)."""
        for attempt in (1, 2):
            try:
                return getattr(self.collection, method)(*args, **kwargs)
            except Exception as exc:
                if attempt == 1 and "does not exist" in str(exc):
                    self.collection = self._collection()
                    continue
                raise VectorStoreError(f"The vector store at {self.where} failed to {what}: {exc}.") from exc

    def add(self, ids: list[int], vectors: list[list[float]], folder_ids: list[int] | None = None) -> None:
        self._last_read = {}
        for start in range(0, len(ids), self.max_batch):
            end = start + self.max_batch
            self._call(
                "store vectors",
                "upsert",
                ids=[str(i) for i in ids[start:end]],
                embeddings=vectors[start:end],
                metadatas=[{"folder_id": f} for f in folder_ids[start:end]] if folder_ids else None,
            )

    def delete(self, ids: list[int]) -> None:
        self._last_read = {}
        for start in range(0, len(ids), self.max_batch):
            self._call("delete vectors", "delete",
                       ids=[str(i) for i in ids[start : start + self.max_batch]])

    def query(self, vector: list[float], k: int, folder_ids: list[int] | None) -> list[int]:
        """Ids of the `k` nearest chunks within the given folders (None: all), nearest first."""
        if folder_ids == [] or k <= 0:
            return []
        # A metadata filter makes Chroma search far slower (~200 ms over 100k vectors here), so
        # it is only used when some folders are really left out.
        where = None
        if folder_ids is not None:
            where = {"folder_id": {"$in": folder_ids}}
        count = self.count()
        if count == 0:
            return []
        result = self._call("search", "query", query_embeddings=[vector],
                            n_results=min(k, count), where=where, include=[])
        return [int(i) for i in result["ids"][0]]

    def similarities(self, vector: list[float], ids: list[int]) -> dict[int, float]:
        """Cosine similarity of `vector` to the stored vector of each of `ids` (both unit length,
        so a dot product); ids without a vector are left out."""
        if not ids:
            return {}
        import numpy

        try:
            result = self._call("read vectors", "get", ids=[str(i) for i in ids], include=["embeddings"])
        except VectorStoreError:
            # Another process indexing the folder may be replacing these very vectors (Chroma:
            # "Error finding id"); the scores only refine a ranking, so go on without them.
            log.warning("Vectors being rewritten could not be read; ranking without their scores",
                        exc_info=True)
            return {}
        if not result["ids"]:
            return {}
        stored = numpy.asarray(result["embeddings"], dtype=numpy.float32)
        self._last_read = dict(zip((int(i) for i in result["ids"]), stored, strict=True))
        scores = stored @ numpy.asarray(vector, dtype=numpy.float32)
        return {int(i): float(s) for i, s in zip(result["ids"], scores, strict=True)}

    def vectors(self, ids: list[int]) -> dict[int, list[float]]:
        """The stored vector of each of `ids` (ids without one are left out): as the last
        `similarities` read them when it read them all (the passages an answer was given, read
        with their text), else from the store."""
        if not ids:
            return {}
        last = self._last_read
        if all(i in last for i in ids):
            return {i: last[i].tolist() for i in ids}
        result = self._call("read vectors", "get", ids=[str(i) for i in ids], include=["embeddings"])
        pairs = zip(result["ids"], result["embeddings"], strict=True)
        return {int(i): [float(x) for x in v] for i, v in pairs}

    def nearest(self, vector: list[float], k: int) -> list[tuple[int, float]]:
        """(id, cosine similarity) of the `k` nearest vectors, nearest first."""
        count = self.count()
        if count == 0 or k <= 0:
            return []
        result = self._call("search", "query", query_embeddings=[vector],
                            n_results=min(k, count), include=["distances"])
        return [(int(i), 1.0 - d) for i, d in zip(result["ids"][0], result["distances"][0], strict=True)]

    def ids(self) -> set[int]:
        result = self._call("list vectors", "get", include=[])
        return {int(i) for i in result["ids"]}

    def count(self) -> int:
        return self._call("count vectors", "count")

    def reset(self) -> None:
        """Drop every vector (for a rebuild)."""
        self._last_read = {}
        try:
            self.client.delete_collection(self.name)
        except Exception as exc:
            if "does not exist" not in str(exc):
                raise VectorStoreError(
                    f"The vector store at {self.where} failed to drop the collection: {exc}.") from exc
        self.collection = self._collection()
