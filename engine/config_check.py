"""Settings validated: each value's type and range, and the rules between them (a backend that
exists, `max_tokens` below `n_ctx`...). A refusal names the setting, where its value came from
(the file, its `ASSISTANT_*` variable, or arguments) and what would be accepted.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from engine.errors import ConfigError
from engine.settings import FALLBACK_REASONS, FIELDS, McpServer, Price, Provider, Settings

ABOVE_ZERO = 1e-9  # a lowest value standing for "more than 0"
# The values a number may take, (lowest, highest); None: no bound. Out of range is refused with
# the range named: llama.cpp took n_batch = 0 and then failed as if out of memory, and NaN,
# top_p = 7 or a negative price were used silently.
RANGES: dict[type, dict[str, tuple[float | None, float | None]]] = {
    Settings: {
        "n_gpu_layers": (-1, None), "n_threads": (1, None), "n_batch": (1, None),
        "prompt_cache_mb": (0, None), "temperature": (0, 2), "top_p": (0, 1), "rag_top_k": (0, None),
        "chunk_tokens": (16, None), "state_cache_disk_mb": (0, None),
        "chunk_overlap": (0, None), "index_max_file_mb": (ABOVE_ZERO, None), "memory_top_k": (0, None),
        "memory_threshold": (-1, 1), "summary_tokens": (1, None), "tool_max_steps": (0, None),
        "first_token_deadline_s": (ABOVE_ZERO, None), "breaker_failures": (1, None),
        "breaker_cooldown_s": (0, None), "budget_daily_usd": (0, None), "budget_monthly_usd": (0, None),
        "cache_ttl_hours": (0, None), "semantic_cache_similarity": (-1, 1), "alert_window": (1, None),
        "alert_latency_ratio": (ABOVE_ZERO, None), "alert_error_rate": (0, 1),
        "alert_empty_retrieval_rate": (0, 1), "hallucination_threshold": (0, 1),
    },
    Provider: {
        "context_window": (256, None), "connect_timeout_s": (ABOVE_ZERO, None),
        "read_timeout_s": (ABOVE_ZERO, None), "total_timeout_s": (ABOVE_ZERO, None), "max_retries": (0, None),
        "backoff_s": (0, None), "max_retry_wait_s": (0, None), "requests_per_minute": (ABOVE_ZERO, None),
    },
    Price: {"input_per_mtok": (0, None), "output_per_mtok": (0, None)},
    McpServer: {"timeout_s": (ABOVE_ZERO, None)},
}


def check_ranges(item: Any, source: str, from_env: frozenset[str] = frozenset()) -> None:
    fields = {f.name: f for f in dataclasses.fields(item)}
    for name, (low, high) in RANGES[type(item)].items():
        value = getattr(item, name)
        if value is None:
            continue
        if math.isfinite(value) and (low is None or value >= low) and (high is None or value <= high):
            continue
        number = "a whole number" if "int" in str(fields[name].type) else "a number"
        if low == ABOVE_ZERO:
            allowed = f"{number} above 0"
        elif high is None:
            allowed = f"{number} of {low:g} or more"
        else:
            allowed = f"{number} from {low:g} to {high:g}"
        raise ConfigError(f"`{name}` = {value!r} ({_where(name, source, from_env)}) is out of range.",
                          hint=f"Use {allowed}.")


def _where(name: str, source: str, from_env: frozenset[str]) -> str:
    """Where a setting's value came from: its environment variable, else the file (or arguments)."""
    return f"ASSISTANT_{name.upper()}" if name in from_env else source


