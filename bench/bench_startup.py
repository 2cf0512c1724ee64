"""Start-up benchmarks (issue 20), side by side in one run, interleaved rounds, medians.

1. A response cache hit over an indexed folder: in-process (`Engine.ask` end to end, warm engine)
   and as a whole `assistant ask` process (launch to exit), idle and while indexing.
2. A fresh `assistant ask --no-cache -t 0` with an indexed folder against the same with no folder at
   all: time from launch to the first token on stdout (idle); and its floor: the no-folder time plus
   raw llama-cpp-python evaluating the folder prompt's extra tokens, measured in the same round.
3. Launching the `assistant` TUI until its prompt is drawn and a typed word shows in it, against a
   bare Textual app with one TextArea (bench/bare_textual.py), idle and while indexing.

"While indexing" is another process re-embedding a generated notes folder (bench/make_corpus.py,
`assistant index --rebuild` in a loop, its own data folder), so the question's own index is not
changed under it and a hit stays a hit.

    python bench/bench_startup.py [--rounds 5] [--notes 300] [--write docs/benchmarks.md] [--label before]
    python bench/bench_startup.py --work DIR --launch-only --rounds 10   # only the idle launch rows
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
from bench_foundation import env, machine  # noqa: E402
from corpora import TEXTUAL_DOCS  # noqa: E402
from sections import write_section  # noqa: E402
from terminal import Terminal  # noqa: E402

ASSISTANT = str(Path(sys.executable).with_name("assistant"))
CORPUS = TEXTUAL_DOCS / "docs"
QUESTION = "How do I make a widget scroll?"
MARKER = "Ask anything"
TYPED = "zqxv"
ASK = ("-t", "0", "--seed", "42", "--max-tokens", "24")


# helpers -----------------------------------------------------------------------------------------

def run_assistant(home: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([ASSISTANT, *args], env=env(ASSISTANT_HOME=home), capture_output=True,
                          text=True, check=check)


def first_token(home: str, *args: str, states: bool = True) -> tuple[float, float]:
    """(ms from launch to the first byte on stdout, ms to exit) of `assistant ask ...`; with
    `states` off, no model state on disk spares evaluating a prompt asked before."""
    start = time.perf_counter()
    extra = {} if states else {"ASSISTANT_STATE_CACHE_DISK_MB": "0"}
    child = subprocess.Popen([ASSISTANT, "ask", "--no-stats", *args], env=env(ASSISTANT_HOME=home, **extra),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert child.stdout is not None
    first = child.stdout.read(1)
    first_at = time.perf_counter()
    rest, err = child.communicate()
    done = time.perf_counter()
    assert child.returncode == 0 and (first + rest).strip(), err.decode()
    return (first_at - start) * 1000, (done - start) * 1000


def time_to_input(command: str) -> tuple[float, float]:
    """(ms until the prompt is drawn, ms until a word typed then shows in it) for a TUI launched in
    a real terminal."""
    with Terminal(command) as terminal:
        terminal.wait(lambda screen: MARKER in screen, 60, f"{command} drawing the prompt")
        drawn = time.perf_counter()
        terminal.type(TYPED)
        terminal.wait(lambda screen: TYPED in screen, 60, f"{command} echoing what was typed")
        return (drawn - terminal.started) * 1000, (time.perf_counter() - terminal.started) * 1000


@contextlib.contextmanager
def indexing(home: str) -> Iterator[None]:
    """Another process re-embeds the folder indexed in `home` over and over until the block ends."""
    stop = threading.Event()
    children: list[subprocess.Popen] = []

    def loop() -> None:
        while not stop.is_set():
            child = subprocess.Popen([ASSISTANT, "index", "--rebuild"], env=env(ASSISTANT_HOME=home),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            children.append(child)
            child.wait()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    time.sleep(3)  # past its start-up: embedding
    try:
        yield
    finally:
        stop.set()
        for child in children:
            if child.poll() is None:
                child.terminate()
        thread.join()


QUERY_VECTOR = """
import sys, time
start = time.perf_counter()
from memory.embedder import Embedder
embedder = Embedder()
embed = embedder.embed if sys.argv[1] == "numpy" else embedder.embed_with_torch
embed(["How do I make a widget scroll?"])
first = time.perf_counter() - start
print(first * 1000, "torch" in sys.modules)
"""


CHROMA_OPEN = """
import sys, time
start = time.perf_counter()
import chromadb
from chromadb.config import Settings
client = chromadb.PersistentClient(path=sys.argv[1], settings=Settings(anonymized_telemetry=False))
client.get_collection("chunks").count()
print((time.perf_counter() - start) * 1000)
"""


# Raw llama-cpp-python (bench/raw_llama.py's settings) evaluating prompts of the lengths the two
# answers had: what evaluating the passages costs on this machine, whatever the app does.
PROMPT_EVAL = """
import json, sys, time
import llama_cpp
from engine.backends.local import default_threads
from engine.models import default_model_path
llm = llama_cpp.Llama(model_path=str(default_model_path()), n_ctx=4096, n_threads=default_threads(),
                      n_batch=512, flash_attn=True, n_gpu_layers=0, verbose=False)
