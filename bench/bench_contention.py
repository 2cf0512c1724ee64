"""Speed on a busy machine: `assistant ask` alone, beside a second ask, beside `assistant index`,
and the TUI answering while it indexes a folder itself; raw llama-cpp-python (its defaults) run
through the same pairs as the peer. Side by side in one run, interleaved rounds, medians.

    python bench/bench_contention.py pairs [--rounds 5] [--tag before] [--out bench/results]
    python bench/bench_contention.py index [--rounds 1] [--files 2000] [--window 30]
    python bench/bench_contention.py tui   [--rounds 3] [--files 2000]
    python bench/bench_contention.py sweep [--rounds 3]     # the spin/thread settings, raw llama.cpp
    python bench/bench_contention.py table --write docs/benchmarks.md   # every saved result

Each scenario saves its figures as JSON (`--out`); `table` writes them, before and after, as one
table in docs/benchmarks.md. A scenario fits in one `/tmp/team/cpu exclusive` run (< 8 minutes).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import re
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT))

PROMPT = "Write a short story about a robot learning to paint."
MAX_TOKENS, SEED = 200, 42
STATS = re.compile(r"first token (\d+) ms · ([\d.]+) tok/s")


def env(**extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    return {**base, "HF_HUB_OFFLINE": "1", "ANONYMIZED_TELEMETRY": "False", **extra}


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return f"{os.cpu_count()} CPUs ({cpu}), no GPU"


# one decoding process -------------------------------------------------------------------------------

def ours(home: str) -> list[str]:
    return [str(BIN / "assistant"), "ask", "--no-cache", "-t", "0", "--seed", str(SEED), "--max-tokens",
            str(MAX_TOKENS), "--stats", "--no-sources", PROMPT]


def raw(threads: int | None = None) -> list[str]:
    return [sys.executable, str(Path(__file__)), "peer", *(["--threads", str(threads)] if threads else [])]


class Decoder:
    """A process that decodes one answer; its first token and tokens/s, as it reports them."""

    def __init__(self, command: list[str], limit_s: float = 120, **extra: str) -> None:
        self.command, self.extra, self.limit_s = command, extra, limit_s
        self.ttft_ms: float | None = None
        self.tokens_per_s: float | None = None
        self.error = ""
        self.cut = False  # stopped at limit_s: tokens/s from its streamed output so far
        self.chunks: list[tuple[float, str]] = []

    def start(self) -> Decoder:
        self.proc = subprocess.Popen(self.command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env=env(**self.extra), bufsize=0)
        self.started = time.perf_counter()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        return self

    def _read(self) -> None:
        assert self.proc.stdout is not None
        while piece := self.proc.stdout.read(16):
            self.chunks.append((time.perf_counter(), piece))

    def wait(self) -> Decoder:
        try:
            self.proc.wait(timeout=max(1.0, self.limit_s - (time.perf_counter() - self.started)))
        except subprocess.TimeoutExpired:
            # Far too slow to finish (two answers at 1 tok/s): its speed from what it streamed.
            self.proc.kill()
            self.proc.wait()
            self.reader.join()
            self.cut = True
            text = "".join(t for _, t in self.chunks)
            tokens = count_tokens(text)
            if tokens > 1 and self.chunks[-1][0] > self.chunks[0][0]:
                self.tokens_per_s = (tokens - 1) / (self.chunks[-1][0] - self.chunks[0][0])
                self.ttft_ms = 1000 * (self.chunks[0][0] - self.started)
            else:
                self.error = f"not a token in {self.limit_s:.0f} s"
            return self
        self.reader.join()
        err = self.proc.stderr.read() if self.proc.stderr else ""
        out = "".join(t for _, t in self.chunks)
        if self.proc.returncode != 0:
            self.error = err.strip()[-500:]
            return self
        found = STATS.search(err)
        if found:  # assistant ask --stats
            self.ttft_ms, self.tokens_per_s = float(found.group(1)), float(found.group(2))
        elif out.strip().splitlines()[-1:] and out.strip().splitlines()[-1].startswith("{"):  # the raw peer
            result = json.loads(out.strip().splitlines()[-1])
            self.ttft_ms, self.tokens_per_s = result["ttft_ms"], result["tokens_per_s"]
        else:
            self.error = f"no figures in the output: {err.strip()[-300:]}"
        return self


_vocab: Any = None


def count_tokens(text: str) -> int:
    global _vocab
    if _vocab is None:
        import llama_cpp

        from engine.models import default_model_path

        _vocab = llama_cpp.Llama(str(default_model_path()), vocab_only=True, verbose=False)
    return len(_vocab.tokenize(text.encode(), add_bos=False, special=True))


def busy_seconds() -> float:
    """Busy CPU time of the whole machine so far (/proc/stat), in seconds."""
    total = 0
    for line in Path("/proc/stat").read_text().splitlines():
        name, *values = line.split()
        if name.startswith("cpu") and name[3:].isdigit():
            numbers = [int(v) for v in values]
            total += sum(numbers[:8]) - numbers[3] - numbers[4]
    return total / os.sysconf("SC_CLK_TCK")


def alone(decoder: Decoder) -> tuple[Decoder, float]:
    """Run `decoder` by itself; also how many cores other programs kept busy meanwhile (the
    machine's busy time less the child's own), to tell an idle machine from a noisy one."""
    import resource

    before = time.monotonic(), busy_seconds(), resource.getrusage(resource.RUSAGE_CHILDREN)
    decoder.start().wait()
    after = time.monotonic(), busy_seconds(), resource.getrusage(resource.RUSAGE_CHILDREN)
    child = (after[2].ru_utime + after[2].ru_stime) - (before[2].ru_utime + before[2].ru_stime)
    return decoder, max(0.0, (after[1] - before[1] - child) / (after[0] - before[0]))


def together(*decoders: Decoder) -> list[Decoder]:
    for d in decoders:
        d.start()
    return [d.wait() for d in decoders]


def peer_main(threads: int | None) -> None:
    """Raw llama-cpp-python with its defaults (n_ctx 512, n_threads cpu_count // 2), or `threads`."""
    import llama_cpp

    from engine.config import DEFAULT_SYSTEM_PROMPT
    from engine.models import default_model_path

    kwargs: dict[str, Any] = {"n_threads": threads} if threads else {}
    llm = llama_cpp.Llama(model_path=str(default_model_path()), verbose=False, **kwargs)
    messages = [{"role": "system", "content": DEFAULT_SYSTEM_PROMPT}, {"role": "user", "content": PROMPT}]
    pieces, first, last = [], None, None
    start = time.perf_counter()
    for chunk in llm.create_chat_completion(messages=messages, stream=True, max_tokens=MAX_TOKENS,
                                            temperature=0.0, seed=SEED):
        text = chunk["choices"][0]["delta"].get("content")
        if text:
            last = time.perf_counter()
            first = first or last
            pieces.append(text)
            sys.stdout.write(text)  # streamed, as `assistant ask` does
            sys.stdout.flush()
    assert first is not None and last is not None
    tokens = len(llm.tokenize("".join(pieces).encode(), add_bos=False, special=True))
    print("\n" + json.dumps({"tokens": tokens, "tokens_per_s": (tokens - 1) / (last - first),
                      "ttft_ms": 1000 * (first - start)}))


# scenario: pairs ------------------------------------------------------------------------------------

def pairs(rounds: int, spin_env: dict[str, str]) -> dict[str, Any]:
    """Interleaved rounds: each tool alone, two of it at once, and ours beside the raw peer."""
    homes = [tempfile.mkdtemp(prefix="contention-") for _ in range(2)]
    runs: dict[str, list[float]] = {}

    def keep(name: str, d: Decoder) -> None:
        if d.error:
            print(f"  {name}: FAILED {d.error}", file=sys.stderr)
            return
        runs.setdefault(f"{name}_tps", []).append(d.tokens_per_s)  # type: ignore[arg-type]
        runs.setdefault(f"{name}_ttft", []).append(d.ttft_ms)  # type: ignore[arg-type]

    together(Decoder(ours(homes[0]), ASSISTANT_HOME=homes[0], **spin_env))  # first run: the data folder
    for number in range(rounds):
        d, noise = alone(Decoder(ours(homes[0]), ASSISTANT_HOME=homes[0], **spin_env))
        keep("ours_alone", d)
        runs.setdefault("ours_alone_others_busy", []).append(noise)
        d, noise = alone(Decoder(raw(2)))  # the reference for idle decode: the same 2 threads
        keep("raw2_alone", d)
        runs.setdefault("raw2_alone_others_busy", []).append(noise)
        a, b = together(Decoder(ours(homes[0]), ASSISTANT_HOME=homes[0], **spin_env),
                        Decoder(ours(homes[1]), ASSISTANT_HOME=homes[1], **spin_env))
        keep("ours_pair", a)
        keep("ours_pair", b)
        keep("raw_alone", Decoder(raw()).start().wait())
        a, b = together(Decoder(raw()), Decoder(raw()))
        keep("raw_pair", a)
        keep("raw_pair", b)
        a, b = together(Decoder(ours(homes[0]), ASSISTANT_HOME=homes[0], **spin_env), Decoder(raw()))
        keep("ours_beside_raw", a)
        keep("raw_beside_ours", b)
        print(f"round {number + 1}/{rounds}: " + ", ".join(f"{k} {v[-1]:.1f}" for k, v in runs.items()
                                                          if k.endswith("_tps")), file=sys.stderr)
    for home in homes:
        shutil.rmtree(home, ignore_errors=True)
    return {"runs": runs}


# scenario: ask while `assistant index` runs ---------------------------------------------------------

def make_corpus(folder: Path, files: int, start: int = 0) -> Path:
    if not folder.exists():
        subprocess.run([sys.executable, str(HERE / "make_corpus.py"), str(folder), "--files", str(files),
                        "--start", str(start)], check=True, capture_output=True)
    return folder


def indexed_files(db: Path) -> int:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as conn:
            return conn.execute("SELECT count(*) FROM files WHERE state = 'indexed'").fetchone()[0]
    except sqlite3.Error:
        return 0


def index_window(corpus: Path, window: float, asker: Any, spin_env: dict[str, str]) -> dict[str, Any]:
    """Start `assistant index` on a fresh data folder; once files are being indexed, run `asker`
    (back to back, or nothing) for `window` seconds and count the files indexed meanwhile."""
    home = tempfile.mkdtemp(prefix="contention-index-")
    db = Path(home) / "assistant.db"
    proc = subprocess.Popen([str(BIN / "assistant"), "index", str(corpus), "--json"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=env(ASSISTANT_HOME=home, **spin_env))
    samples: list[tuple[float, int]] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            samples.append((time.monotonic(), indexed_files(db)))
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    deadline = time.monotonic() + 120
    while not samples or samples[-1][1] == 0:  # scanned, the embedder loaded, the first batch stored
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"assistant index never indexed a file: {proc.stderr.read() if proc.stderr else ''}")
        time.sleep(0.1)
    began = time.monotonic()
    decoders: list[Decoder] = []
    while time.monotonic() - began < window:
        if asker is None:
            time.sleep(0.2)
        else:
            decoders.append(asker().start().wait())
    ended = time.monotonic()
    stop.set()
    sampler.join()
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    shutil.rmtree(home, ignore_errors=True)
    inside = [(t, n) for t, n in samples if began <= t <= ended]
    # files/s between the first and the last change inside the window: batches land every few
    # seconds, so counting from the window's edges would measure where the edges fell.
    changes = [inside[0]] + [s for prev, s in zip(inside, inside[1:], strict=False) if s[1] != prev[1]]
    rate = (changes[-1][1] - changes[0][1]) / (changes[-1][0] - changes[0][0]) if len(changes) > 1 else 0.0
    failed = [d.error for d in decoders if d.error]
    for error in failed:
        print(f"  ask FAILED: {error}", file=sys.stderr)
    return {"files_per_s": rate, "tps": [d.tokens_per_s for d in decoders if not d.error],
            "ttft": [d.ttft_ms for d in decoders if not d.error]}


def index_scenario(rounds: int, files: int, window: float, spin_env: dict[str, str]) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="contention-corpus-"))
    corpus = make_corpus(work / "notes", files)
    home = tempfile.mkdtemp(prefix="contention-ask-")
    runs: dict[str, list[float]] = {}

    def asker_ours() -> Decoder:
        return Decoder(ours(home), ASSISTANT_HOME=home, **spin_env)

    together(asker_ours())  # the data folder
    for number in range(rounds):
        # the references, alone, in the same round
        for _ in range(2):
            d = asker_ours().start().wait()
            runs.setdefault("ours_alone_tps", []).append(d.tokens_per_s)  # type: ignore[arg-type]
            runs.setdefault("ours_alone_ttft", []).append(d.ttft_ms)  # type: ignore[arg-type]
            d = Decoder(raw()).start().wait()
            runs.setdefault("raw_alone_tps", []).append(d.tokens_per_s)  # type: ignore[arg-type]
        alone = index_window(corpus, window, None, spin_env)
        runs.setdefault("index_alone_fps", []).append(alone["files_per_s"])
        with_ours = index_window(corpus, window, asker_ours, spin_env)
        runs.setdefault("index_beside_ours_fps", []).append(with_ours["files_per_s"])
        runs.setdefault("ours_beside_index_tps", []).extend(with_ours["tps"])
        runs.setdefault("ours_beside_index_ttft", []).extend(with_ours["ttft"])
        with_raw = index_window(corpus, window, lambda: Decoder(raw()), spin_env)
        runs.setdefault("index_beside_raw_fps", []).append(with_raw["files_per_s"])
        runs.setdefault("raw_beside_index_tps", []).extend(with_raw["tps"])
        print(f"round {number + 1}/{rounds}: index alone {alone['files_per_s']:.1f} files/s, beside ours "
              f"{with_ours['files_per_s']:.1f} (ask {median(with_ours['tps'])}), beside raw "
              f"{with_raw['files_per_s']:.1f} (raw {median(with_raw['tps'])})", file=sys.stderr)
    shutil.rmtree(work, ignore_errors=True)
    shutil.rmtree(home, ignore_errors=True)
    return {"runs": runs, "files": files, "window_s": window}


