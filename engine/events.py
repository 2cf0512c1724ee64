"""The events of one answer, as `Engine.ask()` yields them: Started, Token..., then Finished or
Failed. The TUI and the CLI consume the same stream."""

from __future__ import annotations

from dataclasses import dataclass

from engine.citations import Source
from engine.errors import AssistantError
from memory.longterm import Recalled
from memory.retriever import Passage


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True)
class Timings:
    ttft_ms: float | None  # time to first token, from the question
    total_ms: float
    tokens_per_s: float | None  # decode speed, first token to last


@dataclass(frozen=True)
class Started:
    conversation_id: int
    prompt_message_id: int
    backend: str
    model: str
    prompt_tokens: int
    n_ctx: int
    dropped_messages: int  # older messages left out to fit the context window
    question_truncated: bool
    passages: tuple[Passage, ...] = ()  # retrieved from indexed folders, numbered from 1
    remote: bool = False  # the question left this machine
    endpoint: str = "local"  # where it went: scheme://host:port
    passed_over: tuple[tuple[str, str], ...] = ()  # backends tried or refused first, and why
    notices: tuple[str, ...] = ()  # for the user: fallbacks, budget warnings
    cached_from: int | None = None  # answered from the cache: the response it repeats
    similar_question: str | None = None  # semantic cache: the earlier question it was taken for
    memories: tuple[Recalled, ...] = ()  # long-term memories placed in the prompt
    summarized_messages: int = 0  # older messages the prompt carries as a summary
    tool_steps: tuple = ()  # engine.tools.ToolStep: the tools called before answering


@dataclass(frozen=True)
class Token:
    text: str


@dataclass(frozen=True)
class Finished:
    response_id: int
    conversation_id: int
    message_id: int | None
    text: str
    usage: Usage
    timings: Timings
    sources: tuple[Source, ...] = ()  # cited ones first; a citation matching no source is dropped
    cost_usd: float | None = 0.0  # None: the model's price is unknown
    cached_from: int | None = None  # answered from the cache: the response it repeats
    proposals: tuple[dict, ...] = ()  # memories proposed from the question: id, text, kind
    # The share of the answer's claims its sources support (engine.attribution); None: no sources
    groundedness: float | None = None


@dataclass(frozen=True)
class Failed:
    response_id: int | None
    conversation_id: int | None
    error: AssistantError
    partial_text: str  # kept in the conversation, marked partial


Event = Started | Token | Finished | Failed
