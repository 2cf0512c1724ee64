"""The orchestration of one answer, and the engine's view of history for the TUI and the CLI."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from engine import prompts
from engine.backends.base import Backend, SamplingParams, StreamResult
from engine.backends.local import LocalBackend
from engine.citations import resolve_citations, sources_message
from engine.config import Settings
from engine.errors import AssistantError, ConfigError, ContextOverflowError
from engine.events import Event, Failed, Finished, Started, Timings, Token, Usage
from engine.fit import min_context
from engine.gguf import read_gguf
from engine.guardrails import Guardrails, describe
from engine.longterm import Memories
from engine.models import resolve_model
from engine.paths import database_file, ensure_private_dir
from engine.request import AskOptions
from engine.router import Route, Router, is_remote, is_trusted
from engine.structured import InvalidOutputError, check_schema
from engine.summaries import Summaries
from engine.toolloop import ToolLoop
from engine.tools import Confirm, ToolStep, results_section
from engine.tracing import Trace
from memory.corpus import Corpus
from memory.longterm import Recalled
from memory.retriever import Passage
from memory.store import Store, now
from plugins.hookspecs import Tool, ToolContext

if TYPE_CHECKING:
    from engine.knowledge import Knowledge
    from memory.transcripts import Imported

T = TypeVar("T")
log = logging.getLogger(__name__)
UNLOGGED = "(content not logged)"
DRAFT_S = 0.25  # a kill -9 mid-answer loses at most this much of the answer streamed so far


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


def make_backends(settings: Settings) -> dict[str, Backend]:
    """The local model and every configured provider (whether or not `backends` routes to it:
    a conversation may still pick it)."""
    backends: dict[str, Backend] = {"local": local_backend(settings)}
    if settings.providers:
        # Plugins (and httpx, 40 ms) are loaded only when a provider is configured.
        from plugins.manager import backend_registry, get_plugin_manager

        kinds = backend_registry(get_plugin_manager(load_entry_points=settings.plugins))
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
    ) -> None:
        """`backend` replaces the backend of its name (tests hand in a shared local model);
        `backends` replaces them all."""
        self.settings = settings
        backends = dict(backends) if backends is not None else make_backends(settings)
        if backend is not None:
            backends[backend.name] = backend
        self.router = Router(settings, backends, self.store)
        self._database = Path(database) if database else database_file()
        self._store: Store | None = None
        self._store_lock = asyncio.Lock()
        self._knowledge: Knowledge | None = None
        self._model_hash: asyncio.Task[str | None] | None = None
        self._unlogged: dict[int, list[dict[str, str]]] = {}  # conversations, when log_content is off
        self._plugin_manager: Any = None
        self._mcp: Any = None  # engine.mcp.McpTools, when MCP servers are configured
        self._tools: dict[str, Tool] | None = None
        self._guardrails: Guardrails | None = None
        self.router.redact = self._redact
        self._observers: set[asyncio.Future[None]] = set()
        self.memories = Memories(settings, self.store, self._database.parent)
        # Handed the router's gate, never a backend: their requests pass the same gates as answers.
        self.summaries = Summaries(settings, self.store, self.router)
        self.tool_loop = ToolLoop(settings, self.router, self.tools, self._tool_context)
        # A process that asks one question and exits (`assistant ask`) turns this off.
        self.prefill_next_turn = True

    # set-up ------------------------------------------------------------------------------------

    async def store(self) -> Store:
        async with self._store_lock:
            if self._store is None:
                ensure_private_dir(self._database.parent)
                self._store = await asyncio.to_thread(Store, self._database)
        return self._store

    async def knowledge(self) -> Knowledge:
        """The indexed folders (created on first use: it loads the plugins' loaders)."""
        store = await self.store()
        async with self._store_lock:
            if self._knowledge is None:
                from engine.knowledge import Knowledge

                self._knowledge = await asyncio.to_thread(Knowledge, self.settings, store,
                                                          self._database.parent)
        return self._knowledge

    async def _anything_indexed(self) -> bool:
        """Cheap: answered from SQLite without loading Chroma, torch or the loaders."""
        return await self._db(Corpus(await self.store()).has_chunks)

    async def warm_up(self) -> None:
        """Prepare retrieval and memory recall in the background when there are folders or
        memories; a no-op otherwise."""
        if await self._anything_indexed():
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

    async def _db(self, method: Callable[..., T], *args: Any) -> T:
        return await asyncio.to_thread(method, *args)

    @property
    def backend(self) -> Backend:
        """The first backend of the route: the one a new conversation starts with."""
        return self.router.primary()

    async def load_model(self, backend: Backend | None = None) -> None:
        """Load the model (a no-op once loaded); raises a ModelError naming the file."""
        backend = backend or self.backend
        await backend.load()
        path = getattr(backend, "model_path", None)
        if self._model_hash is None and path is not None:
            store = await self.store()
            self._model_hash = asyncio.create_task(asyncio.to_thread(_file_sha256, store, path))

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
            self._observers.add(asyncio.ensure_future(self._model_hash))
            self._model_hash = None
        if isinstance(old, LocalBackend):
            await asyncio.to_thread(old.close)
        await self.load_model(new)
        return new

    @property
    def template_version(self) -> str:
        """The version of the system prompt a new conversation gets (without A/B)."""
        return prompts.load("system", self.settings).version

    def _templates(self, system_name: str) -> tuple[prompts.Template, ...]:
        """The system prompt, the sources instructions, the memories and summary headings, read
        afresh: an edit applies at once."""
        return (prompts.load(system_name, self.settings), *(prompts.load(name, self.settings)
                                                            for name in ("sources", "memories", "summary")))

    def plugins(self) -> Any:
        """The plugin manager (built-in and installed plugins; the OTLP exporter when configured).
        Call from a worker thread: installed plugins are imported on first use."""
        if self._plugin_manager is None:
            from plugins.manager import get_plugin_manager

            manager = get_plugin_manager(load_entry_points=self.settings.plugins)
            if self.settings.mcp_servers:
                from engine.mcp import McpTools

                self._mcp = McpTools(self.settings.mcp_servers, self._database.parent / "logs" / "mcp.log",
                                     manager.errors)
                manager.register(self._mcp, name="mcp")
            if self.settings.otlp_endpoint:
                from plugins.otel import OtlpExporter

                manager.register(OtlpExporter(self.settings.otlp_endpoint), name="otel")
            self._plugin_manager = manager
        return self._plugin_manager

    def guardrails(self) -> Guardrails:
        """The guardrail plugins' detectors; call from a worker thread (plugins load on first use)."""
        if self._guardrails is None:
            self._guardrails = Guardrails.from_plugins(self.plugins())
        return self._guardrails

    async def _redact(self, messages: list[dict[str, str]]) -> tuple[list[dict[str, str]], Any]:
        guardrails = await asyncio.to_thread(self.guardrails)
        return guardrails.redact_messages(messages)

    def _observe(self, response: dict[str, Any], spans: list[dict[str, Any]]) -> None:
        """Hand the saved answer to `on_response_logged` observers, in a thread, in the background."""
        task = asyncio.ensure_future(asyncio.to_thread(self._notify_observers, response, spans))
        self._observers.add(task)
        task.add_done_callback(self._observers.discard)

    def _notify_observers(self, response: dict[str, Any], spans: list[dict[str, Any]]) -> None:
        try:
            manager = self.plugins()
        except AssistantError as exc:  # the OTLP exporter is configured but not installed
            log.warning("%s", exc)
            return
        for impl in manager.hook.on_response_logged.get_hookimpls():
            try:
                impl.function(response=response, spans=spans)
            except Exception as exc:  # someone else's code: disable it, keep answering
                manager.disable(impl.plugin, f"on_response_logged raised {type(exc).__name__}: {exc}")

    async def close(self) -> None:
        if self._observers:
            await asyncio.gather(*self._observers, return_exceptions=True)
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

    async def ask(
        self, question: str, conversation_id: int | None = None, backend: str | None = None,
        regenerate: bool = False, json_schema: dict | None = None, incognito: bool | None = None,
        confirm: Confirm | None = None, options: AskOptions | None = None,
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
        """
        await self.summaries.wait(conversation_id)
        trace = Trace()
        router = self.router
        if backend is not None and backend not in router.backends:
            raise ConfigError(f"There is no backend named {backend!r}.",
                              hint=f"Known backends: {', '.join(router.backends)}.")
        with trace.span("save question"):
            store = await self.store()
            turn = await self._save_question(store, question, conversation_id, backend, incognito)
            conversation_id, history, preferred = turn.conversation_id, turn.history, turn.preferred
            prompt_message_id = turn.prompt_message_id
            # Files: read off the event loop.
            templates = await asyncio.to_thread(self._templates, turn.system_name)

        settings = self.settings
        turn.options = options = options or AskOptions()
        params = options.sampling(settings, check_schema(json_schema) if json_schema is not None else None)
        result = StreamResult()
        pieces: list[str] = []
        first_at = last_at = None
        passages: list[Passage] = []
        route: Route | None = None
        context_key = cache_key = hit = vector = generated_at = None
        findings: list[tuple[str, str, bool]] = []
        recalled: list[Recalled] = []
        proposals: list[dict[str, Any]] = []
        steps: list[ToolStep] = []
        tool_cost = 0.0  # what the tool decisions cost: the budget counts them with the answer
        private_history = False  # a private folder's text is in the conversation
        status, error = "cancelled", None
        draft = _Draft(store, conversation_id, enabled=settings.log_content)
        try:
            with trace.span("memory recall") as span:  # embeds the question only when there are memories
                recalled, notes = await self._recall(question) if options.knowledge else ([], [])
                span.attrs["memories"] = [m.id for m in recalled]
            turn.memories = recalled
            turn.question = _with_memories(question, recalled, templates[2])
            turn.notices += notes
            tools = await self.tool_loop.tools_for(router.primary(preferred), json_schema) \
                if options.knowledge else {}
            # Regenerating skips the lookup, and its answer replaces the entry; tool results vary.
            # Looked up before retrieval: a repeated question is answered without embedding it
            # (seconds on a busy CPU), since the key holds the folders' version, not what was found.
            if self._cacheable(params) and not tools:
                with trace.span("cache lookup") as span:
                    context_key = await self._cache_context(router.primary(preferred), turn, params,
                                                            templates)
                    cache_key = context_key and _exact_key(context_key, question)
                    if cache_key and not regenerate:
                        hit = await self._db(store.cached_answer, cache_key)
                    standalone = not history and not turn.summary
                    if context_key and not hit and standalone and self.settings.semantic_cache:
                        vector, hit = await asyncio.to_thread(self._similar, store, context_key, question)
                        hit = None if regenerate else hit
                    span.attrs["hit"] = "semantic" if hit and "similar_question" in hit else bool(hit)
            untrusted_history = None
            if not hit:
                with trace.span("retrieval") as span:
                    passages = await self._search(question, conversation_id, span.attrs) \
                        if options.knowledge else []
                # What earlier turns left in the history: a private folder's words (then untrusted
                # backends may not see it), text that is not the user's (then no side effects).
                if history or turn.summary:
                    if any(is_remote(b) for b in router.order(preferred)):
                        private_history = await self._db(store.used_private_sources, conversation_id)
                    if any(t.side_effects for t in tools.values()):
                        untrusted_history = await self._db(store.untrusted_history, conversation_id)
            if tools:
                run = await self.tool_loop.run(
                    tools, templates[0], turn.history, turn.question, conversation_id, passages, trace,
                    confirm, preferred=preferred, private=private_history or any(p.private for p in passages),
                    untrusted=untrusted_history)
                steps, tool_cost = run.steps, run.cost
                private_history = private_history or run.private
                turn.question += results_section(steps)
                turn.notices += [f"Tool {s.call.name} not run: {s.result}" for s in steps
                                 if s.status in ("refused", "declined")] + run.notices
            if hit:
                primary = router.primary(preferred)
                passages = await self._passages(json.loads(hit["chunk_ids"] or "[]"))
                yield Started(conversation_id, prompt_message_id, primary.name, primary.model_name, 0,
                              primary.n_ctx, 0, False, tuple(passages), cached_from=hit["response_id"],
                              similar_question=hit.get("similar_question"), memories=tuple(recalled),
                              summarized_messages=turn.summarized, notices=tuple(turn.notices))
                first_at = last_at = time.perf_counter()
                pieces.append(hit["text"])
                yield Token(hit["text"])
            else:
                async def prepare(candidate: Backend) -> tuple[Any, list[Passage]]:
                    await self.load_model(candidate)
                    return await self._fit(candidate, turn, passages, templates)

                with trace.span("routing") as span:
                    route = await router.open(prepare, params, retrieved=passages, preferred=preferred,
                                              private_history=private_history, trace=trace)
                    span.end = route.stream_started_at  # generation starts there: spans follow one another
                    span.attrs.update(backend=route.backend.name, passed_over=len(route.passed_over))
                result, passages, chosen = route.result, route.passages, route.backend
                notices = turn.notices + [f"{name}: {why}" for name, why in route.passed_over]
                if route.redacted:
                    notices.append(f"Hidden before sending to {chosen.name}: {describe(route.redacted)}.")
                if is_remote(chosen) and not is_trusted(chosen):
                    notices += await router.budget_warnings()
                    if router.cost(chosen, 1, 1) is None:
                        model = chosen.model_name
                        notices.append(f"No price is known for {model}: its cost is counted as 0 and budgets "
                                       f'cannot see it. Add [prices."{model}"] to the config.')
                yield Started(
                    conversation_id,
                    prompt_message_id,
                    chosen.name,
                    chosen.model_name,
                    route.fitted.prompt_tokens,
                    chosen.n_ctx,
                    route.fitted.dropped_messages,
                    route.fitted.question_truncated,
                    tuple(passages),
                    remote=is_remote(chosen),
                    endpoint=getattr(chosen, "endpoint", "local"),
                    passed_over=tuple(route.passed_over),
                    notices=tuple(notices),
                    memories=tuple(recalled),
                    summarized_messages=turn.summarized,
                    tool_steps=tuple(steps),
                )
                try:
                    if route.first is not None:
                        first_at = last_at = route.first_at
                        pieces.append(route.first)
                        draft.offer(pieces)
                        yield Token(route.first)
                    async with contextlib.aclosing(route.rest) as stream:
                        async for piece in stream:
                            last_at = time.perf_counter()
                            first_at = first_at or last_at
                            pieces.append(piece)
                            draft.offer(pieces)
                            yield Token(piece)
                except AssistantError as exc:
                    await router.finish(route, exc)
                    raise
                generated_at = time.perf_counter()
                with trace.span("guardrails") as span:
                    answer, schema = "".join(pieces), params.json_schema
                    findings = await asyncio.to_thread(lambda: self.guardrails().validate(answer, schema))
                    span.attrs["findings"] = [name for name, _, _ in findings]
                rejected = [(name, why) for name, why, rejects in findings if rejects]
                if rejected:
                    name, why = rejected[0]
                    what = "the requested JSON schema" if name == "json schema" else f"the {name} check"
                    raise InvalidOutputError(f"The answer is not valid for {what}: {why}.",
                                             hint="Ask again (it may need a larger max_tokens).")
            status = "ok"
            proposals = await self._propose(question, turn)
        except AssistantError as exc:
            status, error = "error", exc
        except Exception as exc:  # a bug: record it, then let it crash loudly
            status, error = "error", exc
            raise
        finally:
            logging_started = time.perf_counter()
            if route is not None:
                _generation_spans(trace, route, last_at, generated_at or logging_started)
            text, sources = resolve_citations("".join(pieces), passages)
            row, cost = await self._response_row(trace, route, preferred, status, error, passages, result,
                                                 prompt_message_id, first_at, last_at, logging_started,
                                                 templates)
            if hit:
                row.update(cache_hit=1, cached_from=hit["response_id"], input_tokens=0, output_tokens=0,
                           endpoint="cache")
            if tool_cost:
                row["cost"] += tool_cost
                cost = (cost or 0.0) + tool_cost
            if recalled:
                row["memory_ids"] = json.dumps([m.id for m in recalled])
            keep = None  # a new answer from the route's first backend is kept for next time
            first_choice = route is not None and route.backend is router.primary(preferred)
            # An empty answer is not kept: it would come back empty for every repeat of the question.
            if status == "ok" and cache_key and first_choice and not steps and text.strip():
                keep = (cache_key, settings.cache_ttl_hours * 3600, [p.chunk_id for p in passages])
            review = "guardrail" if isinstance(error, InvalidOutputError) else None
            if status == "ok" and findings:  # flagged, not rejected: the answer stands, a person looks
                review = "refusal" if findings[0][0] == "refusal" else "guardrail"
            trace.add("logging", logging_started, time.perf_counter())
            saved_text = text if settings.log_content else ""
            self._remember(conversation_id, question, text if status == "ok" else "")
            # Shielded: a second cancel must not lose the row.
            spans = trace.rows()
            draft_id = await asyncio.shield(draft.settle())
            saving = asyncio.ensure_future(self._db(store.record_answer, conversation_id, saved_text,
                                                    status != "ok", row, spans, review, keep, draft_id))
            try:
                message_id, response_id = await asyncio.shield(saving)
                if keep and vector is not None:  # a new standalone answer: findable by similar questions
                    await self._db(store.save_question_vector, response_id, context_key, vector)
                self._observe({**row, "id": response_id, "conversation_id": conversation_id}, spans)
            except AssistantError as exc:  # the disk is full, the database locked...
                if status != "ok":
                    raise
                status, error, message_id, response_id = "error", exc, None, None
            if status == "ok" and route is not None and route.fitted.dropped_messages:
                private = private_history or any(p.private for p in passages)
                self.summaries.write_later(route.backend.name, conversation_id, turn.history,
                                           turn.history_ids, turn.summary, route.fitted.dropped_messages,
                                           private)
            elif status == "ok" and route is not None:
                self._prefill_next_turn(route, passages, question, text)
        if status == "ok":
            usage = Usage(row["input_tokens"] or 0, row["output_tokens"])
            timings = Timings(row["ttft_ms"], row["total_ms"], row["tokens_per_s"])
            yield Finished(response_id, conversation_id, message_id, text, usage, timings, tuple(sources),
                           cost_usd=cost, cached_from=hit["response_id"] if hit else None,
                           proposals=tuple(proposals))
        else:
            yield Failed(response_id, conversation_id, error, text)

    async def _save_question(
        self, store: Store, question: str, conversation_id: int | None, backend: str | None,
        incognito: bool | None,
    ) -> _Turn:
        """Start or continue the conversation and save the question (its text only when
        `log_content` is on); the model starts loading meanwhile. The turn carries the
        conversation's system prompt template (with `ab_system_prompt` set, every other new
        conversation gets the alternative, and keeps it) and the latest summary of older turns,
        with only the turns after it."""
        router = self.router
        logged = self.settings.log_content
        turn = _Turn(question)
        if conversation_id is None:
            turn.preferred = backend
            router.primary(backend).start_loading()
            conversation_id = await self._db(store.create_conversation, question if logged else UNLOGGED)
            if self.settings.ab_system_prompt and conversation_id % 2:
                turn.system_name = self.settings.ab_system_prompt
                await self._db(store.set_conversation_template, conversation_id, turn.system_name)
        else:
            conversation = await self._db(store.conversation, conversation_id)  # NotFoundError names it
            turn.preferred = backend or conversation.get("backend")
            turn.system_name = conversation.get("system_template") or "system"
            turn.incognito = bool(conversation.get("incognito"))
            router.primary(turn.preferred).start_loading()
            if logged:
                rows = [r for r in await self._db(store.messages, conversation_id)
                        if r["status"] == "complete" and r["role"] in ("user", "assistant")]
                summary = await self._db(store.summary, conversation_id)
                if summary:
                    turn.summary = summary["text"]
                    turn.summarized = sum(r["id"] <= summary["upto_message_id"] for r in rows)
                    rows = [r for r in rows if r["id"] > summary["upto_message_id"]]
                turn.history = [{"role": r["role"], "content": r["content"]} for r in rows]
                turn.history_ids = [r["id"] for r in rows]
            else:
                turn.history = list(self._unlogged.get(conversation_id, []))
        if backend is not None:
            await self._db(store.set_conversation_backend, conversation_id, backend)
        if incognito is not None and incognito != turn.incognito:
            turn.incognito = incognito
            await self._db(store.set_incognito, conversation_id, incognito)
        turn.conversation_id = conversation_id
        turn.prompt_message_id = await self._db(store.add_message, conversation_id, "user",
                                                question if logged else "")
        return turn

    # tools ---------------------------------------------------------------------------------

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
        """What tools may reach: this conversation's indexed folders, search, long-term memory; and
        whether one of those folders is private."""
        folders: list[Path] = []
        private = False
        search: Callable[[str], list[dict]] = lambda query: []  # noqa: E731
        if await self._anything_indexed():
            knowledge = await self.knowledge()
            ids = set(await asyncio.to_thread(knowledge.searchable, conversation_id))
            reachable = [f for f in await asyncio.to_thread(knowledge.folders) if f["id"] in ids]
            folders = [Path(f["path"]) for f in reachable]
            private = any(f.get("private") for f in reachable)

            def search(query: str) -> list[dict]:
                found = knowledge.search(query, conversation_id)
                return [{"location": p.location, "text": p.text} for p in found]

        memory = await self.memories._long_term()

        def recall(query: str) -> list[dict]:
            return memory.search(query, 5, self.settings.memory_threshold)

        return ToolContext(folders, search, recall, conversation_id), private

    async def _recall(self, question: str) -> tuple[list[Recalled], list[str]]:
        """Long-term memories for the question; a failing memory store costs the memories, not
        the answer."""
        try:
            return await self.memories.recall(question), []
        except AssistantError as exc:
            log.warning("memory recall failed: %s", exc)
            return [], [f"Long-term memory was not used: {exc}"]

    async def _propose(self, question: str, turn: _Turn) -> list[dict[str, Any]]:
        try:
            return await self.memories.propose(question, turn.conversation_id, turn.prompt_message_id,
                                               turn.incognito)
        except AssistantError as exc:
            log.warning("memory proposals failed: %s", exc)
            return []

    def _cacheable(self, params: SamplingParams) -> bool:
        s = self.settings
        return s.cache and s.log_content and (params.temperature == 0 or s.cache_nondeterministic)

    async def _cache_context(
        self, backend: Backend, turn: _Turn, params: SamplingParams, templates: tuple[prompts.Template, ...],
    ) -> str | None:
        """A hash of everything but the question that decides the answer: the model (and its
        file), the prompt templates, the sampling, the conversation, and what retrieval would
        search: the conversation's folders at their content's version (an edited file changes it,
        hence another key), with the retrieval settings. The same question over the same index
        finds the same passages, so nothing needs embedding. None: cannot tell (no model file)."""
        if isinstance(backend, LocalBackend):
            try:
                path = await asyncio.to_thread(resolve_model, backend.model, backend.models_dir)
                stat = await asyncio.to_thread(path.stat)
            except (AssistantError, OSError):
                return None  # the answer path reports it
            model = [str(path), stat.st_size, stat.st_mtime_ns]
        else:
            model = [getattr(backend, "endpoint", ""), backend.model_name]
        payload = {
            "backend": backend.name, "model": model, "n_ctx": backend.n_ctx,
            "template": [t.version for t in templates],
            "params": [params.max_tokens, params.temperature, params.top_p, params.seed, params.json_schema,
                       *([list(params.stop)] if params.stop else [])],
            **({"system": turn.options.system} if turn.options.system is not None else {}),
            "history": turn.history,
            "summary": turn.summary,
            "memories": [m.text for m in turn.memories],
            "index": await self._index_state(turn.conversation_id) if turn.options.knowledge else [],
            "retrieval": [self.settings.rag_top_k, self.settings.rag_min_similarity,
                          self.settings.sources_placement],
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()

    def _similar(self, store: Store, context_key: str, question: str) -> tuple[bytes, dict[str, Any] | None]:
        """The question's embedding, and the most similar earlier standalone question answered in
        the same context, if similar enough (run in a worker thread: it embeds)."""
        import numpy

        from memory.embedder import Embedder

        vector = numpy.asarray(Embedder().embed([question])[0], dtype=numpy.float32)
        since = (datetime.now(UTC) - timedelta(hours=self.settings.cache_ttl_hours)).isoformat()
        best, best_score = None, self.settings.semantic_cache_similarity
        for row in store.similar_answers(context_key, since):
            score = float(numpy.frombuffer(row["vector"], dtype=numpy.float32) @ vector)
            if score >= best_score:
                best, best_score = row, score
        if best is None:
            return vector.tobytes(), None
        return vector.tobytes(), {
            "response_id": best["response_id"], "text": best["answer"], "similar_question": best["question"],
            "chunk_ids": best["retrieved_chunk_ids"], "similarity": best_score,
        }

    def _remember(self, conversation_id: int, question: str, answer: str) -> None:
        """With `log_content` off, this session keeps the conversation in memory only."""
        if not self.settings.log_content:
            turns = self._unlogged.setdefault(conversation_id, [])
            turns.append({"role": "user", "content": question})
            if answer:
                turns.append({"role": "assistant", "content": answer})

    async def _response_row(
        self, trace: Trace, route: Route | None, preferred: str | None, status: str,
        error: BaseException | None, passages: list[Passage], result: StreamResult,
        prompt_message_id: int, first_at: float | None, last_at: float | None, ended_at: float,
        templates: tuple[prompts.Template, ...],
    ) -> tuple[dict[str, Any], float | None]:
        """The response row, and the cost (None when the model's price is unknown)."""
        router = self.router
        chosen = route.backend if route else router.primary(preferred)
        tokens = result.completion_tokens
        # The server's own count of prompt tokens when it gives one, else ours.
        prompt_tokens = result.prompt_tokens or (route.fitted.prompt_tokens if route else None)
        cost = router.cost(chosen, prompt_tokens or 0, tokens) if route else 0.0
        return {
            "prompt_message_id": prompt_message_id,
            "status": status,
            "error": str(error) if error else None,
            "backend": chosen.name,
            "model": chosen.model_name,
            "model_hash": None if is_remote(chosen) else await self._known_model_hash(),
            "template": _template_name(templates, bool(passages)),
            "template_version": _template_version(templates, bool(passages)),
            "retrieved_chunk_ids": json.dumps([p.chunk_id for p in passages]) if passages else None,
            "input_tokens": prompt_tokens,
            "output_tokens": tokens,
            "ttft_ms": (first_at - trace.origin) * 1000 if first_at else None,
            "total_ms": (ended_at - trace.origin) * 1000,
            "tokens_per_s": (tokens - 1) / (last_at - first_at)
            if first_at and last_at and last_at > first_at and tokens > 1 else None,
            "cost": cost or 0.0,  # unknown price: counted as 0 (the Started notice says so)
            "trace_id": uuid.uuid4().hex,
            "endpoint": getattr(chosen, "endpoint", "local") if route else None,
            "remote": int(route is not None and is_remote(chosen)),
            "route": json.dumps(route.passed_over if route else []),
            "created_at": now(),
        }, cost

    async def _search(self, question: str, conversation_id: int, attrs: dict[str, Any]) -> list[Passage]:
        """Passages from the conversation's folders relevant to the question; none, without
        loading anything, when no folder is indexed. `attrs` (the trace's) gets the folders
        searched, what was found, and how much of it was relevant enough to use."""
        if self.settings.rag_top_k <= 0:
            return []
        if not await self._anything_indexed():
            return []  # plain chat: Chroma, torch and the loaders stay unloaded
        knowledge = await self.knowledge()
        folder_ids = await asyncio.to_thread(knowledge.searchable, conversation_id)
        if not folder_ids:
            return []
        passages = await asyncio.to_thread(knowledge.search, question, conversation_id, attrs)
        attrs.update(folders=len(folder_ids), passages=len(passages),
                     found_in=sorted({p.folder for p in passages}),
                     min_similarity=self.settings.rag_min_similarity)
        return passages

    async def _index_state(self, conversation_id: int) -> list[Any]:
        """What `_search` would search for this conversation, read without embedding anything."""
        if self.settings.rag_top_k <= 0 or not await self._anything_indexed():
            return []
        return await asyncio.to_thread((await self.knowledge()).state, conversation_id)

    async def _passages(self, chunk_ids: list[int]) -> list[Passage]:
        """The passages of a cached answer, from SQLite (nothing is searched)."""
        if not chunk_ids:
            return []
        return await asyncio.to_thread((await self.knowledge()).passages, chunk_ids)

    async def _fit(
        self, backend: Backend, turn: _Turn, passages: list[Passage], templates: tuple[prompts.Template, ...],
    ) -> tuple[Any, list[Passage]]:
        """Fit the prompt: older turns give way first, then the least relevant sources, and only
        then is the question shortened. A summary of older turns follows the system prompt; the
        sources go after it or right before the question (`sources_placement`)."""
        system = templates[0].text if turn.options.system is None else turn.options.system
        if turn.summary:
            system = f"{system}\n\n{templates[3].text.strip()}\n{turn.summary}"
        while True:
            prompt, extra = system, {}
            if passages and self.settings.sources_placement == "system":
                prompt = f"{system}\n\n{sources_message(passages, templates[1].text)}"
            elif passages:  # a keyword only when used: plugin backends may predate it
                extra = {"sources": sources_message(passages, templates[1].text)}
            try:
                fitted = await backend.fit(prompt, turn.history, turn.question,
                                           turn.options.max_tokens or self.settings.max_tokens,
                                           **extra)
            except ContextOverflowError:
                if not passages:
                    raise
            else:
                if not (fitted.question_truncated and passages):
                    return fitted, passages
            passages = passages[:-1]

    def _prefill_next_turn(self, route: Route, passages: list[Passage], question: str, answer: str) -> None:
        """Have the local model evaluate the next question's prompt up to its own words, while the
        user reads: the turns as they are saved, without this question's sources. Pointless when
        the sources sat in the system prompt: the next question changes it anyway."""
        if not (self.prefill_next_turn and hasattr(route.backend, "prefill")):
            return
        if passages and self.settings.sources_placement == "system":
            return
        earlier = [m for i, m in enumerate(route.fitted.messages[:-1]) if i == 0 or m["role"] != "system"]
        route.backend.prefill([*earlier, {"role": "user", "content": question},
                               {"role": "assistant", "content": answer}])

    async def _known_model_hash(self) -> str | None:
        if self._model_hash is None:
            return None
        try:
            return await asyncio.shield(self._model_hash)
        except (OSError, AssistantError):  # unreadable file, locked database: the row goes on
            return None

    # backends ----------------------------------------------------------------------------------

    async def backends_report(self, check: bool = False) -> list[dict[str, Any]]:
        """Every backend: kind, model, where it runs, its place in the route, its breaker, its
        price; with `check`, whether it answers now (a model file that validates, GET /models)."""
        router = self.router
        route = list(self.settings.backends)
        report = []
        for name, backend in router.backends.items():
            breaker = await router.breaker(name)
            price = router.cost(backend, 1_000_000, 0), router.cost(backend, 0, 1_000_000)
            row: dict[str, Any] = {
                "name": name,
                "kind": "local" if not is_remote(backend) else "trusted" if is_trusted(backend) else "cloud",
                "model": backend.model_name,
                "endpoint": getattr(backend, "endpoint", "local"),
                "route": route.index(name) + 1 if name in route else None,
                "breaker": breaker.state,
                "failures": breaker.current.failures,
                "last_error": breaker.current.last_error,
                "retry_in_s": round(breaker.retry_in_s(), 1),
                "usd_per_mtok": None if price[0] is None else {"input": price[0], "output": price[1]},
            }
            if check:
                row["health"] = await _health(backend)
            report.append(row)
        return report

    async def set_conversation_backend(self, conversation_id: int, backend: str | None) -> None:
        if backend is not None and backend not in self.router.backends:
            raise ConfigError(f"There is no backend named {backend!r}.")
        await self._db((await self.store()).set_conversation_backend, conversation_id, backend)

    # observability -----------------------------------------------------------------------------

    async def trace(self, response_id: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """An answer's response row and its spans."""
        store = await self.store()
        return await self._db(store.response, response_id), await self._db(store.spans, response_id)

    async def stats(self, since: str | None = None, by: str | None = None) -> dict[str, Any]:
        from engine import stats

        return await self._db(stats.compute, await self.store(), since, by)

    async def alerts(self) -> list[Any]:
        from engine import alerts

        return await self._db(alerts.check, await self.store(), self.settings)

    async def reviews(self, pending: bool = True) -> list[dict[str, Any]]:
        return await self._db((await self.store()).reviews, pending)

    async def mark_reviewed(
        self, response_id: int, better_answer: str | None, note: str | None = None
    ) -> None:
        await self._db((await self.store()).mark_reviewed, response_id, better_answer, note)

    # history -----------------------------------------------------------------------------------

    async def conversation(self, conversation_id: int) -> dict[str, Any]:
        return await self._db((await self.store()).conversation, conversation_id)

    async def search_conversations(self, query: str) -> list[dict[str, Any]]:
        return await self._db((await self.store()).search_conversations, query)

    async def conversations(self, limit: int = 100) -> list[dict[str, Any]]:
        return await self._db((await self.store()).conversations, limit)

    async def messages(self, conversation_id: int) -> list[dict[str, Any]]:
        """The conversation's messages; answers that used sources carry them under "sources"."""
        rows = await self._db((await self.store()).messages, conversation_id)
        for row in rows:
            if row.get("retrieved_chunk_ids"):
                knowledge = await self.knowledge()
                ids = json.loads(row["retrieved_chunk_ids"])
                passages = await asyncio.to_thread(knowledge.passages, ids)
                row["sources"] = resolve_citations(row["content"], passages)[1]
        return rows

    async def export_conversations(self, conversation_ids: list[int] | None = None) -> list[dict[str, Any]]:
        """Conversations (default: all) as JSON-ready dicts, with sources, ratings and timings."""
        from memory.transcripts import Transcripts

        transcripts = Transcripts(await self.store())
        knowledge = await self.knowledge() if await self._anything_indexed() else None

        def sources_of(row: dict[str, Any], text: str) -> list[dict[str, Any]]:
            if knowledge is None or not row["retrieved_chunk_ids"]:
                return []
            passages = knowledge.passages(json.loads(row["retrieved_chunk_ids"]))
            return [{"number": s.number, "location": s.passage.location, "path": s.passage.path,
                     "cited": s.cited} for s in resolve_citations(text, passages)[1]]

        def export() -> list[dict[str, Any]]:
            ids = conversation_ids or transcripts.conversation_ids()
            return [transcripts.export(i, sources_of) for i in ids]

        return await asyncio.to_thread(export)

    async def import_conversations(self, lines: list[str], where: str) -> Imported:
        """New conversations from an export's lines; those already here are skipped (`already_there`)."""
        from memory.transcripts import Transcripts

        return await self._db(Transcripts(await self.store()).import_lines, lines, where)

    async def fork(
        self, conversation_id: int, message_id: int | None = None, number: int | None = None
    ) -> int:
        """A copy of the conversation up to `message_id`, or its `number`-th message (1-based, as
        `history -c` shows them); default: all of it. To go on differently."""
        from memory.transcripts import Transcripts

        return await self._db(Transcripts(await self.store()).fork, conversation_id, message_id, number)

    async def set_incognito(self, conversation_id: int, on: bool) -> None:
        await self._db((await self.store()).set_incognito, conversation_id, on)

    async def rename_conversation(self, conversation_id: int, title: str) -> None:
        await self._db((await self.store()).rename_conversation, conversation_id, title)

    async def delete_conversation(self, conversation_id: int) -> None:
        await self._db((await self.store()).delete_conversation, conversation_id)

    async def rate(self, response_id: int, rating: int, comment: str | None = None) -> int:
        """Thumbs up (+1) or down (-1) on a response, with an optional comment."""
        return await self._db((await self.store()).add_feedback, response_id, rating, comment)

    async def comment(self, feedback_id: int, comment: str) -> None:
        """Attach a comment to feedback given a moment ago."""
        await self._db((await self.store()).set_feedback_comment, feedback_id, comment)

    async def response(self, response_id: int) -> dict[str, Any]:
        return await self._db((await self.store()).response, response_id)


async def _health(backend: Backend) -> str:
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


def _generation_spans(trace: Trace, route: Route, last_at: float | None, ended_at: float) -> None:
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


class _Draft:
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


def _exact_key(context_key: str, question: str) -> str:
    return hashlib.sha256(f"{context_key}\n{question}".encode()).hexdigest()


def _template_name(templates: tuple[prompts.Template, ...], with_sources: bool) -> str:
    return f"{templates[0].name}+{templates[1].name}" if with_sources else templates[0].name


def _template_version(templates: tuple[prompts.Template, ...], with_sources: bool) -> str:
    return f"{templates[0].version}+{templates[1].version}" if with_sources else templates[0].version


@dataclass
class _Turn:
    """One question on its way: the conversation it continues and what its prompt is made of."""

    question: str  # as the model gets it: with the recalled memories, once known
    conversation_id: int = 0
    prompt_message_id: int = 0
    preferred: str | None = None  # the conversation's backend choice
    system_name: str = "system"
    incognito: bool = False
    history: list[dict[str, str]] = field(default_factory=list)  # the turns after the summary
    history_ids: list[int] = field(default_factory=list)  # their message ids (none when not logged)
    summary: str | None = None
    summarized: int = 0  # messages the summary stands for
    memories: list[Recalled] = field(default_factory=list)  # recalled for this question
    notices: list[str] = field(default_factory=list)
    options: AskOptions = field(default_factory=AskOptions)


def _with_memories(question: str, recalled: list[Recalled], heading: prompts.Template) -> str:
    """The question with its memories before it, as their own section. In the last message, not
    the system prompt: the earlier turns' prefix stays the same, and llama.cpp reuses it."""
    if not recalled:
        return question
    lines = "\n".join(f"- {m.text}" for m in recalled)
    return f"[{heading.text.strip()}\n{lines}]\n\n{question}"


def _file_sha256(store: Store, path: Path) -> str:
    """SHA-256 of a model file, cached by path, size and mtime: hashing gigabytes is slow."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    cached = store.cached_model_hash(*key)
    if cached:
        return cached
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    store.save_model_hash(*key, digest.hexdigest())
    return digest.hexdigest()
