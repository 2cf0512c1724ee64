"""Structured output: an answer that must be JSON matching a schema. The backend constrains it
(a llama.cpp grammar locally, `response_format` remotely); this checks it, so a truncated or
non-conforming answer is reported as failed, never shown as valid."""

from __future__ import annotations

import json
from typing import Any

from engine.errors import ConfigError, GenerationError


class InvalidOutputError(GenerationError):
    """The answer is not JSON matching the requested schema."""


# Instances of every JSON type: a schema is tried on each before the answer is generated, so a
# `$ref` cycle ({"$ref": "#"}) or a reference to nowhere is a clear error up front instead of a
# RecursionError once the answer is there.
PROBES: tuple[Any, ...] = (None, True, 0, 1.5, "", [], {}, [None], {"": None})
CYCLE = "the JSON schema refers to itself without end (a $ref cycle)"


def check_schema(schema: Any) -> dict:
    import jsonschema
    import referencing.exceptions

    if not isinstance(schema, dict):
        raise ConfigError("The JSON schema must be a JSON object.")
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise ConfigError(f"The JSON schema is not valid: {exc.message}.") from exc
    validator = jsonschema.Draft202012Validator(schema)
    try:
        for probe in PROBES:
            for _ in validator.iter_errors(probe):
                pass
    except RecursionError as exc:
        raise ConfigError(f"{CYCLE[0].upper()}{CYCLE[1:]}: a `$ref` leads back to where it started without "
                          "going into a property or an item.",
                          hint='Reference a part that descends, e.g. {"items": {"$ref": "#"}}.') from exc
    except referencing.exceptions.Unresolvable as exc:
        raise ConfigError(f"The JSON schema has a `$ref` that leads nowhere: {exc}.",
                          hint="Only references inside the schema itself work (#/$defs/NAME).") from exc
    return schema


def problem(text: str, schema: dict) -> str | None:
    """Why `text` is not JSON valid against `schema`, or None."""
    import jsonschema
    import referencing.exceptions

    try:
        value = json.loads(text)
    except ValueError as exc:
        return f"not JSON ({exc})"
    try:
        error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(value))
    except RecursionError:  # a cycle only this answer reaches (the probes could not find it)
        return CYCLE
    except referencing.exceptions.Unresolvable as exc:
        return f"the JSON schema has a $ref that leads nowhere ({exc})"
    if error is not None:
        where = "/".join(map(str, error.absolute_path)) or "the top level"
        return f"{error.message} (at {where})"
    return None
