"""What every backend offers the engine: load, fit a prompt, stream an answer.

`Backend` is a base class with defaults for what not every backend needs (a remote server has
nothing to prefill, the local model no HTTP client to close), so the engine asks every backend the
same questions instead of probing for attributes. Plugin backends (`register_backends`) subclass it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from engine.context import FittedPrompt, Message


def origin(url: str) -> str:
    """scheme://host[:port] of a URL: where a prompt went, without any credentials or path."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    host = parts.hostname or ""
    return f"{parts.scheme}://{host}" + (f":{parts.port}" if parts.port else "")


@dataclass(frozen=True)
class SamplingParams:
    max_tokens: int
    temperature: float
    top_p: float
    seed: int | None
    json_schema: dict | None = None  # structured output: the answer must be JSON of this schema
    tools: list[dict] | None = None  # OpenAI `tools` the model may call instead of answering
    stop: tuple[str, ...] = ()  # the answer ends before the first of these (not included)


@dataclass
class StreamResult:
    """Filled in by a backend as it streams; read by the engine when the stream ends."""

    completion_tokens: int = 0
    finish_reason: str | None = None
    prompt_tokens: int | None = None  # when the server counts them (remote backends)
    # For the trace (time.perf_counter() values, or None when the backend cannot tell):
    started_at: float | None = None  # the backend began: the model's thread, or the request sent
    prompt_eval_ms: float | None = None  # llama.cpp's own prompt evaluation time
    prompt_tokens_evaluated: int | None = None  # prompt tokens not reused from a cached prefix
    first_byte_at: float | None = None  # a server's response headers arrived
    tool_calls: list[dict] = field(default_factory=list)  # {"id", "name", "arguments" (JSON text)}


class Backend:
    name: str  # "local", or a provider name
    model_name: str
    n_ctx: int
    remote: bool = False  # prompts leave the machine (allow_cloud, budgets, redaction apply)
    trusted: bool = False  # a remote server the user trusts with private folders (self-hosted)
    endpoint: str = "local"  # where prompts go: scheme://host[:port], never credentials
    model_path: Path | None = None  # the model file, once loaded (hashed for the response rows)

    @property
    def loaded(self) -> bool:
        return True  # a server holds its model

    def start_loading(self) -> None:
        """Begin loading in the background, without waiting (callable outside an event loop)."""

    async def load(self) -> None:
        """Make the model ready; raise a ModelError naming the file if it cannot be."""

    async def fit(
        self, system: str, history: list[Message], question: str, max_tokens: int, sources: str = ""
    ) -> FittedPrompt:
        """Fit the conversation into this model's context window; `sources` go in a system
        message right before the question (passed only when there are some)."""
        raise NotImplementedError

    def stream(
        self, messages: list[Message], params: SamplingParams, result: StreamResult
    ) -> AsyncIterator[str]:
        """Yield the answer's text pieces; stop decoding when the consumer stops."""
        raise NotImplementedError

    def prefill(self, messages: list[Message]) -> None:
        """Evaluate the next turn's prompt ahead, while the user reads (the local model)."""

    def keep_state(self, tag: str) -> None:
        """Keep the model's state after this answer of the conversation `tag` (on disk, for the
        local model), so the conversation goes on later without evaluating its history."""

    def restore(self, tag: str) -> None:
        """The conversation `tag` was opened again: get its kept state ready, in the background."""

    async def aclose(self) -> None:
        """Free what the backend holds: a model and its thread, an HTTP client."""
