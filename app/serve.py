"""`assistant serve`: the engine behind an OpenAI-compatible HTTP API (Starlette on uvicorn).

Every chat request is a question asked through `Engine.ask`, as if typed in the chat app: the
route and its fallbacks, the cache, the guardrails and one response row with its timings. The
model id picks what the answer may use: `assistant` answers from the model alone; `assistant-rag`
also searches the indexed folders, recalls long-term memories and may call tools, and the
response carries the passages it used under `sources`. (The body field `"rag": true/false`
overrides the model id.)

One model serves many clients through a bounded queue: past `concurrency` running and `queue`
waiting requests, the answer is 429 with `Retry-After`. A client that disconnects cancels its
generation (the engine records the row as cancelled). Bound to a loopback address by default;
any other address needs a token, sent as `Authorization: Bearer TOKEN`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import ipaddress
import json
import logging
import math
import socket
import struct
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from engine import AskOptions, AssistantError, Engine, Failed, Finished, Started, Token
from engine.errors import (
    ConfigError,
    ContextOverflowError,
    GenerationError,
    ModelError,
    NotFoundError,
    StoreError,
)
from engine.structured import InvalidOutputError

log = logging.getLogger(__name__)

PLAIN, RAG = "assistant", "assistant-rag"
MODELS = {PLAIN: "The model alone (the configured route).",
          RAG: "Also the indexed folders, long-term memory and tools; the answer lists its sources."}
MAX_EMBED_INPUTS = 256
REMEMBERED_CONVERSATIONS = 1000  # transcripts mapped to their conversation, to continue it
REMEMBERED_IDS = 10_000  # chat completion ids mapped to their response row, for feedback


@dataclass(frozen=True)
class ServeOptions:
    host: str = "127.0.0.1"
    port: int = 8000
    token: str | None = None  # required when `host` is not a loopback address
    concurrency: int = 1  # answers generated at once
    queue: int = 16  # requests waiting for a turn beyond those; more get 429
    max_body_bytes: int = 1_000_000
    max_prompt_chars: int = 100_000  # every message's text together
    cors_origins: tuple[str, ...] = ()  # none: no CORS headers at all
    access_log: bool = True

    def check(self) -> None:
        if not is_loopback(self.host) and not self.token:
            raise ConfigError(
                f"Serving on {self.host} would let anyone who can reach this machine read your folders, "
                "memory and conversations through the API.",
                hint="Set a token: ASSISTANT_SERVE_TOKEN=... (clients send it as a Bearer token), or "
                     "serve on 127.0.0.1.")
        for name in ("concurrency", "max_body_bytes", "max_prompt_chars"):
            if getattr(self, name) < 1:
                option = f"--{name.replace('_', '-')}"
                raise ConfigError(f"{option} is {getattr(self, name)}.", hint="Use 1 or more.")
        if self.queue < 0:
            raise ConfigError(f"--queue is {self.queue}.", hint="Use 0 or more.")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


class ApiError(Exception):
    """An error answered in the OpenAI API's shape: {"error": {message, type, param, code}}."""

    def __init__(self, status: int, message: str, code: str | None = None, param: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.param = status, message, code, param
        self.headers = headers or {}

    @property
    def body(self) -> dict[str, Any]:
        kind = {401: "authentication_error", 404: "not_found_error", 429: "rate_limit_error"}.get(
            self.status, "invalid_request_error" if self.status < 500 else "server_error")
        return {"error": {"message": self.message, "type": kind, "param": self.param, "code": self.code}}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body, self.status, headers=self.headers)


def _from_engine(error: AssistantError) -> ApiError:
    """The HTTP status of an answer that failed, by what failed."""
    if isinstance(error, ContextOverflowError):
        return ApiError(400, str(error), "context_length_exceeded", "messages")
    if isinstance(error, ConfigError | NotFoundError):
        return ApiError(400, str(error), "invalid_request")
    if isinstance(error, InvalidOutputError):
        return ApiError(500, str(error), "invalid_output")
    if isinstance(error, ModelError | StoreError):
        return ApiError(503, str(error), "unavailable")
    if isinstance(error, GenerationError):
        return ApiError(502, str(error), "backend_error")
    return ApiError(500, str(error), "server_error")


