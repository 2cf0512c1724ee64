"""Reopening a conversation after a restart: model states on disk against none. On the embedded
SmolLM2-135M model, side by side in one run.

1. cli: continue a ~2,000-token conversation in a fresh process (`Engine.ask` as `assistant ask
   -c ID` runs it), with the state the previous run left on disk against without it
   (interleaved); time to first token after the model is loaded; target <= 0.1x.
2. tui: the same in the TUI (Pilot, a fresh process): reopen the conversation from the sidebar,
   type the question (1 s), Enter; time from Enter to the first piece of the answer on screen
   (watched while the key press is processed, not after `pilot.press` returns).
3. bad: a state file that is corrupt (one flipped byte) or from another model: first token and
   answer must be those of no state.
4. disk: MB per state per 1,000 tokens of context, measured; estimated for 3B and 8B models
   from their shapes (KV bytes = 2 * n_layer * tokens * n_embd_k_gqa * 2 bytes for f16).

Prompt-lookup decoding (the issue's last row) is measured by bench/bench_lookup.py; whether a
restored state answers as the running app would, by bench/bench_state_numerics.py.

    python bench/bench_reopen.py [--only cli,tui,bad,disk] [--rounds 3] [--tokens 2000]
                                 [--results /tmp/reopen.json] [--write docs/benchmarks.md]

Parts run separately (each under ~8 minutes) add their figures to --results; --write renders the
section from everything in it.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))
from corpora import TEXTUAL_DOCS  # noqa: E402

CORPUS = TEXTUAL_DOCS
PRIME = "Thanks. Which widget did we discuss first?"
QUESTION = "Summarize in one sentence what we discussed about workers."
MAX_TOKENS = 32
# Shapes of common models a user pulls (their config.json / GGUF header): layers, K/V width
# (n_head_kv * head_dim).
SHAPES = {"Llama-3.2-3B": (28, 8 * 128), "Qwen2.5-3B": (36, 2 * 128), "Llama-3.1-8B": (32, 8 * 128),
          "Qwen2.5-7B": (28, 4 * 128)}


def env(home: Path) -> dict[str, str]:
    return {**os.environ, "ASSISTANT_HOME": str(home), "HF_HUB_OFFLINE": "1",
            "ANONYMIZED_TELEMETRY": "False", "PYTHONPATH": str(ROOT)}


def settings_for_child() -> Any:
    from engine import load_settings

    return load_settings().replace(temperature=0.0, seed=42, max_tokens=MAX_TOKENS, cache=False)


# The children: one fresh process per measurement ---------------------------------------------

async def child_cli(conversation: int, question: str) -> dict[str, Any]:
    from engine import Engine, Finished, Token

    async with Engine(settings_for_child()) as engine:
        await engine.load_model()
        start = time.perf_counter()
        first, text = None, ""
        async for event in engine.ask(question, conversation):
            if isinstance(event, Token) and first is None:
                first = time.perf_counter()
            if isinstance(event, Finished):
                text = event.text
    return {"ttft_ms": (first - start) * 1000, "text": text}


async def child_tui(conversation: int, question: str) -> dict[str, Any]:
    from app.tui import AssistantApp
    from engine import Engine

    async def until(condition: Any, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise TimeoutError(str(condition))
            await asyncio.sleep(0.005)

    app = AssistantApp(Engine(settings_for_child()))
    measured: dict[str, Any] = {}
    try:
        await _drive_tui(app, conversation, question, until, measured)
    except Exception:
        if not measured:  # a failure once measured (the app's teardown) does not spoil the figure
            raise
    await app.engine.close()
    return measured


async def _drive_tui(app: Any, conversation: int, question: str, until: Any, measured: dict[str, Any]) -> None:
    from app.widgets.answer import AnswerMessage
    from app.widgets.conversation_list import ConversationItem, ConversationList
    from app.widgets.prompt import PromptInput

    async with app.run_test(size=(120, 40)) as pilot:
        screen = app.screen
        await until(lambda: screen.status.state == "ready")
        sidebar = screen.query_one(ConversationList)
        await until(lambda: len(sidebar.query(ConversationItem)) >= 1)
        sidebar.focus()
        await pilot.press("enter")  # the top one: the conversation of this home
        await until(lambda: screen.conversation_id == conversation and len(screen.query(AnswerMessage)) >= 1)
        before = len(screen.query(AnswerMessage))
        await asyncio.sleep(1.0)  # the user types the question
        prompt = screen.query_one(PromptInput)
        prompt.focus()
        prompt.load_text(question)
        seen: list[float] = []

        async def watch() -> None:
            # Watched alongside the key press: `pilot.press` returns only once every widget on the
            # screen has drained its messages (hundreds, with the conversation reopened), which
            # with the answer streaming in took up to 2 s, after the first piece was on screen.
            await until(lambda: len(screen.query(AnswerMessage)) > before
                        and screen.query(AnswerMessage)[-1].markdown.source.strip() != "")
            seen.append(time.perf_counter())

        watcher = asyncio.ensure_future(watch())
        start = time.perf_counter()
        await pilot.press("enter")
        await watcher
        first = seen[0]
        await until(lambda: screen.query(AnswerMessage)[-1].response_id is not None)
        measured.update(ttft_ms=(first - start) * 1000, text=screen.query(AnswerMessage)[-1].text)


def run_child(kind: str, home: Path, conversation: int, question: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, str(Path(__file__)), "--child", kind, str(conversation), question],
                          env=env(home), capture_output=True, text=True, timeout=600, cwd=ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"{kind} child failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# The conversation -----------------------------------------------------------------------------

def corpus_turns() -> list[tuple[str, str]]:
    """Question and answer pairs made of the corpus' own paragraphs (real prose and code)."""
    turns = []
    for path in sorted((CORPUS / "docs" / "guide").glob("*.md")):
        paragraphs = [p.strip() for p in path.read_text().split("\n\n") if len(p.strip()) > 200]
        if paragraphs:
            turns.append((f"What does the guide say about {path.stem.replace('_', ' ')}?",
                          "\n\n".join(paragraphs[:2])))
    return turns


