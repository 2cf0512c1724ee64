"""Routing benchmarks, side by side in one run against a direct httpx stream.

1. Router overhead: time to first token through the router (gates, breaker, prompt fitting, the
   OpenAI-compatible backend) against a bare httpx streaming request to the same local server
   (tests/openai_server.py on 127.0.0.1), interleaved; target overhead < 5 ms at the median.
2. Failover: time to the first token when the primary is dead (connection refused) and a healthy
   secondary answers, with the breaker closed (the primary is tried, with its retries) and once
   it is open (skipped at once); the same direct stream is the reference. Targets: < 300 ms
   closed, < 5 ms open (over the direct stream).

    python bench/bench_router.py [--rounds 300] [--write docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import socket
import statistics
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

from engine.backends.base import SamplingParams  # noqa: E402
from engine.backends.openai_compat import OpenAICompatibleBackend  # noqa: E402
from engine.config import Provider, Settings  # noqa: E402
from engine.router import Router  # noqa: E402
from memory.store import Store  # noqa: E402
from tests.openai_server import FakeOpenAI  # noqa: E402

MESSAGES = [{"role": "system", "content": "You are helpful."}, {"role": "user", "content": "Say hello."}]
PARAMS = SamplingParams(max_tokens=16, temperature=0.0, top_p=1.0, seed=42)


def dead_url() -> str:
    """A port on 127.0.0.1 with nothing listening: connections are refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/v1"


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1] if len(values) > 1 else values[0]


async def direct_ttft(client: httpx.AsyncClient, url: str) -> float:
    """The reference: one streaming request with httpx, until the first content delta is parsed."""
    start = time.perf_counter()
    body = {"model": "fake-model", "messages": MESSAGES, "stream": True, "max_tokens": 16}
    async with client.stream("POST", url + "/chat/completions", json=body) as response:
        async for line in response.aiter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                delta = json.loads(line[6:])["choices"][0]["delta"].get("content")
                if delta:
                    return (time.perf_counter() - start) * 1000
    raise RuntimeError("no token")


async def routed_ttft(router: Router) -> float:
    async def prepare(backend):
        return await backend.fit("You are helpful.", [], "Say hello.", PARAMS.max_tokens), []

    start = time.perf_counter()
    route = await router.open(prepare, PARAMS, retrieved=[])
    elapsed = (time.perf_counter() - start) * 1000
    assert route.first
    await route.rest.aclose()
    return elapsed


def make_router(providers: dict[str, Provider], order: tuple[str, ...], folder: Path, **settings) -> Router:
    """Each router has a store of its own: breakers are shared through the store by design."""
    store = Store(folder / f"{'-'.join(order)}-{len(list(folder.iterdir()))}.db")
    config = Settings(backends=order, allow_cloud=True, providers=providers, **settings)
    backends = {name: OpenAICompatibleBackend(p) for name, p in providers.items()}

    async def get_store() -> Store:
        return store

    return Router(config, backends, get_store)


async def run(rounds: int) -> dict[str, dict[str, float]]:
    results: dict[str, list[float]] = {k: [] for k in ("direct", "routed", "failover_closed", "failover_open")}
    with FakeOpenAI() as server, tempfile.TemporaryDirectory() as tmp:
        healthy = Provider(name="healthy", base_url=server.url, model="fake-model")
        dead = Provider(name="dead", base_url=dead_url(), model="fake-model")
        direct_client = httpx.AsyncClient(timeout=10)
        plain = make_router({"healthy": healthy}, ("healthy",), Path(tmp))
        # Closed: a threshold no run reaches, so every question tries the dead primary first.
        closed = make_router({"dead": dead, "healthy": healthy}, ("dead", "healthy"), Path(tmp),
                             breaker_failures=10**9)
        opened = make_router({"dead": dead, "healthy": healthy}, ("dead", "healthy"), Path(tmp),
                             breaker_failures=1, breaker_cooldown_s=3600)
        for _ in range(10):  # warm up connections and code paths
            await direct_ttft(direct_client, server.url)
            await routed_ttft(plain)
            await routed_ttft(opened)
        for _ in range(rounds):  # interleaved, so drift in machine load hits every side alike
            results["direct"].append(await direct_ttft(direct_client, server.url))
            results["routed"].append(await routed_ttft(plain))
            results["failover_closed"].append(await routed_ttft(closed))
            results["failover_open"].append(await routed_ttft(opened))
        await direct_client.aclose()
        for router in (plain, closed, opened):
            for backend in router.backends.values():
                await backend.aclose()
            (await router._store()).close()
    return {k: {"p50": statistics.median(v), "p95": percentile(v, 95), "n": len(v)} for k, v in results.items()}


def report(stats: dict[str, dict[str, float]], rounds: int) -> str:
    d = stats["direct"]
    today = datetime.date.today().isoformat()

    def row(label: str, key: str, target: str) -> str:
        s = stats[key]
        return (f"| {label} | {s['p50']:.2f} ms / {s['p95']:.2f} ms | {d['p50']:.2f} ms / {d['p95']:.2f} ms "
                f"| **{s['p50'] - d['p50']:+.2f} ms** ({s['p50'] / d['p50']:.2f}x) | {target} |")

    return f"""<!-- router:start -->
## Routing: router overhead and failover

Run on {today}, {machine()}. {rounds} interleaved rounds per row against `tests/openai_server.py`
(a real HTTP server on 127.0.0.1 streaming server-sent events). Command: `make bench`
(`python bench/bench_router.py --rounds {rounds} --write docs/benchmarks.md`).

| time to first token | through the router, p50 / p95 | direct httpx stream, p50 / p95 | difference at p50 | target |
|---|---|---|---|---|
{row("healthy server, through the router (gates, breaker, prompt fit, backend)", "routed", "< 5 ms")}
{row("primary dead (connection refused), breaker closed: tried with its 2 retries, then the secondary", "failover_closed", "< 300 ms")}
{row("primary dead, breaker open: skipped at once", "failover_open", "< 5 ms")}

The direct stream is one `httpx.AsyncClient.stream()` request on a warm connection, parsed until
the first content delta. The closed-breaker failover is dominated by the retries' backoff (full
jitter: up to 0.1 s, then up to 0.2 s, as configured by default); with `max_retries = 0` it is one
refused connection.
<!-- router:end -->"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--write", type=Path, help="Replace the routing section of this Markdown file.")
    args = parser.parse_args()
    os.environ.setdefault("ASSISTANT_HOME", tempfile.mkdtemp())
    stats = asyncio.run(run(args.rounds))
    section = report(stats, args.rounds)
    print(section)
    if args.write:
        write_section(args.write, "router", section)


if __name__ == "__main__":
    main()