# scenario: the TUI answering while it indexes a folder itself ---------------------------------------

async def tui_rounds(rounds: int, files: int, keys: int) -> dict[str, Any]:
    from app.tui import AssistantApp
    from app.widgets.answer import AnswerMessage
    from app.widgets.prompt import PromptInput
    from engine import Engine, load_settings

    work = Path(tempfile.mkdtemp(prefix="contention-tui-"))
    os.environ["ASSISTANT_HOME"] = str(work / "home")
    settings = load_settings().replace(max_tokens=MAX_TOKENS, temperature=0.0, seed=SEED, cache=False,
                                       semantic_cache=False)
    small = make_corpus(work / "small", 50, start=100_000)
    app = AssistantApp(Engine(settings))
    runs: dict[str, list[float]] = {}

    jobs = app.jobs  # app/indexing.py: the app's indexing runs
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        prompt = app.screen.query_one(PromptInput)

        async def echo_times(n: int, busy: Any) -> list[float]:
            """Keypress to echo: a key handed to the app as its terminal driver hands it, until
            the prompt holds it (the repaint follows within a frame). Not `pilot.press`: that
            waits until the process is idle, which it never is while a model decodes."""
            from textual import events

            times = []
            prompt.focus()
            for i in range(n):
                if busy is not None and not busy():
                    break
                key = events.Key("x", "x")
                key.set_sender(app)
                start = time.perf_counter()
                app._driver.send_message(key)  # type: ignore[union-attr]
                while not prompt.text.endswith("x" * (i + 1)) and time.perf_counter() - start < 5:
                    await asyncio.sleep(0.001)
                times.append(1000 * (time.perf_counter() - start))
                await asyncio.sleep(0.05)  # about a fast typist's pace
            return times

        async def answer(label: str, measure_echo: bool) -> None:
            prompt.focus()
            prompt.load_text(PROMPT)
            before = len(app.screen.query(AnswerMessage))
            await pilot.press("enter")
            echoes: list[float] = []
            done: AnswerMessage | None = None
            started = time.monotonic()
            while time.monotonic() - started < 300:
                answers = list(app.screen.query(AnswerMessage))
                if len(answers) > before and (answers[-1].response_id is not None or answers[-1].state):
                    done = answers[-1]
                    break
                if measure_echo and not echoes and app.screen.answering:
                    echoes = await echo_times(keys, lambda: app.screen.answering)
                await asyncio.sleep(0.05)
            prompt.load_text("")
            if done is None or done.response_id is None:
                print(f"  {label}: no answer ({done.state if done else 'timeout'})", file=sys.stderr)
                return
            row = sqlite3.connect(work / "home" / "assistant.db").execute(
                "SELECT ttft_ms, tokens_per_s FROM responses WHERE id = ?", (done.response_id,)).fetchone()
            runs.setdefault(f"{label}_ttft", []).append(row[0])
            runs.setdefault(f"{label}_tps", []).append(row[1])
            runs.setdefault(f"{label}_echo", []).extend(echoes)

        async def indexing_started(folder: Path) -> None:
            jobs.index(folder)  # as the folders screen does
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                done = re.search(r": (\d+)/\d+ files", app.indexing_text)
                if done and int(done.group(1)) > 0:
                    break
                await asyncio.sleep(0.1)
            await asyncio.sleep(3)  # past the first files: batches are being embedded

        while any(w.group == "load" and w.is_running for w in app.screen.workers):  # model, embedder
            await asyncio.sleep(0.2)
        knowledge = await app.engine.knowledge()
        await asyncio.to_thread(knowledge.index, small)  # both idle and busy answers search a folder
        await answer("warmup", False)
        for number in range(rounds):
            await answer("idle", True)
            big = make_corpus(work / f"notes{number}", files, start=number * files)
            await indexing_started(big)
            await answer("busy", True)
            still = bool(app.indexing_text)
            jobs._stop_indexing.set()
            while any(w.group == "index" and w.is_running for w in app.workers):
                await asyncio.sleep(0.1)
            jobs._stop_indexing.clear()
            if not still:
                print("  the index finished before the answer did: use more --files", file=sys.stderr)
            print(f"round {number + 1}/{rounds}: " + ", ".join(
                f"{k} {v[-1]:.1f}" for k, v in runs.items() if v and not k.endswith("echo")), file=sys.stderr)
    shutil.rmtree(work, ignore_errors=True)
    return {"runs": runs, "files": files}


