"""Prompt-lookup (n-gram) speculative decoding on answers over sources (issue 23's last row).

llama-cpp-python's `LlamaPromptLookupDecoding` drafts the next tokens by finding the last n-gram
of the text in the prompt and proposing what followed it there; the model checks the drafts in one
batch. Answers that quote their sources should accept many drafts. Measured on the embedded
SmolLM2-135M model, temperature 0, against plain decoding on the same prompts (interleaved):

- prompts: a question from docs/evals/textual-docs.jsonl with 3 real passages of the corpus
  ../shared/corpora/textual-docs (the expected source's passages holding its facts first, then
  one of another document), asked to quote the sources;
- plain: `Llama(...)`; lookup N: `Llama(..., draft_model=LlamaPromptLookupDecoding(num_pred_tokens=N),
  logits_all=True)` for N in 2, 5, 10 (one model, its draft's N changed between runs).
  `logits_all=True` must be passed: with a draft model llama-cpp-python computes logits for every
  token, but sizes its logits array by the *argument* (n_batch rows), and a prompt longer than
  n_batch then fails in `Llama.eval` ("could not broadcast input array ... into shape (0,)");
- measures: decode tok/s (first piece to last), end-to-end time (prompt evaluation included, which
  `logits_all` makes dearer: every prompt token's logits over the 49k-token vocabulary), and
  whether the output is identical to plain decoding.

    python bench/bench_lookup.py [--first 0] [--questions 8] [--max-tokens 128] [--append]
                                 [--results /tmp/bench_lookup.json] [--write docs/benchmarks.md]

Run in parts (--first 4 --questions 4 --append) to keep each run short; --render writes the
section from the rows in --results.
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))
from corpora import TEXTUAL_DOCS, TEXTUAL_DOCS_QUESTIONS  # noqa: E402

CORPUS, DATASET = TEXTUAL_DOCS, TEXTUAL_DOCS_QUESTIONS
N_CTX = 2048
PASSAGE_CHARS = 1200
DRAFTS = (2, 5, 10)


def passages(path: Path) -> list[str]:
    """Passages as a retriever would cut them: from each paragraph of more than 120 characters,
    it and the paragraphs after it up to PASSAGE_CHARS."""
    paragraphs = [p.strip() for p in path.read_text().split("\n\n") if p.strip()]
    out = []
    for i, p in enumerate(paragraphs):
        if len(p) > 120:
            text = p
            for q in paragraphs[i + 1:]:
                if len(text) + len(q) > PASSAGE_CHARS:
                    break
                text += "\n\n" + q
            out.append(text[:PASSAGE_CHARS])
    return out


def prompts(questions: int) -> list[dict[str, Any]]:
    """Questions with 3 real passages each: those of the expected source that hold its facts
    (or its first ones), then one from another document."""
    cases = [json.loads(line) for line in DATASET.read_text().splitlines()[1:]]
    cases = [c for c in cases if c.get("expected_sources")]
    others = sorted((CORPUS / "docs" / "guide").glob("*.md"))
    sources_prompt = (ROOT / "engine" / "data" / "prompts" / "sources.md").read_text().strip()
    out = []
    for i, case in enumerate(cases[:questions]):
        source = case["expected_sources"][0]
        found = passages(CORPUS / source)
        facts = [f.lower() for f in case.get("meta", {}).get("facts", [])]
        holding = [p for p in found if any(f in p.lower() for f in facts)] or found
        chosen = [(source, p[:PASSAGE_CHARS]) for p in holding[:2]]
        other = next(o for o in others[i % len(others):] + others if str(o.relative_to(CORPUS)) != source)
        chosen.append((str(other.relative_to(CORPUS)), passages(other)[0][:PASSAGE_CHARS]))
        numbered = "\n\n".join(f"[{n}] {name}\n{text}" for n, (name, text) in enumerate(chosen, 1))
        out.append({"id": case["id"], "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "system", "content": f"{sources_prompt}\n\n{numbered}"},
            {"role": "user", "content": case["question"] + " Answer by quoting the sources word for word."}]})
    return out


def answer(llm: Any, messages: list[dict[str, str]], max_tokens: int) -> dict[str, Any]:
    llm.reset()
    start = time.perf_counter()
    first, pieces = None, []
    for chunk in llm.create_chat_completion(messages=messages, max_tokens=max_tokens, temperature=0.0,
                                            seed=42, stream=True):
        piece = chunk["choices"][0]["delta"].get("content")
        if piece:
            first = first or time.perf_counter()
            pieces.append(piece)
    end = time.perf_counter()
    text = "".join(pieces)
    n = len(llm.tokenize(text.encode(), add_bos=False))
    return {"text": text, "tokens": n, "decode_tok_s": (n - 1) / (end - first) if first and n > 1 else 0.0,
            "total_s": end - start, "prompt_tokens": llm.n_tokens - n}


def measure(first: int, questions: int, max_tokens: int, done: Any = None) -> list[dict[str, Any]]:
    """Rows of questions [first, first + questions): plain, then prompt lookup with each N;
    `done(row)` is called as each is measured (a run cut short keeps them)."""
    import llama_cpp
    from llama_cpp.llama_speculative import LlamaPromptLookupDecoding

    from engine.backends.llama_runtime import default_threads, import_llama_cpp
    from engine.models import default_model_path

    import_llama_cpp()
    common = dict(model_path=str(default_model_path()), n_ctx=N_CTX, n_threads=default_threads(), n_batch=512,
                  flash_attn=True, verbose=False, seed=42)
    plain = llama_cpp.Llama(**common)
    draft = LlamaPromptLookupDecoding(num_pred_tokens=DRAFTS[0])
    lookup = llama_cpp.Llama(**common, draft_model=draft, logits_all=True)
    cases = prompts(first + questions)[first:]
    for llm in (plain, lookup):  # warm: the model's pages in memory, llama.cpp's buffers allocated
        answer(llm, cases[0]["messages"], 8)
    rows = []
    for case in cases:
        row: dict[str, Any] = {"id": case["id"], "max_tokens": max_tokens}
        row["plain"] = answer(plain, case["messages"], max_tokens)
        for n in DRAFTS:
            draft.num_pred_tokens = n
            row[str(n)] = answer(lookup, case["messages"], max_tokens)
        rows.append(row)
        if done is not None:
            done(row)
        print(f"  {case['id']} ({row['plain']['prompt_tokens']} prompt tokens): plain "
              f"{row['plain']['decode_tok_s']:.1f} tok/s; " + "; ".join(
                  f"N={n} {row[str(n)]['decode_tok_s']:.1f} tok/s same={row[str(n)]['text'] == row['plain']['text']}"
                  for n in DRAFTS), file=sys.stderr)
    plain.close()
    lookup.close()
    return rows


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    summary: dict[str, Any] = {"cases": len(rows), "max_tokens": rows[0]["max_tokens"], "n_ctx": N_CTX,
                               "prompt_tokens": statistics.median(r["plain"]["prompt_tokens"] for r in rows),
                               "plain_tok_s": statistics.median(r["plain"]["decode_tok_s"] for r in rows),
                               "plain_total_s": statistics.median(r["plain"]["total_s"] for r in rows),
                               "drafts": {}, "rows": []}
    for n in map(str, DRAFTS):
        summary["drafts"][n] = {
            "decode_ratio": statistics.median(r[n]["decode_tok_s"] / r["plain"]["decode_tok_s"] for r in rows),
            "total_ratio": statistics.median(r["plain"]["total_s"] / r[n]["total_s"] for r in rows),
            "tok_s": statistics.median(r[n]["decode_tok_s"] for r in rows),
            "total_s": statistics.median(r[n]["total_s"] for r in rows),
            "identical": sum(r[n]["text"] == r["plain"]["text"] for r in rows)}
    for r in rows:
        summary["rows"].append({"id": r["id"], "plain_tok_s": round(r["plain"]["decode_tok_s"], 1),
                                **{f"n{n}_tok_s": round(r[str(n)]["decode_tok_s"], 1) for n in DRAFTS},
                                **{f"n{n}_same": r[str(n)]["text"] == r["plain"]["text"] for n in DRAFTS}})
    return summary


def render(s: dict[str, Any], runs: list[dict[str, str]]) -> str:
    lines = ["<!-- lookup:start -->", "## Prompt-lookup decoding on answers over sources (issue 23)", ""]
    lines += [f"- `{run['command']}` — {run['date']}; {run['machine']}; load average before/after: "
              f"{run['load_before']} / {run.get('load_after', '?')}" for run in runs]
    lines += [
             f"- {s['cases']} questions of docs/evals/textual-docs.jsonl, each with 3 passages of the corpus "
             f"(median {s['prompt_tokens']:.0f} prompt tokens), asked to quote them; {s['max_tokens']} tokens at "
             f"temperature 0; embedded SmolLM2-135M Q4_1, n_ctx {s['n_ctx']}.", "",
             "| decoding | decode tok/s (median) | vs plain, decode | vs plain, end to end | output identical |",
             "|---|---|---|---|---|",
             f"| plain | {s['plain_tok_s']:.1f} | 1.00x | 1.00x ({s['plain_total_s']:.2f} s) | — |"]
    for n, d in s["drafts"].items():
        lines.append(f"| prompt lookup, num_pred_tokens={n} | {d['tok_s']:.1f} | **{d['decode_ratio']:.2f}x** | "
                     f"{d['total_ratio']:.2f}x ({d['total_s']:.2f} s) | {d['identical']}/{s['cases']} |")
    lines.append("\nPer question (decode tok/s: plain; N=" + "/".join(s["drafts"]) + "; identical): " + "; ".join(
        f"{r['id']} {r['plain_tok_s']} → " + "/".join(str(r[f"n{n}_tok_s"]) for n in s["drafts"])
        + " " + "/".join("y" if r[f"n{n}_same"] else "n" for n in s["drafts"]) for r in s["rows"]) + ".")
    lines += ["", s.get("notes", "").strip(), "<!-- lookup:end -->"]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--first", type=int, default=0, help="Start at this question (runs in parts).")
    parser.add_argument("--questions", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--results", type=Path, default=Path("/tmp/bench_lookup.json"))
    parser.add_argument("--append", action="store_true", help="Add to the rows already in --results.")
    parser.add_argument("--notes", type=Path, help="A Markdown file whose text goes under the table.")
    parser.add_argument("--render", action="store_true", help="Only write the section from --results.")
    parser.add_argument("--write", type=Path)
    args = parser.parse_args()
    saved = json.loads(args.results.read_text()) if (args.render or args.append) and args.results.exists() \
        else {"rows": [], "runs": []}
    if not args.render:
        from bench_foundation import machine

        before = " ".join(open("/proc/loadavg").read().split()[:3])
        run = {"command": "python bench/bench_lookup.py " + " ".join(sys.argv[1:]),
               "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
               "machine": machine(), "load_before": before}
        saved["runs"].append(run)

        def keep(row: dict[str, Any]) -> None:
            saved["rows"].append(row)
            run["load_after"] = " ".join(open("/proc/loadavg").read().split()[:3])
            args.results.write_text(json.dumps(saved, indent=1))

        measure(args.first, args.questions, args.max_tokens, keep)
    if not saved["rows"]:
        raise SystemExit("no rows measured")
    summary = summarize(saved["rows"])
    if args.notes:
        summary["notes"] = args.notes.read_text()
    section = render(summary, saved["runs"])
    print(section)
    if args.write:
        from sections import write_section

        write_section(args.write, "lookup", section)


if __name__ == "__main__":
    main()