class Gate:
    """The bounded queue: `concurrency` requests run, up to `queue` wait, the rest are refused
    at once with an estimate of when to come back (from how long recent requests took)."""

    def __init__(self, concurrency: int, queue: int) -> None:
        self.concurrency, self.limit = concurrency, concurrency + queue
        self.inside = 0  # running and waiting
        self.running = 0
        self._slots = asyncio.Semaphore(concurrency)
        self._seconds = 1.0  # a moving average of the time a request holds a slot

    def retry_after(self) -> int:
        waves = math.ceil((self.inside + 1) / self.concurrency)
        return max(1, min(60, math.ceil(waves * self._seconds)))

    @contextlib.asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        """Wait for a turn (ApiError 429 when the queue is full: checked before any wait)."""
        if self.inside >= self.limit:
            waiting = self.inside - self.running
            raise ApiError(429, f"The server is busy: {self.running} answering and {waiting} waiting. "
                           "Try again in a moment.", "queue_full",
                           headers={"Retry-After": str(self.retry_after())})
        self.inside += 1
        try:
            async with self._slots:
                self.running += 1
                started = time.monotonic()
                try:
                    yield
                finally:
                    self.running -= 1
                    self._seconds = 0.8 * self._seconds + 0.2 * (time.monotonic() - started)
        finally:
            self.inside -= 1


class BearerToken:
    """ASGI middleware: every path but /health needs `Authorization: Bearer TOKEN`, compared in
    constant time. The token is never logged or echoed."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app, self._token = app, token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] != "/health":
            given = dict(scope["headers"]).get(b"authorization", b"")
            scheme, _, value = given.partition(b" ")
            if not (scheme.lower() == b"bearer" and hmac.compare_digest(value.strip(), self._token)):
                error = ApiError(401, "A valid API key is needed: send `Authorization: Bearer TOKEN` with "
                                 "the token the server was started with.", "invalid_api_key",
                                 headers={"WWW-Authenticate": "Bearer"})
                await error.response()(scope, receive, send)
                return
        await self.app(scope, receive, send)


async def _disconnected(receive: Receive) -> None:
    """Returns when the client has gone (call once the body has been read)."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def read_json(request: Request, limit: int) -> dict[str, Any]:
    too_large = ApiError(413, f"The request body is larger than {limit:,} bytes (--max-body-kb).",
                         "body_too_large")
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise too_large
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise too_large
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"The request body is not valid JSON: {exc}.", "invalid_json") from exc
    if not isinstance(data, dict):
        raise ApiError(400, "The request body must be a JSON object.", "invalid_json")
    return data


# the request ---------------------------------------------------------------------------------


@dataclass
class ChatRequest:
    model: str
    question: str
    history: list[dict[str, str]]  # the earlier user and assistant turns
    options: AskOptions
    json_schema: dict | None
    stream: bool
    include_usage: bool


def _bad(message: str, param: str, code: str = "invalid_value") -> ApiError:
    return ApiError(400, message, code, param)