# scenario: the spin/thread settings, measured on raw llama.cpp --------------------------------------

SWEEP = {
    "default": {},
    "passive": {"OMP_WAIT_POLICY": "PASSIVE"},
    "spin10k": {"GOMP_SPINCOUNT": "10000"},
    "spin1k": {"GOMP_SPINCOUNT": "1000"},
}


def sweep(rounds: int) -> dict[str, Any]:
    runs: dict[str, list[float]] = {}
    for number in range(rounds):
        for name, extra in SWEEP.items():
            for threads in (1, 2):
                key = f"{name}_t{threads}"
                d = Decoder(raw(threads), **extra).start().wait()
                runs.setdefault(f"{key}_alone", []).append(d.tokens_per_s)  # type: ignore[arg-type]
                a, b = together(Decoder(raw(threads), **extra), Decoder(raw(threads), **extra))
                runs.setdefault(f"{key}_pair", []).extend([a.tokens_per_s, b.tokens_per_s])  # type: ignore[list-item]
        print(f"round {number + 1}/{rounds}: " + ", ".join(f"{k} {v[-1]:.1f}" for k, v in runs.items()),
              file=sys.stderr)
    return {"runs": runs}


# the table -----------------------------------------------------------------------------------------

def ratio(num: float | None, den: float | None) -> str:
    return f"**{num / den:.2f}**" if num and den else "-"


