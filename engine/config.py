"""Settings: defaults (engine/settings.py), then the TOML config file, then `ASSISTANT_*`
environment variables, validated (engine/config_check.py).

The settings model is re-exported here: `from engine.config import Settings, load_settings`.
"""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path
from typing import Any

from engine.config_check import check_ranges, check_types, validated
from engine.errors import ConfigError
from engine.paths import config_file
from engine.settings import (
    DEFAULT_SYSTEM_PROMPT,
    FALLBACK_REASONS,
    FIELDS,
    MCP_FIELDS,
    PRICE_FIELDS,
    PROVIDER_FIELDS,
    TABLES,
    McpServer,
    Price,
    Provider,
    Settings,
)

__all__ = ["DEFAULT_SYSTEM_PROMPT", "FALLBACK_REASONS", "FIELDS", "MCP_FIELDS", "PRICE_FIELDS",
           "PROVIDER_FIELDS", "McpServer", "Price", "Provider", "Settings", "load_settings"]


def load_settings(path: Path | None = None, environ: dict[str, str] | None = None) -> Settings:
    """Read the config file (if any) and the environment into one validated `Settings`."""
    path = path or config_file()
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    if path.exists():
        try:
            values.update(tomllib.loads(path.read_text(encoding="utf-8")))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(
                f"The config file {path} is not valid TOML: {exc}.", hint="Fix or remove it."
            ) from exc
        except OSError as exc:
            raise ConfigError(f"The config file {path} cannot be read: {exc.strerror}.") from exc
        unknown = sorted(set(values) - set(FIELDS))
        if unknown:
            raise ConfigError(
                f"Unknown setting {', '.join(map(repr, unknown))} in {path}.",
                hint=f"Known settings: {', '.join(FIELDS)}.",
            )
    for table, (kind, fields) in TABLES.items():
        if table in values:
            values[table] = _tables(values[table], table, kind, fields, path)
    from_env = frozenset(name for name in FIELDS
                         if name not in TABLES and environ.get(f"ASSISTANT_{name.upper()}") is not None)
    for name in from_env:
        values[name] = _from_env(name, environ[f"ASSISTANT_{name.upper()}"])
    for name, f in FIELDS.items():  # TOML lists into the tuples settings hold (`tools` too)
        if str(f.type).startswith("tuple") and isinstance(values.get(name), list):
            values[name] = tuple(values[name])
    try:
        settings = Settings(**values)
    except TypeError as exc:  # pragma: no cover - unknown keys are caught above
        raise ConfigError(str(exc)) from exc
    return validated(settings, source=str(path), from_env=from_env)


def _tables(raw: Any, table: str, kind: type, fields: dict[str, Any], path: Path) -> dict[str, Any]:
    """`[providers.NAME]` / `[prices."MODEL"]` tables into dataclasses, checked like settings."""
    if not isinstance(raw, dict) or not all(isinstance(v, dict) for v in raw.values()):
        raise ConfigError(f"`{table}` in {path} must hold one [{table}.NAME] table per entry.")
    parsed = {}
    for name, entry in raw.items():
        if table == "providers" and any("key" in k and k not in fields for k in entry):
            # The value is never echoed: it is a secret in the wrong place.
            raise ConfigError(
                f"Provider {name!r} in {path} has an API key written in the config file.",
                hint="Remove it; put the key in an environment variable named by `api_key_env`, "
                "or in the OS keyring (`api_key_keyring`).",
            )
        unknown = sorted(set(entry) - set(fields))
        if unknown:
            raise ConfigError(
                f"Unknown setting {', '.join(map(repr, unknown))} in [{table}.{name}] of {path}.",
                hint=f"Known settings: {', '.join(fields)}.",
            )
        if kind is Provider:
            entry = {**entry, "name": name}
        entry = {k: tuple(v) if isinstance(v, list) else v for k, v in entry.items()}
        item = kind(**entry)
        check_types(item, fields, f"[{table}.{name}] of {path}")
        check_ranges(item, f"[{table}.{name}] of {path}")
        parsed[name] = item
    return parsed


def _from_env(name: str, raw: str) -> Any:
    kind = FIELDS[name].type
    if raw == "" and "None" in str(kind):
        return None
    if str(kind).startswith("tuple"):
        if raw.strip().startswith("["):  # written as in the config file: ["local", "fake"]
            try:
                names = json.loads(raw)
                if isinstance(names, list) and all(isinstance(n, str) for n in names):
                    return tuple(names)
            except ValueError:
                pass
            raise ConfigError(f"ASSISTANT_{name.upper()}={raw!r} is not a list of names.",
                              hint=f'Use names separated by commas (ASSISTANT_{name.upper()}=local,fake) '
                                   'or a JSON list (["local", "fake"]).')
        return tuple(part.strip() for part in raw.split(",") if part.strip())
    if kind == "bool":
        if raw.lower() in ("1", "true", "yes", "on"):
            return True
        if raw.lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"ASSISTANT_{name.upper()}={raw!r} is not true or false.", hint="Use 1 or 0.")
    try:
        if "int" in str(kind):
            return int(raw)
        if "float" in str(kind):
            return float(raw)
    except ValueError as exc:
        raise ConfigError(
            f"ASSISTANT_{name.upper()}={raw!r} is not a number.",
            hint=f"Set it to a {'whole ' if 'int' in str(kind) else ''}number.",
        ) from exc
    return raw
