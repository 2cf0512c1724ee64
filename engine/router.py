"""The router: which backend answers, and what happens when it cannot.

Backends are tried in the configured order (a conversation's chosen backend first). Before one is
tried, the gates: a remote backend needs `allow_cloud`; an untrusted one never sees a private
folder's passages and stops at the spending budget; an open circuit breaker is skipped at once.
A backend that fails before its first token hands over to the next when `fallback_on` names the
reason; after the first token nothing falls back: the error is shown and the partial answer kept.

Every request to a backend goes through here, whatever it is for: the answer (`open`, for the
engine, which streams it to the user), and tool decisions, summaries and the judge (`complete`,
the narrow `Gateway` they are handed: they see a `Candidate` to fit a prompt for, never a backend
to send one to). So no request skips the gates, the redaction, the breaker or the fallback.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from engine.backends.base import Backend, SamplingParams, StreamResult
from engine.config import Settings
from engine.context import FittedPrompt, Message
from engine.errors import (
    AssistantError,
    ConfigError,
    ContextOverflowError,
    InvalidModelError,
    ModelLoadError,
    ModelNotFoundError,
    ModelOutOfMemoryError,
    NoBackendError,
)
from engine.prices import cost_usd, price_of
from engine.resilience import BreakerState, CircuitBreaker
from engine.tracing import Trace
from memory.errors import StoreError
from memory.retriever import Passage
from memory.store import Store

BUDGET_WARNING = 0.8  # share of a budget spent that earns a warning

Prepare = Callable[[Backend], Awaitable[tuple[FittedPrompt, list[Passage]]]]
ChooseParams = Callable[[Backend], SamplingParams]


@dataclass
class Route:
    """A backend that produced its first token (or ended without text), ready to stream the rest."""

    backend: Backend
    fitted: FittedPrompt
    passages: list[Passage]
    first: str | None
    rest: AsyncIterator[str]
    result: StreamResult  # this backend's counts (each attempt has its own: a backend left behind
    # may still be finishing its step in a thread)
    stream_started_at: float = 0.0  # perf_counter() when the chosen backend was asked to stream
    first_at: float | None = None  # and when its first piece arrived
    redacted: Counter[str] = field(default_factory=Counter)  # what was hidden before it was sent
    passed_over: list[tuple[str, str]] = field(default_factory=list)  # (backend, why), in order


class Candidate:
    """What a caller of `Gateway.complete` sees of a backend while it builds its prompt: enough to
    fit one (and to choose how to ask), nothing to send it with."""

    def __init__(self, backend: Backend) -> None:
        self._backend = backend
        self.name: str = backend.name
        self.model_name: str = backend.model_name
        self.n_ctx: int = backend.n_ctx
        self.remote: bool = is_remote(backend)
        self.trusted: bool = is_trusted(backend)

    async def fit(self, system: str, history: list[Message], question: str, max_tokens: int) -> FittedPrompt:
        return await self._backend.fit(system, history, question, max_tokens)


@dataclass(frozen=True)
class Completion:
    """A whole reply, from the backend that gave it."""

    text: str
    backend: str
    model: str
    remote: bool
    result: StreamResult  # its counts, and the tool calls of a remote model
    cost: float | None  # USD; None when the model's price is unknown
    redacted: Counter[str]  # what was hidden before it was sent
    passed_over: list[tuple[str, str]]  # (backend, why), in order


class Gateway(Protocol):
    """The one way to a backend for what is not the answer itself: tool decisions, summaries,
    the judge. Handed to them instead of a backend."""

    async def complete(
        self,
        prepare: Callable[[Candidate], Awaitable[FittedPrompt]],
        params: SamplingParams | Callable[[Candidate], SamplingParams],
        *,
        private: bool = False,
        preferred: str | None = None,
        only: str | Backend | None = None,
    ) -> Completion: ...


def fallback_reason(exc: BaseException) -> str | None:
    """Which `fallback_on` rule an error falls under; None: not the backend's fault."""
    if isinstance(exc, ModelNotFoundError):
        return "model_missing"
    if isinstance(exc, ModelOutOfMemoryError):
        return "out_of_memory"
    if isinstance(exc, (ModelLoadError, InvalidModelError)):
        return "load_failed"
    if isinstance(exc, ContextOverflowError):
        return "context_overflow"
    if isinstance(exc, AssistantError) and not isinstance(exc, StoreError):
        return "error"
    return None


