"""The Starlette app (its routes and lifespan) and running it on uvicorn."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import math
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from app.serve.answer import REMEMBERED_IDS, ChatResponse, Service
from app.serve.http import ApiError, BearerToken, ServeOptions, from_engine_error, read_json
from app.serve.request import MODELS, bad_value, parse_chat
from engine import (
    AssistantError,
    ConfigError,
    Engine,
    NotFoundError,
)

log = logging.getLogger(__name__)


MAX_EMBED_INPUTS = 256


def encoded(vector: list[float], encoding: str) -> list[float] | str:
    """base64: little-endian float32, as OpenAI sends it (its Python client asks for it)."""
    if encoding == "float":
        return vector
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


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
            raise bad_value(f"input is longer than {options.max_prompt_chars:,} characters.", "input",
                       "prompt_too_long")
        encoding = body.get("encoding_format") or "float"
        if encoding not in ("float", "base64"):
            raise ApiError(400, f"encoding_format {encoding!r} is not supported: use float or base64.",
                           "invalid_value", "encoding_format")
        async with service.gate.turn():
            try:
                vectors = await engine.embed(texts)
            except AssistantError as exc:
                raise from_engine_error(exc) from exc
        tokens = sum(math.ceil(len(t) / 4) for t in texts)  # an estimate: the tokenizer is the model's own
        return JSONResponse({"object": "list", "model": engine.embedding_model,
                             "data": [{"object": "embedding", "index": i, "embedding": encoded(v, encoding)}
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
            await engine.history.response(response_id)
            feedback_id = await engine.history.rate(response_id, rating, comment)
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
