"""Memory benchmarks, side by side in one run.

1. Long-term memory recall with 10,000 memories: `LongTermMemory.recall()` (query embedding,
   Chroma search, SQLite rows, use counts written) against the bare minimum it builds on (the same
   query embedding and Chroma query, nothing else); target p95 < 50 ms.
2. Time to first token on turn 20 of a conversation against turn 1, through `Engine.ask()` on
   the embedded SmolLM2 model, next to raw llama-cpp-python running the same conversation (its
   own prefix reuse); target ratio <= 1.3.

    python bench/bench_memory.py [--memories 10000] [--queries 300] [--turns 20] [--write docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from bench_foundation import machine  # noqa: E402
from sections import write_section  # noqa: E402

SUBJECTS = ["coffee", "tea", "the garden", "the budget", "Python", "Rust", "trains", "the kitchen", "music",
            "running", "the car", "holidays", "books", "the dog", "cooking", "backups", "the office", "chess"]
READ_S = 1.0  # between turns, as a person reads the answer: every side gets the same pause
VERBS = ["prefers", "dislikes", "decided about", "often asks about", "wants short answers on", "knows a lot of"]


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1]


def recall_bench(count: int, queries: int) -> dict:
    from memory.embedder import Embedder
    from memory.longterm import LongTermMemory
    from memory.store import Store, now
    from memory.vectors import VectorIndex

    home = Path(os.environ["ASSISTANT_HOME"])
    store = Store(home / "assistant.db")
    vectors = VectorIndex(home / "chroma", collection="memories")
    memory = LongTermMemory(store, lambda: vectors)
    texts = [f"Memory {i}: the user {VERBS[i % len(VERBS)]} {SUBJECTS[i % len(SUBJECTS)]} (note {i})."
             for i in range(count)]
    started = time.perf_counter()
    embedded = Embedder().embed(texts)
    with store._transaction():
        store.conn.executemany("INSERT INTO memories (id, text, kind, created_at) VALUES (?, ?, 'fact', ?)",
                               [(i + 1, t, now()) for i, t in enumerate(texts)])
    vectors.add(list(range(1, count + 1)), embedded)
    load_s = time.perf_counter() - started
    questions = [f"What does the user think about {SUBJECTS[i % len(SUBJECTS)]}? ({i})" for i in range(queries)]
    embedder = Embedder()
    ours, bare = [], []
    for question in questions:  # interleaved, so both sides see the same machine state
        t = time.perf_counter()
        recalled = memory.recall(question, 3, 0.0)
        ours.append((time.perf_counter() - t) * 1000)
        assert len(recalled) == 3
        t = time.perf_counter()
        vectors.collection.query(query_embeddings=[embedder.embed([question])[0]], n_results=3, include=[])
        bare.append((time.perf_counter() - t) * 1000)
    store.close()
    return {"ours": ours, "bare": bare, "load_s": load_s}


async def turns_bench(turns: int, rounds: int) -> dict:
    from engine import Engine, load_settings
    from engine.models import default_model_path

    settings = load_settings().replace(temperature=0.0, seed=42, max_tokens=48, cache=False)
    engine = Engine(settings)
    await engine.load_model()
    runs: dict[str, list[list[float]]] = {"ours": [], "no prefill": []}
    for r in range(rounds):
        for side, prefill in (("ours", True), ("no prefill", False)):
            engine.prefill_next_turn = prefill
            conversation, ttft, prompt_tokens = None, [], []
            for i in range(turns):
                events = [e async for e in engine.ask(question(2 * r + prefill, i), conversation)]
                conversation = events[-1].conversation_id
                ttft.append(events[-1].timings.ttft_ms)
                prompt_tokens.append(events[0].prompt_tokens)
                await asyncio.sleep(READ_S)  # the user reads the answer
            runs[side].append(ttft)
    await engine.close()

    from llama_cpp import Llama

    from engine.backends.local import default_threads

    llm = Llama(str(default_model_path()), n_ctx=settings.n_ctx, n_threads=default_threads(), flash_attn=True,
                verbose=False)
    list(llm.create_chat_completion(messages=[{"role": "user", "content": "Hi"}], stream=True, max_tokens=4))
    raw = []
    for r in range(rounds):
        messages = [{"role": "system", "content": settings.system_prompt}]
        ttft = []
        for i in range(turns):
            messages.append({"role": "user", "content": question(100 + r, i)})
            start, first, pieces = time.perf_counter(), None, []
            for chunk in llm.create_chat_completion(messages=messages, stream=True, max_tokens=48,
                                                    temperature=0.0, seed=42):
                text = chunk["choices"][0]["delta"].get("content")
                if text:
                    first = first or time.perf_counter()
                    pieces.append(text)
            ttft.append((first - start) * 1000)
            messages.append({"role": "assistant", "content": "".join(pieces)})
            await asyncio.sleep(READ_S)
        raw.append(ttft)
    # The question and the template's few tokens around it, after turn 1's and turn N's context.
    new = len(llm.tokenize(question(0, turns - 1).encode(), add_bos=False)) + 5
    floor = attention_floor(llm, new, prompt_tokens[0] - new, prompt_tokens[-1] - new)
    llm.close()
    return {**runs, "raw": raw, "prompt_tokens": prompt_tokens[-1], "floor": floor}


def attention_floor(llm, new: int, short: int, long: int, repeats: int = 7) -> dict:
    """What llama.cpp itself needs: the same `new` tokens evaluated after `short` and after `long`
    tokens of context (medians, interleaved). Each new token attends to every earlier one, so a
    later turn costs more even when nothing is evaluated twice."""
    filler = llm.tokenize(b" the quick brown fox jumps over the lazy dog" * 400, add_bos=False)
    times: dict[int, list[float]] = {short: [], long: []}
    for _ in range(repeats):
        for past in (short, long):
            llm.reset()
            llm.eval(filler[:past])
            start = time.perf_counter()
            llm.eval(filler[past : past + new])
            times[past].append((time.perf_counter() - start) * 1000)
    return {"new": new, "short": short, "long": long,
            "short_ms": statistics.median(times[short]), "long_ms": statistics.median(times[long])}


def question(round_: int, i: int) -> str:
    """Each round is another conversation: its first question is new to the model's caches (the
    system prompt before it is not, as in real use)."""
    return f"Conversation {round_ + 1}, turn {i + 1}: tell me one short fact about the number {i + 1}."


def report(r: dict, t: dict, count: int, queries: int, turns: int, rounds: int) -> str:
    ours, bare = r["ours"], r["bare"]

    def turn(side: str, index: int) -> float:
        return statistics.median(run[index] for run in t[side])

    def row(side: str, what: str, bold: bool = False) -> str:
        first, last = turn(side, 0), turn(side, turns - 1)
        ratio = f"**{last / first:.2f}**" if bold else f"{last / first:.2f}"
        return f"| {what} | turn 1: {first:.0f} ms, turn {turns}: {last:.0f} ms | | {ratio} | {'<= 1.3' if bold else ''} |"

    floor = t["floor"]
    return f"""<!-- memory:start -->
