"""Prompt templates: text files with a name, versioned by their content's hash.

The shipped templates live in `engine/data/prompts/NAME.md`; a file of the same name in the user's
`prompts/` folder (next to the config file) replaces one, and new names can be added there. The
`system_prompt` setting, when set, replaces the `system` template. Every response row records the
template name and version it was answered with.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from engine.config import DEFAULT_SYSTEM_PROMPT, Settings
from engine.errors import ConfigError
from engine.paths import config_file


@dataclass(frozen=True)
class Template:
    name: str
    text: str
    origin: str  # "built-in", the override's path, or "setting system_prompt"

    @property
    def version(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()[:12]


def user_folder() -> Path:
    return config_file().parent / "prompts"


@functools.cache
def _built_in() -> dict[str, str]:
    """The shipped templates, read once (the user's overrides are read at every answer, so an
    edit applies at once)."""
    folder = resources.files("engine").joinpath("data/prompts")
    return {f.name.removesuffix(".md"): f.read_text("utf-8").strip()
            for f in folder.iterdir() if f.name.endswith(".md")}


def _overrides() -> dict[str, Path]:
    folder = user_folder()
    return {p.stem: p for p in sorted(folder.glob("*.md"))} if folder.is_dir() else {}


def built_in(name: str) -> Template | None:
    text = _built_in().get(name)
    return Template(name, text, "built-in") if text is not None else None


def load(name: str, settings: Settings) -> Template:
    if name == "system" and settings.system_prompt.strip() != DEFAULT_SYSTEM_PROMPT:
        return Template(name, settings.system_prompt.strip(), "setting system_prompt")
    override = _overrides().get(name)
    if override is not None:
        try:
            return Template(name, override.read_text("utf-8").strip(), str(override))
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"The prompt template {override} cannot be read: {exc}.") from exc
    template = built_in(name)
    if template is None:
        raise ConfigError(f"There is no prompt template named {name!r}.",
                          hint=f"Add {user_folder() / (name + '.md')}, or see `assistant prompts list`.")
    return template


def all_templates(settings: Settings) -> list[Template]:
    names = sorted(set(_built_in()) | set(_overrides()))
    return [load(name, settings) for name in names]


def diff(a: Template, b: Template) -> str:
    return "".join(difflib.unified_diff(
        (a.text + "\n").splitlines(keepends=True), (b.text + "\n").splitlines(keepends=True),
        fromfile=f"{a.name} {a.version} ({a.origin})", tofile=f"{b.name} {b.version} ({b.origin})",
    ))
