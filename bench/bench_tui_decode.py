"""The chat app's decode speed: does an answer stream as fast in the TUI as from `assistant ask`?

Side by side in one run, interleaved rounds, medians, the embedded model, temperature 0, the loop
stop off (every answer runs to --max-tokens):

- the TUI (Textual's Pilot, headless: it composes and renders every frame but writes no escape
  codes to a terminal) as it is: decoding leaves a core to the app's event loop
  (`keep_a_core_for_the_display`, engine/cpu_budget.py);
- the same app with that core given back to decoding (what the app did before);
- the installed `assistant` in a real terminal (tmux, 160x45), read from its status bar, as it is
  and with `n_threads = 2` set (every core decoding: the setting wins over the kept core);
- `assistant ask --no-cache` as a whole process (its `--stats` line), which has no display to draw.

    python bench/bench_tui_decode.py [--rounds 3] [--max-tokens 200] [--write docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import re
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
from bench_foundation import env, machine  # noqa: E402
from sections import write_section  # noqa: E402
from terminal import Terminal  # noqa: E402

PROMPT = "Write a long story about a dragon who guards a castle."
ASSISTANT = str(Path(sys.executable).with_name("assistant"))


async def tui_rounds(rounds: int, max_tokens: int, home: Path) -> dict[str, list[float]]:
    from app.tui import AssistantApp
    from app.widgets.answer import AnswerMessage
    from app.widgets.prompt import PromptInput
    from engine import Engine, cpu_budget, load_settings

    settings = load_settings().replace(max_tokens=max_tokens, temperature=0.0, seed=42, cache=False,
                                       semantic_cache=False, stop_loops=False)
    app = AssistantApp(Engine(settings))
    budget = cpu_budget.process_budget()
    runs: dict[str, list[float]] = {}
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        prompt = app.screen.query_one(PromptInput)
        kept = budget.kept
        for _ in range(rounds):
            for label, keep in (("kept", kept), ("given back", kept - 1)):
                budget.kept = keep
                before = len(app.screen.query(AnswerMessage))
                prompt.focus()
                prompt.load_text(PROMPT)
                await pilot.press("enter")
                started = time.monotonic()
                while time.monotonic() - started < 300:
                    answers = list(app.screen.query(AnswerMessage))
                    if len(answers) > before and answers[-1].response_id is not None:
                        break
                    await asyncio.sleep(0.05)
                row = sqlite3.connect(home / "assistant.db").execute(
                    "SELECT tokens_per_s, ttft_ms FROM responses WHERE id = ?", (answers[-1].response_id,)).fetchone()
                runs.setdefault(f"{label}_tps", []).append(row[0])
                runs.setdefault(f"{label}_ttft", []).append(row[1])
                await pilot.press("ctrl+n")
        budget.kept = kept
    return runs


def terminal_round(max_tokens: int, extra_env: str = "") -> list[float]:
    """tok/s of 3 answers in the installed app in tmux, from its status bar (a new app each round)."""
    home = tempfile.mkdtemp(prefix="tui-decode-term-")
    command = (f"env HF_HUB_OFFLINE=1 ASSISTANT_HOME={home} ASSISTANT_STOP_LOOPS=false ASSISTANT_CACHE=false "
               f"ASSISTANT_MAX_TOKENS={max_tokens} {extra_env} {ASSISTANT}")
    speeds = []
    with Terminal(command, 160, 45) as terminal:
        terminal.wait(lambda screen: "Ask anything" in screen, 30, "the app drawing its prompt")
        time.sleep(3)  # the engine and the model load after the first frame
        for n in range(3):
            terminal.type(f"{PROMPT} Number {n}.")
            terminal.press("Enter")
            time.sleep(1)
            terminal.wait(lambda screen: "answering" not in screen, 60, "the answer ending", every=0.1)
            time.sleep(0.5)  # the status bar's figures follow the last piece
            speeds.append(float(re.findall(r"([\d.]+) tok/s", terminal.screen())[-1]))
            terminal.press("C-n")
            time.sleep(0.5)
    return speeds


def ask_round(max_tokens: int, home: Path) -> tuple[float, float]:
    done = subprocess.run([ASSISTANT, "ask", "--no-cache", "--stats", "-t", "0", "--max-tokens", str(max_tokens),
                           PROMPT], env=env(ASSISTANT_HOME=str(home), ASSISTANT_STOP_LOOPS="false"),
                          capture_output=True, text=True, check=True)
    found = re.search(r"first token (\d+) ms · ([\d.]+) tok/s", done.stderr)
    assert found, done.stderr
    return float(found.group(2)), float(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=200)
    parser.add_argument("--write", type=Path)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    work = Path(tempfile.mkdtemp(prefix="tui-decode-"))
    os.environ["ASSISTANT_HOME"] = str(work / "tui")
    load = [os.getloadavg()[0]]
    runs = asyncio.run(tui_rounds(args.rounds, args.max_tokens, work / "tui"))
    for _ in range(args.rounds):
        runs.setdefault("terminal_every_tps", []).extend(terminal_round(args.max_tokens, "ASSISTANT_N_THREADS=2"))
        runs.setdefault("terminal_kept_tps", []).extend(terminal_round(args.max_tokens))
    for _ in range(args.rounds):
        tps, ttft = ask_round(args.max_tokens, work / "ask")
        runs.setdefault("ask_tps", []).append(tps)
        runs.setdefault("ask_ttft", []).append(ttft)
    load.append(os.getloadavg()[0])
    m = {k: statistics.median(v) for k, v in runs.items()}
    section = f"""<!-- tui-decode:start -->
## The chat app's decode speed (issue 20)

`python bench/bench_tui_decode.py --rounds {args.rounds} --max-tokens {args.max_tokens}`, \
{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M UTC}; {machine()}; load average {load[0]:.2f} -> {load[1]:.2f}.
{args.rounds} interleaved rounds in one app (Pilot, headless), then {args.rounds} rounds of 3 answers in a new app in tmux each way
(alternating), then {args.rounds} `assistant ask` processes;
medians; the embedded model, temperature 0, {args.max_tokens} tokens, the loop stop off.

| decoding in | tok/s | first token, ms | vs `assistant ask` |
|---|---|---|---|
| the TUI, a core kept for its display (now) | {m['kept_tps']:.1f} | {m['kept_ttft']:.0f} | **{m['kept_tps'] / m['ask_tps']:.2f}x** |
| the TUI, every core decoding (before) | {m['given back_tps']:.1f} | {m['given back_ttft']:.0f} | {m['given back_tps'] / m['ask_tps']:.2f}x |
| the app in a real terminal (tmux 160x45), a core kept (now) | {m['terminal_kept_tps']:.1f} | | **{m['terminal_kept_tps'] / m['ask_tps']:.2f}x** |
| the app in a real terminal, `n_threads = 2` (every core) | {m['terminal_every_tps']:.1f} | | {m['terminal_every_tps'] / m['ask_tps']:.2f}x |
| `assistant ask`, a whole process | {m['ask_tps']:.1f} | {m['ask_ttft']:.0f} | 1.00x |

Runs (tok/s): kept {[round(x, 1) for x in runs['kept_tps']]}, every core {[round(x, 1) for x in runs['given back_tps']]}, \
ask {[round(x, 1) for x in runs['ask_tps']]};
terminal kept {[round(x, 1) for x in runs['terminal_kept_tps']]}, terminal every core {[round(x, 1) for x in runs['terminal_every_tps']]}.
<!-- tui-decode:end -->"""
    print(section)
    if args.write:
        write_section(args.write, "tui-decode", section)


if __name__ == "__main__":
    main()
