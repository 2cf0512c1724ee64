"""The composition root: `Engine` builds the engine's parts from the settings and hands each its
collaborators; then it is a thin facade over them for the TUI, the CLI and the HTTP API.

    async with Engine(settings) as engine:
        async for event in engine.ask("..."):
            ...
        rows = await engine.history.conversations()

The parts: `router` (which backend answers), `answers` (one question -> events, engine.answer),
`history` (what the answers left behind), `library` (the indexed folders), `memories` (long-term
memory), `summaries` (of older turns), `tool_loop`, `cache`, `observers`; and the ONE plugin
manager, which the app may hand in (else it is built here, once).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine import prompts
from engine.answer import Answerer, Collaborators
from engine.answer_log import ModelHash, Observers
from engine.backends import disk_states
from engine.backends.base import Backend
from engine.backends.local import LocalBackend
from engine.backends.report import backends_report
from engine.cache import ResponseCache
from engine.config import Settings
from engine.database import Database
from engine.errors import ConfigError
from engine.events import Event
from engine.fit import min_context
from engine.gguf import read_gguf
from engine.guardrails import PluginGuardrails
from engine.history import History
from engine.library import Library
from engine.longterm import Memories
from engine.models import resolve_model
from engine.paths import database_file
from engine.plugin_host import EnginePlugins
from engine.request import AskOptions
from engine.router import Router
from engine.summaries import Summaries
from engine.toolloop import ToolLoop
from engine.tools import Confirm
from plugins.hookspecs import PluginHost

if TYPE_CHECKING:
    from engine.knowledge import Knowledge


def local_backend(settings: Settings) -> LocalBackend:
    return LocalBackend(
        settings.model,
        models_dir=settings.models_dir,
        n_ctx=settings.n_ctx,
        n_gpu_layers=settings.n_gpu_layers,
        n_threads=settings.n_threads,
        n_batch=settings.n_batch,
        flash_attn=settings.flash_attn,
        prompt_cache_mb=settings.prompt_cache_mb,
        auto_fit=settings.auto_fit,
        min_ctx=min_context(settings.max_tokens),
        states_dir=disk_states.states_folder(),
        state_cache_disk_mb=settings.state_cache_disk_mb,
    )


def make_backends(settings: Settings, plugins: Callable[[], PluginHost]) -> dict[str, Backend]:
    """The local model and every configured provider (whether or not `backends` routes to it:
    a conversation may still pick it), of the kinds the plugins provide."""
    backends: dict[str, Backend] = {"local": local_backend(settings)}
    if settings.providers:
        # Plugins (and httpx, 40 ms) are loaded only when a provider is configured.
        kinds = plugins().backend_kinds()
        for name, provider in settings.providers.items():
            if provider.kind not in kinds:
                raise ConfigError(
                    f"Provider {name!r} has kind {provider.kind!r}, which no plugin provides.",
                    hint=f"Known kinds: {', '.join(sorted(kinds))}; `assistant plugins` lists plugins.")
            made = kinds[provider.kind](provider)
            if not isinstance(made, Backend):
                raise ConfigError(
                    f"Provider {name!r}: the plugin of kind {provider.kind!r} made a "
                    f"{type(made).__name__}, not an engine.backends.base.Backend.",
                    hint="The plugin's backend must subclass Backend.")
            backends[name] = made
    return backends


class Engine:
    """Answers questions with a backend and records every answer in the store.

    Every method is async and runs blocking work (SQLite, llama.cpp) off the event loop.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        backend: Backend | None = None,
        backends: dict[str, Backend] | None = None,
        database: str | Path | None = None,
        plugins: PluginHost | None = None,
    ) -> None:
        """`backend` replaces the backend of its name (tests hand in a shared local model);
        `backends` replaces them all. `plugins`: the process's one plugin manager (else one is
        built here, once, on first use)."""
        self.settings = settings
        self.database = Database(Path(database) if database else database_file())
        self.store = self.database.store  # the Store, opened on first use
        folder = self.database.folder
        self.plugin_host = EnginePlugins(settings, folder, plugins)
        # Call these three from a worker thread: plugins load on first use.
        self.plugins = self.plugin_host
        self.tools, self.commands = self.plugin_host.tools, self.plugin_host.commands
        self.guardrails = PluginGuardrails(self.plugin_host)
        if backends is None:
            backends = make_backends(settings, self.plugin_host.manager)
        backends = dict(backends)
        if backend is not None:
            backends[backend.name] = backend
        self.router = Router(settings, backends, self.store, redact=self.guardrails.redact_messages)
        self.observers = Observers(self.plugin_host)
        self.model_hash = ModelHash(self.store, self.observers)
        self.library = Library(settings, self.store, folder, self.plugin_host.manager)
        self.memories = Memories(settings, self.store, folder)
        # Handed the router's gate, never a backend: their requests pass the same gates as answers.
        self.summaries = Summaries(settings, self.store, self.router)
        self.tool_loop = ToolLoop(settings, self.router, self.tools)
        self.cache = ResponseCache(settings, self.library.index_state)
        self.history = History(settings, self.store, self.library)
        self.answers = Answerer(settings, Collaborators(
            self.router, self.store, self.library, self.memories, self.summaries, self.tool_loop, self.cache,
            self.observers, self.guardrails, self.model_hash))

    async def __aenter__(self) -> Engine:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def knowledge(self) -> Knowledge:
        """The indexed folders (created on first use: it loads the plugins' loaders)."""
        return await self.library.knowledge()

    async def warm_up(self) -> None:
        """Prepare retrieval and memory recall in the background when there are folders or
        memories; a no-op otherwise."""
        if await self.library.anything_indexed():
            await asyncio.to_thread((await self.knowledge()).warm_up)
        elif await self.memories.any():
            from memory.embedder import Embedder

            await asyncio.to_thread(Embedder().embed, ["warm up"])

    async def embed(self, texts: list[str]) -> list[list[float]]:
        """Unit-length vectors of `texts` from the local embedding model, the one the index uses
        (`embedding_model`), in a worker thread (the HTTP API's /v1/embeddings)."""
        from memory.embedder import Embedder

        return await asyncio.to_thread(Embedder().embed, texts)

    @property
    def embedding_model(self) -> str:
        from memory.embedder import MODEL_NAME

        return MODEL_NAME

    @property
    def template_version(self) -> str:
        """The version of the system prompt a new conversation gets (without A/B)."""
        return prompts.load("system", self.settings).version

    # the model ---------------------------------------------------------------------------------

    @property
    def backend(self) -> Backend:
        """The first backend of the route: the one a new conversation starts with."""
        return self.router.primary()

    @property
    def prefill_next_turn(self) -> bool:
        """Prefill the next question's prompt after an answer; a process that asks one question and
        exits (`assistant ask`) turns this off."""
        return self.answers.prefill_next_turn

    @prefill_next_turn.setter
    def prefill_next_turn(self, on: bool) -> None:
        self.answers.prefill_next_turn = on

    async def load_model(self, backend: Backend | None = None) -> None:
        """Load the model (a no-op once loaded); raises a ModelError naming the file."""
        backend = backend or self.backend
        await backend.load()
        await self.model_hash.loaded(backend)

    def reopened(self, conversation_id: int) -> None:
        """A conversation was opened again: the local model restores its state from disk while
        the user types (nothing to wait for; the next question is right either way)."""
        backend = self.router.backends.get("local")
        if backend is not None:  # Backend.restore: a no-op where nothing is kept
            backend.restore(str(conversation_id))

    async def switch_model(self, model: str) -> Backend:
        """Answer with another local model (a path or a name) from now on. The new file is checked
        first; then the old model is unloaded before the new one loads, so two models never share
        the memory."""
        path = await asyncio.to_thread(resolve_model, model, self.settings.models_dir)
        await asyncio.to_thread(read_gguf, path)  # a bad pick keeps the current model
        new = local_backend(self.settings.replace(model=str(path)))
        old = self.router.backends.get("local")
        self.router.backends["local"] = new
        self.model_hash.forget()  # close() still waits for it
        if isinstance(old, LocalBackend):
            await asyncio.to_thread(old.close)
        await self.load_model(new)
        return new

    async def close(self) -> None:
        await self.observers.close()
        await self.summaries.close()
        await self.model_hash.close()
        await asyncio.to_thread(self.plugin_host.close)
        await self.router.aclose()
        for backend in self.router.backends.values():
            await backend.aclose()
        self.database.close()

    # one answer --------------------------------------------------------------------------------

    def ask(
        self, question: str, conversation_id: int | None = None, backend: str | None = None,
        regenerate: bool = False, json_schema: dict | None = None, incognito: bool | None = None,
        confirm: Confirm | None = None, options: AskOptions | None = None,
        saved: Callable[[int, int], None] | None = None,
    ) -> AsyncIterator[Event]:
        """Answer `question`, continuing `conversation_id` or starting a new conversation.

        `backend` picks the backend for this conversation from now on (saved with it); otherwise
        the conversation's own choice, else the configured route, applies. A deterministic
        question asked before with the same inputs is answered from the cache, unless `regenerate`.

        Yields Started, Token..., then Finished or Failed. The question is saved before anything
        else, and one response row (with the answer's trace) is written however the answer ends;
        if the consumer cancels, the row says "cancelled" and the partial answer is kept.

        Long-term memories similar to the question go into the prompt; lasting facts the
        question states come back as proposals (unless the conversation is `incognito`, a
        choice saved with it). Older turns that no longer fit are summarized after the answer.
        When tools are on (`tool_calling`), the model may call them first; `confirm(tool,
        arguments)` asks the user before a tool with side effects runs (without it, they never do).
        `options` override the sampling settings and the system prompt for this answer only, and
        may keep the folders, memories and tools out of it (the HTTP API's requests).
        `saved(conversation_id, question_message_id)` is called once the question is saved: a
        caller that stops the answer before its first event still knows where it went (the
        stopped answer's row is then `history.answer_to(question_message_id)`).
        """
        return self.answers.ask(question, conversation_id, backend, regenerate, json_schema, incognito,
                                confirm, options, saved)

    # backends ----------------------------------------------------------------------------------

    async def backends_report(self, check: bool = False) -> list[dict[str, Any]]:
        """Every backend: kind, model, where it runs, its place in the route, its breaker, its
        price; with `check`, whether it answers now (a model file that validates, GET /models)."""
        return await backends_report(self.router, check)

    async def set_conversation_backend(self, conversation_id: int, backend: str | None) -> None:
        if backend is not None and backend not in self.router.backends:
            raise ConfigError(f"There is no backend named {backend!r}.")
        store = await self.store()
        await asyncio.to_thread(store.set_conversation_backend, conversation_id, backend)
