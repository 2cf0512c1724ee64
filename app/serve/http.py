"""The HTTP side of `assistant serve`: options, API errors in OpenAI's shape, the queue in front
of the model, the bearer token, and reading a JSON body within a limit."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import json
import math
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from engine import (
    AssistantError,
    ConfigError,
    ContextOverflowError,
    GenerationError,
    InvalidOutputError,
    ModelError,
    NotFoundError,
    StoreError,
)


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


def from_engine_error(error: AssistantError) -> ApiError:
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


async def disconnected(receive: Receive) -> None:
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