def is_remote(backend: Backend) -> bool:
    return backend.remote


def is_trusted(backend: Backend) -> bool:
    return not backend.remote or backend.trusted


Redact = Callable[[list[Message]], Awaitable[tuple[list[Message], Counter[str]]]]


class Router:
    def __init__(
        self, settings: Settings, backends: dict[str, Backend], store: Callable[[], Awaitable[Store]],
        redact: Redact | None = None,
    ) -> None:
        """`store` opens the database (the breakers are saved there); `redact` hides secrets and
        personal data from prompts bound for an untrusted remote backend (the guardrails')."""
        self.settings = settings
        self.backends = backends
        self._store = store
        self._redact = redact
        self.breakers: dict[str, CircuitBreaker] = {}
        self._own_breakers: dict[str, CircuitBreaker] = {}
        self._breakers_loaded = False
        self._background: set[asyncio.Task[Any]] = set()

    def order(self, preferred: str | None = None) -> list[Backend]:
        names = list(self.settings.backends)
        if preferred in self.backends:
            names = [preferred] + [n for n in names if n != preferred]
        return [self.backends[n] for n in names if n in self.backends]

    def primary(self, preferred: str | None = None) -> Backend:
        route = self.order(preferred)
        if not route:  # settings refuse an empty `backends`; this is a route of unknown names
            raise ConfigError(
                f"No backend to answer: `backends` is {list(self.settings.backends)!r} and the backends "
                f"available are {', '.join(self.backends) or 'none'}.",
                hint='Set backends = ["local"] (or name a [providers.NAME] table) in the config file.',
            )
        return route[0]

    # gates -------------------------------------------------------------------------------------

    async def breaker(self, name: str) -> CircuitBreaker:
        if not self._breakers_loaded:
            saved = await asyncio.to_thread((await self._store()).breakers)
            for key, row in saved.items():
                state = BreakerState(row["state"], row["failures"], row["opened_at"], row["last_error"])
                self.breakers[key] = self._new_breaker(key, state)
            self._breakers_loaded = True
        if name not in self.breakers:
            self.breakers[name] = self._new_breaker(name)
        return self.breakers[name]

    async def _breaker_of(self, backend: Backend) -> CircuitBreaker:
        """A configured backend's breaker; one of this process alone for a backend a caller owns
        (the judge's model file), so its failures never open the breaker of the backend it shares
        a name with."""
        if self.backends.get(backend.name) is backend:
            return await self.breaker(backend.name)
        key = f"{backend.name} (not configured, {id(backend):x})"
        if key not in self._own_breakers:
            self._own_breakers[key] = self._new_breaker(key)
        return self._own_breakers[key]

    def _new_breaker(self, name: str, state: BreakerState | None = None) -> CircuitBreaker:
        return CircuitBreaker(name, self.settings.breaker_failures, self.settings.breaker_cooldown_s, state)

    async def _record(self, breaker: CircuitBreaker, error: str | None) -> None:
        before = (breaker.current.state, breaker.current.failures)
        if error is None:
            breaker.record_success()
        else:
            breaker.record_failure(error)
        s = breaker.current
        if (s.state, s.failures) != before and breaker.name in self.backends:
            store = await self._store()
            await asyncio.to_thread(store.save_breaker, breaker.name, s.state, s.failures, s.opened_at,
                                    s.last_error)

    async def refusal(self, backend: Backend, private: bool) -> str | None:
        """Why `backend` may not take this question, or None."""
        if is_remote(backend):
            if not self.settings.allow_cloud:
                return "cloud is off (set allow_cloud = true to use remote backends)"
            if private and not is_trusted(backend):
                return "the question draws on a private folder, and this backend is not trusted"
            over = await self.over_budget(backend)
            if over:
                return over
        breaker = await self._breaker_of(backend)
        if not breaker.allow():
            return (f"circuit breaker open after {breaker.current.failures} failures "
                    f"(retry in {breaker.retry_in_s():.0f} s; last: {breaker.current.last_error})")
        return None

    async def spending(self) -> dict[str, tuple[float, float]]:
        """(spent, limit) in USD per configured budget: "day" and "month", UTC."""
        limits = {"day": self.settings.budget_daily_usd, "month": self.settings.budget_monthly_usd}
        now = datetime.now(UTC)
        starts = {"day": now.replace(hour=0, minute=0, second=0, microsecond=0)}
        starts["month"] = starts["day"].replace(day=1)
        store = await self._store()
        return {
            period: (await asyncio.to_thread(store.spent_usd, starts[period].isoformat()), limit)
            for period, limit in limits.items() if limit is not None
        }

    async def over_budget(self, backend: Backend) -> str | None:
        if is_trusted(backend):
            return None  # a self-hosted server costs nothing per token
        for period, (spent, limit) in (await self.spending()).items():
            if spent >= limit:
                return (f"the {period}'s cloud budget of {limit:.2f} USD is spent ({spent:.2f} USD); "
                        f"answers stay local until it renews")
        return None

    async def budget_warnings(self) -> list[str]:
        return [
            f"{spent / limit:.0%} of the {period}'s cloud budget spent ({spent:.2f} of {limit:.2f} USD)."
            for period, (spent, limit) in (await self.spending()).items()
            if BUDGET_WARNING * limit <= spent < limit
        ]

    # routing -----------------------------------------------------------------------------------

    async def open(
        self,
        prepare: Prepare,
        params: SamplingParams | ChooseParams,
        *,
        retrieved: list[Passage],
        private_history: bool = False,
        preferred: str | None = None,
        trace: Trace | None = None,
        only: Backend | None = None,
    ) -> Route:
        """Find a backend that answers; return it with its first piece of text already received.

        Each candidate's model is loaded here (the "load model" span); then `prepare` fits the
        prompt (with as many of `retrieved` as fit) for it, and loads nothing; `params` are the
        same for every backend, or chosen for each. `private_history`: text from a private folder
        is in the conversation (an earlier answer used one, or a tool read one). `only`: that
        backend, and no other (the judge's own model)."""
        private = private_history or any(p.private for p in retrieved)
        trace = trace or Trace()
        rules = set(self.settings.fallback_on)
        candidates = [only] if only is not None else self.order(preferred)
        choose: ChooseParams = params if callable(params) else (lambda backend: params)
        passed_over: list[tuple[str, str]] = []
        errors: list[BaseException] = []
        squeezed: tuple[Backend, FittedPrompt, list[Passage], list[tuple[str, str]]] | None = None
        for index, backend in enumerate(candidates):
            is_last = index == len(candidates) - 1
            refused = await self.refusal(backend, private)
            if refused:
                passed_over.append((backend.name, refused))
                continue
            breaker = await self._breaker_of(backend)
            try:
                with trace.span("load model", "routing", backend=backend.name):
                    await backend.load()
                with trace.span("prompt build", "routing", backend=backend.name):
                    fitted, passages = await prepare(backend)
                lost = fitted.dropped_messages or fitted.question_truncated or len(passages) < len(retrieved)
                if lost and not is_last and "context_overflow" in rules:
                    # Kept as a last resort: a later backend may take the conversation whole.
                    squeezed = squeezed or (backend, fitted, passages, list(passed_over))
                    passed_over.append((backend.name, "the conversation does not fit its context window"))
                    breaker.release()
                    continue
                deadline = self.settings.first_token_deadline_s
                if is_remote(backend) or is_last or "slow_first_token" not in rules:
                    deadline = None
                route = await self._first_piece(backend, fitted, passages, choose(backend), deadline)
            except _SlowFirstToken:
                passed_over.append((backend.name, f"no first token within {deadline:g} s"))
                breaker.release()
                continue
            except AssistantError as exc:
                reason = fallback_reason(exc)
                if reason in ("model_missing", "load_failed", "out_of_memory", "error"):
                    await self._record(breaker, str(exc))
                if reason not in rules:
                    raise
                errors.append(exc)
                passed_over.append((backend.name, str(exc)))
                continue
            await self._record(breaker, None)
            route.passed_over = passed_over
            return route
        if squeezed is not None:
            backend, fitted, passages, before = squeezed
            route = await self._first_piece(backend, fitted, passages, choose(backend), None)
            await self._record(await self._breaker_of(backend), None)
            route.passed_over = before
            return route
        if len(errors) == 1 and len(passed_over) == 1:
            raise errors[0]  # one backend, one error: the error itself says it best
        raise NoBackendError(passed_over)

    async def _first_piece(
        self, backend: Backend, fitted: FittedPrompt, passages: list[Passage],
        params: SamplingParams, deadline: float | None,
    ) -> Route:
        result = StreamResult()
        started = time.perf_counter()
        messages, redacted = fitted.messages, Counter()
        if self._redact is not None and is_remote(backend) and not is_trusted(backend):
            messages, redacted = await self._redact(messages)
        stream = backend.stream(messages, params, result)
        if deadline is None:
            try:
                first = await anext(stream, None)
            except BaseException:
                await stream.aclose()
                raise
            return Route(backend, fitted, passages, first, stream, result, started, time.perf_counter(),
                         redacted=redacted)
        # The first step runs as its own task so the wait can be cut short; the local model
        # finishes its current step in its thread while the next backend starts.
        step = asyncio.ensure_future(anext(stream, None))
        try:
            done, _ = await asyncio.wait({step}, timeout=deadline)
        except BaseException:
            step.cancel()
            raise
        if not done:
            step.cancel()
            self._background.add(step)
            step.add_done_callback(self._background.discard)
            raise _SlowFirstToken
        return Route(backend, fitted, passages, step.result(), stream, result, started, time.perf_counter(),
                     redacted=redacted)

    async def finish(self, route: Route, error: BaseException | None) -> None:
        """Called when the answer's stream ended: a failure mid-answer counts against the backend."""
        if error is not None and fallback_reason(error) == "error":
            await self._record(await self._breaker_of(route.backend), str(error))

    async def complete(
        self,
        prepare: Callable[[Candidate], Awaitable[FittedPrompt]],
        params: SamplingParams | Callable[[Candidate], SamplingParams],
        *,
        private: bool = False,
        preferred: str | None = None,
        only: str | Backend | None = None,
    ) -> Completion:
        """A whole reply, for what is not the answer streamed to the user (tool decisions,
        summaries, the judge), through the same gates, redaction, breaker and fallback as the
        answer. `private`: text from a private folder is in the prompt. `only`: a configured
        backend's name, or a backend the caller owns (the judge's model file), and no fallback."""
        if isinstance(only, str):
            if only not in self.backends:
                raise ConfigError(f"There is no backend named {only!r}.",
                                  hint=f"Known backends: {', '.join(self.backends)}.")
            only = self.backends[only]

        async def fitted(backend: Backend) -> tuple[FittedPrompt, list[Passage]]:
            return await prepare(Candidate(backend)), []

        def choose(backend: Backend) -> SamplingParams:
            return params(Candidate(backend)) if callable(params) else params

        route = await self.open(fitted, choose, retrieved=[], private_history=private, preferred=preferred,
                                only=only)
        pieces = [route.first] if route.first is not None else []
        error: BaseException | None = None
        try:
            async with contextlib.aclosing(route.rest) as rest:
                async for piece in rest:
                    pieces.append(piece)
        except AssistantError as exc:
            error = exc
            raise
        finally:
            await self.finish(route, error)
        backend, result = route.backend, route.result
        prompt_tokens = result.prompt_tokens or route.fitted.prompt_tokens
        return Completion("".join(pieces), backend.name, backend.model_name, is_remote(backend), result,
                          self.cost(backend, prompt_tokens or 0, result.completion_tokens),
                          route.redacted, route.passed_over)

    def cost(self, backend: Backend, prompt_tokens: int, completion_tokens: int) -> float | None:
        """USD for one answer: 0 locally and on trusted servers without a price; None if unknown."""
        if not is_remote(backend):
            return 0.0
        price = price_of(backend.model_name, self.settings, datetime.now(UTC).date())
        if price is None and is_trusted(backend):
            return 0.0
        return cost_usd(price, prompt_tokens, completion_tokens)

    def breaker_state(self, name: str) -> str:
        breaker = self.breakers.get(name)
        return breaker.state if breaker else "closed"

    def open_breakers(self) -> tuple[str, ...]:
        """Backends whose breaker is not closed, as this process last saw them."""
        return tuple(name for name in self.backends if self.breaker_state(name) != "closed")

    async def aclose(self) -> None:
        for task in list(self._background):
            with contextlib.suppress(BaseException):
                await task


class _SlowFirstToken(Exception):
    pass
