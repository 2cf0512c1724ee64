"""The one error tree: every error class of engine, memory and plugins is an AssistantError (so the
TUI and the CLI show it as a message, never a traceback) and is drawn in engine/errors.py."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import engine.errors
from engine.errors import AssistantError

# Raised and caught inside one module, never shown: leading-underscore classes are skipped too.
INTERNAL = {"LightEncoderError"}  # memory/light_encoder.py: its caller decides what the user sees


def _error_classes() -> dict[str, type]:
    found: dict[str, type] = {}
    for package in ("engine", "memory", "plugins"):
        root = importlib.import_module(package)
        for info in pkgutil.walk_packages(root.__path__, f"{package}."):
            if ".examples" in info.name:
                continue
            module = importlib.import_module(info.name)
            for name, value in vars(module).items():
                if inspect.isclass(value) and issubclass(value, BaseException) and value.__module__ == info.name:
                    found[name] = value
    return found


def test_every_error_is_in_the_tree_and_drawn() -> None:
    errors = {n: c for n, c in _error_classes().items() if not n.startswith("_") and n not in INTERNAL}
    outside = sorted(n for n, c in errors.items() if not issubclass(c, AssistantError))
    assert not outside, f"not AssistantErrors: {outside}"
    drawing = engine.errors.__doc__ or ""
    undrawn = sorted(n for n in errors if f"-- {n} " not in drawing and f"-- {n}\n" not in drawing
                     and n != "AssistantError")
    assert not undrawn, f"missing from the tree in engine/errors.py: {undrawn}"


def test_a_tool_error_is_an_assistant_error() -> None:
    from plugins.hookspecs import ToolError

    assert str(ToolError("there is no text to count")) == "there is no text to count"
    assert issubclass(ToolError, AssistantError)
