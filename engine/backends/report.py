"""`assistant backends` and the TUI's /backends: every backend, where it runs, its breaker, its price."""

from __future__ import annotations

import asyncio
from typing import Any

from engine.backends.base import Backend
from engine.backends.local import LocalBackend
from engine.errors import AssistantError
from engine.gguf import read_gguf
from engine.models import resolve_model
from engine.router import Router, is_remote, is_trusted


async def backends_report(router: Router, check: bool = False) -> list[dict[str, Any]]:
    """Every backend: kind, model, where it runs, its place in the route, its breaker, its
    price; with `check`, whether it answers now (a model file that validates, GET /models)."""
    route = list(router.settings.backends)
    report = []
    for name, backend in router.backends.items():
        breaker = await router.breaker(name)
        price = router.cost(backend, 1_000_000, 0), router.cost(backend, 0, 1_000_000)
        row: dict[str, Any] = {
            "name": name,
            "kind": "local" if not is_remote(backend) else "trusted" if is_trusted(backend) else "cloud",
            "model": backend.model_name,
            "endpoint": backend.endpoint,
            "route": route.index(name) + 1 if name in route else None,
            "breaker": breaker.state,
            "failures": breaker.current.failures,
            "last_error": breaker.current.last_error,
            "retry_in_s": round(breaker.retry_in_s(), 1),
            "usd_per_mtok": None if price[0] is None else {"input": price[0], "output": price[1]},
        }
        if check:
            row["health"] = await health(backend)
        report.append(row)
    return report


async def health(backend: Backend) -> str:
    """"ok ..." or the reason it cannot answer; never loads a model into memory."""
    try:
        if is_remote(backend):
            models = await backend.models()  # type: ignore[attr-defined]
            listed = "lists" if backend.model_name in models else "does not list"
            return f"ok: the server {listed} {backend.model_name}"
        if isinstance(backend, LocalBackend):
            path = await asyncio.to_thread(resolve_model, backend.model, backend.models_dir)
            await asyncio.to_thread(read_gguf, path)
            return f"ok: {path}"
        return "ok"
    except AssistantError as exc:
        return f"failing: {exc}"
