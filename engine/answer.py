"""One question -> events: the answer pipeline.

    save question -> memory recall -> (cache lookup) -> retrieval -> (tool loop)
      -> cached answer, or: routing (load model, prompt build) -> generation -> guardrails
      -> log (one response row however the answer ends) -> Finished / Failed

Each step is a span of the answer's trace. The collaborators (router, store, folders, memories,
summaries, tools, cache, observers, guardrails, the model loader) are handed in by the composition
root, `engine.engine.Engine`; nothing here reaches back up to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from engine.answer_log import Draft, ModelHash, Observers, Timing, generation_spans, response_row
from engine.attribution import Attribution, attribute
from engine.backends.base import Backend, SamplingParams, StreamResult
from engine.cache import Lookup, ResponseCache
from engine.citations import resolve_citations
from engine.config import Settings
from engine.cpu_budget import Foreground, process_budget
from engine.errors import AssistantError, ConfigError
from engine.events import Event, Failed, Finished, Started, Timings, Token, Usage
from engine.guardrails import PluginGuardrails, describe
from engine.library import Library
from engine.longterm import Memories
from engine.repetition import LoopGuard, trimmed
from engine.request import AskOptions
from engine.review import LOW_GROUNDEDNESS, poorly_grounded
from engine.router import Route, Router, is_remote, is_trusted
from engine.structured import InvalidOutputError, check_schema
from engine.summaries import Summaries
from engine.toolloop import ToolLoop
from engine.tools import Confirm, ToolStep, results_section
from engine.tracing import Trace
from engine.turn import Templates, Turn, fit_prompt, start_turn, with_memories
from memory.longterm import Recalled
from memory.retriever import Passage
from memory.store import Store

log = logging.getLogger(__name__)


@dataclass
class Collaborators:
    """What the pipeline is handed; each one does its own job."""

    router: Router
    store: Callable[[], Awaitable[Store]]
    library: Library
    memories: Memories
    summaries: Summaries
    tool_loop: ToolLoop
    cache: ResponseCache
    observers: Observers
    guardrails: PluginGuardrails
    model_hash: ModelHash  # the local model file's
    # Set while an answer is on its way: background indexing pauses between batches meanwhile.
    foreground: Foreground = field(default_factory=lambda: process_budget().foreground)


@dataclass
class _Answer:
    """One answer on its way: what each step found, for the next steps and the response row."""

    question: str
    turn: Turn
    templates: Templates
    params: SamplingParams
    trace: Trace
    store: Store
    draft: Draft
    result: StreamResult = field(default_factory=StreamResult)
    pieces: list[str] = field(default_factory=list)
    timing: Timing = field(default_factory=Timing)
    passages: list[Passage] = field(default_factory=list)
    route: Route | None = None
    lookup: Lookup = field(default_factory=Lookup)
    findings: list[tuple[str, str, bool]] = field(default_factory=list)
    recalled: list[Recalled] = field(default_factory=list)
    proposals: list[dict[str, Any]] = field(default_factory=list)
    steps: list[ToolStep] = field(default_factory=list)
    tool_cost: float = 0.0  # what the tool decisions cost: the budget counts them with the answer
    private_history: bool = False  # a private folder's text is in the conversation
    status: str = "cancelled"
    error: BaseException | None = None
    looped: bool = False  # the answer was stopped where it started to repeat itself
    attribution: Attribution | None = None


class Answerer:
    def __init__(self, settings: Settings, parts: Collaborators) -> None:
        self.settings = settings
        self.parts = parts
        self._unlogged: dict[int, list[dict[str, str]]] = {}  # conversations, when log_content is off
        # A process that asks one question and exits (`assistant ask`) turns this off.
        self.prefill_next_turn = True
        self.keep_states = True  # the local model's state after an answer goes to disk (disk_states.py)

    async def ask(
        self, question: str, conversation_id: int | None = None, backend: str | None = None,
        regenerate: bool = False, json_schema: dict | None = None, incognito: bool | None = None,
        confirm: Confirm | None = None, options: AskOptions | None = None,
        saved: Callable[[int, int], None] | None = None,
    ) -> AsyncIterator[Event]:
        """`Engine.ask`: Started, Token..., then Finished or Failed (see there)."""
        parts, settings = self.parts, self.settings
        trace = Trace()
        router = parts.router
        if backend is not None and backend not in router.backends:
            raise ConfigError(f"There is no backend named {backend!r}.",
                              hint=f"Known backends: {', '.join(router.backends)}.")
        stopped = False
        with trace.span("save question"):
            # Shielded: a question asked is saved whole, and stopped at once (Esc before any event)
            # it is still answered by a stopped answer with its response row, so it has an id.
            saving = asyncio.ensure_future(self._open_and_save(question, conversation_id, backend, incognito))
            try:
                store, turn, templates = await asyncio.shield(saving)
            except asyncio.CancelledError:
                store, turn, templates = await saving
                stopped = True
            if saved is not None:
                saved(turn.conversation_id, turn.prompt_message_id)
        turn.options = options = options or AskOptions()
        params = options.sampling(settings, check_schema(json_schema) if json_schema is not None else None)
        a = _Answer(question, turn, templates, params, trace, store,
                    Draft(store, turn.conversation_id, enabled=settings.log_content))
        first = contextlib.ExitStack()  # the user waits for this answer: background work yields
        first.enter_context(parts.foreground.answering())
        try:
            if stopped:
                raise asyncio.CancelledError  # logged as cancelled below, then passed on
            await self._gather(a, json_schema, regenerate, confirm)
            steps = self._from_cache(a) if a.lookup.hit else self._generate(a)
            async with contextlib.aclosing(steps) as events:
                async for event in events:
                    yield event
            a.status = "ok"
            a.proposals = await self._propose(question, turn)
        except AssistantError as exc:
            a.status, a.error = "error", exc
        except Exception as exc:  # a bug: record it, then let it crash loudly
            a.status, a.error = "error", exc
            raise
        finally:
            first.close()
            text, sources, cost, message_id, response_id, row = await self._log(a)
        hit = a.lookup.hit
        if a.status == "ok":
            usage = Usage(row["input_tokens"] or 0, row["output_tokens"])
            timings = Timings(row["ttft_ms"], row["total_ms"], row["tokens_per_s"])
            yield Finished(response_id, turn.conversation_id, message_id, text, usage, timings,
                           tuple(sources), cost_usd=cost, cached_from=hit["response_id"] if hit else None,
                           proposals=tuple(a.proposals), groundedness=row.get("groundedness"))
        else:
            yield Failed(response_id, turn.conversation_id, a.error, text)

    # before the answer -------------------------------------------------------------------------

    async def _open_and_save(self, question: str, conversation_id: int | None, backend: str | None,
                             incognito: bool | None) -> tuple[Store, Turn, Templates]:
        await self.parts.summaries.wait(conversation_id)
        store = await self.parts.store()
        turn = await self._save_question(store, question, conversation_id, backend, incognito)
        # Files: read off the event loop.
        return store, turn, await asyncio.to_thread(Templates.load, turn.system_name, self.settings)

    async def _save_question(
        self, store: Store, question: str, conversation_id: int | None, backend: str | None,
        incognito: bool | None,
    ) -> Turn:
        return await start_turn(store, self.parts.router, self.settings, self._unlogged, question,
                                conversation_id, backend, incognito)

    async def _gather(self, a: _Answer, json_schema: dict | None, regenerate: bool,
                      confirm: Confirm | None) -> None:
        """What the answer is made of: memories, a cached answer, or passages and tool results."""
        parts, turn, trace, store = self.parts, a.turn, a.trace, a.store
        router, preferred, options = parts.router, turn.preferred, turn.options
        conversation_id = turn.conversation_id
        with trace.span("memory recall") as span:  # embeds the question only when there are memories
            a.recalled, notes = await self._recall(a.question) if options.knowledge else ([], [])
            span.attrs["memories"] = [m.id for m in a.recalled]
        turn.memories = a.recalled
        turn.question = with_memories(a.question, a.recalled, a.templates.memories)
        turn.notices += notes
        with trace.span("tools") as span:  # which tools this answer may call (the chat template is read)
            tools = await parts.tool_loop.tools_for(router.primary(preferred), json_schema) \
                if options.knowledge else {}
            span.attrs["tools"] = len(tools)
        # Regenerating skips the lookup, and its answer replaces the entry; tool results vary.
        # Looked up before retrieval: a repeated question is answered without embedding it
        # (seconds on a busy CPU), since the key holds the folders' version, not what was found.
        if parts.cache.cacheable(a.params) and not tools:
            with trace.span("cache lookup") as span:
                a.lookup = await parts.cache.lookup(store, router.primary(preferred), turn, a.question,
                                                    a.params, a.templates, regenerate)
                span.attrs["hit"] = a.lookup.kind
        untrusted_history = None
        if not a.lookup.hit:
            with trace.span("retrieval") as span:
                a.passages = await parts.library.search(a.question, turn.conversation_id, span.attrs) \
                    if options.knowledge else []
            # What earlier turns left in the history: a private folder's words (then untrusted
            # backends may not see it), text that is not the user's (then no side effects).
            if turn.history or turn.summary:
                if any(is_remote(b) for b in router.order(preferred)):
                    a.private_history = await asyncio.to_thread(store.used_private_sources, conversation_id)
                if any(t.side_effects for t in tools.values()):
                    untrusted_history = await asyncio.to_thread(store.untrusted_history, conversation_id)
        if tools:
            reach = await parts.library.tool_reach(conversation_id, await parts.memories.tool_search())
            run = await parts.tool_loop.run(
                tools, a.templates.system, turn.history, turn.question, reach, a.passages,
                trace, confirm, preferred=preferred,
                private=a.private_history or any(p.private for p in a.passages), untrusted=untrusted_history)
            a.steps, a.tool_cost = run.steps, run.cost
            a.private_history = a.private_history or run.private
            turn.question += results_section(a.steps)
            turn.notices += [f"Tool {s.call.name} not run: {s.result}" for s in a.steps
                             if s.status in ("refused", "declined")] + run.notices

    async def _recall(self, question: str) -> tuple[list[Recalled], list[str]]:
        """Long-term memories for the question; a failing memory store costs the memories, not
        the answer."""
        try:
            return await self.parts.memories.recall(question), []
        except AssistantError as exc:
            log.warning("memory recall failed: %s", exc)
            return [], [f"Long-term memory was not used: {exc}"]

    # the answer --------------------------------------------------------------------------------

    async def _from_cache(self, a: _Answer) -> AsyncIterator[Event]:
        turn, hit = a.turn, a.lookup.hit
        assert hit is not None
        primary = self.parts.router.primary(turn.preferred)
        a.passages = await self.parts.library.passages(json.loads(hit["chunk_ids"] or "[]"))
        yield Started(turn.conversation_id, turn.prompt_message_id, primary.name, primary.model_name, 0,
                      primary.n_ctx, 0, False, tuple(a.passages), cached_from=hit["response_id"],
                      similar_question=hit.get("similar_question"), memories=tuple(a.recalled),
                      summarized_messages=turn.summarized, notices=tuple(turn.notices))
        a.timing.first_at = a.timing.last_at = time.perf_counter()
        a.pieces.append(hit["text"])
        yield Token(hit["text"])

    async def _generate(self, a: _Answer) -> AsyncIterator[Event]:
        """Route to a backend (loading its model, fitting the prompt), stream its answer, check it."""
        parts, turn, trace, timing, pieces = self.parts, a.turn, a.trace, a.timing, a.pieces
        router = parts.router

        async def prepare(candidate: Backend) -> tuple[Any, list[Passage]]:
            return await fit_prompt(candidate, turn, a.passages, a.templates, self.settings)

        with trace.span("routing") as span:
            route = await router.open(prepare, a.params, retrieved=a.passages, preferred=turn.preferred,
                                      private_history=a.private_history, trace=trace)
            span.end = route.stream_started_at  # generation starts there: spans follow one another
            span.attrs.update(backend=route.backend.name, passed_over=len(route.passed_over))
        a.route, a.result, a.passages = route, route.result, route.passages
        await parts.model_hash.loaded(route.backend)
        yield await self._started(a, route)
        # JSON is never cut: its grammar ends it, and a cut would leave it invalid.
        guard = LoopGuard() if self.settings.stop_loops and a.params.json_schema is None else None
        try:
            if route.first is not None:
                timing.first_at = timing.last_at = route.first_at
                pieces.append(route.first)
                a.draft.offer(pieces)
                yield Token(route.first)
            async with contextlib.aclosing(route.rest) as stream:
                async for piece in stream:
                    timing.last_at = time.perf_counter()
                    timing.first_at = timing.first_at or timing.last_at
                    pieces.append(piece)
                    if guard is not None and guard.cut(joined := "".join(pieces)) is not None:
                        # Looping: what was said once is kept; closing the stream stops decoding.
                        pieces[:] = [trimmed(joined, guard)[0]]
                        a.looped = True
                        a.draft.offer(pieces)
                        break
                    a.draft.offer(pieces)
                    yield Token(piece)
        except AssistantError as exc:
            await router.finish(route, exc)
            raise
        timing.generated_at = time.perf_counter()
        if a.looped:
            a.result.finish_reason = "loop"
        with trace.span("guardrails") as span:
            span.attrs["looped"] = a.looped
            answer, schema = "".join(pieces), a.params.json_schema
            a.findings = await asyncio.to_thread(lambda: parts.guardrails.get().validate(answer, schema))
            span.attrs["findings"] = [name for name, _, _ in a.findings]
        rejected = [(name, why) for name, why, rejects in a.findings if rejects]
        if rejected:
            name, why = rejected[0]
            what = "the requested JSON schema" if name == "json schema" else f"the {name} check"
            raise InvalidOutputError(f"The answer is not valid for {what}: {why}.",
                                     hint="Ask again (it may need a larger max_tokens).")

    async def _started(self, a: _Answer, route: Route) -> Started:
        """What the user is told before the first token: who answers, with what, and why not others."""
        router, turn, chosen = self.parts.router, a.turn, route.backend
        notices = turn.notices + [f"{name}: {why}" for name, why in route.passed_over]
        if route.redacted:
            notices.append(f"Hidden before sending to {chosen.name}: {describe(route.redacted)}.")
        if is_remote(chosen) and not is_trusted(chosen):
            notices += await router.budget_warnings()
            if router.cost(chosen, 1, 1) is None:
                model = chosen.model_name
                notices.append(f"No price is known for {model}: its cost is counted as 0 and budgets "
                               f'cannot see it. Add [prices."{model}"] to the config.')
        return Started(
            turn.conversation_id,
            turn.prompt_message_id,
            chosen.name,
            chosen.model_name,
            route.fitted.prompt_tokens,
            chosen.n_ctx,
            route.fitted.dropped_messages,
            route.fitted.question_truncated,
            tuple(a.passages),
            remote=is_remote(chosen),
            endpoint=chosen.endpoint,
            passed_over=tuple(route.passed_over),
            notices=tuple(notices),
            memories=tuple(a.recalled),
            summarized_messages=turn.summarized,
            tool_steps=tuple(a.steps),
        )

    async def _propose(self, question: str, turn: Turn) -> list[dict[str, Any]]:
        try:
            return await self.parts.memories.propose(question, turn.conversation_id, turn.prompt_message_id,
                                                     turn.incognito)
        except AssistantError as exc:
            log.warning("memory proposals failed: %s", exc)
            return []

    # after the answer --------------------------------------------------------------------------

    async def _log(self, a: _Answer) -> tuple[str, list[Any], float | None, int | None, int | None,
                                              dict[str, Any]]:
        """One response row, however the answer ended (shielded: a second cancel must not lose it);
        then the observers, and the summary or the next turn's prefill in the background.
        (text, sources, cost, message id, response id, row); a failed save of a good answer
        turns it into an error."""
        parts, settings, turn, trace, route = self.parts, self.settings, a.turn, a.trace, a.route
        hit = a.lookup.hit
        router, conversation_id = parts.router, turn.conversation_id
        # One span for the citations, their evidence and the attribution: the trace adds up.
        with trace.span("attribution") if a.passages else contextlib.nullcontext() as span:
            text, sources = resolve_citations("".join(a.pieces), a.passages, question=a.question)
            attributed: list[int] = []
            if a.status == "ok" and a.passages and a.params.json_schema is None:
                a.attribution = await self._attribute(a, text, span.attrs) if not hit else None
                if a.attribution is not None:
                    text, attributed = a.attribution.text, list(a.attribution.attributed)
                elif hit:  # a cached answer: the attribution of the answer it repeats
                    a.attribution, attributed = await self._cached_attribution(a.store, hit["response_id"])
                text, sources = resolve_citations(text, a.passages, attributed, a.question)
        logging_started = time.perf_counter()
        if route is not None:
            generation_spans(trace, route, a.timing.last_at, a.timing.generated_at or logging_started)
        chosen = route.backend if route else router.primary(turn.preferred)
        model_hash = None if is_remote(chosen) else await parts.model_hash.known()
        row, cost = response_row(trace, route, chosen, router.cost, a.status, a.error, a.passages, a.result,
                                 turn.prompt_message_id, a.timing, logging_started, a.templates, model_hash)
        if hit:
            row.update(cache_hit=1, cached_from=hit["response_id"], input_tokens=0, output_tokens=0,
                       endpoint="cache")
        if a.tool_cost:
            row["cost"] += a.tool_cost
            cost = (cost or 0.0) + a.tool_cost
        if a.recalled:
            row["memory_ids"] = json.dumps([m.id for m in a.recalled])
        grounded = a.attribution.groundedness if a.attribution is not None else None
        if a.attribution is not None:
            row["groundedness"] = grounded
            row["attribution"] = json.dumps(a.attribution.record())
        keep = None  # a new answer from the route's first backend is kept for next time
        first_choice = route is not None and route.backend is router.primary(turn.preferred)
        # An empty answer is not kept: it would come back empty for every repeat of the question.
        if a.status == "ok" and first_choice and not a.steps and text.strip():
            keep = parts.cache.keep(a.lookup, [p.chunk_id for p in a.passages])
        review = "guardrail" if isinstance(a.error, InvalidOutputError) else None
        if a.status == "ok" and a.findings:  # flagged, not rejected: the answer stands, a person looks
            review = "refusal" if a.findings[0][0] == "refusal" else "guardrail"
        if review is None and not hit and poorly_grounded(grounded, settings.hallucination_threshold):
            review = LOW_GROUNDEDNESS  # most of what it says is in none of its sources
        trace.add("logging", logging_started, time.perf_counter())
        saved_text = text if settings.log_content else ""
        self._remember(conversation_id, a.question, text if a.status == "ok" else "")
        spans = trace.rows()
        draft_id = await asyncio.shield(a.draft.settle())
        saving = asyncio.ensure_future(asyncio.to_thread(
            a.store.record_answer, conversation_id, saved_text, a.status != "ok", row, spans, review, keep,
            draft_id))
        try:
            message_id, response_id = await asyncio.shield(saving)
            if keep:
                await parts.cache.remember_question(a.store, a.lookup, response_id)
            parts.observers.observe({**row, "id": response_id, "conversation_id": conversation_id}, spans)
        except AssistantError as exc:  # the disk is full, the database locked...
            if a.status != "ok":
                raise
            a.status, a.error, message_id, response_id = "error", exc, None, None
        if a.status == "ok" and route is not None and route.fitted.dropped_messages:
            private = a.private_history or any(p.private for p in a.passages)
            parts.summaries.write_later(route.backend.name, conversation_id, turn.history, turn.history_ids,
                                        turn.summary, route.fitted.dropped_messages, private)
        elif a.status == "ok" and route is not None:
            self._prefill_next_turn(route, a.passages, a.question, text)
        if a.status == "ok" and route is not None:
            self._keep_state(route, turn)
        return text, sources, cost, message_id, response_id, row

    async def _attribute(self, a: _Answer, text: str, attrs: dict[str, Any]) -> Attribution | None:
        """Which passage supports each sentence (engine.attribution), with the embedding model of
        the index and the passages' stored vectors; None when turned off or the index cannot say.
        `attrs`: the span's, for what it found and its own time."""
        if not self.settings.attribution:
            return None
        knowledge = await self.parts.library.knowledge()
        passages = a.passages

        def work() -> Attribution:
            stored = knowledge.vectors.vectors([p.chunk_id for p in passages])
            return attribute(text, passages, knowledge.embedder.embed,
                             [stored.get(p.chunk_id) for p in passages], a.question)

        try:
            result = await asyncio.to_thread(work)
        except AssistantError as exc:  # the vector store or the embedder failed: no citations added
            log.warning("attribution failed: %s", exc)
            attrs["error"] = str(exc)
            return None
        attrs.update(groundedness=result.groundedness, attributed=list(result.attributed),
                     written=list(result.written), ms=round(result.ms, 1))
        return result

    async def _cached_attribution(self, store: Store, response_id: int
                                  ) -> tuple[Attribution | None, list[int]]:
        """The attribution of the answer a cached one repeats (its text holds the same [n])."""
        try:
            row = await asyncio.to_thread(store.response, response_id)
        except AssistantError:
            return None, []
        if not row.get("attribution"):
            return None, []
        record = json.loads(row["attribution"])
        attribution = Attribution("", (), tuple(record.get("written", ())),
                                  tuple(record.get("attributed", ())), row.get("groundedness"))
        return attribution, list(attribution.attributed)

    def _remember(self, conversation_id: int, question: str, answer: str) -> None:
        """With `log_content` off, this session keeps the conversation in memory only."""
        if not self.settings.log_content:
            turns = self._unlogged.setdefault(conversation_id, [])
            turns.append({"role": "user", "content": question})
            if answer:
                turns.append({"role": "assistant", "content": answer})

    def _keep_state(self, route: Route, turn: Turn) -> None:
        """Have the local model write its state after this answer (and the turn evaluated ahead)
        to disk, so the conversation goes on after a restart without evaluating its history. A
        state holds the conversation's text: none with `log_content` off or when incognito."""
        if not (self.keep_states and self.settings.log_content and not turn.incognito):
            return
        route.backend.keep_state(str(turn.conversation_id))

    def _prefill_next_turn(self, route: Route, passages: list[Passage], question: str, answer: str) -> None:
        """Have the local model evaluate the next question's prompt up to its own words, while the
        user reads: the turns as they are saved, without this question's sources. Pointless when
        the sources sat in the system prompt: the next question changes it anyway."""
        if not self.prefill_next_turn:
            return
        if passages and self.settings.sources_placement == "system":
            return
        earlier = [m for i, m in enumerate(route.fitted.messages[:-1]) if i == 0 or m["role"] != "system"]
        route.backend.prefill([*earlier, {"role": "user", "content": question},
                               {"role": "assistant", "content": answer}])
