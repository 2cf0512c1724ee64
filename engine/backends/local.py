"""The local backend: a GGUF model run in-process by llama-cpp-python.

llama.cpp blocks and is not thread-safe, so one dedicated worker thread owns the model: it loads
it, counts tokens and decodes. Text pieces travel to the event loop through an asyncio queue;
setting a stop flag ends decoding after the current token.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import ctypes
import dataclasses
import functools
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeVar

import jinja2

from engine.backends.base import Backend, SamplingParams, StreamResult
from engine.context import FittedPrompt, Message, fit_messages
from engine.cpu_budget import REPLAN_S, CpuBudget, process_budget
from engine.errors import AssistantError, GenerationError, ModelLoadError, ModelOutOfMemoryError
from engine.fit import Fit, Hardware, fit_model
from engine.gguf import GGUFInfo, read_gguf
from engine.models import DEFAULT_MODEL_FILE, resolve_model
from engine.paths import ensure_private_dir

T = TypeVar("T")
log = logging.getLogger(__name__)
_DONE = object()
BATCH_S = 0.03  # 30 ms: text still flows smoothly, and the event loop wakes 5x less often
PREFILL_MAX_TOKENS = 256  # the most evaluated ahead after an answer (a bound on wasted work)


@functools.cache
def import_llama_cpp() -> Any:
    """llama_cpp, with its log routed into ours and process-wide output left alone.

    `Llama(verbose=False)` silences llama.cpp by `dup2`-ing /dev/null over the process's fds 1
    and 2 while a model loads: whatever another thread writes meanwhile (the CLI's answer, every
    repaint of the TUI) is lost. llama.cpp's messages reach us through `llama_log_set` instead,
    so that redirection is switched off; `verbose` then only stops llama-cpp-python's prints."""
    import llama_cpp
    from llama_cpp import _utils

    def never_redirect(self: Any, disable: bool = True) -> None:
        self.disable = True  # the context manager's own switch for "do nothing"

    _utils.suppress_stdout_stderr.__init__ = never_redirect  # type: ignore[method-assign]
    llama_cpp.llama_log_set(_log_callback(llama_cpp), ctypes.c_void_p(0))
    return llama_cpp


def gpu_offload_supported() -> bool:
    """Whether this llama-cpp-python build can offload layers to a GPU: the one place llama_cpp
    is asked (the load, `assistant doctor`, `engine.hardware`)."""
    return bool(import_llama_cpp().llama_supports_gpu_offload())


def system_info() -> str:
    """llama.cpp's own list of the CPU and GPU features this build uses (`assistant doctor`)."""
    return import_llama_cpp().llama_print_system_info().decode(errors="replace").strip(" |")


# ggml_log_level (ggml.h): 1 debug, 2 info, 3 warn, 4 error, 5 continues the previous message.
# llama.cpp's info is chatter (every metadata key of the file): our debug.
_LEVELS = {1: logging.DEBUG, 2: logging.DEBUG, 3: logging.WARNING, 4: logging.ERROR}
llama_log = logging.getLogger("llama.cpp")


