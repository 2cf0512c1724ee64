"""The engine's public surface, pinned (as httpx's tests/test_exported_members.py pins its own).

The TUI, the CLI and the HTTP API use `engine` through what its `__init__` exports and what an
`Engine` offers; a change to either is a decision, made here, not a side effect of a refactor.
"""

from __future__ import annotations

import inspect

import engine
from engine import Engine
from engine.history import History

EXPORTED = [
    "AskOptions",
    "AssistantError",
    "Engine",
    "Event",
    "Failed",
    "Finished",
    "Settings",
    "Started",
    "Timings",
    "Token",
    "Usage",
    "load_settings",
]

# What a built Engine offers: its parts (attributes) and its own methods and properties.
ENGINE_PARTS = ["answers", "cache", "commands", "database", "guardrails", "history", "library", "memories",
                "model_hash", "observers", "plugin_host", "plugins", "router", "settings", "store", "summaries",
                "tool_loop", "tools"]
ENGINE_MEMBERS = ["ask", "backend", "backends_report", "close", "embed", "embedding_model", "knowledge",
                  "load_model", "prefill_next_turn", "reopened", "set_conversation_backend", "switch_model",
                  "template_version", "warm_up"]
HISTORY = ["alerts", "answer_to", "backup", "comment", "conversation", "conversations", "delete_conversation",
           "export_conversations", "export_markdown", "fork", "import_conversations", "mark_reviewed", "messages", "rate",
           "rename_conversation", "response", "response_detail", "responses_since", "review_cases",
           "reviews", "search_conversations", "set_incognito", "settings", "stats", "trace",
           "training_rows"]


def _public(names: list[str]) -> list[str]:
    return sorted(n for n in names if not n.startswith("_"))


def test_the_package_exports_what_it_lists_and_nothing_else() -> None:
    assert sorted(engine.__all__) == EXPORTED
    for name in engine.__all__:
        assert getattr(engine, name) is not None
    modules = {n for n, v in vars(engine).items() if inspect.ismodule(v)}  # submodules, once imported
    assert _public([n for n in vars(engine) if n not in modules]) == EXPORTED


def test_an_engine_offers_its_parts_and_its_facade(settings: engine.Settings) -> None:
    built = Engine(settings)
    parts = _public([n for n in vars(built)])
    assert parts == ENGINE_PARTS
    assert _public(dir(Engine)) == ENGINE_MEMBERS


def test_the_history_offers_what_the_tui_and_the_cli_read() -> None:
    assert _public([n for n, _ in inspect.getmembers(History, inspect.iscoroutinefunction)] + ["settings"]) \
        == HISTORY
