"""Hybrid retrieval: SQLite FTS5 (BM25) and Chroma vectors, fused by reciprocal rank."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
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
    score: float  # reciprocal rank fusion: the order among the found, not how relevant they are
    private: bool = False  # from a folder marked private: must not leave the machine
    similarity: float | None = None  # cosine of the question's and the passage's embeddings

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
    k: int = 5, candidates: int = 30, min_similarity: float = -1.0, attrs: dict | None = None,
) -> list[Passage]:
    """The `k` best passages for `query` by fused rank, leaving out those whose embedding is less
    similar to the query's than `min_similarity`: fused ranks order what was found but say nothing
    of whether it is relevant (a question about Everest over pet notes still finds five). A chunk
    not embedded yet counts as least similar (-1: kept only without a floor). `attrs` (a trace's)
    gets how many chunks the two searches found and the best similarity among them."""
    if not folder_ids or k <= 0:
        return []
    lexical = corpus.search_text(query, folder_ids, candidates)
    every_folder = set(folder_ids) >= set(corpus.folder_ids_with_chunks())
    vector = embedder.embed([query])[0]
    semantic = vectors.query(vector, candidates, None if every_folder else folder_ids)
    fused = fuse([lexical, semantic], len(lexical) + len(semantic))
    # Every candidate's similarity, a word match too: a rare word may match an unrelated chunk.
    similarity = vectors.similarities(vector, [chunk_id for chunk_id, _ in fused])
    best = [(i, score) for i, score in fused if similarity.get(i, -1.0) >= min_similarity][:k]
    if attrs is not None:
        attrs.update(candidates=len(fused), best_similarity=round(max(similarity.values()), 3)
                     if similarity else None)
    rows = corpus.chunk_rows([chunk_id for chunk_id, _ in best])
    return [
        replace(Passage.from_row(r, score), similarity=similarity.get(chunk_id))
        for chunk_id, score in best
        if (r := rows.get(chunk_id)) is not None  # a chunk deleted meanwhile is simply left out
    ]