def check_types(
    item: Any, fields: dict[str, Any], source: str, from_env: frozenset[str] = frozenset()
) -> None:
    for name, f in fields.items():
        value = getattr(item, name)
        kind = str(f.type)
        where = _where(name, source, from_env)
        if value is None:
            if "None" not in kind:
                raise ConfigError(f"Setting {name!r} ({where}) must have a value.")
            continue
        if kind.startswith("tuple"):
            if not isinstance(value, tuple) or not all(isinstance(v, str) for v in value):
                raise ConfigError(f"Setting {name!r} ({where}) must be a list of names, not {value!r}.")
            continue
        if kind.startswith("dict"):
            if not isinstance(value, dict):
                raise ConfigError(f"Setting {name!r} ({where}) must be a table, not {value!r}.")
            if name in ("headers", "env") and not all(isinstance(v, str) for v in value.values()):
                what = "header" if name == "headers" else "variable"
                raise ConfigError(f"Setting {name!r} ({where}) must map {what} names to text.")
            continue
        if kind == "bool" and not isinstance(value, bool):
            raise ConfigError(f"Setting {name!r} ({where}) must be true or false, not {value!r}.")
        if "int" in kind and (isinstance(value, bool) or not isinstance(value, int)):
            raise ConfigError(f"Setting {name!r} ({where}) must be a whole number, not {value!r}.")
        if "float" in kind and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise ConfigError(f"Setting {name!r} ({where}) must be a number, not {value!r}.")
        if "str" in kind and not isinstance(value, str):
            raise ConfigError(f"Setting {name!r} ({where}) must be text, not {value!r}.")


def validated(settings: Settings, source: str, from_env: frozenset[str] = frozenset()) -> Settings:
    def where(name: str) -> str:
        return _where(name, source, from_env)

    check_types(settings, FIELDS, source, from_env)
    if not settings.backends:
        raise ConfigError(f"`backends` ({where('backends')}) is empty: no backend would answer.",
                          hint='Name at least one, e.g. backends = ["local"] (ASSISTANT_BACKENDS=local).')
    for name in settings.backends:
        if name != "local" and name not in settings.providers:
            raise ConfigError(
                f"`backends` ({where('backends')}) names {name!r}, which is neither `local` nor a provider.",
                hint=f"Add a [providers.{name}] table, or remove it from `backends`.",
            )
    unknown = sorted(set(settings.fallback_on) - set(FALLBACK_REASONS))
    if unknown:
        raise ConfigError(
            f"`fallback_on` ({where('fallback_on')}) has unknown reason {', '.join(map(repr, unknown))}.",
            hint=f"Known reasons: {', '.join(FALLBACK_REASONS)}.",
        )
    for name, server in settings.mcp_servers.items():
        if not server.command:
            raise ConfigError(f"MCP server {name!r} ({source}) needs a `command`.")
    for provider in settings.providers.values():
        if not provider.base_url.startswith(("http://", "https://")) or not provider.model:
            raise ConfigError(
                f"Provider {provider.name!r} ({source}) needs a `base_url` (http:// or https://) "
                "and a `model`."
            )
    for name, allowed in (("tool_calling", ("auto", "always", "off")), ("tool_choice", ("auto", "required")),
                          ("sources_placement", ("system", "message"))):
        if getattr(settings, name) not in allowed:
            raise ConfigError(f"`{name}` ({where(name)}) is {getattr(settings, name)!r}.",
                              hint=f"Use one of: {', '.join(allowed)}.")
    if settings.n_ctx < 256:
        raise ConfigError(f"n_ctx={settings.n_ctx} ({where('n_ctx')}) is too small.", hint="Use 256 or more.")
    if not 1 <= settings.max_tokens < settings.n_ctx:
        raise ConfigError(
            f"max_tokens={settings.max_tokens} ({where('max_tokens')}) must be between 1 and n_ctx-1 "
            f"({settings.n_ctx - 1})."
        )
    check_ranges(settings, source, from_env)
    if settings.chunk_overlap >= settings.chunk_tokens:
        raise ConfigError(f"chunk_overlap={settings.chunk_overlap} ({where('chunk_overlap')}) must be "
                          f"smaller than chunk_tokens={settings.chunk_tokens}.")
    if not -1 <= settings.rag_min_similarity <= 1:
        raise ConfigError(f"rag_min_similarity={settings.rag_min_similarity} ({source}) is not a cosine "
                          "similarity.", hint="Use a number from -1 (keep every passage) to 1.")
    return settings