@functools.cache  # one callback for the process: ctypes must keep it alive while llama.cpp holds it
def _log_callback(llama_cpp: Any) -> Any:
    pending: list[str] = []  # llama.cpp writes a line in pieces; one log record per line
    level = [logging.DEBUG]
    lock = threading.Lock()

    @llama_cpp.llama_log_callback
    def callback(ggml_level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        with lock:
            if ggml_level != 5:
                level[0] = _LEVELS.get(ggml_level, logging.DEBUG)
            pending.append(text.decode("utf-8", errors="replace"))
            if pending[-1].endswith("\n"):
                line = "".join(pending).rstrip()
                pending.clear()
                if line:
                    llama_log.log(level[0], "%s", line)

    return callback


def default_threads() -> int:
    """Decoding is memory-bound: one thread per physical core is fastest. Up to 4 logical CPUs
    are usually all physical; beyond that, assume two hardware threads per core."""
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return available if available <= 4 else available // 2


def _out_of_memory(exc: BaseException) -> bool:
    """llama.cpp reports a failed allocation as a generic error; its words give it away."""
    text = str(exc).lower()
    return isinstance(exc, MemoryError) or any(
        words in text for words in ("out of memory", "failed to allocate", "failed to create llama_context")
    )


class LocalBackend(Backend):
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

    def start_loading(self) -> None:
        """Begin loading in the model's thread now; `load()` then waits for it. Callable before
        the event loop runs, so the CLI overlaps the load with its own start-up."""
        with self._loading_lock:
            if self._loading is None:
                self._loading = self._executor.submit(self._load_sync)

    async def load(self) -> None:
        self.start_loading()
        assert self._loading is not None
        try:
            await asyncio.wrap_future(self._loading)
        except BaseException:
            with self._loading_lock:  # a failed load is tried again next time (the file may be fixed)
                if self._loading is not None and self._loading.done():
                    self._loading = None
            raise

    def _load_sync(self) -> None:
        self.model_path = resolve_model(self.model, self.models_dir)
        self.model_name = self.model_path.stem
        self.info = read_gguf(self.model_path)  # a damaged file never reaches llama.cpp
        llama_cpp = import_llama_cpp()  # imported here: it takes a while, and the UI must draw first

        fit = self.hardware_fit = self.choose_fit(gpu_offload_supported())
        n_ctx, n_gpu_layers = fit.n_ctx, fit.n_gpu_layers
        threads = self.budget.plan(self.configured_threads)
        self.n_threads, self.n_threads_batch = threads.decode, threads.batch
        while True:
            try:
                self._llm = llama_cpp.Llama(
                    model_path=str(self.model_path),
                    n_ctx=n_ctx,
                    n_gpu_layers=n_gpu_layers,
                    n_threads=threads.decode,
                    n_threads_batch=threads.batch,
                    n_batch=min(self.n_batch, n_ctx),
                    flash_attn=self.flash_attn,
                    verbose=False,
                )
                break
            except (ValueError, RuntimeError, MemoryError) as exc:
                if not _out_of_memory(exc):
                    raise ModelLoadError(
                        f"llama.cpp could not load the model {self.model_path}: {exc}.",
                        hint="The file may need a newer llama-cpp-python, or more memory: "
                        "try a smaller quantization or a lower n_ctx / n_gpu_layers.",
                    ) from exc
                smaller = self._smaller(n_ctx, n_gpu_layers)
                if smaller is None:
                    raise ModelOutOfMemoryError(
                        f"Not enough memory to load {self.model_path} with n_ctx={n_ctx} and "
                        f"n_gpu_layers={n_gpu_layers}: {exc}.",
                        hint="Lower n_ctx or n_gpu_layers, or use a smaller quantization.",
                    ) from exc
                # The estimate was wrong (another program took the memory meanwhile): step down
                # rather than fail, and say so in `hardware_fit`.
                log.warning("Out of memory loading %s with n_ctx=%d, n_gpu_layers=%d; trying %s",
                            self.model_path, n_ctx, n_gpu_layers, smaller)
                n_ctx, n_gpu_layers = smaller
                self.hardware_fit = dataclasses.replace(
                    fit, n_ctx=n_ctx, n_gpu_layers=n_gpu_layers,
                    reason=f"{fit.reason}; out of memory when loading, so fell back to n_ctx={n_ctx}, "
                    f"n_gpu_layers={n_gpu_layers}")
        self.n_ctx = n_ctx
        self.n_gpu_layers = n_gpu_layers
        self._formatter = self._make_formatter()
        if self.prompt_cache_mb > 0:
            # llama.cpp reuses the prompt prefix of the last answer by itself; this keeps the model
            # state after earlier answers too, so returning to another conversation (or starting one
            # with the same system prompt and sources) does not evaluate its history again.
            from engine.backends.state_cache import StateCache

            self._cache = StateCache(capacity_bytes=self.prompt_cache_mb << 20, llm=self._llm)
            self._llm.set_cache(self._cache)
        # With the model file's hash remembered, states are ready for the first question;
        # otherwise it is computed on another thread (seconds for gigabytes) and meanwhile
        # no state is read or written.
        self._context_fingerprint = None  # of the model just loaded
        if self.states_dir is not None and not self._open_disk_states(compute_hash=False):
            threading.Thread(target=self._open_disk_states, name="state-fingerprint", daemon=True).start()

    def _open_disk_states(self, compute_hash: bool = True) -> bool:
        """Find the states this model may use on disk; False if its file's hash is not known yet."""
        from engine.backends import disk_states
        from engine.backends.state_cache import fingerprint

        assert self.states_dir is not None and self.model_path is not None
        try:
            capacity = self.state_cache_disk_mb
            if capacity is None:
                capacity = disk_states.default_capacity_mb(self.states_dir)
            if capacity <= 0:  # switched off: the states on disk go too (they hold conversations)
                disk_states.clear(self.states_dir)
                return True
            llm, cache = self._llm, self._cache
            if llm is None or cache is None:  # prompt_cache_mb = 0: no states kept at all
                return True
            if self._context_fingerprint is None:
                # Read from llama.cpp on the loading thread only: the hashing thread may still
                # run after close() has freed the model, and touching it then crashes the process.
                self._context_fingerprint = fingerprint(llm, "")
            ensure_private_dir(self.states_dir)
            digest = disk_states.file_sha256(self.model_path, self.states_dir / "model-hashes.json",
                                             compute=compute_hash)
            if digest is None:
                return False
            if self._llm is not llm:  # closed or switched while hashing
                return True
            disk = disk_states.DiskStates(self.states_dir, capacity << 20,
                                          {**self._context_fingerprint, "model_sha256": digest})
            self._writer = disk_states.StateWriter(disk.write)
            cache.disk = disk
        except Exception:  # states on disk are a head start: without them, history is evaluated
            log.warning("Model states on disk are off for this session", exc_info=True)
        return True

    def choose_fit(self, gpu_offload: bool) -> Fit:
        """The context and GPU layers this machine can hold (engine/fit.py)."""
        from engine.hardware import detect

        assert self.info is not None
        n_ctx, n_gpu_layers = self.requested
        hardware = detect(gpu_offload) if self.auto_fit else Hardware(gpu_offload)
        return fit_model(self.info, hardware, n_ctx=n_ctx, n_gpu_layers=n_gpu_layers, auto_fit=self.auto_fit,
                         n_batch=self.n_batch, flash_attn=self.flash_attn, min_ctx=self.min_ctx)

    def _smaller(self, n_ctx: int, n_gpu_layers: int) -> tuple[int, int] | None:
        """The next, smaller configuration to try after running out of memory: fewer GPU layers
        (unless configured), then a shorter context; None when there is nothing left to shed."""
        if not self.auto_fit:
            return None
        if n_gpu_layers != 0 and self.requested[1] is None:
            blocks = self.info.block_count if self.info and self.info.block_count else 32
            return n_ctx, (blocks // 2 if n_gpu_layers < 0 else n_gpu_layers // 2)
        if n_ctx > self.min_ctx:
            return max(self.min_ctx, n_ctx // 2), n_gpu_layers
        return None

    def _make_formatter(self) -> Any:
        """The model's own chat template, used to count prompt tokens exactly as llama.cpp will."""
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        meta = self._llm.metadata
        template = meta.get("tokenizer.chat_template")
        if not template:
            return None

        def token_text(key: str) -> str:
            token_id = int(meta.get(key, -1))
            return self._llm._model.token_get_text(token_id) if token_id != -1 else ""

        return Jinja2ChatFormatter(
            template, token_text("tokenizer.ggml.eos_token_id"), token_text("tokenizer.ggml.bos_token_id")
        )

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

    def prefill(self, messages: list[Message]) -> None:
        """Evaluate in the background, while the user reads the answer, what the next question's
        prompt will start with: `messages` (the conversation as the next prompt will hold it) and
        the template's opening of the next user turn. The next question then evaluates little
        more than its own words, however long the conversation. A wrong guess costs nothing
        later: llama.cpp keeps only the prefix that matches the next prompt."""
        if self.loaded:
            self._executor.submit(self._prefill_sync, messages)

    def _prefill_sync(self, messages: list[Message]) -> None:
        try:
            opening = self._next_turn_opening(messages)
            if opening is not None:
                self._evaluate_ahead(opening)
        except Exception:  # only a head start lost: the next question evaluates it instead
            log.debug("prefill of the next turn failed", exc_info=True)

    def _next_turn_opening(self, messages: list[Message]) -> list[int] | None:
        """The tokens every next question's prompt after `messages` starts with."""
        if self._formatter is None or self._llm is None:
            return None
        from llama_cpp import Llama

        # Two next questions that differ from their first letter: what they share is the opening.
        formatted = (self._formatter(messages=[*messages, {"role": "user", "content": c}]) for c in "aZ")
        a, z = (self._tokenize(f.prompt, add_bos=not f.added_special) for f in formatted)
        return a[: Llama.longest_token_prefix(a, z)]

    def _evaluate_ahead(self, opening: list[int]) -> None:
        from llama_cpp import Llama

        llm = self._llm
        kept = Llama.longest_token_prefix(opening, llm.input_ids[: llm.n_tokens].tolist())
        ahead = opening[kept:]
        if not ahead or len(ahead) > PREFILL_MAX_TOKENS or len(opening) >= self.n_ctx:
            return
        llm.n_tokens = kept  # eval() drops the KV cells past this point first
        llm.eval(ahead)

    def keep_state(self, tag: str) -> None:
        """Write the model's state after this answer (and after the turn evaluated ahead, when
        `prefill` was called first) to disk, under the conversation `tag`, so the conversation
        goes on after a restart without evaluating its history. Taken on the model's thread
        once it is idle, written on another: the next question never waits for the disk."""
        if self.loaded and self.states_dir is not None:
            self._keep_tag = tag
            self._executor.submit(self._keep_sync)

    def _keep_sync(self) -> None:
        tag, self._keep_tag = self._keep_tag, None
        writer = self._writer
        if tag is None or writer is None or self._llm is None or self._llm.n_tokens == 0:
            return
        from engine.backends.state_cache import snapshot

        try:
            writer.submit(snapshot(self._llm, tag))
        except Exception:
            log.warning("Could not take the model state to keep it on disk", exc_info=True)

    def restore(self, tag: str) -> None:
        """Get ready to continue the conversation `tag` (just opened) while the user types: put
        its latest state from disk into the model. Always safe: the next prompt keeps only the
        tokens it shares with the state, and evaluates the rest."""
        if self.loaded:
            self._executor.submit(self._restore_sync, tag)

    def _restore_sync(self, tag: str) -> int:
        """Tokens now held for the conversation `tag` (0: no state of it on disk)."""
        from engine.backends.state_cache import load

        disk = self._cache.disk if self._cache is not None else None
        llm = self._llm
        try:
            found = disk.latest(tag) if disk is not None and llm is not None else None
            if found is None:
                return 0
            path, tokens = found
            live = llm.input_ids[: llm.n_tokens]
            if len(tokens) <= len(live) and (live[: len(tokens)] == tokens).all():
                return len(tokens)  # the model holds it already (the conversation was just answered)
            ram_key = self._cache._find_longest_prefix_key(tuple(tokens.tolist()))
            if ram_key is not None and tuple(tokens.tolist()) == ram_key[: len(tokens)]:
                return len(tokens)  # still in memory: the question loads it from there, no disk read
            saved = disk.read(path)
            if saved is None or len(saved.tokens) > llm.n_ctx():
                return 0
            if not load(llm, saved):
                log.warning("llama.cpp refused the model state %s; the history will be evaluated", path.name)
                disk._remove(path)
                return 0
            return len(saved.tokens)
        except Exception:  # only a head start lost
            log.debug("restoring the conversation's state failed", exc_info=True)
            return 0

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
