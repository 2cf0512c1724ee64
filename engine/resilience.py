"""Retries with backoff, `Retry-After`, and a circuit breaker per backend."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


def backoff_delay(
    attempt: int, base_s: float, cap_s: float = 30.0, rng: random.Random | None = None
) -> float:
    """Exponential backoff with full jitter: uniform in [0, min(cap, base * 2**attempt)].
    Jitter spreads the retries of many clients, so they do not hit a recovering server together."""
    return (rng or random).uniform(0, min(cap_s, base_s * 2**attempt))


def retry_after_s(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header: a number of seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


@dataclass
class BreakerState:
    state: str = CLOSED
    failures: int = 0
    opened_at: float | None = None  # wall clock, so another process reads the same state
    last_error: str | None = None


class CircuitBreaker:
    """Closed: requests pass. After `threshold` failures in a row: open, and requests are refused
    at once. After `cooldown_s`: half-open, one request may try; success closes, failure re-opens.
    The router saves the state in the store, so `assistant backends` in another terminal sees it."""

    def __init__(
        self,
        name: str,
        threshold: int,
        cooldown_s: float,
        state: BreakerState | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.name = name
        self.threshold = max(1, threshold)
        self.cooldown_s = cooldown_s
        self.current = state or BreakerState()
        self._clock = clock
        self._trial_running = False

    @property
    def state(self) -> str:
        """The state as a caller would find it now (an open breaker past its cool-down is half-open)."""
        if self.current.state == OPEN and self._cooled_down():
            return HALF_OPEN
        return self.current.state

    def retry_in_s(self) -> float:
        if self.current.state != OPEN or self.current.opened_at is None:
            return 0.0
        return max(0.0, self.current.opened_at + self.cooldown_s - self._clock())

    def _cooled_down(self) -> bool:
        return self.retry_in_s() <= 0

    def allow(self) -> bool:
        if self.current.state == CLOSED:
            return True
        if self.current.state == OPEN:
            if not self._cooled_down():
                return False
            self._set(BreakerState(HALF_OPEN, self.current.failures, self.current.opened_at,
                                   self.current.last_error))
        if self._trial_running:
            return False  # half-open: one request at a time finds out whether it recovered
        self._trial_running = True
        return True

    def release(self) -> None:
        """The request let through was not made after all (another backend took the question)."""
        self._trial_running = False

    def record_success(self) -> None:
        self._trial_running = False
        if self.current.state != CLOSED or self.current.failures:
            self._set(BreakerState())

    def record_failure(self, error: str) -> None:
        self._trial_running = False
        failures = self.current.failures + 1
        if self.current.state == HALF_OPEN or failures >= self.threshold:
            self._set(BreakerState(OPEN, failures, self._clock(), error))
        else:
            self._set(BreakerState(CLOSED, failures, None, error))

    def _set(self, state: BreakerState) -> None:
        self.current = state


class RateLimiter:
    """At most `per_minute` requests a minute, evenly spaced (no bursts: providers often enforce
    their per-minute limits over shorter windows too)."""

    def __init__(self, per_minute: float) -> None:
        self.interval_s = 60.0 / per_minute
        self._next = 0.0
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        async with self._lock:
            now = time.monotonic()
            if self._next > now:
                await asyncio.sleep(self._next - now)
            self._next = max(now, self._next) + self.interval_s
