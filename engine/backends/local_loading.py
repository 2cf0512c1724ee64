"""Loading the local backend's model: the file checked, the context and GPU layers this machine
holds (stepping down when llama.cpp runs out of memory anyway), the model's chat template for
counting tokens, and the RAM cache of states. Part of `LocalBackend` (engine/backends/local.py),
run on its model thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import logging
import threading
from pathlib import Path
from typing import Any

from engine.backends.llama_runtime import gpu_offload_supported, import_llama_cpp
from engine.cpu_budget import CpuBudget
from engine.errors import ModelLoadError, ModelOutOfMemoryError
from engine.fit import Fit, Hardware, fit_model
from engine.gguf import GGUFInfo, read_gguf
from engine.hardware import detect
from engine.models import resolve_model

log = logging.getLogger("engine.backends.local")


def out_of_memory(exc: BaseException) -> bool:
    """llama.cpp reports a failed allocation as a generic error; its words give it away."""
    text = str(exc).lower()
    return isinstance(exc, MemoryError) or any(
        words in text for words in ("out of memory", "failed to allocate", "failed to create llama_context")
    )


class ModelLoading:
    """The load of `LocalBackend`: its attributes are set in `LocalBackend.__init__`."""

    model: str | None
    models_dir: str | Path | None
    model_path: Path | None
    model_name: str
    info: GGUFInfo | None
    requested: tuple[int, int | None]
    auto_fit: bool
    min_ctx: int
    hardware_fit: Fit | None
    n_ctx: int
    n_gpu_layers: int | None
    budget: CpuBudget
    configured_threads: int | None
    n_threads: int
    n_threads_batch: int
    n_batch: int
    flash_attn: bool
    prompt_cache_mb: int
    states_dir: Path | None
    _llm: Any
    _formatter: Any
    _cache: Any
    _context_fingerprint: dict[str, Any] | None
    _executor: concurrent.futures.ThreadPoolExecutor
    _loading: concurrent.futures.Future[None] | None
    _loading_lock: threading.Lock
    _open_disk_states: Any  # engine/backends/local_states.py

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
                if not out_of_memory(exc):
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

    def choose_fit(self, gpu_offload: bool) -> Fit:
        """The context and GPU layers this machine can hold (engine/fit.py)."""
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
