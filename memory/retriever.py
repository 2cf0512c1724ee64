"""Hybrid retrieval: SQLite FTS5 (BM25) and Chroma vectors, fused (`Fusion`, measured in
docs/benchmarks.md, "Retrieval on a real corpus")."""

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
    score: float  # the fused score (memory.retriever.Fusion): the order among the found
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


def fuse(rankings: list[list[int]], k: int, weights: list[float] | None = None,
         rrf_k: int = RRF_K) -> list[tuple[int, float]]:
    """Reciprocal rank fusion of several rankings of ids (each weighted); the best `k` with their scores."""
    scores: dict[int, float] = {}
    for ranking, weight in zip(rankings, weights or [1.0] * len(rankings), strict=True):
        for rank, item in enumerate(ranking):
            scores[item] = scores.get(item, 0.0) + weight / (rrf_k + rank + 1)
    return sorted(scores.items(), key=lambda pair: -pair[1])[:k]


@dataclass(frozen=True)
class Fusion:
    """How the BM25 and the vector rankings become one.

    `mode` "rrf": weighted reciprocal rank fusion. "similarity": every candidate of either list
    ordered by its cosine to the question, plus a bonus for its BM25 rank (`lexical_bonus` /
    (`rrf_k` + rank)): the vectors judge, a word match breaks near-ties. `keep_semantic`: the
    vector list's first few are kept among the results whatever the other list says, so a strong
    hit only the vectors found is not pushed out by chunks both lists put halfway down.
    """

    mode: str = "rrf"
    depth: int = 30  # candidates from each search
    lexical_weight: float = 1.0
    semantic_weight: float = 1.0
    rrf_k: int = RRF_K
    lexical_bonus: float = 0.0
    keep_semantic: int = 0


EQUAL_RRF = Fusion()  # the fusion before it was measured on a real corpus
# Measured on Textual's docs (bench/bench_retrieval_eval.py, docs/benchmarks.md): equal RRF pushed
# a chunk the vectors ranked 1st (cosine 0.50) out of the top 5 because BM25 ranked it 59th, behind
# chunks both lists put around 10th. Led by the cosine, with a bonus of at most 1/11 for a BM25
# rank, right-file top 5 on questions in the user's own words went from 0.82 to 0.96 (with the
# 0.30 floor), keyword questions stayed at 1.00.
DEFAULT_FUSION = Fusion("similarity", depth=50, rrf_k=10, lexical_bonus=1.0)


def rank(lexical: list[int], semantic: list[int], similarity: dict[int, float],
         fusion: Fusion = DEFAULT_FUSION, k: int | None = None) -> list[tuple[int, float]]:
    """Candidate ids best first, with their fused score. `similarity`: each candidate's cosine to
    the question (a candidate without one counts as -1). With `k`, `keep_semantic` is applied
    for a result of `k` (the caller's floor should be applied first, see `retrieve`)."""
    lexical, semantic = lexical[: fusion.depth], semantic[: fusion.depth]
    if fusion.mode == "similarity":
        bonus = {item: fusion.lexical_bonus / (fusion.rrf_k + position + 1)
                 for position, item in enumerate(lexical)}
        scored = {item: similarity.get(item, -1.0) + bonus.get(item, 0.0)
                  for item in dict.fromkeys(lexical + semantic)}
        return sorted(scored.items(), key=lambda pair: -pair[1])
    if fusion.mode != "rrf":
        raise ValueError(f"unknown fusion mode {fusion.mode!r}")
    return fuse([lexical, semantic], len(lexical) + len(semantic),
                [fusion.lexical_weight, fusion.semantic_weight], fusion.rrf_k)


def top(ranked: list[tuple[int, float]], semantic: list[int], k: int,
        keep_semantic: int) -> list[tuple[int, float]]:
    """The first `k` of `ranked`, with the first `keep_semantic` of `semantic` that are in `ranked`
    among them (in place of the last others)."""
    best = ranked[:k]
    if keep_semantic <= 0:
        return best
    present = {item for item, _ in ranked}
    wanted = [item for item in semantic if item in present][:min(keep_semantic, k)]
    missing = [item for item in wanted if item not in {i for i, _ in best}]
    if not missing:
        return best
    scores = dict(ranked)
    kept = [pair for pair in best if pair[0] in wanted]
    others = [pair for pair in best if pair[0] not in wanted][: k - len(kept) - len(missing)]
    return sorted(kept + others + [(item, scores[item]) for item in missing], key=lambda pair: -pair[1])


def retrieve(
    corpus: Corpus, vectors: VectorIndex, embedder: Embedder, query: str, folder_ids: list[int],
    k: int = 5, candidates: int | None = None, min_similarity: float = -1.0, attrs: dict | None = None,
    fusion: Fusion = DEFAULT_FUSION,
) -> list[Passage]:
    """The `k` best passages for `query` by fused rank, leaving out those whose embedding is less
    similar to the query's than `min_similarity`: fused ranks order what was found but say nothing
    of whether it is relevant (a question about Everest over pet notes still finds five). A chunk
    not embedded yet counts as least similar (-1: kept only without a floor). `attrs` (a trace's)
    gets how many chunks the two searches found and the best similarity among them."""
    if not folder_ids or k <= 0:
        return []
    depth = candidates or fusion.depth
    lexical = corpus.search_text(query, folder_ids, depth)
    every_folder = set(folder_ids) >= set(corpus.folder_ids_with_chunks())
    vector = embedder.embed([query])[0]
    semantic = vectors.query(vector, depth, None if every_folder else folder_ids)
    # Every candidate's similarity, a word match too: a rare word may match an unrelated chunk.
    similarity = vectors.similarities(vector, list(dict.fromkeys(lexical + semantic)))
    fused = rank(lexical, semantic, similarity, replace(fusion, depth=depth))
    relevant = [(i, score) for i, score in fused if similarity.get(i, -1.0) >= min_similarity]
    best = top(relevant, semantic, k, fusion.keep_semantic)
    if attrs is not None:
        attrs.update(candidates=len(fused), best_similarity=round(max(similarity.values()), 3)
                     if similarity else None)
    rows = corpus.chunk_rows([chunk_id for chunk_id, _ in best])
    return [
        replace(Passage.from_row(r, score), similarity=similarity.get(chunk_id))
        for chunk_id, score in best
        if (r := rows.get(chunk_id)) is not None  # a chunk deleted meanwhile is simply left out
    ]