def m(result: dict[str, Any] | None, key: str) -> float | None:
    return median([v for v in result["runs"].get(key, []) if v is not None]) if result else None


def fmt(value: float | None, unit: str = "") -> str:
    return "-" if value is None else f"{value:.1f}{unit}"


def table(results: Path) -> str:
    saved = {p.stem: json.loads(p.read_text()) for p in sorted(results.glob("contention-*.json"))
             if p.stem.split("-")[1] in ("before", "after")}
    rows = ["| scenario | measure | " + " | ".join(t for t in ("before", "after")) + " | target |",
            "|---|---|---|---|---|"]

    def cells(scenario: str, fn: Any) -> list[str]:
        return [fn(saved.get(f"contention-{tag}-{scenario}")) for tag in ("before", "after")]

    def row(scenario: str, what: str, measure: str, fn: Any, target: str) -> None:
        rows.append(f"| {what} | {measure} | " + " | ".join(cells(scenario, fn)) + f" | {target} |")

    row("pairs", "`assistant ask` alone", "decode tok/s; first token",
        lambda r: f"{fmt(m(r, 'ours_alone_tps'))} tok/s; {fmt(m(r, 'ours_alone_ttft'))} ms" if r else "-",
        "reference")
    row("pairs", "two `assistant ask` at once", "each one's tok/s ÷ alone",
        lambda r: f"{ratio(m(r, 'ours_pair_tps'), m(r, 'ours_alone_tps'))} ({fmt(m(r, 'ours_pair_tps'))} tok/s)"
        if r else "-", ">= 0.40")
    row("pairs", "`assistant ask` alone vs raw llama-cpp-python, same 2 threads", "decode tok/s ratio "
        "(cores busy elsewhere meanwhile)",
        lambda r: f"{ratio(m(r, 'ours_alone_tps'), m(r, 'raw2_alone_tps'))} ({fmt(m(r, 'ours_alone_tps'))} vs "
        f"{fmt(m(r, 'raw2_alone_tps'))}; {m(r, 'ours_alone_others_busy') or 0:.2f} / "
        f"{m(r, 'raw2_alone_others_busy') or 0:.2f})" if r and m(r, 'raw2_alone_tps') else "-", ">= 0.97")
    row("pairs", "raw llama-cpp-python (defaults) alone", "decode tok/s",
        lambda r: f"{fmt(m(r, 'raw_alone_tps'))} tok/s" if r else "-", "")
    row("pairs", "two raw llama-cpp-python at once", "each one's tok/s ÷ its alone",
        lambda r: f"{ratio(m(r, 'raw_pair_tps'), m(r, 'raw_alone_tps'))} ({fmt(m(r, 'raw_pair_tps'))} tok/s)"
        if r else "-", "ours better")
    row("pairs", "`assistant ask` beside raw llama-cpp-python", "ours ÷ ours alone; raw ÷ raw alone",
        lambda r: f"{ratio(m(r, 'ours_beside_raw_tps'), m(r, 'ours_alone_tps'))}; "
        f"{ratio(m(r, 'raw_beside_ours_tps'), m(r, 'raw_alone_tps'))}" if r else "-", "")
    row("index", "`assistant ask` while `assistant index` runs (2,000 notes)", "ask tok/s ÷ alone",
        lambda r: f"{ratio(m(r, 'ours_beside_index_tps'), m(r, 'ours_alone_tps'))} "
        f"({fmt(m(r, 'ours_beside_index_tps'))} of {fmt(m(r, 'ours_alone_tps'))} tok/s)" if r else "-", ">= 0.6")
    row("index", "", "index files/s ÷ alone",
        lambda r: f"{ratio(m(r, 'index_beside_ours_fps'), m(r, 'index_alone_fps'))} "
        f"({fmt(m(r, 'index_beside_ours_fps'))} of {fmt(m(r, 'index_alone_fps'))} files/s)" if r else "-",
        ">= 0.3")
    row("index", "raw llama-cpp-python while `assistant index` runs", "raw tok/s ÷ alone; index files/s ÷ alone",
        lambda r: f"{ratio(m(r, 'raw_beside_index_tps'), m(r, 'raw_alone_tps'))}; "
        f"{ratio(m(r, 'index_beside_raw_fps'), m(r, 'index_alone_fps'))}" if r else "-", "ours better")
    row("tui", "the TUI answering while it indexes 2,000 notes", "first token ÷ idle",
        lambda r: f"{ratio(m(r, 'busy_ttft'), m(r, 'idle_ttft'))} ({fmt(m(r, 'busy_ttft'))} vs "
        f"{fmt(m(r, 'idle_ttft'))} ms)" if r else "-", "<= 2")
    row("tui", "", "tok/s ÷ idle",
        lambda r: f"{ratio(m(r, 'busy_tps'), m(r, 'idle_tps'))} ({fmt(m(r, 'busy_tps'))} vs "
        f"{fmt(m(r, 'idle_tps'))} tok/s)" if r else "-", ">= 0.6")
    row("tui", "", "keypress-to-echo p95 while answering (idle: answering only)",
        lambda r: (f"**{percentile(r['runs']['busy_echo'], 0.95):.0f} ms** (idle "
                   f"{percentile(r['runs']['idle_echo'], 0.95):.0f} ms)")
        if r and r["runs"].get("busy_echo") and r["runs"].get("idle_echo") else "-", "< 50 ms")
    notes = []
    for name, result in saved.items():
        notes.append(f"- `{name}`: {result['date']}, load average {result['load_before']} before, "
                     f"{result['load_after']} after; `{result['command']}`")
    sweep = saved.get("contention-before-sweep")
    return ("\n".join(rows) + ("\n\nHow waiting threads wait, raw llama-cpp-python, two processes at once "
            "(`sweep`):\n\n" + sweep_table(sweep) if sweep else "") + "\n\nRuns:\n\n" + "\n".join(notes))


