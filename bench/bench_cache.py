"""Caching benchmarks, side by side in one run, on the embedded SmolLM2 model.

1. A response cache hit end to end (question in, answer out, logged) against generating the same
   answer afresh (`regenerate`), interleaved; target hit < 10 ms p50.
2. Time to first token of turn 2 of a conversation with a ~1,000-token history: with prompt prefix
   reuse (the model state kept from turn 1) against the same turn after another conversation ran
   with the state cache off, so the history is evaluated again; target ratio <= 0.5.
3. The same hit with an indexed folder (real documents: ../shared/corpora), where a hit used to
   wait for the question's embedding and the search first.
4. `assistant ask` as a user runs it, a new process each time: a cache hit against the same
   command generating afresh (`--no-cache`); the difference is what the cache saves a script.

    python bench/bench_cache.py [--rounds 15] [--write docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
from bench_foundation import machine  # noqa: E402
from corpora import TEXTUAL_DOCS  # noqa: E402
from sections import write_section  # noqa: E402

HISTORY = ("Here are my notes on the renovation: the kitchen needs new cabinets, the wiring in the hall is "
           "old, the bathroom tiles are cracked, and the windows leak in winter. ") * 28
QUESTION = "What is the capital of France?"
CORPUS = TEXTUAL_DOCS / "docs"
RAG_QUESTION = "How do I make a widget scroll?"


async def collect(engine, question: str, conversation: int | None = None, regenerate: bool = False):
    start = time.perf_counter()
    events = [e async for e in engine.ask(question, conversation, regenerate=regenerate)]
    return events, (time.perf_counter() - start) * 1000


async def hits_and_fresh(engine, question: str, rounds: int) -> tuple[list[float], list[float]]:
    """Interleaved: the question answered from the cache, then generated anew (`regenerate`)."""
    hits, fresh = [], []
    for _ in range(rounds):
        events, ms = await collect(engine, question)
        assert events[-1].cached_from, "expected a cache hit"
        hits.append(ms)
        events, ms = await collect(engine, question, regenerate=True)
        assert not events[-1].cached_from
        fresh.append(ms)
    return hits, fresh


async def run(rounds: int) -> dict:
    from engine import Engine, load_settings

    base = load_settings().replace(temperature=0.0, seed=42, max_tokens=24)
    engine = Engine(base)
    await collect(engine, QUESTION)  # the entry, and the model loaded
    hits, fresh = await hits_and_fresh(engine, QUESTION, rounds)
    await engine.close()

    reuse, cold, history_tokens = [], [], []
    warm = Engine(base.replace(cache=False))
    cold_engine = Engine(base.replace(cache=False, prompt_cache_mb=0))
    for _ in range(rounds):
        first, _ = await collect(warm, HISTORY)
        history_tokens.append(first[0].prompt_tokens)
        second, _ = await collect(warm, "Which of these should I fix first?", first[-1].conversation_id)
        reuse.append(second[-1].timings.ttft_ms)
        first, _ = await collect(cold_engine, HISTORY)
        await collect(cold_engine, "Something else: name a colour.")  # the history is gone from the model
        second, _ = await collect(cold_engine, "Which of these should I fix first?", first[-1].conversation_id)
        cold.append(second[-1].timings.ttft_ms)
    await warm.close()
    await cold_engine.close()
    return {"hits": hits, "fresh": fresh, "reuse": reuse, "cold": cold,
            "history_tokens": statistics.median(history_tokens), **await run_rag(base, rounds),
            **run_command(rounds)}


async def run_rag(base, rounds: int) -> dict:
    from engine import Engine

    engine = Engine(base)
    knowledge = await engine.knowledge()
    await asyncio.to_thread(knowledge.index, CORPUS)
    first, _ = await collect(engine, RAG_QUESTION)
    assert first[-1].sources, "expected sources from the corpus"
    hits, fresh = await hits_and_fresh(engine, RAG_QUESTION, rounds)
    await engine.close()
    return {"rag_hits": hits, "rag_fresh": fresh}


def run_command(rounds: int) -> dict:
    """Wall time of the whole `assistant ask` process, start-up included."""
    command = [shutil.which("assistant") or str(Path(sys.executable).with_name("assistant")),
               "ask", "-t", "0", "--seed", "42", "--max-tokens", "24", QUESTION]
    env = {**os.environ, "ASSISTANT_HOME": tempfile.mkdtemp()}

    def timed(*extra: str) -> float:
        start = time.perf_counter()
        done = subprocess.run([*command[:2], *extra, *command[2:]], env=env, capture_output=True, text=True)
        assert done.returncode == 0 and done.stdout.strip(), done.stderr
        return (time.perf_counter() - start) * 1000

    timed()  # the entry
    hits, fresh = [], []
    for _ in range(rounds):
        hits.append(timed())
        fresh.append(timed("--no-cache"))
    return {"command_hits": hits, "command_fresh": fresh}


def report(r: dict, rounds: int) -> str:
    med = {k: statistics.median(v) for k, v in r.items() if isinstance(v, list)}
    return f"""<!-- cache:start -->
## Caching: response cache hits, prompt prefix reuse

Run on {datetime.date.today().isoformat()}, {machine()}, model SmolLM2-135M-Instruct Q4_1, {rounds} interleaved
rounds, medians. Command: `make bench` (`python bench/bench_cache.py --rounds {rounds} --write docs/benchmarks.md`).

| what | with | without | ratio | target |
|---|---|---|---|---|
| `Engine.ask()` end to end (question saved, answer streamed, response row and trace written): a response cache hit vs generating the same answer afresh | {med['hits']:.1f} ms | {med['fresh']:.1f} ms | **{med['hits'] / med['fresh']:.3f}** | hit < 10 ms |
| the same with an indexed folder ({CORPUS.parent.name}, real documents; the question retrieves sources) | {med['rag_hits']:.1f} ms | {med['rag_fresh']:.1f} ms | **{med['rag_hits'] / med['rag_fresh']:.3f}** | hit < 10 ms |
| `assistant ask` as a command, a new process each time (Python start-up, imports, database, answer printed): a cache hit vs `--no-cache` | {med['command_hits']:.0f} ms | {med['command_fresh']:.0f} ms | **{med['command_hits'] / med['command_fresh']:.2f}** | |
| time to first token of turn 2 after a {r['history_tokens']:.0f}-token first turn: prefix reused (model state kept) vs evaluated again (another conversation in between, state cache off) | {med['reuse']:.0f} ms | {med['cold']:.0f} ms | **{med['reuse'] / med['cold']:.2f}** | <= 0.5 |

All rows but the command run in-process with a warm model; both sides use the same engine code, only the cache differs.
<!-- cache:end -->"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--write", type=Path)
    args = parser.parse_args()
    os.environ["ASSISTANT_HOME"] = tempfile.mkdtemp()
    section = report(asyncio.run(run(args.rounds)), args.rounds)
    print(section)
    if args.write:
        write_section(args.write, "cache", section)


if __name__ == "__main__":
    main()