def make_template(tokens: int) -> tuple[Path, int, int]:
    """A data folder holding one conversation of about `tokens` tokens, continued once by a
    fresh process so that its state is on disk. (folder, conversation id, state tokens)"""
    import llama_cpp

    from engine.models import default_model_path

    vocab = llama_cpp.Llama(str(default_model_path()), vocab_only=True, verbose=False)
    home = Path(tempfile.mkdtemp(prefix="reopen-"))
    script = f"""
import asyncio, json, sys
sys.path.insert(0, {str(ROOT)!r})
from engine import Engine, load_settings
async def main():
    async with Engine(load_settings()) as engine:
        store = await engine.store()
        cid = store.create_conversation("Textual notes")
        for q, a in json.loads(sys.stdin.read()):
            store.add_message(cid, "user", q)
            store.add_message(cid, "assistant", a)
        print(cid)
asyncio.run(main())
"""
    chosen, total = [], 0
    for question, answer in corpus_turns():
        size = len(vocab.tokenize(f"{question}\n{answer}".encode(), add_bos=False)) + 10
        if total + size > tokens - 100:
            continue
        chosen.append((question, answer))
        total += size
    made = subprocess.run([sys.executable, "-c", script], input=json.dumps(chosen), env=env(home),
                          capture_output=True, text=True, check=True)
    conversation = int(made.stdout.strip().splitlines()[-1])
    run_child("cli", home, conversation, PRIME)  # evaluates it all once; its state stays on disk
    states = list((home / "states").glob("*.state"))
    assert len(states) == 1, states
    from engine.backends import disk_states

    header, _ = disk_states._header(states[0].read_bytes()[: 1 << 16])
    return home, conversation, int(header["n_tokens"])


