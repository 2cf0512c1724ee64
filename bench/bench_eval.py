"""Eval harness benchmark on the sample dataset and the embedded SmolLM2 model, side by side with
the same questions asked through `assistant ask` in a loop.

1. Throughput: cases per minute of `assistant eval docs/evals/sample.jsonl` (one answer per case,
   no judge), for the case loop and for the whole command (process start, index check, model load).
2. Overhead of the harness: inside one run, the case loop's time against the time spent inside
   `Engine.ask` (scoring, the cosine's embedding, writing results); and end to end, the eval
   command against the same questions asked with `assistant ask` in a loop. Target < 5% for both.

Same settings on both sides: temperature 0, seed 42, the same max_tokens, no response cache, the
sample corpus indexed. Rounds are interleaved; medians.

    python bench/bench_eval.py [--rounds 3] [--limit N] [--write docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

from bench_foundation import machine  # noqa: E402
from sections import write_section  # noqa: E402

SAMPLE = ROOT / "docs" / "evals" / "sample.jsonl"
ASSISTANT = [sys.executable, "-m", "app"]


def env(home: Path, max_tokens: int) -> dict[str, str]:
    return {**os.environ, "ASSISTANT_HOME": str(home), "ASSISTANT_TEMPERATURE": "0", "ASSISTANT_SEED": "42",
            "ASSISTANT_MAX_TOKENS": str(max_tokens), "HF_HUB_OFFLINE": "1"}


def call(args: list[str], home: Path, max_tokens: int) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run([*ASSISTANT, *args], env=env(home, max_tokens), capture_output=True, text=True,
                          cwd=ROOT, check=False)
    if done.returncode != 0:
        raise SystemExit(f"assistant {' '.join(args)} failed:\n{done.stderr}")
    return time.perf_counter() - start, done.stdout


def eval_round(home: Path, limit: int, max_tokens: int) -> dict:
    wall, out = call(["eval", str(SAMPLE), "--repeats", "1", "--max-tokens", str(max_tokens),
                      "--limit", str(limit), "--json"], home, max_tokens)
    summary = json.loads(out)["run"]["summary"]
    return {"wall_s": wall, "loop_s": summary["duration_s"], "engine_s": summary["engine_s"],
            "cases": summary["cases"], "tokens": summary["totals"]["output_tokens"] * summary["cases"]}


def ask_round(home: Path, questions: list[str], max_tokens: int) -> dict:
    db = sqlite3.connect(home / "assistant.db")
    before = db.execute("SELECT COALESCE(MAX(id), 0) FROM responses").fetchone()[0]
    wall = 0.0
    for question in questions:
        seconds, _ = call(["ask", "--no-cache", "--no-stats", "--no-sources", question], home, max_tokens)
        wall += seconds
    rows = db.execute("SELECT total_ms, output_tokens FROM responses WHERE id > ? AND status = 'ok'",
                      [before]).fetchall()
    db.close()
    assert len(rows) == len(questions), "an ask failed"
    return {"wall_s": wall, "answer_s": sum(r[0] for r in rows) / 1000, "tokens": sum(r[1] for r in rows)}


def run(rounds: int, limit: int, max_tokens: int) -> dict:
    from engine.evals import load_dataset

    cases = load_dataset(SAMPLE).cases[:limit]
    questions = [c.question for c in cases]
    eval_home, ask_home = Path(tempfile.mkdtemp()), Path(tempfile.mkdtemp())
    call(["index", str(SAMPLE.parent / "corpus")], ask_home, max_tokens)
    eval_round(eval_home, limit, max_tokens)  # warm-up: the corpus indexed, files in the page cache
    call(["ask", "--no-cache", "--no-stats", questions[0]], ask_home, max_tokens)
    evals, asks = [], []
    for _ in range(rounds):
        evals.append(eval_round(eval_home, limit, max_tokens))
        asks.append(ask_round(ask_home, questions, max_tokens))
    return {"evals": evals, "asks": asks, "cases": len(questions)}


def report(r: dict, rounds: int, max_tokens: int) -> str:
    def med(rows: list[dict], key: str) -> float:
        return statistics.median(row[key] for row in rows)

    n = r["cases"]
    loop, wall, engine = med(r["evals"], "loop_s"), med(r["evals"], "wall_s"), med(r["evals"], "engine_s")
    answer, ask_wall = med(r["asks"], "answer_s"), med(r["asks"], "wall_s")
    return f"""<!-- evals:start -->
## Evals: throughput and harness overhead

Run on {datetime.date.today().isoformat()}, {machine()}, model SmolLM2-135M-Instruct Q4_1, the sample dataset
(`docs/evals/sample.jsonl`, {n} cases, 1 answer each, no judge, max_tokens {max_tokens}), {rounds} interleaved rounds,
medians. Command: `make bench` (`python bench/bench_eval.py --rounds {rounds} --write docs/benchmarks.md`).

| what | eval | compared with | ratio | target |
|---|---|---|---|---|
| harness overhead in one run: time per case of the case loop (answer, score, record) vs the time inside `Engine.ask` | {loop / n * 1000:,.0f} ms | {engine / n * 1000:,.0f} ms | **{loop / engine - 1:+.1%}** | < +5% |
| the same questions end to end: `assistant eval` (one command, process start and model load included) vs `assistant ask` in a loop (one process per question), per case | {wall / n * 1000:,.0f} ms | {ask_wall / n * 1000:,.0f} ms | **{wall / ask_wall - 1:+.1%}** | < +5% |
| throughput | {n / wall * 60:.1f} cases/min ({n / loop * 60:.1f} in the case loop) | {n / ask_wall * 60:.1f} questions/min | | |
| answer tokens, all cases (same settings on both sides) | {med(r['evals'], 'tokens'):.0f} | {med(r['asks'], 'tokens'):.0f} | | |

`ask`'s own logged answer time was {answer / n * 1000:,.0f} ms per question: each new process loads the model and
the embedding model while answering, which the eval does once, before its first case (and it reuses the shared
system prompt's state from case to case).
<!-- evals:end -->"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--limit", type=int, default=8, help="Cases of the sample dataset.")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--write", type=Path)
    args = parser.parse_args()
    section = report(run(args.rounds, args.limit, args.max_tokens), args.rounds, args.max_tokens)
    print(section)
    if args.write:
        write_section(args.write, "evals", section)


if __name__ == "__main__":
    main()
