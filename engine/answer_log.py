"""What one answer leaves behind: the response row, its spans, the draft saved while it streams,
and the `on_response_logged` observers told about it afterwards."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from engine.backends.base import Backend, StreamResult
from engine.errors import AssistantError
from engine.models import cached_sha256
from engine.router import Route, is_remote
from engine.tracing import Trace
from engine.turn import Templates
from memory.retriever import Passage
from memory.store import Store, now

log = logging.getLogger(__name__)
Price = Callable[[Backend, int, int], "float | None"]  # USD of (backend, prompt tokens, completion tokens)
DRAFT_S = 0.25  # a kill -9 mid-answer loses at most this much of the answer streamed so far


@dataclass
class Timing:
    """When the answer's text arrived (time.perf_counter() values)."""

    first_at: float | None = None
    last_at: float | None = None
    generated_at: float | None = None  # the stream ended (before the guardrails)


def response_row(
    trace: Trace, route: Route | None, chosen: Backend, price: Price, status: str,
    error: BaseException | None, passages: list[Passage], result: StreamResult, prompt_message_id: int,
    timing: Timing, ended_at: float, templates: Templates, model_hash: str | None,
) -> tuple[dict[str, Any], float | None]:
    """The response row of one answer (success or error): who answered, with what, how fast; and
    its cost (None when the model's price is unknown)."""
    tokens = result.completion_tokens
    first_at, last_at = timing.first_at, timing.last_at
    # The server's own count of prompt tokens when it gives one, else ours.
    prompt_tokens = result.prompt_tokens or (route.fitted.prompt_tokens if route else None)
    cost = price(chosen, prompt_tokens or 0, tokens) if route else 0.0
    return {
        "prompt_message_id": prompt_message_id,
        "status": status,
        "error": str(error) if error else None,
        "backend": chosen.name,
        "model": chosen.model_name,
        "model_hash": None if is_remote(chosen) else model_hash,
        "template": templates.name(bool(passages)),
        "template_version": templates.version(bool(passages)),
        "retrieved_chunk_ids": json.dumps([p.chunk_id for p in passages]) if passages else None,
        "input_tokens": prompt_tokens,
        "output_tokens": tokens,
        "ttft_ms": (first_at - trace.origin) * 1000 if first_at else None,
        "total_ms": (ended_at - trace.origin) * 1000,
        "tokens_per_s": (tokens - 1) / (last_at - first_at)
        if first_at and last_at and last_at > first_at and tokens > 1 else None,
        "cost": cost or 0.0,  # unknown price: counted as 0 (the Started notice says so)
        "trace_id": uuid.uuid4().hex,
        "endpoint": chosen.endpoint if route else None,
        "remote": int(route is not None and is_remote(chosen)),
        "route": json.dumps(route.passed_over if route else []),
        "created_at": now(),
    }, cost


def generation_spans(trace: Trace, route: Route, last_at: float | None, ended_at: float) -> None:
    """The generation step and its parts, as the chosen backend timed them (each kept within
    the step: `Trace.add`)."""
    r, start = route.result, route.stream_started_at
    began = r.started_at or start
    first = route.first_at if route.first is not None else None
    trace.add("generation", start, ended_at, backend=route.backend.name, tokens=r.completion_tokens)
    trace.add("queue wait", start, began, "generation")
    if r.prompt_eval_ms is not None:
        # The first token is sampled from the evaluated prompt: evaluation ends before it arrives.
        end, attrs = began + r.prompt_eval_ms / 1000, {"tokens": r.prompt_tokens_evaluated}
        if first is not None and end > first:
            attrs["measured_ms"] = round(r.prompt_eval_ms, 3)
            log.warning("%s reported %.1f ms of prompt evaluation, more than the %.1f ms to its first "
                        "token", route.backend.name, r.prompt_eval_ms, (first - began) * 1000)
            end = first
        trace.add("prompt evaluation", began, end, "generation", **attrs)
    trace.add("server wait", began, r.first_byte_at, "generation")
    trace.add("first token", began, first, "generation")
    trace.add("decode", first, last_at, "generation")


CONTENT_ATTRS = ("result",)  # span attributes holding text of the conversation (engine.toolloop)