def sweep_table(result: dict[str, Any]) -> str:
    lines = ["| waiting threads | threads | alone tok/s | each of two at once tok/s | ratio |", "|---|---|---|---|---|"]
    for name, extra in SWEEP.items():
        for threads in (1, 2):
            alone, pair = m(result, f"{name}_t{threads}_alone"), m(result, f"{name}_t{threads}_pair")
            setting = " ".join(f"{k}={v}" for k, v in extra.items()) or "libgomp default"
            lines.append(f"| {setting} | {threads} | {fmt(alone)} | {fmt(pair)} | {ratio(pair, alone)} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("scenario", choices=["pairs", "index", "tui", "sweep", "table", "peer"])
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--window", type=float, default=30.0)
    parser.add_argument("--keys", type=int, default=40)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--tag", default="dev", help="before, after, or anything for a trial run")
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for our processes")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--write", type=Path, help="table: replace the contention section of this file")
    args = parser.parse_args()
    if args.scenario == "peer":
        peer_main(args.threads)
        return
    if args.scenario == "table":
        text = table(args.out)
        print(text)
        if args.write:
            from bench.sections import write_section

            marker = "<!-- contention-table -->"
            current = args.write.read_text()
            if marker in current:
                head, rest = current.split(marker, 1)
                tail = rest.split(marker, 1)[1]
                args.write.write_text(head + marker + "\n" + text + "\n" + marker + tail)
            else:
                write_section(args.write, "cpu-budget", f"<!-- cpu-budget:start -->\n{marker}\n{text}\n"
                              f"{marker}\n<!-- cpu-budget:end -->")
        return
    spin_env = dict(item.split("=", 1) for item in args.env)
    load_before, started = loadavg(), time.monotonic()
    if args.scenario == "pairs":
        result = pairs(args.rounds or 5, spin_env)
    elif args.scenario == "index":
        result = index_scenario(args.rounds or 1, args.files, args.window, spin_env)
    elif args.scenario == "tui":
        result = asyncio.run(tui_rounds(args.rounds or 3, args.files, args.keys))
    else:
        result = sweep(args.rounds or 3)
        print(sweep_table({**result}))
    result.update(date=datetime.datetime.now().strftime("%Y-%m-%d %H:%M UTC"), machine=machine(),
                  load_before=load_before, load_after=loadavg(), seconds=round(time.monotonic() - started),
                  command="python bench/bench_contention.py " + " ".join(sys.argv[1:]), env=spin_env)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"contention-{args.tag}-{args.scenario}.json").write_text(json.dumps(result, indent=1))
    print(json.dumps({k: median([x for x in v if x is not None]) for k, v in result["runs"].items()}, indent=1))


if __name__ == "__main__":
    main()
