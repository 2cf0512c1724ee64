"""The response cache: a question asked before in the same context is answered from the database.

The context key is a hash of everything but the question that decides the answer; the exact
lookup adds the question to it; the semantic lookup (`semantic_cache`) compares the embedding of
a standalone question with those of earlier standalone questions answered in that same context.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from engine.backends.base import Backend, SamplingParams
from engine.backends.local import LocalBackend
from engine.config import Settings
from engine.errors import AssistantError
from engine.models import resolve_model
from engine.turn import Templates, Turn
from memory.store import Store

IndexState = Callable[[int], Awaitable[list[Any]]]  # what retrieval would search, by conversation


@dataclass
class Lookup:
    """One answer's use of the cache: its keys, what was found, the question's embedding."""

    context_key: str | None = None
    key: str | None = None  # the exact key: the context's and the question's
    hit: dict[str, Any] | None = None  # response_id, text, chunk_ids (, similar_question, similarity)
    vector: bytes | None = None  # the question's embedding, when the semantic lookup made one

    @property
    def kind(self) -> str | bool:
        """For the trace: "semantic", True (exact) or False (a miss)."""
        return "semantic" if self.hit and "similar_question" in self.hit else bool(self.hit)


def _model_file(backend: LocalBackend) -> tuple[Path, os.stat_result]:
    """The model's file and its size and time, in one trip to a thread (a lookup waits for it)."""
    path = resolve_model(backend.model, backend.models_dir)
    return path, path.stat()


def exact_key(context_key: str, question: str) -> str:
    return hashlib.sha256(f"{context_key}\n{question}".encode()).hexdigest()


class ResponseCache:
    def __init__(self, settings: Settings, index_state: IndexState) -> None:
        self.settings = settings
        self._index_state = index_state

    def cacheable(self, params: SamplingParams) -> bool:
        s = self.settings
        return s.cache and s.log_content and (params.temperature == 0 or s.cache_nondeterministic)

    async def lookup(self, store: Store, backend: Backend, turn: Turn, question: str, params: SamplingParams,
                     templates: Templates, regenerate: bool) -> Lookup:
        """Regenerating skips the lookup (its answer replaces the entry), but the keys are made."""
        found = Lookup(await self.context_key(backend, turn, params, templates))
        if found.context_key is None:
            return found
        found.key = exact_key(found.context_key, question)
        if not regenerate:
            found.hit = await asyncio.to_thread(store.cached_answer, found.key)
        standalone = not turn.history and not turn.summary
        if not found.hit and standalone and self.settings.semantic_cache:
            found.vector, hit = await asyncio.to_thread(self._similar, store, found.context_key, question)
            found.hit = None if regenerate else hit
        return found

    def keep(self, found: Lookup, chunk_ids: list[int]) -> tuple[str, float, list[int]] | None:
        """What `Store.record_answer` keeps for next time: the key, the time to live, the sources."""
        if found.key is None:
            return None
        return found.key, self.settings.cache_ttl_hours * 3600, chunk_ids

    async def remember_question(self, store: Store, found: Lookup, response_id: int) -> None:
        """A new standalone answer: findable by similar questions."""
        if found.vector is not None and found.context_key is not None:
            await asyncio.to_thread(store.save_question_vector, response_id, found.context_key, found.vector)

    async def context_key(
        self, backend: Backend, turn: Turn, params: SamplingParams, templates: Templates,
    ) -> str | None:
        """A hash of everything but the question that decides the answer: the model (and its
        file), the prompt templates, the sampling, the conversation, and what retrieval would
        search: the conversation's folders at their content's version (an edited file changes it,
        hence another key), with the retrieval settings. The same question over the same index
        finds the same passages, so nothing needs embedding. None: cannot tell (no model file)."""
        if isinstance(backend, LocalBackend):
            try:
                path, stat = await asyncio.to_thread(_model_file, backend)
            except (AssistantError, OSError):
                return None  # the answer path reports it
            model = [str(path), stat.st_size, stat.st_mtime_ns]
        else:
            model = [backend.endpoint, backend.model_name]
        payload = {
            "backend": backend.name, "model": model, "n_ctx": backend.n_ctx,
            "template": templates.versions(),
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
