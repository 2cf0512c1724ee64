"""Traces: one per answer, a span for each step, stored with the answer's response row.

Times are `time.perf_counter()` values while the answer runs; a stored span has its start as
milliseconds from the question and its duration. Top-level spans follow one another, so they add
up to the answer's total time; a span may have children (`parent` names it).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Span:
    name: str
    start: float
    end: float
    parent: str | None = None
    attrs: dict[str, Any] = field(default_factory=dict)


class Trace:
    def __init__(self, origin: float | None = None) -> None:
        self.origin = time.perf_counter() if origin is None else origin
        self.spans: list[Span] = []

    @contextlib.contextmanager
    def span(self, name: str, parent: str | None = None, **attrs: Any) -> Iterator[Span]:
        """Times the block (the block may end the span earlier by setting `end`); the span is kept
        even when the block raises or is cancelled."""
        span = Span(name, time.perf_counter(), 0.0, parent, dict(attrs))
        try:
            yield span
        finally:
            span.end = span.end or time.perf_counter()
            self.spans.append(span)

    def add(self, name: str, start: float | None, end: float | None, parent: str | None = None,
            **attrs: Any) -> None:
        """A span timed elsewhere (a backend's thread, a server); skipped when either end is unknown.

        A child is kept within its parent (added before it): a part can never be longer than the
        whole, whatever a backend measured. A cut span keeps the measured duration in its attrs
        (`measured_ms`), so a wrong measurement shows instead of an impossible trace."""
        if start is None or end is None or end < start:
            return
        outer = next((s for s in reversed(self.spans) if s.name == parent), None) if parent else None
        if outer is not None and (start < outer.start or end > outer.end):
            attrs.setdefault("measured_ms", round((end - start) * 1000, 3))
            start, end = max(start, outer.start), min(end, outer.end)
            if end < start:  # wholly outside its parent: nothing of it is true
                return
        self.spans.append(Span(name, start, end, parent, dict(attrs)))

    def rows(self) -> list[dict[str, Any]]:
        return [
            {
                "name": s.name,
                "parent": s.parent,
                "start_ms": round((s.start - self.origin) * 1000, 3),
                "duration_ms": round((s.end - s.start) * 1000, 3),
                "attrs": s.attrs or None,
            }
            for s in sorted(self.spans, key=lambda s: s.start)
        ]
