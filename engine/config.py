"""Settings: defaults, then the TOML config file, then `ASSISTANT_*` environment variables.

Every field is documented here; `docs/configuration.md` lists them for users.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import ConfigError
from engine.paths import config_file

DEFAULT_SYSTEM_PROMPT = (
    "You are a helpful assistant running locally on the user's own computer. "
    "Answer clearly and concisely."
)


def _doc(text: str, default: Any) -> Any:
    return field(default=default, metadata={"doc": text})


@dataclass(frozen=True)
class Settings:
    model: str | None = _doc(
        "GGUF model: a file path, or the name of a file in `models_dir`. "
        "Unset: the embedded SmolLM2-135M-Instruct.",
        None,
    )
    models_dir: str | None = _doc("A folder of GGUF files; each can be chosen by name.", None)
    n_ctx: int = _doc("Context window in tokens (prompt + answer).", 4096)
    n_gpu_layers: int | None = _doc(
        "Layers offloaded to the GPU. Unset: all when llama.cpp was built with GPU offload, else 0.",
        None,
    )
    n_threads: int | None = _doc("CPU threads for decoding. Unset: chosen for this machine.", None)
    n_batch: int = _doc("Prompt evaluation batch size.", 512)
    flash_attn: bool = _doc(
        "Flash attention: faster decoding (about +25% on CPU here) and a smaller KV cache.", True
    )
    max_tokens: int = _doc("Longest answer in tokens; this much room is kept in the context.", 512)
    temperature: float = _doc("Sampling temperature; 0 gives the same answer every time.", 0.2)
    top_p: float = _doc("Nucleus sampling threshold.", 0.95)
    seed: int | None = _doc("Sampling seed. Unset: random.", None)
    system_prompt: str = _doc("The system prompt at the top of every conversation.", DEFAULT_SYSTEM_PROMPT)
    rag_top_k: int = _doc("Passages from indexed folders placed in the prompt (0: never search).", 5)
    chunk_tokens: int = _doc("Size of an indexed chunk in tokens (estimated).", 200)
    chunk_overlap: int = _doc("Tokens shared by consecutive chunks, so no sentence is cut off.", 40)
    index_max_file_mb: float = _doc("Files larger than this are skipped when indexing.", 20.0)
    vector_store_url: str | None = _doc(
        "A Chroma server (http://host:8000) instead of the local vector store in the data folder.", None
    )

    def replace(self, **changes: Any) -> Settings:
        """A copy with `changes` applied (None values are ignored), validated."""
        given = {k: v for k, v in changes.items() if v is not None}
        return _validated(dataclasses.replace(self, **given), source="arguments")


FIELDS = {f.name: f for f in dataclasses.fields(Settings)}


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
    for name in FIELDS:
        raw = environ.get(f"ASSISTANT_{name.upper()}")
        if raw is not None:
            values[name] = _from_env(name, raw)
    try:
        settings = Settings(**values)
    except TypeError as exc:  # pragma: no cover - unknown keys are caught above
        raise ConfigError(str(exc)) from exc
    return _validated(settings, source=str(path))


def _from_env(name: str, raw: str) -> Any:
    kind = FIELDS[name].type
    if raw == "" and "None" in str(kind):
        return None
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


def _validated(settings: Settings, source: str) -> Settings:
    for name, f in FIELDS.items():
        value = getattr(settings, name)
        kind = str(f.type)
        if value is None:
            if "None" not in kind:
                raise ConfigError(f"Setting {name!r} ({source}) must have a value.")
            continue
        if kind == "bool" and not isinstance(value, bool):
            raise ConfigError(f"Setting {name!r} ({source}) must be true or false, not {value!r}.")
        if "int" in kind and (isinstance(value, bool) or not isinstance(value, int)):
            raise ConfigError(f"Setting {name!r} ({source}) must be a whole number, not {value!r}.")
        if "float" in kind and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise ConfigError(f"Setting {name!r} ({source}) must be a number, not {value!r}.")
        if "str" in kind and not isinstance(value, str):
            raise ConfigError(f"Setting {name!r} ({source}) must be text, not {value!r}.")
    if settings.n_ctx < 256:
        raise ConfigError(f"n_ctx={settings.n_ctx} ({source}) is too small.", hint="Use 256 or more.")
    if not 1 <= settings.max_tokens < settings.n_ctx:
        raise ConfigError(
            f"max_tokens={settings.max_tokens} ({source}) must be between 1 and n_ctx-1 "
            f"({settings.n_ctx - 1})."
        )
    if settings.temperature < 0:
        raise ConfigError(f"temperature={settings.temperature} ({source}) must be 0 or more.")
    return settings
