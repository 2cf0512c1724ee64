"""A chat completion request, checked: every bad field is a 400 naming the field."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.serve.http import ApiError
from engine import (
    AskOptions,
    ConfigError,
)

PLAIN, RAG = "assistant", "assistant-rag"
MODELS = {PLAIN: "The model alone (the configured route).",
          RAG: "Also the indexed folders, long-term memory and tools; the answer lists its sources."}


@dataclass
class ChatRequest:
    model: str
    question: str
    history: list[dict[str, str]]  # the earlier user and assistant turns
    options: AskOptions
    json_schema: dict | None
    stream: bool
    include_usage: bool


def bad_value(message: str, param: str, code: str = "invalid_value") -> ApiError:
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
                raise bad_value(f"{where} has a {kind!r} part: only text is supported.", "messages",
                           "unsupported_content")
            texts.append(part["text"])
        return "".join(texts)
    if content is None:
        return ""
    raise bad_value(f"{where}.content must be a string or a list of text parts.", "messages",
                    "invalid_messages")


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
            raise bad_value(f"{where}.role is {role!r}: use system, user or assistant.", "messages",
                       "invalid_messages")
    if not turns or turns[-1]["role"] != "user" or not turns[-1]["content"].strip():
        raise bad_value("The last message must be the user's question, and not empty.", "messages",
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
        raise bad_value(f"max_tokens must be a whole number, not {max_tokens!r}.", "max_tokens")
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
        raise bad_value("stream must be true or false and stream_options an object.", "stream")
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
        from engine import check_schema

        try:
            return check_schema(schema)
        except ConfigError as exc:
            raise ApiError(400, str(exc), "invalid_value", "response_format") from exc
    raise bad_value(f"response_format type {kind!r} is not supported: use text, json_object or json_schema.",
               "response_format")
