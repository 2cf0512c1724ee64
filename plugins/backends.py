"""Built-in kinds of remote backend, registered through the same `register_backends` hook as
third-party ones: `openai`, any OpenAI-compatible server (OpenAI, vLLM, llama.cpp server, Ollama)."""

from __future__ import annotations

from typing import Any

from plugins.hookspecs import hookimpl


def _openai(provider: Any) -> Any:
    from engine.backends.openai_compat import OpenAICompatibleBackend  # httpx: only when used

    return OpenAICompatibleBackend(provider)


@hookimpl
def register_backends(register) -> None:  # noqa: ANN001 - the hook's own signature
    register("openai", _openai)
