"""Per-question overrides of the settings, for callers that are not the TUI: the HTTP API
(`assistant serve`) takes sampling options and a system prompt with every request, and decides per
request whether the user's own data (indexed folders, long-term memory, tools) may be used."""

from __future__ import annotations

import math
from dataclasses import dataclass

from engine.backends.base import SamplingParams
from engine.config import Settings
from engine.errors import ConfigError

MAX_STOP = 4  # as the OpenAI API allows


@dataclass(frozen=True)
class AskOptions:
    """None keeps the setting. Checked on creation: a bad value is a ConfigError naming it."""

    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    stop: tuple[str, ...] = ()  # the answer ends before the first of these
    system: str | None = None  # replaces the system prompt template's text
    # Search the indexed folders, recall long-term memories and let the model call tools (which
    # reach both). Off: the question is answered from the model alone.
    knowledge: bool = True

    def __post_init__(self) -> None:
        if self.max_tokens is not None and (isinstance(self.max_tokens, bool) or self.max_tokens < 1):
            raise ConfigError(f"max_tokens is {self.max_tokens!r}.", hint="Use a whole number of 1 or more.")
        for name, low, high in (("temperature", 0.0, 2.0), ("top_p", 0.0, 1.0)):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and low <= value <= high):
                raise ConfigError(f"{name} is {value!r}.", hint=f"Use a number from {low:g} to {high:g}.")
        if len(self.stop) > MAX_STOP or not all(isinstance(s, str) and s for s in self.stop):
            raise ConfigError(f"stop is {list(self.stop)!r}.",
                              hint=f"Use up to {MAX_STOP} non-empty strings.")

    def sampling(self, settings: Settings, json_schema: dict | None) -> SamplingParams:
        def pick(value: object, default: object) -> object:
            return default if value is None else value

        return SamplingParams(
            int(pick(self.max_tokens, settings.max_tokens)),  # type: ignore[call-overload]
            float(pick(self.temperature, settings.temperature)),  # type: ignore[arg-type]
            float(pick(self.top_p, settings.top_p)),  # type: ignore[arg-type]
            pick(self.seed, settings.seed),  # type: ignore[arg-type]
            json_schema,
            stop=self.stop,
        )
