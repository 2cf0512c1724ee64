"""The tool loop of one answer, on the engine: which tools, the model's decisions, the calls.

    decide -> validate -> (confirm) -> run -> feed back -> decide ... (at most `tool_max_steps`)

Each decision is a request like any other: it goes through the router's gate (`Gateway`), so cloud
off, private text, the budget, an open breaker and redaction apply to it as to the answer, and a
failing backend hands over to the next. The loop is handed that gate, never a backend.

The pure parts (schemas, validation, running one call) are in `engine.tools`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from engine import prompts
from engine.backends.base import Backend, SamplingParams
from engine.config import Settings
from engine.context import FittedPrompt
from engine.errors import AssistantError
from engine.gguf import read_gguf
from engine.guardrails import describe
from engine.models import resolve_model
from engine.router import Candidate, Completion, Gateway, is_remote
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


@dataclass(frozen=True)
class Reach:
    """What tools may reach for this answer's conversation, and whether that includes a private
    folder (then a tool's result is as private as the folder)."""

    context: ToolContext
    private: bool = False


@dataclass
class ToolRun:
    """What the loop did: its steps, whether their results may hold a private folder's text, the
    cost of its decisions, and notices for the user."""

    steps: list[ToolStep] = field(default_factory=list)
    private: bool = False
    cost: float = 0.0
    notices: list[str] = field(default_factory=list)


class ToolLoop:
    def __init__(self, settings: Settings, gate: Gateway, tools: Callable[[], dict[str, Tool]]) -> None:
        self.settings = settings
        self._gate = gate
        self._tools = tools  # call from a thread: plugins load on first use

    async def tools_for(self, backend: Backend, json_schema: dict | None) -> dict[str, Tool]:
        """The tools for this answer: none when tool calling is off for this backend, or when the
        answer must follow a JSON schema. `backend` is only looked at (is it remote, does its
        chat template know tools), never asked."""
        mode = self.settings.tool_calling
        if mode == "off" or json_schema is not None:
            return {}
        if mode == "auto" and (is_remote(backend) or not await _template_knows_tools(backend)):
            return {}
        return await asyncio.to_thread(self._tools)

    async def run(
        self, tools: dict[str, Tool], system_prompt: prompts.Template, history: list[dict],
        question: str, reach: Reach, passages: list[Passage], trace: Trace, confirm: Confirm | None,
        *, preferred: str | None = None, private: bool = False, untrusted: str | None = None,
    ) -> ToolRun:
        """The model decides, the call is validated, confirmed when it has side effects, run, and its
        result fed back; until it calls none (or only calls already made), or `tool_max_steps`.

        `private`: a private folder's text is in the conversation already. `untrusted`: why text
        that is not the user's is in it already (earlier turns' passages or tool results); then,
        as once a passage or a tool result is in this answer's context, tools with side effects
        are refused."""
        context, reaches_private = reach.context, reach.private
        if passages:
            untrusted = untrusted or "passages from your files are in the context"
        run = ToolRun(private=private)
        listed = list(tools.values())
        steps = run.steps
        while len(steps) < self.settings.tool_max_steps:
            required = not steps and self.settings.tool_choice == "required"
            asked = question + results_section(steps)

            async def prepare(candidate: Candidate, asked: str = asked) -> FittedPrompt:
                system = system_prompt.text
                if not candidate.remote:  # remote models get the tools through the API
                    system += f"\n\n{tools_prompt(listed)}"
                return await candidate.fit(system, history, asked, DECISION_TOKENS)

            def params(candidate: Candidate, required: bool = required) -> SamplingParams:
                seed = self.settings.seed
                if candidate.remote:
                    return SamplingParams(DECISION_TOKENS, 0.0, 1.0, seed, tools=openai_tools(listed))
                return SamplingParams(DECISION_TOKENS, 0.0, 1.0, seed, decision_schema(listed, required))

            with trace.span("tool decision") as span:
                done = await self._gate.complete(prepare, params, private=run.private, preferred=preferred)
                calls = _calls(done)
                span.attrs.update(calls=[c.name for c in calls], backend=done.backend)
                if done.passed_over:
                    span.attrs["passed_over"] = [name for name, _ in done.passed_over]
            run.cost += done.cost or 0.0
            if done.redacted:
                note = f"Hidden before sending to {done.backend} (tool decision): {describe(done.redacted)}."
                if note not in run.notices:
                    run.notices.append(note)
            made = {(s.call.name, json.dumps(s.call.arguments, sort_keys=True)) for s in steps}
            calls = [c for c in calls if (c.name, json.dumps(c.arguments, sort_keys=True)) not in made]
            if not calls:
                break
            for call in calls[: self.settings.tool_max_steps - len(steps)]:
                with trace.span(f"tool {call.name}") as span:
                    step = await run_call(call, tools, context, confirm, untrusted)
                    # A tool that could reach a private folder may have read one: its result is
                    # then as private as the folder (for the next decisions, the answer, later turns).
                    read_private = reaches_private and step.status == "ok"
                    span.attrs.update(tool=call.name, status=step.status, arguments=call.arguments)
                    if self.settings.log_content:  # the 🔧 line shows it; a reopened answer shows it again
                        span.attrs["result"] = step.result  # content: kept from observers (answer_log)
                    if read_private:
                        span.attrs["private"] = True
                steps.append(step)
                run.private = run.private or read_private
                untrusted = untrusted or "a tool result is in the context"
        return run


def _calls(done: Completion) -> list[ToolCall]:
    """The calls the model wants: a remote model's through the OpenAI `tools` API, a local one's as
    JSON its grammar allowed."""
    if done.remote:
        return [ToolCall(c["name"], _json_or_none(c["arguments"]), c["id"]) for c in done.result.tool_calls]
    call = parse_decision(done.text)
    return [call] if call else []


async def _template_knows_tools(backend: Backend) -> bool:
    """Whether a local model was trained for tools: its chat template mentions them (the header is
    read once per model file: `read_gguf` keeps it)."""

    def check() -> bool:
        path = resolve_model(backend.model, backend.models_dir)  # type: ignore[attr-defined]
        return "tools" in (read_gguf(path).metadata.get("tokenizer.chat_template") or "")

    try:
        return await asyncio.to_thread(check)
    except (AssistantError, AttributeError, OSError):
        return False


def _json_or_none(text: str) -> Any:
    try:
        return json.loads(text or "{}")
    except json.JSONDecodeError:
        return None  # the call is then refused as invalid, and the model told why
