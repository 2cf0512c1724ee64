"""Structured output: an answer that must be JSON matching a schema. The backend constrains it
(a llama.cpp grammar locally, `response_format` remotely); this checks it, so a truncated or
non-conforming answer is reported as failed, never shown as valid."""

from __future__ import annotations

import json
from typing import Any

from engine.errors import ConfigError, GenerationError


class InvalidOutputError(GenerationError):
    """The answer is not JSON matching the requested schema."""


def check_schema(schema: Any) -> dict:
    import jsonschema

    if not isinstance(schema, dict):
        raise ConfigError("The JSON schema must be a JSON object.")
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise ConfigError(f"The JSON schema is not valid: {exc.message}.") from exc
    return schema


def problem(text: str, schema: dict) -> str | None:
    """Why `text` is not JSON valid against `schema`, or None."""
    import jsonschema

    try:
        value = json.loads(text)
    except ValueError as exc:
        return f"not JSON ({exc})"
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(value))
    if error is not None:
        where = "/".join(map(str, error.absolute_path)) or "the top level"
        return f"{error.message} (at {where})"
    return None