## Memory: recall latency, time to first token late in a conversation

Run on {datetime.date.today().isoformat()}, {machine()}. Command: `make bench`
(`python bench/bench_memory.py --memories {count} --queries {queries} --turns {turns} --write docs/benchmarks.md`).

| what | ours | reference | ratio | target |
|---|---|---|---|---|
| long-term memory recall, {count:,} memories, top 3, including the query embedding: `LongTermMemory.recall()` vs the bare embedding + Chroma query it builds on ({queries} questions, interleaved), p50 | {statistics.median(ours):.1f} ms | {statistics.median(bare):.1f} ms | {statistics.median(ours) / statistics.median(bare):.2f} | |
| same, p95 | **{p95(ours):.1f} ms** | {p95(bare):.1f} ms | {p95(ours) / p95(bare):.2f} | p95 < 50 ms |
{row("ours", f"time to first token, turn {turns} vs turn 1 of one conversation (median of {rounds}), `Engine.ask()`", True)}
{row("no prefill", "same, without evaluating the next turn's opening ahead (`prefill_next_turn` off)")}
{row("raw", "same conversation through raw llama-cpp-python (its own prefix reuse)")}
| llama.cpp alone: the same {floor['new']} new tokens evaluated after {floor['short']} tokens of context (turn 1) and after {floor['long']} (turn {turns}), median of 7 | {floor['short_ms']:.0f} ms, {floor['long_ms']:.0f} ms | | {floor['long_ms'] / floor['short_ms']:.2f} | |

Turn {turns}'s prompt holds {t['prompt_tokens']} tokens. Nothing of the history is evaluated twice: the prompt
keeps its start (memories go in the last message, and this conversation uses no folders;
summaries change the start only when written), and after each answer the conversation's next opening (the end of the answer, the start of
the next user turn) is evaluated while the user reads, so a question evaluates little more than its
own words. What remains is attention: each new token attends to every token before it, so the same
words cost more after {floor['long']} tokens than after {floor['short']}, in llama.cpp itself (last row).
Between turns each side waits {READ_S:.0f} s, as a person reads the answer.
Loading {count:,} memories (embedding included) took {r['load_s']:.0f} s.
<!-- memory:end -->"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--memories", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--write", type=Path)
    args = parser.parse_args()
    os.environ["ASSISTANT_HOME"] = tempfile.mkdtemp()
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    recall = recall_bench(args.memories, args.queries)
    os.environ["ASSISTANT_HOME"] = tempfile.mkdtemp()
    turns = asyncio.run(turns_bench(args.turns, args.rounds))
    section = report(recall, turns, args.memories, args.queries, args.turns, args.rounds)
    print(section)
    if args.write:
        write_section(args.write, "memory", section)


if __name__ == "__main__":
    main()