def _text(content: Any, where: str) -> str:
    """A message's content: a string, or a list of text parts (images are refused)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            text = part.get("text") if isinstance(part, dict) else None
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(text, str):
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise _bad(f"{where} has a {kind!r} part: only text is supported.", "messages",
                           "unsupported_content")
            texts.append(part["text"])
        return "".join(texts)
    if content is None:
        return ""
    raise _bad(f"{where}.content must be a string or a list of text parts.", "messages", "invalid_messages")


def _number(body: dict[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    value = body.get(name)
    if value is not None and (isinstance(value, bool) or not isinstance(value, kind)):
        raise ApiError(400, f"{name} must be a number, not {value!r}.", "invalid_value", name)
    return value


def parse_chat(body: dict[str, Any], max_prompt_chars: int) -> ChatRequest:
    model = body.get("model")
    if model not in MODELS:
        raise ApiError(404, f"There is no model {model!r} here: use {PLAIN!r} (the model alone) or {RAG!r} "
                       "(with your folders and memory).", "model_not_found", "model")
    rag = body.get("rag", model == RAG)
    if not isinstance(rag, bool):
        raise ApiError(400, "rag must be true or false.", "invalid_value", "rag")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "messages must be a non-empty list.", "invalid_messages", "messages")
    if body.get("tools") or body.get("functions"):
        raise ApiError(400, "Tools sent by the client are not supported; with the model "
                       f"{RAG!r} the assistant uses its own.", "unsupported_parameter", "tools")
    n = body.get("n", 1)
    if n != 1:
        raise ApiError(400, "Only n = 1 is supported.", "unsupported_parameter", "n")
    system: list[str] = []
    turns: list[dict[str, str]] = []
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise ApiError(400, f"{where} must be an object.", "invalid_messages", "messages")
        role = message.get("role")
        text = _text(message.get("content"), where)
        if role in ("system", "developer"):
            system.append(text)
        elif role in ("user", "assistant"):
            turns.append({"role": role, "content": text})
        else:
            raise _bad(f"{where}.role is {role!r}: use system, user or assistant.", "messages",
                       "invalid_messages")
    if not turns or turns[-1]["role"] != "user" or not turns[-1]["content"].strip():
        raise _bad("The last message must be the user's question, and not empty.", "messages",
                   "invalid_messages")
    size = sum(len(t["content"]) for t in turns) + sum(map(len, system))
    if size > max_prompt_chars:
        raise ApiError(400, f"The messages hold {size:,} characters; this server takes at most "
                       f"{max_prompt_chars:,} (--max-prompt-chars).", "prompt_too_long", "messages")
    stop = body.get("stop")
    stop = [stop] if isinstance(stop, str) else stop or []
    if not isinstance(stop, list):
        raise ApiError(400, "stop must be a string or a list of strings.", "invalid_value", "stop")
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    if max_tokens is not None and (isinstance(max_tokens, bool) or not isinstance(max_tokens, int)):
        raise _bad(f"max_tokens must be a whole number, not {max_tokens!r}.", "max_tokens")
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ApiError(400, f"seed must be a whole number, not {seed!r}.", "invalid_value", "seed")
    try:
        options = AskOptions(
            max_tokens=max_tokens, temperature=_number(body, "temperature", (int, float)),
            top_p=_number(body, "top_p", (int, float)), seed=seed, stop=tuple(stop),
            system="\n\n".join(system) if system else None, knowledge=rag)
    except ConfigError as exc:
        raise ApiError(400, str(exc), "invalid_value") from exc
    stream = body.get("stream", False)
    stream_options = body.get("stream_options") or {}
    if not isinstance(stream, bool) or not isinstance(stream_options, dict):
        raise _bad("stream must be true or false and stream_options an object.", "stream")
    return ChatRequest(model, turns[-1]["content"], turns[:-1], options, _schema(body.get("response_format")),
                       stream, bool(stream_options.get("include_usage")))


def _schema(response_format: Any) -> dict | None:
    if response_format is None:
        return None
    kind = response_format.get("type") if isinstance(response_format, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "object"}
    if kind == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema")
        if not isinstance(schema, dict):
            raise ApiError(400, "response_format.json_schema.schema must be a JSON schema object.",
                           "invalid_value", "response_format")
        from engine.structured import check_schema

        try:
            return check_schema(schema)
        except ConfigError as exc:
            raise ApiError(400, str(exc), "invalid_value", "response_format") from exc
    raise _bad(f"response_format type {kind!r} is not supported: use text, json_object or json_schema.",
               "response_format")


# the service ---------------------------------------------------------------------------------


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
        imported = await self.engine.import_conversations([line], "the API request")
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
        gone = asyncio.ensure_future(_disconnected(receive))
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
                error = _from_engine(event.error)
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
                raise _from_engine(event.error)
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


def _encoded(vector: list[float], encoding: str) -> list[float] | str:
    """base64: little-endian float32, as OpenAI sends it (its Python client asks for it)."""
    if encoding == "float":
        return vector
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


def _event(data: dict[str, Any]) -> bytes:
    """One server-sent event, in OpenAI's compact JSON."""
    return b"data: " + json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"


