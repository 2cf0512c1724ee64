"""Hybrid retrieval: SQLite FTS5 (BM25) and Chroma vectors, fused by reciprocal rank."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import PurePosixPath

from memory.corpus import Corpus
from memory.embedder import Embedder
from memory.vectors import VectorIndex

RRF_K = 60  # the usual constant: ranks matter, raw scores from the two searches never meet


@dataclass(frozen=True)
class Passage:
    chunk_id: int
    folder: str
    file: str  # relative to the folder
    start_line: int
    end_line: int
    page: int | None
    heading: str | None
    text: str
    score: float
    private: bool = False  # from a folder marked private: must not leave the machine

    @classmethod
    def from_row(cls, row: dict, score: float = 0.0) -> Passage:
        """From a `Corpus.chunk_rows()` row."""
        return cls(row["id"], row["folder"], row["file"], row["start_line"], row["end_line"], row["page"],
                   row["heading"], row["text"], score, bool(row["private"]))

    @property
    def path(self) -> str:
        return str(PurePosixPath(self.folder) / self.file)

    def real_path_inside(self) -> bool:
        """Whether the file, with every symlink resolved, is still inside its indexed folder (a link
        swapped in after indexing could point anywhere: such a source is not opened)."""
        folder = os.path.realpath(self.folder)
        return os.path.commonpath([folder, os.path.realpath(self.path)]) == folder

    @property
    def location(self) -> str:
        """file:line-line, or file page N, line-line: where a citation points."""
        lines = str(self.start_line)
        if self.end_line != self.start_line:
            lines += f"-{self.end_line}"
        if self.page is not None:
            return f"{self.path} page {self.page}, line{'s' if '-' in lines else ''} {lines}"
        return f"{self.path}:{lines}"


def fuse(rankings: list[list[int]], k: int) -> list[tuple[int, float]]:
    """Reciprocal rank fusion of several rankings of ids; the best `k` with their scores."""
    scores: dict[int, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking):
            scores[item] = scores.get(item, 0.0) + 1.0 / (RRF_K + rank + 1)
    return sorted(scores.items(), key=lambda pair: -pair[1])[:k]


def retrieve(
    corpus: Corpus, vectors: VectorIndex, embedder: Embedder, query: str, folder_ids: list[int],
    k: int = 5, candidates: int = 30,
) -> list[Passage]:
    if not folder_ids or k <= 0:
        return []
    lexical = corpus.search_text(query, folder_ids, candidates)
    every_folder = set(folder_ids) >= set(corpus.folder_ids_with_chunks())
    semantic = vectors.query(embedder.embed([query])[0], candidates, None if every_folder else folder_ids)
    best = fuse([lexical, semantic], k)
    rows = corpus.chunk_rows([chunk_id for chunk_id, _ in best])
    return [
        Passage.from_row(r, score)
        for chunk_id, score in best
        if (r := rows.get(chunk_id)) is not None  # a chunk deleted meanwhile is simply left out
    ]
