"""A backend for any OpenAI-compatible server (OpenAI, Groq, Together, OpenRouter, vLLM, llama.cpp's
server, Ollama), over httpx with streamed server-sent events.

Before the first token a request is retried on connect errors, 429 and 5xx with jittered backoff
(honouring `Retry-After`); once text has reached the caller nothing is retried: the error is
raised and the partial answer kept. The API key never appears in an error message.

A server is not trusted to behave: `total_timeout_s` bounds every wait (keep-alive comments do not
reset it), and every read is bounded in size (the error body, one line of the stream, and the
answer, at MAX_CHARS_PER_TOKEN characters per requested token).
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx

from engine.backends.base import Backend, SamplingParams, StreamResult, origin
from engine.config import Provider
from engine.context import FittedPrompt, Message, fit_messages
from engine.errors import BackendError, ConfigError
from engine.resilience import RateLimiter, backoff_delay, retry_after_s
from engine.secrets import Secret, api_key, redact
from engine.terminal_text import terminal_line

RETRY_STATUSES = {429, 500, 502, 503, 504}
MAX_TOOL_CALLS = 64  # in one streamed answer; a chunk naming a higher index is not a real answer
ERROR_BODY_LIMIT = 2000  # characters of a server's error body worth showing
# Every read from a server is bounded, so a hostile or broken one cannot fill the memory: the
# error body read (the rest is never fetched), one line or event of the stream, and the answer.
ERROR_BODY_READ_BYTES = 16_384
MAX_EVENT_BYTES = 1 << 20  # a chunk of a chat completion is well under a kilobyte
MAX_CHARS_PER_TOKEN = 16  # generous: tokens average about 4 characters
MIN_ANSWER_CHARS = 4096


def estimate_tokens(messages: list[Message]) -> int:
    """The server's tokenizer is unknown here: about 3 characters per token errs on the safe side
    for English and code, plus a few tokens of chat markup per message."""
    return sum(math.ceil(len(m["content"]) / 3) + 4 for m in messages) + 3


def answer_char_limit(max_tokens: int) -> int:
    """The most text (answer and tool calls) read for `max_tokens`: past it, the server ignored
    max_tokens and the answer is cut there, as if it had stopped at the limit."""
    return max(MIN_ANSWER_CHARS, max_tokens * MAX_CHARS_PER_TOKEN)


class _Retry(Exception):
    def __init__(self, error: BackendError, wait_s: float | None = None) -> None:
        self.error, self.wait_s = error, wait_s


class OpenAICompatibleBackend(Backend):
    remote = True

    def __init__(self, provider: Provider) -> None:
        self.provider = provider
        self.name = provider.name
        self.model_name = provider.model
        self.n_ctx = provider.context_window
        self.trusted = provider.trusted
        self.endpoint = origin(provider.base_url)
        self._key: Secret | None = None
        self._client: httpx.AsyncClient | None = None
        rpm = provider.requests_per_minute
        self._limiter = RateLimiter(rpm) if rpm else None

    @property
    def loaded(self) -> bool:
        return True

    def start_loading(self) -> None:
        pass  # nothing to load: the server holds the model

    async def load(self) -> None:
        p = self.provider
        if self._key is None and (p.api_key_env or p.api_key_keyring):
            self._key = await asyncio.to_thread(api_key, p.name, p.api_key_env, p.api_key_keyring)
            if self._key is None:
                where = f"the environment variable {p.api_key_env}" if p.api_key_env else "the OS keyring"
                raise ConfigError(
                    f"Provider {p.name!r} has no API key: {where} is not set.",
                    hint=f"Set {p.api_key_env}=..." if p.api_key_env
                    else f"Store it with `keyring set {p.api_key_keyring} {p.name}`.",
                )

    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            p = self.provider
            headers = dict(p.headers)
            if self._key is not None:
                headers["Authorization"] = f"Bearer {self._key.reveal()}"
            self._client = httpx.AsyncClient(
                base_url=p.base_url.rstrip("/") + "/",
                headers=headers,
                timeout=httpx.Timeout(p.read_timeout_s, connect=p.connect_timeout_s),
            )  # HTTPS_PROXY and SSL_CERT_FILE from the environment apply, as users behind proxies need
        return self._client

    async def fit(
        self, system: str, history: list[Message], question: str, max_tokens: int, sources: str = ""
    ) -> FittedPrompt:
        return fit_messages(system, history, question, estimate_tokens, self.n_ctx, max_tokens, sources)

    async def stream(
        self, messages: list[Message], params: SamplingParams, result: StreamResult
    ) -> AsyncIterator[str]:
        await self.load()
        p = self.provider
        body: dict[str, Any] = {
            "model": p.model,
            "messages": messages,
            "stream": True,
            "stream_options": {"include_usage": True},
            "max_tokens": params.max_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
        }
        if params.seed is not None:
            body["seed"] = params.seed
        if params.stop:
            body["stop"] = list(params.stop)
        if params.tools:
            body["tools"], body["tool_choice"] = params.tools, "auto"
        if params.json_schema:
            body["response_format"] = {"type": "json_schema",
                                       "json_schema": {"name": "answer", "schema": params.json_schema}}
        deadline = asyncio.get_running_loop().time() + p.total_timeout_s
        attempt = 0
        while True:
            try:
                async for piece in self._attempt(body, result, deadline):
                    yield piece
                return
            except _Retry as retry:  # only ever raised before any text reached the caller
                wait = retry.wait_s
                if wait is None:
                    wait = backoff_delay(attempt, p.backoff_s)
                too_late = asyncio.get_running_loop().time() + wait > deadline
                if attempt >= p.max_retries or wait > p.max_retry_wait_s or too_late:
                    raise retry.error from None
                attempt += 1
                await asyncio.sleep(wait)

    async def _attempt(
        self, body: dict[str, Any], result: StreamResult, deadline: float
    ) -> AsyncIterator[str]:
        name = self.name
        if self._limiter is not None:
            await self._limiter.acquire()
        got_text = False
        result.started_at = time.perf_counter()
        limit, written = answer_char_limit(int(body.get("max_tokens") or 0)), 0
        response: httpx.Response | None = None
        try:
            client = self.client()
            request = client.build_request(
                "POST", "chat/completions", json=body,
                headers={"Accept": "text/event-stream", "Cache-Control": "no-store"},
            )
            response = await self._by(deadline, client.send(request, stream=True))
            if response.status_code != 200:
                why = await self._error_text(response, deadline)
                error = BackendError(
                    f"{name} answered HTTP {response.status_code}: {why}",
                    status=response.status_code,
                    hint=_hint(response.status_code),
                )
                if response.status_code in RETRY_STATUSES:
                    raise _Retry(error, retry_after_s(response.headers.get("retry-after")))
                raise error
            kind = response.headers.get("content-type", "")
            if "text/event-stream" not in kind:
                raise BackendError(f"{name} did not answer with a stream of events: its Content-Type is "
                                   f"{redact(kind[:100])!r}, not 'text/event-stream'.")
            result.first_byte_at = time.perf_counter()
            async for data in self._events(response, deadline):
                if data.strip() == "[DONE]":
                    break
                text = self._read_chunk(data, result) or ""
                calls = sum(len(c["name"]) + len(c["arguments"]) for c in result.tool_calls)
                over = written + len(text) + calls > limit
                if over:  # the server ignored max_tokens: cut where the limit fell, read no further
                    text = text[: max(0, limit - written - calls)]
                    result.finish_reason = "length"
                if text:
                    written += len(text)
                    got_text = True
                    yield text
                if over:
                    break
        except httpx.ConnectError as exc:
            raise _Retry(BackendError(
                f"Cannot connect to {name} at {self.endpoint}: {_reason(exc)}.",
                hint="Is the server running, and the base_url right?",
            )) from exc
        except httpx.ConnectTimeout as exc:
            raise _Retry(BackendError(
                f"Connecting to {name} at {self.endpoint} timed out after "
                f"{self.provider.connect_timeout_s:g} s.",
            )) from exc
        except httpx.ReadTimeout as exc:
            waited = "mid-answer" if got_text else "before the first token"
            raise BackendError(
                f"{name} sent nothing for {self.provider.read_timeout_s:g} s ({waited}).",
                hint="The server may be overloaded; raise read_timeout_s if it is just slow.",
            ) from exc
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
            where = "mid-answer" if got_text else "before answering"
            error = BackendError(f"{name} dropped the connection {where}: {_reason(exc)}.")
            if got_text:
                raise error from exc
            raise _Retry(error) from exc
        except httpx.HTTPError as exc:
            raise BackendError(f"Request to {name} failed: {_reason(exc)}.") from exc
        finally:
            if response is not None:
                await response.aclose()  # the unread rest of an endless body is never fetched

    async def _by(self, deadline: float, awaitable: Any) -> Any:
        """`awaitable`, unless `total_timeout_s` runs out first. The read timeout alone never ends
        a server that keeps sending something (SSE comments every second, one byte at a time)."""
        left = deadline - asyncio.get_running_loop().time()
        try:
            if left <= 0:
                raise TimeoutError
            return await asyncio.wait_for(awaitable, left)
        except TimeoutError:
            if asyncio.iscoroutine(awaitable):
                awaitable.close()  # not started: no "never awaited" warning
            raise BackendError(
                f"{self.name} did not finish within total_timeout_s={self.provider.total_timeout_s:g}.",
                hint="Raise total_timeout_s, or lower max_tokens.",
            ) from None

    async def _events(self, response: httpx.Response, deadline: float) -> AsyncIterator[str]:
        """The data of each server-sent event, read line by line within the deadline; no line or
        event may pass MAX_EVENT_BYTES (a `data:` line that never ends is not buffered whole)."""
        chunks = response.aiter_bytes()  # decompressed, one network read at a time
        buffer = b""
        data: list[bytes] = []
        size = 0
        while True:
            try:
                chunk = await self._by(deadline, anext(chunks))
            except StopAsyncIteration:
                break
            lines, buffer = _split_lines(buffer + chunk)
            if len(buffer) > MAX_EVENT_BYTES:
                raise BackendError(f"{self.name} streamed a line longer than {MAX_EVENT_BYTES >> 20} MiB: "
                                   "not a chat completion.")
            for line in lines:
                if not line:  # a blank line ends an event
                    if data:
                        yield b"\n".join(data).decode("utf-8", "replace")
                    data, size = [], 0
                    continue
                field, _, value = line.partition(b":")
                if field != b"data":
                    continue  # comments (": keep-alive"), event, id and retry lines
                value = value[1:] if value.startswith(b" ") else value
                size += len(value)
                if size > MAX_EVENT_BYTES:
                    raise BackendError(f"{self.name} streamed an event longer than "
                                       f"{MAX_EVENT_BYTES >> 20} MiB: not a chat completion.")
                data.append(value)
        if data:
            yield b"\n".join(data).decode("utf-8", "replace")

    async def _error_text(self, response: httpx.Response, deadline: float) -> str:
        """The server's error message: at most ERROR_BODY_READ_BYTES of its body are read (an endless
        body is left unread), redacted, then cut for showing."""
        raw = b""
        chunks = response.aiter_bytes()
        try:
            while len(raw) < ERROR_BODY_READ_BYTES:
                raw += await self._by(deadline, anext(chunks))
        except (StopAsyncIteration, BackendError, httpx.HTTPError):
            pass  # what arrived is enough to show
        text = raw[:ERROR_BODY_READ_BYTES].decode("utf-8", "replace")
        try:
            message = json.loads(text)["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = text.strip() or response.reason_phrase
        return terminal_line(redact(str(message)))[:ERROR_BODY_LIMIT]  # shown on one line, acting on nothing

    def _read_chunk(self, data: str, result: StreamResult) -> str | None:
        try:
            chunk = json.loads(data)
            usage = _mapping(chunk.get("usage") or {})
            if usage:  # counts that are not whole numbers are ignored, not trusted
                result.prompt_tokens = _count(usage.get("prompt_tokens"), result.prompt_tokens)
                result.completion_tokens = _count(usage.get("completion_tokens"), result.completion_tokens)
            choices = chunk.get("choices") or []
            if not isinstance(choices, list):
                raise TypeError("choices is not a list")
            if not choices:
                return None
            choice = _mapping(choices[0])
            finish = choice.get("finish_reason")
            result.finish_reason = finish if isinstance(finish, str) and finish else result.finish_reason
            delta = _mapping(choice.get("delta") or {})
            text = delta.get("content")
            calls = delta.get("tool_calls") or []
            if not isinstance(calls, list):
                raise TypeError("tool_calls is not a list")
            for call in map(_mapping, calls):  # streamed in fragments, by index
                index = call.get("index", 0)
                if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < MAX_TOOL_CALLS:
                    raise ValueError(f"tool call index {index!r}")  # a huge one would fill the memory
                while len(result.tool_calls) <= index:
                    result.tool_calls.append({"id": "", "name": "", "arguments": ""})
                slot, function = result.tool_calls[index], _mapping(call.get("function") or {})
                slot["id"] = _text(call.get("id")) or slot["id"]
                slot["name"] += _text(function.get("name"))
                slot["arguments"] += _text(function.get("arguments"))
        except (ValueError, AttributeError, TypeError) as exc:
            raise BackendError(
                f"{self.name} streamed data that is not a chat completion chunk: {redact(data[:200])!r}."
            ) from exc
        if text is not None and not isinstance(text, str):
            raise BackendError(f"{self.name} streamed a chunk whose content is not text.")
        if text and not usage:
            result.completion_tokens += 1  # a chunk is about a token; the final usage corrects it
        return text or None

    async def models(self) -> list[str]:
        """The server's model names (GET /models): a cheap health check."""
        await self.load()
        try:
            response = await self.client().get("models", timeout=self.provider.connect_timeout_s)
            response.raise_for_status()
            return [m.get("id", "?") for m in response.json().get("data", [])]
        except (httpx.HTTPError, ValueError, AttributeError) as exc:
            raise BackendError(f"{self.name} at {self.endpoint} is not healthy: {_reason(exc)}.") from exc

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


def _mapping(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TypeError(f"expected an object, not {type(value).__name__}")
    return value


def _text(value: Any) -> str:
    if value is not None and not isinstance(value, str):
        raise TypeError(f"expected text, not {type(value).__name__}")
    return value or ""


def _count(value: Any, default: Any) -> Any:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else default


def _reason(exc: Exception) -> str:
    return redact(str(exc) or type(exc).__name__)


def _split_lines(buffer: bytes) -> tuple[list[bytes], bytes]:
    """Complete lines (CRLF, LF or CR ends one) and the unfinished rest. A CR at the very end
    stays in the rest: its LF may come with the next chunk."""
    cr = buffer.endswith(b"\r")
    lines = buffer.removesuffix(b"\r").replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
    rest = lines.pop()
    return lines, rest + (b"\r" if cr else b"")


def _hint(status: int) -> str | None:
    return {
        401: "Check the API key.",
        403: "The key may lack access to this model.",
        404: "Check base_url and the model name.",
        429: "Rate limited: lower requests_per_minute, or wait.",
    }.get(status)
