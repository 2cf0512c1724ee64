"""One line: model, backend, state, the speed and context use of the last answer, open breakers."""

from __future__ import annotations

from textual.reactive import reactive
from textual.widgets import Static


class StatusBar(Static):
    model: reactive[str] = reactive("")
    backend: reactive[str] = reactive("local")
    state: reactive[str] = reactive("loading model…")
    ttft_ms: reactive[float | None] = reactive(None)
    tokens_per_s: reactive[float | None] = reactive(None)
    context: reactive[tuple[int, int] | None] = reactive(None)
    indexing: reactive[str] = reactive("")
    remote: reactive[bool] = reactive(False)
    open_breakers: reactive[tuple[str, ...]] = reactive(())
    incognito: reactive[bool] = reactive(False)
    summarized: reactive[int] = reactive(0)  # older messages the prompt carries as a summary

    def render(self) -> str:
        wide = "  │  ".join(self.parts(short=False))
        if self.size.width == 0 or len(wide) <= self.size.width:
            return wide
        return " │ ".join(self.parts(short=True))  # at 80 columns: the same facts, fewer letters

    def parts(self, short: bool) -> list[str]:
        where = f"{'↗ ' if self.remote else ''}{self.model} · {self.backend}"
        if short and not self.remote:
            where = self.model  # "local" goes without saying
        # No model yet: the first frame, drawn before the engine that names it (app/tui.py).
        parts = [where, self.state] if self.model else [self.state]
        if self.ttft_ms is not None:
            parts.append(f"{'ttft' if short else 'first token'} {self.ttft_ms:.0f} ms")
        if self.tokens_per_s is not None:
            parts.append(f"{self.tokens_per_s:.1f} tok/s")
        if self.context is not None:
            used, size = self.context
            parts.append(f"{'ctx' if short else 'context'} {used}/{size}")
        if self.summarized:
            parts.append(f"{self.summarized} {'summarized' if short else 'older messages summarized'}")
        if self.incognito:
            parts.append("🕶 incognito")
        if self.indexing:
            parts.append(self.indexing)
        if self.open_breakers:
            parts.append(f"⚠ breaker open: {', '.join(self.open_breakers)}")
        return parts