async def _nothing() -> dict[str, Any]:
    return {"type": "http.disconnect"}


# routes --------------------------------------------------------------------------------------


def create_app(engine: Engine, options: ServeOptions, on_ready: Callable[[], None] | None = None,
               on_failure: Callable[[AssistantError], None] | None = None) -> Starlette:
    """The ASGI app; the engine's model loads at start-up (`on_ready` then, or `on_failure` with
    the reason it could not: without it, the error is raised), and the engine closes at shutdown."""
    options.check()
    service = Service(engine, options)

    Handler = Callable[[Request], Awaitable[Response]]

    def guarded(handler: Handler) -> Handler:
        async def endpoint(request: Request) -> Response:
            try:
                return await handler(request)
            except ApiError as error:
                return error.response()
        return endpoint

    async def health(request: Request) -> Response:
        gate = service.gate
        return JSONResponse({"status": "ok", "model": engine.backend.model_name,
                             "running": gate.running, "waiting": gate.inside - gate.running,
                             "capacity": gate.limit})

    def model_card(model_id: str) -> dict[str, Any]:
        return {"id": model_id, "object": "model", "created": 0, "owned_by": "assistant",
                "description": MODELS.get(model_id, "The local embedding model.")}

    async def models(request: Request) -> Response:
        ids = [*MODELS, engine.embedding_model]
        return JSONResponse({"object": "list", "data": [model_card(i) for i in ids]})

    async def model(request: Request) -> Response:
        model_id = request.path_params["model"]
        if model_id not in (*MODELS, engine.embedding_model):
            raise ApiError(404, f"There is no model {model_id!r} here.", "model_not_found", "model")
        return JSONResponse(model_card(model_id))

    async def chat_completions(request: Request) -> Response:
        body = await read_json(request, options.max_body_bytes)
        return ChatResponse(service, parse_chat(body, options.max_prompt_chars))  # type: ignore[return-value]

    async def embeddings(request: Request) -> Response:
        body = await read_json(request, options.max_body_bytes)
        if body.get("model") != engine.embedding_model:
            raise ApiError(404, f"There is no embedding model {body.get('model')!r} here: use "
                           f"{engine.embedding_model!r}.", "model_not_found", "model")
        texts = body.get("input")
        texts = [texts] if isinstance(texts, str) else texts
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) and t for t in texts):
            raise ApiError(400, "input must be a non-empty string or a list of them (token arrays are not "
                           "supported).", "invalid_value", "input")
        if len(texts) > MAX_EMBED_INPUTS:
            raise ApiError(400, f"input holds {len(texts)} texts; at most {MAX_EMBED_INPUTS} per request.",
                           "invalid_value", "input")
        if sum(map(len, texts)) > options.max_prompt_chars:
            raise _bad(f"input is longer than {options.max_prompt_chars:,} characters.", "input",
                       "prompt_too_long")
        encoding = body.get("encoding_format") or "float"
        if encoding not in ("float", "base64"):
            raise ApiError(400, f"encoding_format {encoding!r} is not supported: use float or base64.",
                           "invalid_value", "encoding_format")
        async with service.gate.turn():
            try:
                vectors = await engine.embed(texts)
            except AssistantError as exc:
                raise _from_engine(exc) from exc
        tokens = sum(math.ceil(len(t) / 4) for t in texts)  # an estimate: the tokenizer is the model's own
        return JSONResponse({"object": "list", "model": engine.embedding_model,
                             "data": [{"object": "embedding", "index": i, "embedding": _encoded(v, encoding)}
                                      for i, v in enumerate(vectors)],
                             "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})

    async def feedback(request: Request) -> Response:
        body = await read_json(request, options.max_body_bytes)
        response_id = body.get("response_id")
        if response_id is None and isinstance(body.get("id"), str):
            response_id = service.responses.get(body["id"])
            if response_id is None:
                raise ApiError(404, f"No answer with id {body['id']!r} is known to this server (it keeps the "
                               f"last {REMEMBERED_IDS:,}); send its response_id instead.", "not_found", "id")
        if isinstance(response_id, bool) or not isinstance(response_id, int):
            raise ApiError(400, "Send response_id (the number in an answer's `assistant` field) or id "
                           "(its chatcmpl- id).", "invalid_value", "response_id")
        rating = {"up": 1, "down": -1, 1: 1, -1: -1}.get(body.get("rating"))  # type: ignore[call-overload]
        if rating is None or isinstance(body.get("rating"), bool):
            raise ApiError(400, "rating must be up or down (or 1 / -1).", "invalid_value", "rating")
        comment = body.get("comment")
        if comment is not None and not isinstance(comment, str):
            raise ApiError(400, "comment must be a string.", "invalid_value", "comment")
        try:
            await engine.response(response_id)
            feedback_id = await engine.rate(response_id, rating, comment)
        except NotFoundError as exc:
            raise ApiError(404, str(exc), "not_found", "response_id") from exc
        return JSONResponse({"object": "feedback", "id": feedback_id, "response_id": response_id,
                             "rating": "up" if rating > 0 else "down"})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        warming: asyncio.Future[None] | None = None
        try:
            try:
                await engine.load_model()
            except AssistantError as exc:
                if on_failure is None:
                    raise
                on_failure(exc)
            else:
                # The embedding model and the vector store, when there are folders or memories:
                # seconds the first assistant-rag request would otherwise wait for.
                warming = asyncio.ensure_future(_warm_up(engine))
                if on_ready is not None:
                    on_ready()
            yield
        finally:
            if warming is not None:
                await asyncio.gather(warming, return_exceptions=True)
            await engine.close()

    middleware = []
    if options.cors_origins:
        middleware.append(Middleware(CORSMiddleware, allow_origins=list(options.cors_origins),
                                     allow_methods=["GET", "POST"],
                                     allow_headers=["Authorization", "Content-Type"]))
    if options.token:
        middleware.append(Middleware(BearerToken, token=options.token))
    routes = [
        Route("/health", guarded(health), methods=["GET"]),
        Route("/v1/models", guarded(models), methods=["GET"]),
        Route("/v1/models/{model:path}", guarded(model), methods=["GET"]),
        Route("/v1/chat/completions", guarded(chat_completions), methods=["POST"]),
        Route("/v1/embeddings", guarded(embeddings), methods=["POST"]),
        Route("/v1/feedback", guarded(feedback), methods=["POST"]),
    ]
    return Starlette(routes=routes, middleware=middleware, lifespan=lifespan)


async def _warm_up(engine: Engine) -> None:
    try:
        await engine.warm_up()
    except AssistantError as exc:  # the first request that needs it says why
        log.warning("warming up retrieval failed: %s", exc)


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound before uvicorn starts: with port 0 the real port is known."""
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"Cannot listen on {host}:{port}: {exc.strerror}.",
                          hint="Pick another --port (0: any free one), or stop what uses it.") from exc
    return sock


def serve(engine: Engine, options: ServeOptions, announce: Callable[[str], None]) -> None:
    """Run until Ctrl-C (or SIGTERM); `announce` gets the base URL once the model has loaded."""
    import uvicorn

    options.check()
    sock = bind(options.host, options.port)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host

    failures: list[AssistantError] = []

    def failed(error: AssistantError) -> None:  # stop at once, and say why without a traceback
        failures.append(error)
        server.should_exit = True

    app = create_app(engine, options, lambda: announce(f"http://{shown}:{port}/v1"), failed)
    config = uvicorn.Config(app, log_level="info" if options.access_log else "warning",
                            access_log=options.access_log, lifespan="on", timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    server.run(sockets=[sock])
    if failures:
        raise failures[0]
