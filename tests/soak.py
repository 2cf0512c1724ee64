"""The long reliability run behind `make soak`: every crash scenario of tests/faults.py with many
SIGKILL trials, the hostile-server trials of tests/hostile.py, the concurrency soak of
tests/concurrency.py, the fuzzers with many examples, and the prompt-injection measurement. Writes
what it ran and found into docs/reliability.md.

    python -m tests.soak                          50 trials each, 10 minutes of concurrency
    python -m tests.soak --trials 5 --minutes 1   a shorter run (the doc says which was run)
    python -m tests.soak --scenarios hostile --minutes 0 --fuzz-examples 0   one kind of trial only
    python -m tests.soak --write                  also rewrite the results section of the doc

Exits 1 when any trial lost anything.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.concurrency import soak
from tests.faults import SCENARIOS, run_trials, summary
from tests.hostile import HostileScenario, run_hostile_trials
from tests.injection import write_section

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "reliability.md"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=50, help="SIGKILL trials per scenario")
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the concurrency soak")
    parser.add_argument("--seed", type=int, default=20261122, help="seed of the random kill times")
    parser.add_argument("--fuzz-examples", type=int, default=2000, help="hypothesis examples per fuzzer")
    parser.add_argument("--scenarios", default=",".join([*SCENARIOS, HostileScenario.name]),
                        help="which crash scenarios, and `hostile` for the hostile servers")
    parser.add_argument("--write", action="store_true", help="record the results in docs/reliability.md")
    args = parser.parse_args()

    rows, failed = [], False
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="assistant-soak-") as work:
        order = [*SCENARIOS, HostileScenario.name]  # a scenario's seed is its place in this list
        for name in args.scenarios.split(","):
            seed = args.seed + order.index(name)
            print(f"== {name}: {args.trials} trials, seed {seed}", flush=True)
            report = lambda t: print(t.line(), flush=True)  # noqa: E731
            if name == HostileScenario.name:
                what = HostileScenario.what
                result = summary(run_hostile_trials(Path(work) / name, args.trials, seed, report))
            else:
                scenario = SCENARIOS[name](Path(work) / name)
                what = scenario.what
                result = summary(run_trials(scenario, args.trials, seed, report))
            failed |= bool(result["failed"])
            lost = "nothing" if not result["failed"] else "; ".join(result["problems"])  # type: ignore[arg-type]
            rows.append(f"| {what} | {result['trials']} (seed {seed}) | "
                        f"{', '.join(result['stages'])} | {lost} |")  # type: ignore[arg-type]
        if args.minutes > 0:
            print(f"== concurrency: {args.minutes:g} minutes", flush=True)
            result = soak(Path(work) / "concurrency" / "home", args.minutes, seed=args.seed)
            failed |= bool(result.problems)
            commands = ", ".join(f"{n} {k}" for k, n in sorted(result.commands.items()))
            lost = "nothing" if not result.problems else "; ".join(result.problems[:5])
            rows.append(f"| Concurrency: the TUI, `assistant ask`, `assistant index` and feedback / backup / "
                        f"history on one data folder for {result.seconds / 60:.1f} min | {commands}; "
                        f"{result.answers} answers checked | - | {lost} |")
            for problem in result.problems:
                print(f"  {problem}", flush=True)
    if args.fuzz_examples > 0:
        env = {**os.environ, "FUZZ_EXAMPLES": str(args.fuzz_examples), "FUZZ_SEED": str(args.seed)}
        print(f"== fuzzing: {args.fuzz_examples} examples per target", flush=True)
        fuzz = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_fuzz.py"],
                              cwd=ROOT, env=env)
        failed |= fuzz.returncode != 0
        rows.append(f"| Fuzzing (tests/test_fuzz.py, tests/gguf_fuzz.py): loaders, chunker, GGUF validator and "
                    f"llama.cpp, SSE parser, config loader | {args.fuzz_examples} examples each (seed {args.seed}) "
                    f"| - | {'nothing: only our own errors' if fuzz.returncode == 0 else 'FAILED: see the run'} |")
    minutes = (time.monotonic() - began) / 60
    text = "\n".join([
        f"Last `make soak` run: `python -m tests.soak --trials {args.trials} --minutes {args.minutes:g} "
        f"--fuzz-examples {args.fuzz_examples}`, {minutes:.0f} minutes in all.",
        "",
        "| fault | trials | where the kills landed | lost |",
        "|---|---|---|---|",
        *rows,
    ])
    print(text)
    if args.write:
        write_section(DOC, "soak", text)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
