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
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine import prompts
from engine.answer import Answerer, Collaborators
from engine.answer_log import Observers
from engine.backends.base import Backend
from engine.backends.local import LocalBackend
from engine.backends.report import backends_report
from engine.cache import ResponseCache
from engine.config import Settings
from engine.errors import AssistantError, ConfigError
from engine.events import Event
from engine.fit import min_context
from engine.gguf import read_gguf
from engine.guardrails import Guardrails
from engine.history import History
from engine.library import Library
from engine.longterm import Memories
from engine.models import cached_sha256, resolve_model
from engine.paths import database_file, ensure_private_dir
from engine.request import AskOptions
from engine.router import Router
from engine.summaries import Summaries
from engine.toolloop import ToolLoop
from engine.tools import Confirm
from memory.store import Store
from plugins.hookspecs import Tool, ToolContext

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
    )


def make_backends(settings: Settings, plugins: Any = None) -> dict[str, Backend]:
    """The local model and every configured provider (whether or not `backends` routes to it:
    a conversation may still pick it). `plugins`: a callable giving the plugin manager whose
    backend kinds the providers name."""
    backends: dict[str, Backend] = {"local": local_backend(settings)}
    if settings.providers:
        # Plugins (and httpx, 40 ms) are loaded only when a provider is configured.
        from plugins.manager import backend_registry, get_plugin_manager

        manager = plugins() if plugins else get_plugin_manager(load_entry_points=settings.plugins)
        kinds = backend_registry(manager)
        for name, provider in settings.providers.items():
            if provider.kind not in kinds:
                raise ConfigError(
                    f"Provider {name!r} has kind {provider.kind!r}, which no plugin provides.",
                    hint=f"Known kinds: {', '.join(sorted(kinds))}; `assistant plugins` lists plugins.")
            backends[name] = kinds[provider.kind](provider)
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
        plugins: Any = None,
    ) -> None:
        """`backend` replaces the backend of its name (tests hand in a shared local model);
        `backends` replaces them all. `plugins`: the process's plugin manager (built here if none)."""
        self.settings = settings
        self._database = Path(database) if database else database_file()
        self._store: Store | None = None
        self._store_lock = asyncio.Lock()
        self._plugins_lock = threading.Lock()
        self._plugin_manager: Any = plugins
        self._extras_registered = False  # MCP and OTLP, on the manager's first use
        self._mcp: Any = None  # engine.mcp.McpTools, when MCP servers are configured
        self._tools: dict[str, Tool] | None = None
        self._guardrails: Guardrails | None = None
        self._model_hash: asyncio.Task[str | None] | None = None
        backends = dict(backends) if backends is not None else make_backends(settings, self._manager)
        if backend is not None:
            backends[backend.name] = backend
        self.router = Router(settings, backends, self.store)
        self.router.redact = self._redact
        folder = self._database.parent
        self.observers = Observers(self.plugins)
        self.library = Library(settings, self.store, folder, self._manager)
        self.memories = Memories(settings, self.store, folder)
        # Handed the router's gate, never a backend: their requests pass the same gates as answers.
        self.summaries = Summaries(settings, self.store, self.router)
        self.tool_loop = ToolLoop(settings, self.router, self.tools, self._tool_context)
        self.cache = ResponseCache(settings, self.library.index_state)
        self.history = History(settings, self.store, self.library)
        self.answers = Answerer(settings, Collaborators(
            self.router, self.store, self.library, self.memories, self.summaries, self.tool_loop, self.cache,
            self.observers, self.guardrails, self.load_model, self._known_model_hash))

    async def __aenter__(self) -> Engine:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # set-up ------------------------------------------------------------------------------------

    async def store(self) -> Store:
        async with self._store_lock:
            if self._store is None:
                ensure_private_dir(self._database.parent)
                self._store = await asyncio.to_thread(Store, self._database)
        return self._store

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
        path = getattr(backend, "model_path", None)
        if self._model_hash is None and path is not None:
            store = await self.store()
            self._model_hash = asyncio.create_task(asyncio.to_thread(cached_sha256, store, path))

    async def switch_model(self, model: str) -> Backend:
        """Answer with another local model (a path or a name) from now on. The new file is checked
        first; then the old model is unloaded before the new one loads, so two models never share
        the memory."""
        path = await asyncio.to_thread(resolve_model, model, self.settings.models_dir)
        await asyncio.to_thread(read_gguf, path)  # a bad pick keeps the current model
        new = local_backend(self.settings.replace(model=str(path)))
        old = self.router.backends.get("local")
        self.router.backends["local"] = new
        if self._model_hash is not None:  # close() still waits for it
            self.observers.keep_until_closed(asyncio.ensure_future(self._model_hash))
            self._model_hash = None
        if isinstance(old, LocalBackend):
            await asyncio.to_thread(old.close)
        await self.load_model(new)
        return new

    async def _known_model_hash(self) -> str | None:
        if self._model_hash is None:
            return None
        try:
            return await asyncio.shield(self._model_hash)
        except (OSError, AssistantError):  # unreadable file, locked database: the row goes on
            return None

    @property
    def template_version(self) -> str:
        """The version of the system prompt a new conversation gets (without A/B)."""
        return prompts.load("system", self.settings).version

    # plugins -----------------------------------------------------------------------------------

    def _manager(self) -> Any:
        """The one plugin manager, without the extras (built-in and installed plugins)."""
        with self._plugins_lock:
            if self._plugin_manager is None:
                from plugins.manager import get_plugin_manager

                self._plugin_manager = get_plugin_manager(load_entry_points=self.settings.plugins)
            return self._plugin_manager

    def plugins(self) -> Any:
        """The plugin manager (built-in and installed plugins; MCP servers and the OTLP exporter
        when configured). Call from a worker thread: installed plugins are imported on first use."""
        manager = self._manager()
        with self._plugins_lock:
            if not self._extras_registered:
                self._extras_registered = True
                if self.settings.mcp_servers:
                    from engine.mcp import McpTools

                    log_file = self._database.parent / "logs" / "mcp.log"
                    self._mcp = McpTools(self.settings.mcp_servers, log_file, manager.errors)
                    manager.register(self._mcp, name="mcp")
                if self.settings.otlp_endpoint:
                    from plugins.otel import OtlpExporter

                    manager.register(OtlpExporter(self.settings.otlp_endpoint), name="otel")
        return manager

    def guardrails(self) -> Guardrails:
        """The guardrail plugins' detectors; call from a worker thread (plugins load on first use)."""
        if self._guardrails is None:
            self._guardrails = Guardrails.from_plugins(self.plugins())
        return self._guardrails

    async def _redact(self, messages: list[dict[str, str]]) -> tuple[list[dict[str, str]], Any]:
        guardrails = await asyncio.to_thread(self.guardrails)
        return guardrails.redact_messages(messages)

    def commands(self) -> dict[str, Any]:
        """Slash commands, built in and the plugins'; call from a worker thread."""
        from plugins.manager import command_registry

        return command_registry(self.plugins())

    def tools(self) -> dict[str, Tool]:
        """The tools the model may call: every plugin's, narrowed by the `tools` setting. Call from
        a worker thread (plugins load on first use)."""
        from plugins.manager import tool_registry

        if self._tools is None:  # once: asking every plugin (and MCP server) per question is waste
            wanted = self.settings.tools
            registered = tool_registry(self.plugins())
            self._tools = {n: t for n, t in registered.items() if wanted is None or n in wanted}
        return self._tools

    async def _tool_context(self, conversation_id: int) -> tuple[ToolContext, bool]:
        memory = await self.memories.long_term()

        def recall(query: str) -> list[dict]:
            return memory.search(query, 5, self.settings.memory_threshold)

        return await self.library.tool_context(conversation_id, recall)

    async def close(self) -> None:
        await self.observers.close()
        await self.summaries.close()
        if self._model_hash is not None:
            await asyncio.gather(self._model_hash, return_exceptions=True)
        if self._mcp is not None:
            await asyncio.to_thread(self._mcp.close)
        await self.router.aclose()
        for backend in self.router.backends.values():
            if (aclose := getattr(backend, "aclose", None)) is not None:  # remote: its HTTP client
                await aclose()
            elif (close := getattr(backend, "close", None)) is not None:  # local: its model and thread
                await asyncio.to_thread(close)
        if self._store is not None:
            self._store.close()

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

    # history (engine.history.History; these pass-throughs go once the app uses `history`) -------

    def __getattr__(self, name: str) -> Any:
        if name in _HISTORY:
            return getattr(self.history, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")


_HISTORY = frozenset({
    "conversation", "conversations", "search_conversations", "messages", "export_conversations",
    "import_conversations", "fork", "set_incognito", "rename_conversation", "delete_conversation",
    "rate", "comment", "response", "trace", "stats", "alerts", "reviews", "mark_reviewed",
})