class Observers:
    """Hands each saved answer to the plugins' `on_response_logged` hooks, in a thread, in the
    background; a hook that raises is disabled (someone else's code must not stop the answers)."""

    def __init__(self, plugins: Callable[[], Any]) -> None:
        self._plugins = plugins  # the one plugin manager (call from a thread: loads on first use)
        self._pending: set[asyncio.Future[Any]] = set()

    def observe(self, response: dict[str, Any], spans: list[dict[str, Any]]) -> None:
        # Timings and names, never content (a tool's result is stored with its span, for the
        # answer's 🔧 line): an observer may send what it gets off the machine (OTLP).
        spans = [{**s, "attrs": {k: v for k, v in (s["attrs"] or {}).items() if k not in CONTENT_ATTRS}}
                 for s in spans]
        self.keep_until_closed(asyncio.ensure_future(asyncio.to_thread(self._notify, response, spans)))

    def keep_until_closed(self, task: asyncio.Future[Any]) -> None:
        """`close()` waits for `task` too."""
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    def _notify(self, response: dict[str, Any], spans: list[dict[str, Any]]) -> None:
        try:
            manager = self._plugins()
        except AssistantError as exc:  # the OTLP exporter is configured but not installed
            log.warning("%s", exc)
            return
        for impl in manager.hook.on_response_logged.get_hookimpls():
            try:
                impl.function(response=response, spans=spans)
            except Exception as exc:  # someone else's code: disable it, keep answering
                manager.disable(impl.plugin, f"on_response_logged raised {type(exc).__name__}: {exc}")

    async def close(self) -> None:
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)


class Draft:
    """The answer so far, saved while it streams (at the first token, then every DRAFT_S), so a
    crash or kill -9 mid-answer keeps it as a partial message. One save at a time, in a thread;
    a failing save (full disk) stops the drafts, never the answer."""

    def __init__(self, store: Store, conversation_id: int, enabled: bool) -> None:
        self.store, self.conversation_id, self.enabled = store, conversation_id, enabled
        self.message_id: int | None = None
        self._saving: asyncio.Future[int] | None = None
        self._saved_at = 0.0

    def offer(self, pieces: list[str]) -> None:
        if not self.enabled or not self._collect():
            return
        now_s = time.monotonic()
        if self.message_id is not None and now_s - self._saved_at < DRAFT_S:
            return
        self._saved_at = now_s
        self._saving = asyncio.ensure_future(asyncio.to_thread(
            self.store.save_draft, self.conversation_id, self.message_id, "".join(pieces)))

    def _collect(self) -> bool:
        """Take the last save's outcome; False while it is still running."""
        saving = self._saving
        if saving is None:
            return True
        if not saving.done():
            return False
        self._saving = None
        if saving.cancelled():
            return True
        if (exc := saving.exception()) is not None:
            log.warning("saving the answer so far failed: %s", exc)
            self.enabled = False
            return True
        self.message_id = saving.result()
        return True

    async def settle(self) -> int | None:
        """Wait for a save in flight; the draft's message id (None: no draft)."""
        if self._saving is not None:
            await asyncio.gather(self._saving, return_exceptions=True)
            self._collect()
        return self.message_id


class ModelHash:
    """The SHA-256 of the local model file, for the response rows: computed once, in the
    background, after the model loads (cached in the store by path, size and mtime)."""

    def __init__(self, store: Callable[[], Awaitable[Store]], observers: Observers) -> None:
        self._store = store
        self._observers = observers  # close() waits for a hash left behind by a model switch
        self._task: asyncio.Task[str | None] | None = None

    async def loaded(self, backend: Backend) -> None:
        """`backend`'s model is loaded: hash its file (once), if it has one."""
        path = backend.model_path
        if self._task is None and path is not None:
            store = await self._store()
            self._task = asyncio.create_task(asyncio.to_thread(cached_sha256, store, path))

    def forget(self) -> None:
        """Another model answers from now on."""
        if self._task is not None:
            self._observers.keep_until_closed(asyncio.ensure_future(self._task))
            self._task = None

    async def known(self) -> str | None:
        if self._task is None:
            return None
        try:
            return await asyncio.shield(self._task)
        except (OSError, AssistantError):  # unreadable file, locked database: the row goes on
            return None

    async def close(self) -> None:
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
