"""The orchestration of one answer, and the engine's view of history for the TUI and the CLI."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from engine.backends.base import Backend, SamplingParams, StreamResult
from engine.backends.local import LocalBackend
from engine.backends.openai_compat import OpenAICompatibleBackend
from engine.citations import SOURCES_INSTRUCTIONS, resolve_citations, sources_prompt
from engine.config import Settings
from engine.errors import AssistantError, ConfigError, ContextOverflowError
from engine.events import Event, Failed, Finished, Started, Timings, Token, Usage
from engine.gguf import read_gguf
from engine.models import resolve_model
from engine.paths import database_file, ensure_private_dir
from engine.router import Route, Router, is_remote, is_trusted
from memory.corpus import Corpus
from memory.retriever import Passage
from memory.store import Store

if TYPE_CHECKING:
    from engine.knowledge import Knowledge

T = TypeVar("T")
SYSTEM_TEMPLATE = "system"
SOURCES_TEMPLATE = "system+sources"


def local_backend(settings: Settings) -> LocalBackend:
    return LocalBackend(
        settings.model,
        models_dir=settings.models_dir,
        n_ctx=settings.n_ctx,
        n_gpu_layers=settings.n_gpu_layers,
        n_threads=settings.n_threads,
        n_batch=settings.n_batch,
        flash_attn=settings.flash_attn,
    )


def make_backends(settings: Settings) -> dict[str, Backend]:
    """The local model and every configured provider (whether or not `backends` routes to it:
    a conversation may still pick it)."""
    backends: dict[str, Backend] = {"local": local_backend(settings)}
    for name, provider in settings.providers.items():
        backends[name] = OpenAICompatibleBackend(provider)
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
        """Prepare retrieval in the background when folders are indexed; a no-op otherwise."""
        if await self._anything_indexed():
            await asyncio.to_thread((await self.knowledge()).warm_up)

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

    @property
    def template_version(self) -> str:
        return _version(self.settings.system_prompt)

    async def close(self) -> None:
        if self._model_hash is not None:
            await asyncio.gather(self._model_hash, return_exceptions=True)
        await self.router.aclose()
        for backend in self.router.backends.values():
            if isinstance(backend, OpenAICompatibleBackend):
                await backend.aclose()
            elif (close := getattr(backend, "close", None)) is not None:
                await asyncio.to_thread(close)
        if self._store is not None:
            self._store.close()

    # one answer --------------------------------------------------------------------------------

    async def ask(
        self, question: str, conversation_id: int | None = None, backend: str | None = None
    ) -> AsyncIterator[Event]:
        """Answer `question`, continuing `conversation_id` or starting a new conversation.

        `backend` picks the backend for this conversation from now on (saved with it); otherwise
        the conversation's own choice, else the configured route, applies.

        Yields Started, Token..., then Finished or Failed. The question is saved before anything
        else, and one response row is written however the answer ends; if the consumer cancels,
        the row says "cancelled" and the partial answer is kept.
        """
        started_at = time.perf_counter()
        router = self.router
        if backend is not None and backend not in router.backends:
            raise ConfigError(f"There is no backend named {backend!r}.",
                              hint=f"Known backends: {', '.join(router.backends)}.")
        store = await self.store()
        if conversation_id is None:
            preferred = backend
            # The model loads while the question is saved and the folders searched.
            router.primary(preferred).start_loading()
            conversation_id = await self._db(store.create_conversation, question)
            history: list[dict[str, str]] = []
        else:
            preferred = backend or (await self._db(store.conversation, conversation_id)).get("backend")
            router.primary(preferred).start_loading()
            history = _context_messages(await self._db(store.messages, conversation_id))
        if backend is not None:
            await self._db(store.set_conversation_backend, conversation_id, backend)
        prompt_message_id = await self._db(store.add_message, conversation_id, "user", question)

        settings = self.settings
        params = SamplingParams(settings.max_tokens, settings.temperature, settings.top_p, settings.seed)
        result = StreamResult()
        pieces: list[str] = []
        first_at = last_at = None
        prompt_tokens = None
        passages: list[Passage] = []
        route: Route | None = None
        status, error = "cancelled", None
        try:
            passages = await self._search(question, conversation_id)
            private_history = False
            if history and any(is_remote(b) for b in router.order(preferred)):
                private_history = await self._db(store.used_private_sources, conversation_id)

            async def prepare(candidate: Backend) -> tuple[Any, list[Passage]]:
                await self.load_model(candidate)
                return await self._fit(candidate, history, question, passages)

            route = await router.open(prepare, params, retrieved=passages,
                                      private_history=private_history, preferred=preferred)
            result = route.result
            passages = route.passages
            prompt_tokens = route.fitted.prompt_tokens
            chosen = route.backend
            notices = [f"{name}: {why}" for name, why in route.passed_over]
            if is_remote(chosen) and not is_trusted(chosen):
                notices += await router.budget_warnings()
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
            )
            try:
                if route.first is not None:
                    first_at = last_at = time.perf_counter()
                    pieces.append(route.first)
                    yield Token(route.first)
                async with contextlib.aclosing(route.rest) as stream:
                    async for piece in stream:
                        last_at = time.perf_counter()
                        first_at = first_at or last_at
                        pieces.append(piece)
                        yield Token(piece)
            except AssistantError as exc:
                await router.finish(route, exc)
                raise
            status = "ok"
        except AssistantError as exc:
            status, error = "error", exc
        except Exception as exc:  # a bug: record it, then let it crash loudly
            status, error = "error", exc
            raise
        finally:
            ended_at = time.perf_counter()
            tokens = result.completion_tokens
            timings = Timings(
                ttft_ms=(first_at - started_at) * 1000 if first_at else None,
                total_ms=(ended_at - started_at) * 1000,
                tokens_per_s=(tokens - 1) / (last_at - first_at)
                if first_at and last_at and last_at > first_at and tokens > 1
                else None,
            )
            chosen = route.backend if route else router.primary(preferred)
            prompt_tokens = result.prompt_tokens or prompt_tokens  # the server's own count, if it gave one
            cost = router.cost(chosen, prompt_tokens or 0, tokens) if route else 0.0
            row = {
                "prompt_message_id": prompt_message_id,
                "status": status,
                "error": str(error) if error else None,
                "backend": chosen.name,
                "model": chosen.model_name,
                "model_hash": None if is_remote(chosen) else await self._known_model_hash(),
                "template": SOURCES_TEMPLATE if passages else SYSTEM_TEMPLATE,
                "template_version": _version(settings.system_prompt + SOURCES_INSTRUCTIONS)
                if passages else self.template_version,
                "retrieved_chunk_ids": json.dumps([p.chunk_id for p in passages]) if passages else None,
                "input_tokens": prompt_tokens,
                "output_tokens": tokens,
                "ttft_ms": timings.ttft_ms,
                "total_ms": timings.total_ms,
                "tokens_per_s": timings.tokens_per_s,
                "cost": cost or 0.0,  # unknown price: counted as 0 (the Started notice says so)
                "trace_id": uuid.uuid4().hex,
                "endpoint": getattr(chosen, "endpoint", "local") if route else None,
                "remote": int(route is not None and is_remote(chosen)),
                "route": json.dumps(route.passed_over if route else []),
            }
            text, sources = resolve_citations("".join(pieces), passages)
            # Shielded: a second cancel must not lose the row.
            saving = asyncio.ensure_future(
                self._db(store.record_answer, conversation_id, text, status != "ok", row)
            )
            try:
                message_id, response_id = await asyncio.shield(saving)
            except AssistantError as exc:  # the disk is full, the database locked...
                if status != "ok":
                    raise
                status, error, message_id, response_id = "error", exc, None, None
        if status == "ok":
            usage = Usage(prompt_tokens or 0, tokens)
            yield Finished(response_id, conversation_id, message_id, text, usage, timings, tuple(sources),
                           cost_usd=cost)
        else:
            yield Failed(response_id, conversation_id, error, text)

    async def _search(self, question: str, conversation_id: int) -> list[Passage]:
        """Passages from the conversation's folders; none, without loading anything, when no
        folder is indexed."""
        if self.settings.rag_top_k <= 0:
            return []
        if not await self._anything_indexed():
            return []  # plain chat: Chroma, torch and the loaders stay unloaded
        knowledge = await self.knowledge()
        if not await asyncio.to_thread(knowledge.searchable, conversation_id):
            return []
        return await asyncio.to_thread(knowledge.search, question, conversation_id)

    async def _fit(
        self, backend: Backend, history: list[dict[str, str]], question: str, passages: list[Passage]
    ) -> tuple[Any, list[Passage]]:
        """Fit the prompt; sources come before older turns, and the least relevant sources go
        first when even they do not fit."""
        while True:
            system = self.settings.system_prompt
            if passages:
                system = sources_prompt(system, passages)
            try:
                fitted = await backend.fit(system, history, question, self.settings.max_tokens)
            except ContextOverflowError:
                if not passages:
                    raise
                passages = passages[:-1]
                continue
            return fitted, passages

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

    # history -----------------------------------------------------------------------------------

    async def conversation(self, conversation_id: int) -> dict[str, Any]:
        return await self._db((await self.store()).conversation, conversation_id)

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
        if isinstance(backend, OpenAICompatibleBackend):
            models = await backend.models()
            listed = "lists" if backend.model_name in models else "does not list"
            return f"ok: the server {listed} {backend.model_name}"
        if isinstance(backend, LocalBackend):
            path = await asyncio.to_thread(resolve_model, backend.model, backend.models_dir)
            await asyncio.to_thread(read_gguf, path)
            return f"ok: {path}"
        return "ok"
    except AssistantError as exc:
        return f"failing: {exc}"


def _version(template: str) -> str:
    return hashlib.sha256(template.encode()).hexdigest()[:12]


def _context_messages(rows: list[dict[str, Any]]) -> list[dict[str, str]]:
    """The turns the model sees again: complete user and assistant messages."""
    return [
        {"role": r["role"], "content": r["content"]}
        for r in rows
        if r["status"] == "complete" and r["role"] in ("user", "assistant")
    ]


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