filler = llm.tokenize(b"The ScrollView class will do most of the work, but we need a virtual size. " * 200)
times = {}
for n in map(int, sys.argv[1:]):
    runs = []
    for _ in range(3):
        llm.reset()
        start = time.perf_counter()
        llm.eval(filler[:n])
        runs.append((time.perf_counter() - start) * 1000)
    times[n] = sorted(runs)[1]
print(json.dumps(times))
"""


def prompt_tokens(home: str) -> int:
    """Prompt tokens of the last answer `home` generated (not a cache hit)."""
    db = sqlite3.connect(Path(home) / "assistant.db")
    return db.execute("SELECT input_tokens FROM responses WHERE cached_from IS NULL AND input_tokens > 0"
                      " ORDER BY id DESC").fetchone()[0]


def prompt_eval(*lengths: int) -> list[float]:
    """ms raw llama-cpp-python takes to evaluate a prompt of each length (median of 3)."""
    done = subprocess.run([sys.executable, "-c", PROMPT_EVAL, *map(str, lengths)], env=env(), capture_output=True,
                          text=True, check=True, cwd=HERE.parent)
    times = json.loads(done.stdout)
    return [times[str(n)] for n in lengths]


def chroma_open(home: str) -> float:
    """ms from a fresh interpreter to Chroma's collection of `home`, opened: what any question over
    folders pays in a new process before it can look for a passage (Chroma's own start-up)."""
    done = subprocess.run([sys.executable, "-c", CHROMA_OPEN, str(Path(home) / "chroma")], env=env(),
                          capture_output=True, text=True, check=True)
    return float(done.stdout)


def query_vector(runtime: str) -> tuple[float, bool]:
    """(ms from a fresh interpreter to one question's vector, whether torch got imported)."""
    done = subprocess.run([sys.executable, "-c", QUERY_VECTOR, runtime], env=env(), capture_output=True,
                          text=True, check=True, cwd=HERE.parent)
    ms, torch = done.stdout.split()
    return float(ms), torch == "True"


def with_sources(home: str) -> str:
    """QUESTION with the passages its last answer in `home` retrieved pasted in front: a prompt
    as long as retrieval makes it, for a data folder with no folder at all."""
    db = sqlite3.connect(Path(home) / "assistant.db")
    ids = json.loads(db.execute("SELECT retrieved_chunk_ids FROM responses WHERE retrieved_chunk_ids IS NOT NULL"
                                " ORDER BY id DESC").fetchone()[0])
    texts = dict(db.execute(f"SELECT id, text FROM chunks WHERE id IN ({','.join('?' * len(ids))})", ids))
    return "\n\n".join(texts[i] for i in ids if i in texts) + "\n\n" + QUESTION


def med(values: list[float]) -> float:
    return statistics.median(values)


# the rows ----------------------------------------------------------------------------------------

async def hits_in_process(home: str, rounds: int) -> list[float]:
    os.environ["ASSISTANT_HOME"] = home
    from engine import Engine, load_settings

    engine = Engine(load_settings().replace(temperature=0.0, seed=42, max_tokens=24))
    try:
        events = [e async for e in engine.ask(QUESTION)]  # the entry (or a hit on it)
        times = []
        for _ in range(rounds):
            start = time.perf_counter()
            events = [e async for e in engine.ask(QUESTION)]
            times.append((time.perf_counter() - start) * 1000)
            assert events[-1].cached_from, "expected a cache hit"
        return times
    finally:
        await engine.close()


def hits_whole_process(home: str, rounds: int) -> tuple[list[float], list[float]]:
    firsts, totals = [], []
    for _ in range(rounds):
        first, total = first_token(home, "-t", "0", "--seed", "42", "--max-tokens", "24", QUESTION)
        firsts.append(first)
        totals.append(total)
    return firsts, totals


def prepare(work: Path, notes_count: int) -> None:
    """The folders and data folders the rounds use (slow: torch embeds two corpora), made once."""
    if (work / "prepared").exists():
        return
    notes = work / "notes"
    subprocess.run([sys.executable, str(HERE / "make_corpus.py"), str(notes), "--files", str(notes_count)],
                   check=True, capture_output=True)
    run_assistant(str(work / "rag"), "index", str(CORPUS))
    run_assistant(str(work / "busy"), "index", str(notes))
    # Entries and first runs (model hash, database, byte-compiled files) before anything is timed.
    first_token(str(work / "rag"), *ASK, QUESTION)
    first_token(str(work / "plain"), *ASK, QUESTION)
    (work / "prepared").touch()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--notes", type=int, default=300, help="notes the busy indexer re-embeds")
    parser.add_argument("--work", type=Path, help="reuse this folder's corpora and data folders")
    parser.add_argument("--prepare-only", action="store_true",
                        help="only make --work ready (run it outside an exclusive CPU lock)")
    parser.add_argument("--launch-only", action="store_true",
                        help="only the idle launch rows (ours vs bare Textual), printed: for iterating on start-up")
    parser.add_argument("--write", type=Path)
    parser.add_argument("--label", default="after", help="which table of the section this run fills")
    args = parser.parse_args()
    if not CORPUS.is_dir():
        sys.exit(f"{CORPUS} is missing: the benchmark needs the shared textual-docs corpus.")
    rounds = args.rounds
    subprocess.run([sys.executable, "-m", "compileall", "-q", *(str(HERE.parent / p) for p in
                    ("app", "engine", "memory", "plugins"))], check=True, capture_output=True)
    work = args.work or Path(tempfile.mkdtemp(prefix="startup-"))
    work.mkdir(parents=True, exist_ok=True)
    prepare(work, args.notes)
    if args.prepare_only:
        return
    rag_home, plain_home = str(work / "rag"), str(work / "plain")
    ask = ASK
    long_question = with_sources(rag_home)
    loads: list[str] = []
    r: dict[str, list[float]] = {k: [] for k in (
        "hit_in", "hit_first", "hit_total", "rag_first", "plain_first", "plain_long_first", "ours_drawn", "ours_input",
        "bare_drawn", "bare_input", "busy_hit_in", "busy_hit_first", "busy_hit_total",
        "busy_ours_drawn", "busy_ours_input", "busy_bare_drawn", "busy_bare_input", "vector_numpy",
        "vector_torch", "chroma_open", "floor_first", "rag_tokens", "plain_tokens")}
    # tmux starts the command in its server's environment, not this one: what it needs is named.
    pythonpath = f"PYTHONPATH={os.environ['PYTHONPATH']} " if os.environ.get("PYTHONPATH") else ""
    tui = f"env {pythonpath}HF_HUB_OFFLINE=1 ASSISTANT_HOME={rag_home} {ASSISTANT}"
    bare = f"{sys.executable} {HERE / 'bare_textual.py'}"

    if args.launch_only:
        launch_only(tui, bare, rounds)
        return
    loads.append(Path("/proc/loadavg").read_text().split()[0])
    for _ in range(rounds):
        for runtime in ("numpy", "torch"):
            ms, imported = query_vector(runtime)
            assert imported == (runtime == "torch"), f"{runtime}: torch imported = {imported}"
            r[f"vector_{runtime}"].append(ms)
        r["chroma_open"].append(chroma_open(rag_home))
    r["hit_in"] += asyncio.run(hits_in_process(rag_home, rounds * 4))
    def hit_and_launch(prefix: str) -> None:
        """One round of the rows measured both idle and while indexing: a whole-process cache hit,
        and launching ours and the bare app."""
        first, total = hits_whole_process(rag_home, 1)
        r[f"{prefix}hit_first"] += first
        r[f"{prefix}hit_total"] += total
        for name, command in (("ours", tui), ("bare", bare)):
            drawn, typed = time_to_input(command)
            r[f"{prefix}{name}_drawn"].append(drawn)
            r[f"{prefix}{name}_input"].append(typed)

    for _ in range(rounds):
        hit_and_launch("")
        # Without states on disk: the question asked every round would find its whole prompt
        # evaluated already, which a new question does not.
        r["rag_first"].append(first_token(rag_home, "--no-cache", *ask, QUESTION, states=False)[0])
        r["plain_first"].append(first_token(plain_home, "--no-cache", *ask, QUESTION, states=False)[0])
        rag_tokens, plain_tokens = prompt_tokens(rag_home), prompt_tokens(plain_home)
        r["plain_long_first"].append(first_token(plain_home, "--no-cache", *ask, long_question, states=False)[0])
        rag_eval, plain_eval = prompt_eval(rag_tokens, plain_tokens)
        r["floor_first"].append(r["plain_first"][-1] + rag_eval - plain_eval)
        r["rag_tokens"].append(rag_tokens)
        r["plain_tokens"].append(plain_tokens)
    loads.append(Path("/proc/loadavg").read_text().split()[0])

    with indexing(str(work / "busy")):
        busy_load = []
        r["busy_hit_in"] += asyncio.run(hits_in_process(rag_home, rounds * 4))
        for _ in range(rounds):
            hit_and_launch("busy_")
            busy_load.append(Path("/proc/loadavg").read_text().split()[0])
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    section = report(r, rounds, args.label, loads, busy_load)
    print(section)
    if args.write:
        write_section(args.write, f"startup-{args.label}", section)


def launch_only(tui: str, bare: str, rounds: int) -> None:
    """Interleaved launches of ours and the bare app, idle: each one's medians and the ratios."""
    load = Path("/proc/loadavg").read_text().split()[0]
    times: dict[str, list[tuple[float, float]]] = {"ours": [], "bare": []}
    for _ in range(rounds):
        for name, command in (("ours", tui), ("bare", bare)):
            times[name].append(time_to_input(command))
    m = {name: (med([d for d, _ in t]), med([i for _, i in t])) for name, t in times.items()}
    print(f"load {load} -> {Path('/proc/loadavg').read_text().split()[0]}; {rounds} rounds, medians (ms)")
    print(f"drawn:  ours {m['ours'][0]:.0f} vs bare {m['bare'][0]:.0f}: {m['ours'][0] / m['bare'][0]:.2f}x")
    print(f"input:  ours {m['ours'][1]:.0f} vs bare {m['bare'][1]:.0f}: {m['ours'][1] / m['bare'][1]:.2f}x")


def report(r: dict[str, list[float]], rounds: int, label: str, loads: list[str], busy: list[str]) -> str:
    m = {k: med(v) for k, v in r.items()}
    p95 = {k: sorted(v)[max(0, int(round(0.95 * len(v))) - 1)] for k, v in r.items()}
    return f"""<!-- startup-{label}:start -->
### {label.capitalize()}: {datetime.datetime.now(datetime.UTC).strftime('%Y-%m-%d %H:%M UTC')}

{machine()}; {rounds} interleaved rounds, medians (in-process hits: {4 * rounds} in a row, median and p95).
Load average (1 min) idle part: {' -> '.join(loads)}; while indexing: {', '.join(busy)}.

| scenario | measure | idle | while indexing | target |
|---|---|---|---|---|
| one question's vector in a fresh process (imports, load, embed): `Embedder.embed` vs sentence-transformers | ms, ratio | {m['vector_numpy']:.0f} vs {m['vector_torch']:.0f}: **{m['vector_numpy'] / m['vector_torch']:.2f}x** | | |
| cache hit over an indexed folder, in-process (`Engine.ask`, warm engine) | ms (p95) | {m['hit_in']:.1f} ({p95['hit_in']:.1f}) | {m['busy_hit_in']:.1f} ({p95['busy_hit_in']:.1f}) | < 10 idle, < 50 busy |
| cache hit, whole `assistant ask` process | first token / exit, ms | {m['hit_first']:.0f} / {m['hit_total']:.0f} | {m['busy_hit_first']:.0f} / {m['busy_hit_total']:.0f} | |
| Chroma's own start-up in a fresh process (import chromadb, open the client and the collection): a floor under every folder question | ms | {m['chroma_open']:.0f} | | |
| `assistant ask --no-cache`, whole process, first token: indexed folder vs none (no states on disk) | ms, ratio | {m['rag_first']:.0f} vs {m['plain_first']:.0f}: **{m['rag_first'] / m['plain_first']:.2f}x** | | <= 1.5x |
| the floor under that ratio: no folder's first token plus raw llama-cpp-python evaluating the folder prompt's extra tokens ({m['rag_tokens']:.0f} against {m['plain_tokens']:.0f}), same run | ms, ratio | {m['floor_first']:.0f} vs {m['plain_first']:.0f}: **{m['floor_first'] / m['plain_first']:.2f}x**; ours {m['rag_first'] / m['floor_first']:.2f}x of the floor | | |
| the same, against no folder with the retrieved passages pasted into the question (a prompt as long): what retrieval itself adds | ms, ratio | {m['rag_first']:.0f} vs {m['plain_long_first']:.0f}: **{m['rag_first'] / m['plain_long_first']:.2f}x** | | |
| launch `assistant` until the prompt is drawn: ours vs bare Textual | ms, ratio | {m['ours_drawn']:.0f} vs {m['bare_drawn']:.0f}: **{m['ours_drawn'] / m['bare_drawn']:.2f}x** | {m['busy_ours_drawn']:.0f} vs {m['busy_bare_drawn']:.0f}: **{m['busy_ours_drawn'] / m['busy_bare_drawn']:.2f}x** | <= 1.5x idle |
| launch until a typed word shows in the prompt (accepts input): ours vs bare | ms, ratio | {m['ours_input']:.0f} vs {m['bare_input']:.0f}: **{m['ours_input'] / m['bare_input']:.2f}x** | {m['busy_ours_input']:.0f} vs {m['busy_bare_input']:.0f}: **{m['busy_ours_input'] / m['busy_bare_input']:.2f}x** | <= 1.5x idle |
<!-- startup-{label}:end -->"""


if __name__ == "__main__":
    main()
