"""`assistant serve` against its peers, side by side in one run, on the same model and prompt.

1. Latency of one streamed answer (time to first token, total): through `/v1/chat/completions` of
   `assistant serve`, through `Engine.ask` in this process (what `assistant ask` runs), and
   through llama-cpp-python's own OpenAI-compatible server (`python -m llama_cpp.server`), in
   interleaved rounds so drift in the machine's load hits every side alike. Target: the serve
   overhead over llama-cpp-python's server at most 10% (total time, median).
2. Throughput with 1, 4 and 16 concurrent streaming clients against both servers: answers and
   tokens per second, first-token p50/p95, and failures. Target: none failing but by 429 at 16.

Both servers get the same messages (the same system prompt: a client's system message replaces
ours), temperature 0, the same max_tokens and threads; the response cache is off, so every
answer is generated.

    python bench/bench_serve.py [--rounds 10] [--max-tokens 32] [--write docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import socket
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

import httpx  # noqa: E402
from bench_foundation import machine  # noqa: E402
from sections import write_section  # noqa: E402

from engine import AskOptions, Engine, Finished, Token, load_settings  # noqa: E402
from engine.backends.local import default_threads  # noqa: E402
from engine.models import default_model_path  # noqa: E402
from tests.serve_process import ServeProcess  # noqa: E402

SYSTEM = "You are a helpful assistant. Answer clearly and concisely."
QUESTIONS = ["Name three planets.", "What is a river?", "Give two uses of salt.", "Describe a cat briefly.",
             "What is rain?", "Name a famous bridge.", "Why is the sky blue?", "What do bees make?"]
CONCURRENCY = (1, 4, 16)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


@contextlib.contextmanager
def llama_cpp_server(threads: int):
    """llama-cpp-python's server on the embedded model, with the settings the local backend uses."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(default_model_path()), "--host", "127.0.0.1",
         "--port", str(port), "--n_ctx", "4096", "--n_threads", str(threads), "--n_batch", "512",
         # By default a new request interrupts the one streaming: concurrent clients would be cut off.
         "--interrupt_requests", "False", "--verbose", "False"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(f"{url}/models", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline or process.poll() is not None:
            raise RuntimeError("llama_cpp.server did not start")
        time.sleep(0.2)
    try:
        yield url
    finally:
        process.terminate()
        process.wait(30)


async def stream_once(client: httpx.AsyncClient, url: str, model: str, question: str,
                      max_tokens: int) -> tuple[int, float | None, float, str]:
    """One streamed answer: HTTP status (0: the connection failed or was cut), ms to the first
    content, ms to `data: [DONE]` (not to the end of the stream: llama_cpp.server holds it open for
    a while after), the text."""
    body = {"model": model, "stream": True, "max_tokens": max_tokens, "temperature": 0, "seed": 42,
            "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}]}
    start = time.perf_counter()
    first, pieces = None, []
    try:
        return await _stream(client, url, body, start, first, pieces)
    except httpx.HTTPError:
        return 0, first, (time.perf_counter() - start) * 1000, "".join(pieces)


async def _stream(client: httpx.AsyncClient, url: str, body: dict, start: float, first: float | None,
                  pieces: list[str]) -> tuple[int, float | None, float, str]:
    async with client.stream("POST", f"{url}/chat/completions", json=body) as response:
        if response.status_code != 200:
            await response.aread()
            return response.status_code, None, (time.perf_counter() - start) * 1000, ""
        async for line in response.aiter_lines():
            if line == "data: [DONE]":  # the answer is complete: a server may keep the stream open a while
                break
            if not line.startswith("data: "):
                continue
            chunk = json.loads(line[6:])
            if "error" in chunk:
                return 500, first, (time.perf_counter() - start) * 1000, "".join(pieces)
            for choice in chunk.get("choices", []):
                if text := choice["delta"].get("content"):
                    first = first or (time.perf_counter() - start) * 1000
                    pieces.append(text)
    return 200, first, (time.perf_counter() - start) * 1000, "".join(pieces)


async def ask_once(engine: Engine, question: str, max_tokens: int) -> tuple[int, float | None, float, str]:
    options = AskOptions(max_tokens=max_tokens, temperature=0.0, seed=42, system=SYSTEM, knowledge=False)
    start = time.perf_counter()
    first, text = None, ""
    async with contextlib.aclosing(engine.ask(question, options=options, incognito=True)) as events:
        async for event in events:
            if isinstance(event, Token) and event.text:
                first = first or (time.perf_counter() - start) * 1000
            elif isinstance(event, Finished):
                text = event.text
    return 200, first, (time.perf_counter() - start) * 1000, text


async def latency(serve_url: str, peer_url: str, rounds: int, max_tokens: int, count) -> dict[str, dict]:
    os.environ["ASSISTANT_CACHE"] = "0"
    engine = Engine(load_settings().replace(temperature=0.0, seed=42))
    engine.prefill_next_turn = False  # as `assistant ask`: one question, then the process ends
    await engine.load_model()
    samples: dict[str, list[tuple[float, float, int]]] = {"serve": [], "ask": [], "peer": []}
    async with httpx.AsyncClient(timeout=300) as client:
        for warm in QUESTIONS[:2]:  # load, caches and code paths warm on every side
            await stream_once(client, serve_url, "assistant", warm, max_tokens)
            await stream_once(client, peer_url, "peer", warm, max_tokens)
            await ask_once(engine, warm, max_tokens)
        for r in range(rounds):
            question = QUESTIONS[r % len(QUESTIONS)]
            for side in ("serve", "peer", "ask"):
                if side == "ask":
                    status, first, total, text = await ask_once(engine, question, max_tokens)
                else:
                    url, model = (serve_url, "assistant") if side == "serve" else (peer_url, "peer")
                    status, first, total, text = await stream_once(client, url, model, question, max_tokens)
                assert status == 200 and first is not None, (side, status)
                samples[side].append((first, total, count(text)))
    await engine.close()
    return {side: {"ttft": statistics.median(s[0] for s in rows), "total": statistics.median(s[1] for s in rows),
                   "tokens": statistics.median(s[2] for s in rows), "n": len(rows)}
            for side, rows in samples.items()}


async def throughput(url: str, model: str, clients: int, per_client: int, max_tokens: int, count) -> dict:
    async def client_loop(http: httpx.AsyncClient, n: int) -> list[tuple[int, float | None, str]]:
        done = []
        for i in range(per_client):
            status, first, _, text = await stream_once(http, url, model, QUESTIONS[(n + i) % len(QUESTIONS)],
                                                       max_tokens)
            done.append((status, first, text))
        return done

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=600, limits=limits) as http:
        start = time.perf_counter()
        results = [r for rs in await asyncio.gather(*(client_loop(http, n) for n in range(clients))) for r in rs]
        wall = time.perf_counter() - start
    ok = [r for r in results if r[0] == 200]
    firsts = [r[1] for r in ok if r[1] is not None]
    return {"clients": clients, "requests": len(results), "ok": len(ok),
            "busy": sum(r[0] == 429 for r in results), "failed": sum(r[0] not in (200, 429) for r in results),
            "answers_per_s": len(ok) / wall, "tokens_per_s": sum(count(r[2]) for r in ok) / wall,
            "ttft_p50": statistics.median(firsts) if firsts else None,
            "ttft_p95": percentile(firsts, 95) if firsts else None}


def report(lat: dict, through: dict[str, list[dict]], rounds: int, max_tokens: int, per_client: int,
           threads: int, load: str, command: str) -> str:
    today = datetime.date.today().isoformat()
    peer = lat["peer"]
    names = {"serve": "`assistant serve`, /v1/chat/completions", "ask": "`Engine.ask` in-process (as `assistant ask`)",
             "peer": "llama-cpp-python's server (`llama_cpp.server`)"}
    rows = []
    for side in ("serve", "ask", "peer"):
        s = lat[side]
        over = "" if side == "peer" else f" ({(s['total'] / peer['total'] - 1) * 100:+.0f}%)"
        rows.append(f"| {names[side]} | {s['ttft']:.0f} ms | {s['total']:.0f} ms{over} | {s['tokens']:.0f} |")
    overhead = (lat["serve"]["total"] / peer["total"] - 1) * 100
    trows = []
    for side, label in (("serve", "assistant serve"), ("peer", "llama_cpp.server")):
        for t in through[side]:
            p50 = f"{t['ttft_p50']:.0f} / {t['ttft_p95']:.0f} ms" if t["ttft_p50"] is not None else "-"
            trows.append(f"| {label} | {t['clients']} | {t['ok']}/{t['requests']} | {t['busy']} | {t['failed']} | "
                         f"{t['answers_per_s']:.2f} | {t['tokens_per_s']:.1f} | {p50} |")
    sixteen = next(t for t in through["serve"] if t["clients"] == 16)
    return f"""<!-- serve:start -->
## Serving: `assistant serve` against llama-cpp-python's server

Run on {today}, {machine()}; load average {load}: **the machine was shared with
other work while this ran** (other test runs on its 2 cores), so read the numbers side by side
(interleaved rounds, the servers in turn at each level), not as absolutes. The embedded SmolLM2-135M (Q4_1), {threads} threads, n_ctx 4096, temperature 0,
max_tokens {max_tokens}, the same system prompt and questions on every side, the response cache
off. Command: `{command}`.

One streamed answer at a time ({rounds} interleaved rounds; medians; tokens counted with the
model's tokenizer):

| through | first token | total | tokens |
|---|---|---|---|
{chr(10).join(rows)}

Overhead of `assistant serve` over llama-cpp-python's server (total, median): **{overhead:+.0f}%**
(target: at most +10%). What it adds: the question, the answer and the response row written to
SQLite, the guardrails, the prompt built from the template and fitted to the context, the
queue, and the SSE framing. `Engine.ask` in-process is the same work without HTTP.

Concurrent streaming clients, {per_client} requests each (`--concurrency 1 --queue 16`, the
defaults: one answer is generated at a time, the others wait their turn):

| server | clients | answered | 429 | failed | answers/s | tokens/s | first token p50 / p95 |
|---|---|---|---|---|---|---|---|
{chr(10).join(trows)}

At 16 clients `assistant serve` failed {sixteen['failed']} requests (target: none but by 429).
First-token times under load include the wait in the queue. Both servers generate one answer at a
time, so answers/s cannot grow with the clients; where both slow down together at a level, the
machine's other load did it, not the servers.
<!-- serve:end -->"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--per-client", type=int, default=2, help="Requests per concurrent client.")
    parser.add_argument("--write", type=Path, help="Replace the serving section of this Markdown file.")
    args = parser.parse_args()
    command = "python bench/bench_serve.py " + " ".join(sys.argv[1:])
    load = "{:.1f}, {:.1f}, {:.1f}".format(*os.getloadavg())
    home = Path(tempfile.mkdtemp(prefix="bench-serve-")) / "home"
    os.environ["ASSISTANT_HOME"] = str(home)

    import llama_cpp

    vocab = llama_cpp.Llama(str(default_model_path()), vocab_only=True, verbose=False)

    def count(text: str) -> int:
        return len(vocab.tokenize(text.encode(), add_bos=False, special=True)) if text else 0

    threads = default_threads()
    env = {"ASSISTANT_CACHE": "0", "ASSISTANT_TEMPERATURE": "0", "ASSISTANT_SEED": "42",
           "ASSISTANT_N_THREADS": str(threads)}
    os.environ["ASSISTANT_N_THREADS"] = str(threads)
    with ServeProcess(home, "--quiet", env=env) as serve, llama_cpp_server(threads) as peer:
        lat = asyncio.run(latency(serve.url, peer, args.rounds, args.max_tokens, count))
        through: dict[str, list[dict]] = {"serve": [], "peer": []}
        for n in CONCURRENCY:  # the two servers in turn at each level, so a burst of load hits both
            for side, url, model in (("serve", serve.url, "assistant"), ("peer", peer, "peer")):
                through[side].append(asyncio.run(throughput(url, model, n, args.per_client, args.max_tokens,
                                                            count)))
        load += ", and {:.1f}, {:.1f}, {:.1f} at the end".format(*os.getloadavg())
    section = report(lat, through, args.rounds, args.max_tokens, args.per_client, threads, load, command)
    print(section)
    if args.write:
        write_section(args.write, "serve", section)


if __name__ == "__main__":
    main()
