"""Is a restored state's answer the one the running app would have given, and why may a fresh
evaluation of the same history differ? (issue 23: "a state restored after a restart gives the
same answer at temperature 0 as a fresh evaluation")

On the embedded SmolLM2-135M model, a ~2,000-token conversation of the real corpus
(../shared/corpora/textual-docs, as bench/bench_reopen.py builds it), temperature 0:

1. live: one backend answers PRIME over the history, evaluates the next turn's opening ahead,
   keeps its state on disk, then answers QUESTION from the state it holds (same process, RAM);
2. restored: a new backend restores that state from disk, then answers QUESTION;
3. fresh: a new backend without states answers QUESTION, evaluating the whole prompt (in
   n_batch = 512 pieces);
4. replayed: a new backend without states evaluates the prompt's tokens in the same pieces as
   the live backend did (recorded from its `eval` calls: the first prompt in 512-token pieces,
   each answer token alone, the turn evaluated ahead in one piece), then answers QUESTION.

Expected if the difference is batching numerics: live == restored == replayed, and fresh may
differ. Also: the KV state's bytes of live and replayed compared.

    python bench/bench_state_numerics.py [--tokens 2000] [--out /tmp/numerics.json]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import hashlib
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

from bench_reopen import PRIME, QUESTION, corpus_turns  # noqa: E402

from engine.backends.base import SamplingParams, StreamResult  # noqa: E402
from engine.backends.local import LocalBackend  # noqa: E402

PARAMS = SamplingParams(max_tokens=32, temperature=0.0, top_p=1.0, seed=42)


def conversation(tokens: int) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": "You are a helpful assistant."}]
    total = 0
    for question, answer in corpus_turns():
        size = (len(question) + len(answer)) // 4 + 10  # about 4 characters a token
        if total + size > tokens - 100:
            continue
        messages += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
        total += size
    return messages


def backend(states: Path | None) -> LocalBackend:
    return LocalBackend(n_ctx=4096, n_threads=2, states_dir=states, state_cache_disk_mb=2048 if states else 0)


async def answer(b: LocalBackend, messages: list[dict[str, str]]) -> tuple[str, StreamResult]:
    result = StreamResult()
    text = "".join([piece async for piece in b.stream(messages, PARAMS, result)])
    return text, result


def record(llm: Any) -> list[tuple[int, list[int]]]:
    """Each `eval` call from now on: the tokens the model held before it, and the tokens."""
    pieces: list[tuple[int, list[int]]] = []
    evaluate = llm.eval
    llm.eval = lambda tokens: (pieces.append((int(llm.n_tokens), list(tokens))), evaluate(tokens))[1]
    return pieces


def kv_digest(llm: Any) -> str:
    from engine.backends.state_cache import snapshot

    return hashlib.sha256(bytes(snapshot(llm, None).data)).hexdigest()[:16]


async def main_async(tokens: int) -> dict[str, Any]:
    history = conversation(tokens)
    states = Path(tempfile.mkdtemp(prefix="numerics-"))
    out: dict[str, Any] = {}
    try:
        live = backend(states)
        await live.load()
        pieces = record(live._llm)
        first, _ = await answer(live, [*history, {"role": "user", "content": PRIME}])
        turns = [*history, {"role": "user", "content": PRIME}, {"role": "assistant", "content": first}]
        live.prefill(turns)
        live.keep_state("1")
        await live._run(lambda: None)  # the prefill and the snapshot are done
        state_digest = await live._run(kv_digest, live._llm)
        state_tokens = int(live._llm.n_tokens)
        held = list(live._llm.input_ids[:state_tokens])
        recorded = list(pieces)  # up to the state kept
        splits = [len(p) for _, p in recorded]
        final = [*turns, {"role": "user", "content": QUESTION}]
        out["live"], r = await answer(live, final)
        out["live_evaluated"] = r.prompt_tokens_evaluated
        await asyncio.to_thread(live.close)

        restored = backend(states)
        await restored.load()
        out["restored_tokens"] = await restored._run(restored._restore_sync, "1")
        out["restored_digest"] = await restored._run(kv_digest, restored._llm)
        out["restored"], r = await answer(restored, final)
        out["restored_evaluated"] = r.prompt_tokens_evaluated
        await asyncio.to_thread(restored.close)

        fresh = backend(None)
        out["fresh"], r = await answer(fresh, final)
        out["fresh_evaluated"] = r.prompt_tokens_evaluated
        await asyncio.to_thread(fresh.close)

        replay = backend(None)
        await replay.load()

        def evaluate_in_pieces() -> str:
            llm = replay._llm
            for n_past, p in recorded:
                llm.n_tokens = n_past  # as live: eval() drops the KV cells past this point first
                llm.eval(p)
            assert llm.n_tokens == state_tokens and list(llm.input_ids[:state_tokens]) == held
            return kv_digest(llm)

        out["replayed_digest"] = await replay._run(evaluate_in_pieces)
        out["replayed"], r = await answer(replay, final)
        out["replayed_evaluated"] = r.prompt_tokens_evaluated
        await asyncio.to_thread(replay.close)

        out.update(state_tokens=state_tokens, state_digest=state_digest, splits_head=splits[:6],
                   splits_count=len(splits), answer_tokens_alone=sum(1 for s in splits if s == 1))
    finally:
        shutil.rmtree(states, ignore_errors=True)
    out["live_eq_restored"] = out["live"] == out["restored"]
    out["live_eq_replayed"] = out["live"] == out["replayed"]
    out["live_eq_fresh"] = out["live"] == out["fresh"]
    out["state_eq_restored_kv"] = out["state_digest"] == out["restored_digest"]
    out["state_eq_replayed_kv"] = out["state_digest"] == out["replayed_digest"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "numerics.json")
    args = parser.parse_args()
    before = " ".join(open("/proc/loadavg").read().split()[:3])
    out = asyncio.run(main_async(args.tokens))
    out["run"] = {"command": "python bench/bench_state_numerics.py " + " ".join(sys.argv[1:]),
                  "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
                  "load_before": before, "load_after": " ".join(open("/proc/loadavg").read().split()[:3])}
    args.out.write_text(json.dumps(out, indent=1))
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