def variant(template: Path, kind: str) -> Path:
    """A copy of the template's data folder: with its state ("state"), without ("none"), with
    the state damaged ("corrupt") or made by another model ("foreign")."""
    from engine.backends import disk_states

    home = Path(tempfile.mkdtemp(prefix=f"reopen-{kind}-"))
    shutil.rmtree(home)
    shutil.copytree(template, home, ignore=shutil.ignore_patterns("*.state") if kind == "none" else None)
    if kind in ("corrupt", "foreign"):
        [path] = (home / "states").glob("*.state")
        blob = bytearray(path.read_bytes())
        if kind == "corrupt":
            blob[len(blob) // 2] ^= 0xFF
            path.write_bytes(bytes(blob))
        else:  # the same bytes, written under another model's fingerprint and our file name
            header, offset = disk_states._header(bytes(blob))
            import numpy as np

            tokens = np.frombuffer(bytes(blob), dtype="<i4", count=header["n_tokens"], offset=offset)
            other = dict(header["fingerprint"], model_sha256="0" * 64)
            written = disk_states.DiskStates(home / "other", 1 << 34, other).write(
                disk_states.SavedState(tokens, bytes(blob[offset + tokens.nbytes : -32])))
            assert written is not None
            path.write_bytes(written.read_bytes())
            shutil.rmtree(home / "other")
    return home


# The parts ------------------------------------------------------------------------------------

def part_reopen(kind: str, template: Path, conversation: int, rounds: int, variants: tuple[str, ...]
                ) -> dict[str, Any]:
    runs: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    for _ in range(rounds):
        for name in variants:  # interleaved: the machine's load falls on every variant alike
            home = variant(template, name)
            runs[name].append(run_child(kind, home, conversation, QUESTION))
            shutil.rmtree(home, ignore_errors=True)
    out: dict[str, Any] = {}
    for name, results in runs.items():
        out[name] = {"ttft_ms": statistics.median(r["ttft_ms"] for r in results),
                     "all_ms": [round(r["ttft_ms"]) for r in results], "text": results[0]["text"],
                     "same_text": len({r["text"] for r in results}) == 1}
    return out


def part_disk(template: Path, n_tokens: int) -> dict[str, Any]:
    from engine.gguf import read_gguf
    from engine.models import default_model_path

    [path] = (template / "states").glob("*.state")
    meta = read_gguf(default_model_path()).metadata
    arch = meta.get("general.architecture", "llama")
    layers, heads, heads_kv, embd = (meta.get(f"{arch}.{key}") for key in (
        "block_count", "attention.head_count", "attention.head_count_kv", "embedding_length"))
    formula = 2 * layers * 1000 * (heads_kv * embd // heads) * 2 / 1e6 if layers and heads and embd else None
    return {"state_tokens": n_tokens, "file_mb": path.stat().st_size / 1e6,
            "mb_per_1k": path.stat().st_size / n_tokens * 1000 / 1e6, "formula_mb_per_1k": formula,
            "shape": [layers, heads_kv * embd // heads if heads else None],
            "estimates": {name: 2 * layers * 1000 * dims * 2 / 1e6 for name, (layers, dims) in SHAPES.items()}}


# The report -----------------------------------------------------------------------------------

def render(results: dict[str, Any]) -> str:
    lines = ["<!-- reopen:start -->", "## Reopening a conversation: model states on disk (issue 23)", ""]
    for run in results.get("runs", []):
        lines.append(f"- `{run['command']}` — {run['date']}; {run['machine']}; load average before/after: "
                     f"{run['load_before']} / {run['load_after']}")
    lines += ["", "| scenario | measure | result | target |", "|---|---|---|---|"]
    for kind, label in (("cli", "continue a ~{n}-token conversation in a fresh process (`Engine.ask`, as `ask -c`)"),
                        ("tui", "same in the TUI: reopen from the sidebar, type 1 s, Enter")):
        part = results.get(kind)
        if part:
            ratio = part["state"]["ttft_ms"] / part["none"]["ttft_ms"]
            lines.append(f"| {label.format(n=results.get('state_tokens', '?'))} | first token, state on disk vs "
                         f"none (median) | {part['state']['ttft_ms']:,.0f} ms vs {part['none']['ttft_ms']:,.0f} ms"
                         f" = **{ratio:.3f}x**; same answer: {part['state']['text'] == part['none']['text']} "
                         f"| ≤ 0.1x |")
    bad = results.get("bad")
    if bad:
        for name in ("corrupt", "foreign"):
            same = bad[name]["text"] == bad["none"]["text"]
            lines.append(f"| a state file that is {'corrupt (one flipped byte)' if name == 'corrupt' else 'from another model'}"
                         f" | first token; answer | {bad[name]['ttft_ms']:,.0f} ms vs no state "
                         f"{bad['none']['ttft_ms']:,.0f} ms; same answer: **{same}** | same as no state |")
    disk = results.get("disk")
    if disk:
        formula = f" (formula from its shape: {disk['formula_mb_per_1k']:.1f})" if disk.get("formula_mb_per_1k") else ""
        estimates = "; ".join(f"{k} {v:,.0f}" for k, v in disk["estimates"].items())
        lines.append(f"| disk per state per 1,000 tokens | MB | embedded SmolLM2-135M: **{disk['mb_per_1k']:.1f}** "
                     f"measured{formula}; estimated (f16 KV): {estimates} | recorded |")
    for kind in ("cli", "tui", "bad"):
        part = results.get(kind)
        if part:
            runs = ", ".join(f"{name}: {v['all_ms']}" for name, v in part.items())
            lines.append(f"\n{kind} runs (first token, ms): {runs}.")
    lines += ["", results.get("notes", "").strip(), "<!-- reopen:end -->"]
    return "\n".join(lines)


def machine_text() -> str:
    from bench_foundation import machine

    return machine()


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        kind, conversation, question = sys.argv[2], int(sys.argv[3]), sys.argv[4]
        result = asyncio.run((child_cli if kind == "cli" else child_tui)(conversation, question))
        print(json.dumps(result))
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", default="cli,tui,bad,disk")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=2000)
    parser.add_argument("--results", type=Path, default=Path(tempfile.gettempdir()) / "bench_reopen.json")
    parser.add_argument("--write", type=Path)
    parser.add_argument("--render", action="store_true", help="Only write the section from --results.")
    parser.add_argument("--notes", type=Path, help="A Markdown file whose text goes under the table.")
    args = parser.parse_args()
    parts = set(args.only.split(","))
    results = json.loads(args.results.read_text()) if args.results.exists() else {}
    if args.notes:
        results["notes"] = args.notes.read_text()
    if args.render:
        if args.write:
            from sections import write_section

            write_section(args.write, "reopen", render(results))
        print(render(results))
        return
    load_before = open("/proc/loadavg").read().split()[:3]
    if parts & {"cli", "tui", "bad", "disk"}:
        template, conversation, n_tokens = make_template(args.tokens)
        results["state_tokens"] = n_tokens
        print(f"conversation {conversation}: state of {n_tokens} tokens", file=sys.stderr)
        if "disk" in parts:
            results["disk"] = part_disk(template, n_tokens)
        if "cli" in parts:
            results["cli"] = part_reopen("cli", template, conversation, args.rounds, ("state", "none"))
            args.results.write_text(json.dumps(results, indent=1))
        if "bad" in parts:
            results["bad"] = part_reopen("cli", template, conversation, max(1, args.rounds - 1),
                                         ("none", "corrupt", "foreign"))
            args.results.write_text(json.dumps(results, indent=1))
        if "tui" in parts:
            try:
                results["tui"] = part_reopen("tui", template, conversation, args.rounds, ("state", "none"))
            except RuntimeError as exc:  # the other parts still count
                print(exc, file=sys.stderr)
            args.results.write_text(json.dumps(results, indent=1))
        shutil.rmtree(template, ignore_errors=True)
    command = "python bench/bench_reopen.py " + " ".join(sys.argv[1:])
    results.setdefault("runs", []).append({
        "command": command, "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine_text(), "load_before": " ".join(load_before),
        "load_after": " ".join(open("/proc/loadavg").read().split()[:3])})
    args.results.write_text(json.dumps(results, indent=1))
    section = render(results)
    print(section)
    if args.write:
        from sections import write_section

        write_section(args.write, "reopen", section)


if __name__ == "__main__":
    main()
