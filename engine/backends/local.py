"""The local backend: a GGUF model run in-process by llama-cpp-python.

llama.cpp blocks and is not thread-safe, so one dedicated worker thread owns the model: it loads
it (engine/backends/local_loading.py), keeps and restores its states
(engine/backends/local_states.py), counts tokens and decodes (here). Text pieces travel to the
event loop through an asyncio queue; setting a stop flag ends decoding after the current token.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeVar

import jinja2

from engine.backends.base import Backend, SamplingParams, StreamResult
from engine.backends.llama_runtime import (  # noqa: F401  (re-exported: doctor, benchmarks, tests)
    default_threads,
    gpu_offload_supported,
    import_llama_cpp,
    system_info,
)
from engine.backends.local_loading import ModelLoading
from engine.backends.local_states import PREFILL_MAX_TOKENS, StateKeeping  # noqa: F401
from engine.context import FittedPrompt, Message, fit_messages
from engine.cpu_budget import REPLAN_S, CpuBudget, process_budget
from engine.errors import AssistantError, GenerationError
from engine.fit import Fit
from engine.gguf import GGUFInfo
from engine.models import DEFAULT_MODEL_FILE, resolve_model

T = TypeVar("T")
log = logging.getLogger(__name__)
_DONE = object()
BATCH_S = 0.03  # 30 ms: text still flows smoothly, and the event loop wakes 5x less often


class LocalBackend(ModelLoading, StateKeeping, Backend):
    name = "local"
    remote = False
    trusted = True
    endpoint = "local"

    def __init__(
        self,
        model: str | Path | None = None,
        *,
        models_dir: str | Path | None = None,
        n_ctx: int = 4096,
        n_gpu_layers: int | None = None,
        n_threads: int | None = None,
        budget: CpuBudget | None = None,
        n_batch: int = 512,
        flash_attn: bool = True,
        prompt_cache_mb: int = 256,
        auto_fit: bool = True,
        min_ctx: int = 512,
        states_dir: str | Path | None = None,
        state_cache_disk_mb: int | None = 0,
    ) -> None:
        # Resolved at load time, so a bad `model` setting is reported like any load error.
        self.model = str(model) if model else None
        self.models_dir = models_dir
        self.model_path: Path | None = None
        try:
            self.model_name = resolve_model(self.model, models_dir).stem
        except AssistantError:
            self.model_name = Path(self.model).stem if self.model else Path(DEFAULT_MODEL_FILE).stem
        # n_ctx and n_gpu_layers as asked; after loading, the ones used (see `hardware_fit`).
        self.n_ctx = n_ctx
        self.n_gpu_layers = n_gpu_layers
        self.requested = (n_ctx, n_gpu_layers)
        self.auto_fit = auto_fit
        self.min_ctx = min_ctx
        self.hardware_fit: Fit | None = None
        # Threads follow the cores free now (engine/cpu_budget.py); `n_threads` set fixes them.
        self.budget = budget or process_budget()
        self.configured_threads = n_threads
        self.n_threads = n_threads or default_threads()  # as loaded: see _fit_threads
        self.n_threads_batch = self.n_threads
        self.n_batch = n_batch
        self.flash_attn = flash_attn
        self.prompt_cache_mb = prompt_cache_mb
        # Model states on disk (engine/backends/disk_states.py): None sizes the bound for this
        # disk, 0 keeps none (and clears the folder at load).
        self.states_dir = Path(states_dir) if states_dir else None
        self.state_cache_disk_mb = state_cache_disk_mb
        self._cache: Any = None
        self._writer: Any = None
        self._context_fingerprint: dict[str, Any] | None = None
        self._keep_tag: str | None = None  # the state after the last answer goes to disk under this
        self.info: GGUFInfo | None = None
        self._llm: Any = None
        self._formatter: Any = None
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="llama")
        self._loading: concurrent.futures.Future[None] | None = None
        self._loading_lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        return self._llm is not None

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _fit_threads(self) -> None:
        """Decode on the cores free now: a thread whose core another process keeps busy makes
        its partners wait at every barrier (two answers at once ran at 0.08 of their speed with
        2 threads each on 2 cores). Call from the model's thread, between tokens."""
        import llama_cpp

        threads = self.budget.plan(self.configured_threads)
        if (threads.decode, threads.batch) != (self.n_threads, self.n_threads_batch):
            llama_cpp.llama_set_n_threads(self._llm.ctx, threads.decode, threads.batch)
            self.n_threads, self.n_threads_batch = threads.decode, threads.batch

    def count_tokens(self, messages: list[Message]) -> int:
        """Prompt tokens for `messages`; call from the model's worker thread."""
        if self._formatter is not None:
            formatted = self._formatter(messages=messages)
            return len(self._tokenize(formatted.prompt, add_bos=not formatted.added_special))
        # No template in the file: llama-cpp-python falls back to a generic format; allow for
        # its role markers generously.
        return sum(len(self._tokenize(m["content"], add_bos=False)) + 8 for m in messages) + 4

    def _tokenize(self, text: str, add_bos: bool) -> list[int]:
        return self._llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True)

    async def fit(
        self, system: str, history: list[Message], question: str, max_tokens: int, sources: str = ""
    ) -> FittedPrompt:
        await self.load()
        try:
            return await self._run(
                fit_messages, system, history, question, self.count_tokens, self.n_ctx, max_tokens, sources
            )
        except (jinja2.TemplateError, ValueError):  # llama-cpp-python's raise_exception: ValueError
            if not sources:
                raise
            # The model's chat template allows no system message after the first (Mistral's,
            # Gemma's): the sources go in the question's message instead.
            return await self._run(
                fit_messages, system, history, f"{sources}\n\n{question}", self.count_tokens, self.n_ctx,
                max_tokens
            )

    async def stream(
        self, messages: list[Message], params: SamplingParams, result: StreamResult
    ) -> AsyncIterator[str]:
        await self.load()
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        stop = threading.Event()

        def send(item: Any) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the event loop is gone: nobody is listening any more
                stop.set()

        def decode() -> None:
            import llama_cpp

            result.started_at = time.perf_counter()
            pieces: list[str] = []
            sent = 0  # pieces[:sent] have been handed over
            last_send = 0.0
            try:
                # Finish what was evaluated without reading logits (the turn evaluated ahead):
                # llama.cpp times an open batch from its start, so after the reset alone this
                # answer's prompt evaluation would count from then (all the user's reading time).
                llama_cpp.llama_synchronize(self._llm.ctx)
                llama_cpp.llama_perf_context_reset(self._llm.ctx)
                self._fit_threads()
                replanned = time.monotonic()
                chunks = self._llm.create_chat_completion(
                    messages=messages,
                    stream=True,
                    max_tokens=params.max_tokens,
                    temperature=params.temperature,
                    top_p=params.top_p,
                    seed=params.seed,
                    stop=list(params.stop) or None,
                    # A JSON schema becomes a llama.cpp grammar: the model can only write valid JSON.
                    response_format={"type": "json_object", "schema": params.json_schema}
                    if params.json_schema else None,
                )
                try:
                    for chunk in chunks:
                        choice = chunk["choices"][0]
                        result.finish_reason = choice.get("finish_reason") or result.finish_reason
                        text = choice.get("delta", {}).get("content")
                        if text:
                            pieces.append(text)
                            now = time.monotonic()
                            # The first piece goes at once; later ones at most every BATCH_S:
                            # each wake-up of the event loop preempts a decoding thread.
                            if sent == 0 or now - last_send >= BATCH_S:
                                send("".join(pieces[sent:]))
                                sent, last_send = len(pieces), now
                            if now - replanned >= REPLAN_S:
                                self._fit_threads()
                                replanned = now
                        if stop.is_set():
                            result.finish_reason = "cancelled"
                            break
                finally:
                    chunks.close()  # ends llama.cpp's decoding loop now, not at garbage collection
                if sent < len(pieces):
                    send("".join(pieces[sent:]))
                perf = llama_cpp.llama_perf_context(self._llm.ctx)
                result.prompt_eval_ms, result.prompt_tokens_evaluated = perf.t_p_eval_ms, perf.n_p_eval
                result.completion_tokens = len(self._tokenize("".join(pieces), add_bos=False))
                send(_DONE)
            except Exception as exc:  # handed to the event loop, translated there
                send(exc)

        decoding = loop.run_in_executor(self._executor, decode)
        try:
            while True:
                item = await queue.get()
                if item is _DONE:
                    break
                if isinstance(item, BaseException):
                    raise GenerationError(
                        f"The local model {self.model_name} failed while answering: {item}."
                    ) from item
                yield item
        finally:
            stop.set()
            # Return only once decoding has really stopped (at most one more token), so the
            # model is free for the next question; shielded so a second cancel cannot skip it.
            await asyncio.shield(decoding)

    async def aclose(self) -> None:
        await asyncio.to_thread(self.close)

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
        if self._keep_tag is not None:  # the state asked for was not taken yet: the model is idle now
            self._keep_sync()
        if self._writer is not None:
            self._writer.flush(60)  # the state after the last answer is what the next run needs
        if self._llm is not None:
            self._llm.close()
            self._llm = None
