"""The tool loop of one answer, on the engine: which tools, the model's decisions, the calls.

    decide -> validate -> (confirm) -> run -> feed back -> decide ... (at most `tool_max_steps`)

The pure parts (schemas, validation, running one call) are in `engine.tools`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine import prompts
from engine.backends.base import Backend, SamplingParams, StreamResult
from engine.errors import AssistantError
from engine.gguf import read_gguf
from engine.models import resolve_model
from engine.router import is_remote
from engine.tools import (
    DECISION_TOKENS,
    Confirm,
    ToolCall,
    ToolStep,
    decision_schema,
    openai_tools,
    parse_decision,
    results_section,
    run_call,
    tools_prompt,
)
from engine.tracing import Trace
from memory.retriever import Passage
from plugins.hookspecs import Tool, ToolContext

if TYPE_CHECKING:
    from engine.engine import Engine


class ToolLoop:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.settings = engine.settings

    async def tools_for(self, backend: Backend, json_schema: dict | None) -> dict[str, Tool]:
        """The tools for this answer: none when tool calling is off for this backend, or when the
        answer must follow a JSON schema."""
        mode = self.settings.tool_calling
        if mode == "off" or json_schema is not None:
            return {}
        if mode == "auto" and (is_remote(backend) or not await _template_knows_tools(backend)):
            return {}
        return await asyncio.to_thread(self.engine.tools)

    async def run(
        self, backend: Backend, tools: dict[str, Tool], system_prompt: prompts.Template, history: list[dict],
        question: str, conversation_id: int, passages: list[Passage], trace: Trace, confirm: Confirm | None,
    ) -> list[ToolStep]:
        """The model decides, the call is validated, confirmed when it has side effects, run, and its
        result fed back; until it calls none (or only calls already made), or `tool_max_steps`."""
        await self.engine.load_model(backend)
        context = await self._context(conversation_id)
        untrusted = "passages from your files are in the context" if passages else None
        steps: list[ToolStep] = []
        listed = list(tools.values())
        system = system_prompt.text
        if not is_remote(backend):  # remote models get the tools through the API
            system += f"\n\n{tools_prompt(listed)}"
        while len(steps) < self.settings.tool_max_steps:
            required = not steps and self.settings.tool_choice == "required"
            fitted = await backend.fit(system, history, question + results_section(steps), DECISION_TOKENS)
            with trace.span("tool decision") as span:
                calls = await self._decide(backend, fitted.messages, listed, required)
                span.attrs["calls"] = [c.name for c in calls]
            made = {(s.call.name, json.dumps(s.call.arguments, sort_keys=True)) for s in steps}
            calls = [c for c in calls if (c.name, json.dumps(c.arguments, sort_keys=True)) not in made]
            if not calls:
                break
            for call in calls[: self.settings.tool_max_steps - len(steps)]:
                with trace.span(f"tool {call.name}") as span:
                    step = await run_call(call, tools, context, confirm, untrusted)
                    span.attrs.update(status=step.status, arguments=call.arguments)
                steps.append(step)
                untrusted = untrusted or "a tool result is in the context"
        return steps

    async def _decide(self, backend: Backend, messages: list[dict[str, str]], tools: list[Tool],
                      required: bool) -> list[ToolCall]:
        """The calls the model wants: local models through a grammar, remote ones through the
        OpenAI `tools` API."""
        seed = self.settings.seed
        if is_remote(backend):
            result = StreamResult()
            params = SamplingParams(DECISION_TOKENS, 0.0, 1.0, seed, tools=openai_tools(tools))
            async with contextlib.aclosing(backend.stream(messages, params, result)) as pieces:
                async for _ in pieces:
                    pass
            return [ToolCall(c["name"], _json_or_none(c["arguments"]), c["id"]) for c in result.tool_calls]
        params = SamplingParams(DECISION_TOKENS, 0.0, 1.0, seed, decision_schema(tools, required))
        async with contextlib.aclosing(backend.stream(messages, params, StreamResult())) as pieces:
            text = "".join([piece async for piece in pieces])
        call = parse_decision(text)
        return [call] if call else []

    async def _context(self, conversation_id: int) -> ToolContext:
        """What tools may reach: this conversation's indexed folders, search, long-term memory."""
        engine = self.engine
        folders: list[Path] = []
        search: Callable[[str], list[dict]] = lambda query: []  # noqa: E731
        if await engine._anything_indexed():
            knowledge = await engine.knowledge()
            ids = set(await asyncio.to_thread(knowledge.searchable, conversation_id))
            folders = [Path(f["path"]) for f in await asyncio.to_thread(knowledge.folders) if f["id"] in ids]

            def search(query: str) -> list[dict]:
                found = knowledge.search(query, conversation_id)
                return [{"location": p.location, "text": p.text} for p in found]

        memory = await engine.memories._long_term()

        def recall(query: str) -> list[dict]:
            return memory.search(query, 5, self.settings.memory_threshold)

        return ToolContext(folders, search, recall, conversation_id)


async def _template_knows_tools(backend: Backend) -> bool:
    """Whether a local model was trained for tools: its chat template mentions them."""

    def check() -> bool:
        path = resolve_model(backend.model, backend.models_dir)  # type: ignore[attr-defined]
        stat = path.stat()
        return _knows_tools(str(path), stat.st_size, stat.st_mtime_ns)

    try:
        return await asyncio.to_thread(check)
    except (AssistantError, AttributeError, OSError):
        return False


@functools.lru_cache(maxsize=16)
def _knows_tools(path: str, size: int, mtime_ns: int) -> bool:
    """Read once per model file (its header holds the whole vocabulary: ~8 ms), not per question."""
    return "tools" in (read_gguf(Path(path)).metadata.get("tokenizer.chat_template") or "")


def _json_or_none(text: str) -> Any:
    try:
        return json.loads(text or "{}")
    except json.JSONDecodeError:
        return None  # the call is then refused as invalid, and the model told why
