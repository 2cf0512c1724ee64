"""Answering a chat request through the engine: its conversation found again, streamed as server-sent
events or answered whole, and the completion id kept for feedback."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from starlette.responses import JSONResponse
from starlette.types import Receive, Scope, Send

from app.serve.http import ApiError, Gate, ServeOptions, disconnected, from_engine_error
from app.serve.request import ChatRequest
from engine import AssistantError, Engine, Failed, Finished, Started, Token

log = logging.getLogger(__name__)


REMEMBERED_CONVERSATIONS = 1000  # transcripts mapped to their conversation, to continue it
REMEMBERED_IDS = 10_000  # chat completion ids mapped to their response row, for feedback


def _transcript_key(rag: bool, system: str | None, turns: list[dict[str, str]]) -> str:
    payload = json.dumps([rag, system, [[t["role"], t["content"]] for t in turns]], ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()


@dataclass
class Service:
    """The state the routes share: the engine, the queue, and two bounded maps: transcripts to the
    conversation that holds them (a client that sends the whole conversation again continues it,
    as the app does), and chat completion ids to their response row (for feedback)."""

    engine: Engine
    options: ServeOptions
    gate: Gate = field(init=False)
    conversations: OrderedDict[str, int] = field(default_factory=OrderedDict)
    responses: OrderedDict[str, int] = field(default_factory=OrderedDict)

    def __post_init__(self) -> None:
        self.gate = Gate(self.options.concurrency, self.options.queue)

    def _keep(self, table: OrderedDict[str, int], key: str, value: int, limit: int) -> None:
        table[key] = value
        while len(table) > limit:
            table.popitem(last=False)

    async def conversation_for(self, chat: ChatRequest) -> tuple[int | None, str]:
        """The conversation to continue (None: a new one) and the question to ask in it."""
        if not chat.history:
            return None, chat.question
        key = _transcript_key(chat.options.knowledge, chat.options.system, chat.history)
        known = self.conversations.pop(key, None)  # one continuation each: two clients never share one
        if known is not None:
            return known, chat.question
        if not self.engine.settings.log_content:  # nothing may be written: the turns go in the question
            lines = [f"{t['role'].capitalize()}: {t['content']}" for t in chat.history]
            return None, "\n\n".join([*lines, f"User: {chat.question}"])
        first = next((t["content"] for t in chat.history if t["role"] == "user"), chat.question)
        line = json.dumps({"format": "assistant.conversation/1",
                           "conversation": {"title": first[:80], "incognito": not chat.options.knowledge},
                           "messages": chat.history})
        imported = await self.engine.history.import_conversations([line], "the API request")
        return (imported.ids or imported.already_there)[0], chat.question

    def answered(self, chat: ChatRequest, completion_id: str, finished: Finished, texts: set[str]) -> None:
        self._keep(self.responses, completion_id, finished.response_id, REMEMBERED_IDS)
        for text in texts:  # as streamed and as saved (they differ when a citation was dropped)
            turns = [*chat.history, {"role": "user", "content": chat.question},
                     {"role": "assistant", "content": text}]
            key = _transcript_key(chat.options.knowledge, chat.options.system, turns)
            self._keep(self.conversations, key, finished.conversation_id, REMEMBERED_CONVERSATIONS)

    async def ask(self, chat: ChatRequest) -> AsyncIterator[Any]:
        """The engine's events; an error raised before the answer began (a locked database, a
        full disk) comes as a Failed event too."""
        try:
            conversation_id, question = await self.conversation_for(chat)
            asking = self.engine.ask(question, conversation_id, json_schema=chat.json_schema,
                                     incognito=None if chat.options.knowledge else True, options=chat.options)
            async with contextlib.aclosing(asking) as events:
                async for event in events:
                    yield event
        except AssistantError as exc:
            yield Failed(None, None, exc, "")


def _sources(finished: Finished) -> list[dict[str, Any]]:
    return [{"number": s.number, "location": s.passage.location, "path": s.passage.path,
             "lines": [s.passage.start_line, s.passage.end_line], "page": s.passage.page,
             "cited": s.cited, "text": s.passage.text} for s in finished.sources]


def _finish_reason(finished: Finished, chat: ChatRequest, default_max: int) -> str:
    limit = chat.options.max_tokens or default_max
    return "length" if not finished.cached_from and finished.usage.completion_tokens >= limit else "stop"


def _usage(finished: Finished) -> dict[str, int]:
    u = finished.usage
    return {"prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens,
            "total_tokens": u.prompt_tokens + u.completion_tokens}


def _extra(finished: Finished, started: Started | None) -> dict[str, Any]:
    """What OpenAI clients ignore and other tools may read: where the answer came from."""
    return {"response_id": finished.response_id, "conversation_id": finished.conversation_id,
            "backend": started.backend if started else None, "model": started.model if started else None,
            "memories": [{"id": m.id, "text": m.text} for m in started.memories] if started else [],
            "cached_from": finished.cached_from, "cost_usd": finished.cost_usd,
            "ttft_ms": finished.timings.ttft_ms, "total_ms": finished.timings.total_ms}


class ChatResponse:
    """One chat completion as an ASGI response: it waits for a turn, asks, and answers in JSON or
    as server-sent events. A client that goes away cancels the answer (then nothing is sent)."""

    def __init__(self, service: Service, chat: ChatRequest) -> None:
        self.service, self.chat = service, chat
        self.id = f"chatcmpl-{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.completed = False  # the last byte went out: a disconnect now cancels nothing

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        work = asyncio.ensure_future(self._answer(scope, send))
        gone = asyncio.ensure_future(disconnected(receive))
        try:
            await asyncio.wait({work, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not work.done() and not self.completed:
                work.cancel()  # once: the engine's own cleanup then runs undisturbed
                log.info("%s: the client disconnected; its answer was cancelled", self.id)
            gone.cancel()
            await asyncio.gather(gone, return_exceptions=True)
        if work.done() or self.completed:
            await work
        else:
            await asyncio.gather(work, return_exceptions=True)

    async def _answer(self, scope: Scope, send: Send) -> None:
        try:
            async with self.service.gate.turn():
                if self.chat.stream:
                    await self._stream(send)
                else:
                    await self._complete(scope, send)
        except ApiError as error:  # before anything was sent
            await error.response()(scope, _nothing, send)

    def _chunk(self, delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
        chunk = {"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                 "model": self.chat.model, "system_fingerprint": None,
                 "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
                 **extra}
        return _event(chunk)

    async def _stream(self, send: Send) -> None:
        started: Started | None = None
        streamed: list[str] = []
        began = False

        async def begin() -> None:
            nonlocal began
            if not began:
                began = True
                await send({"type": "http.response.start", "status": 200, "headers": [
                    (b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache"),
                    (b"x-accel-buffering", b"no")]})
                await body(self._chunk({"role": "assistant", "content": ""}))

        async def body(data: bytes, more: bool = True) -> None:
            await send({"type": "http.response.body", "body": data, "more_body": more})

        async for event in self.service.ask(self.chat):
            if isinstance(event, Started):
                started = event
            elif isinstance(event, Token):
                await begin()
                streamed.append(event.text)
                await body(self._chunk({"content": event.text}))
            elif isinstance(event, Finished):
                await begin()
                self.service.answered(self.chat, self.id, event, {"".join(streamed), event.text})
                reason = _finish_reason(event, self.chat, self.service.engine.settings.max_tokens)
                await body(self._chunk({}, reason, sources=_sources(event), assistant=_extra(event, started)))
                if self.chat.include_usage:
                    usage = {"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                             "model": self.chat.model, "system_fingerprint": None, "choices": [],
                             "usage": _usage(event)}
                    await body(_event(usage))
                self.completed = True
                await body(b"data: [DONE]\n\n", more=False)
            elif isinstance(event, Failed):
                error = from_engine_error(event.error)
                if not began:
                    raise error
                # Mid-stream, as OpenAI does: an error event (its clients raise it), then the end.
                self.completed = True
                await body(_event(error.body), more=False)

    async def _complete(self, scope: Scope, send: Send) -> None:
        started: Started | None = None
        async for event in self.service.ask(self.chat):
            if isinstance(event, Started):
                started = event
            elif isinstance(event, Failed):
                raise from_engine_error(event.error)
            elif isinstance(event, Finished):
                self.service.answered(self.chat, self.id, event, {event.text})
                reason = _finish_reason(event, self.chat, self.service.engine.settings.max_tokens)
                answer = {
                    "id": self.id, "object": "chat.completion", "created": self.created,
                    "model": self.chat.model, "system_fingerprint": None,
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": event.text,
                                                         "refusal": None},
                                 "logprobs": None, "finish_reason": reason}],
                    "usage": _usage(event), "sources": _sources(event), "assistant": _extra(event, started),
                }
                self.completed = True
                await JSONResponse(answer)(scope, _nothing, send)


def _event(data: dict[str, Any]) -> bytes:
    """One server-sent event, in OpenAI's compact JSON."""
    return b"data: " + json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"


async def _nothing() -> dict[str, Any]:
    return {"type": "http.disconnect"}
