"""The engine's public surface, pinned (as httpx's tests/test_exported_members.py pins its own).

The TUI, the CLI and the HTTP API use `engine` through what its `__init__` exports and what an
`Engine` offers; a change to either is a decision, made here, not a side effect of a refactor.
"""

from __future__ import annotations

import ast
import inspect
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import engine
from engine import Engine
from engine.history import History

# Imported with the package: the error base (the chat app's first frame needs no more).
EAGER = ["AssistantError"]
# The rest, each imported on first use (`_LAZY` in engine/__init__.py): the engine, its settings
# and events, and what the app uses besides.
LAZY = ["AskOptions", "ConfigError", "ContextOverflowError", "DEFAULT_MODEL_FILE", "EVAL_METRICS", "EVAL_SCORES",
        "Engine", "EvalComparison", "EvalHistory", "EvalOptions", "Event", "Failed", "Finished", "GenerationError",
        "InvalidOutputError", "ModelError", "ModelShape", "NotFoundError", "RedactingFilter", "Registry",
        "Settings", "Started", "StoreError", "Timings", "Token", "Usage", "all_templates",
        "built_in_template", "check_model_name", "check_schema", "clear_states", "data_dir", "describe_model",
        "detect_hardware", "diagnose", "download_file_name", "download_model", "ensure_private_dir",
        "eval_regressions", "evidence_segments", "expand_source", "fit_for", "flat_metrics", "format_metric",
        "format_metric_change", "keep_a_core_for_the_display", "load_dataset", "load_settings", "load_template", "model_catalog",
        "open_knowledge", "parse_eval_limits", "parse_since", "price_table_version", "printable_line",
        "printable_text", "read_gguf", "resolve_model", "restore_database", "run_eval", "score_plot",
        "scores_below", "size_text", "states_folder", "stats_plots", "template_diff", "templates_folder"]
EXPORTED = sorted(EAGER + LAZY)

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
    assert sorted(engine._LAZY) == sorted(LAZY)
    submodules = {m.name for m in pkgutil.iter_modules(engine.__path__)}
    assert not submodules & set(engine.__all__), "a submodule's name: `from engine import` may get the module"
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        engine.nothing_here  # noqa: B018


def test_the_lazy_names_are_the_type_checkers_names_from_the_same_modules() -> None:
    """`_LAZY` (what runs) and the `if TYPE_CHECKING:` imports (what a type checker reads) agree."""
    tree = ast.parse(Path(engine.__file__).read_text(encoding="utf-8"))
    block = next(node for node in tree.body if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test))
    typed = {alias.asname or alias.name: f"{node.module}:{alias.name}"
             for node in block.body if isinstance(node, ast.ImportFrom) for alias in node.names}
    assert typed == {name: target if ":" in target else f"{target}:{name}" for name, target in engine._LAZY.items()}


def test_import_engine_imports_none_of_the_lazy_names_modules() -> None:
    """`import engine` costs what its error base costs: the modules only the lazy names need (the
    engine itself, its settings, evals, downloads, the doctor, statistics...) wait for their first use."""
    code = ("import sys, engine; "
            "print(' '.join(m for m in ('engine.engine', 'engine.config', 'engine.events', 'engine.evals', "
            "'engine.download', 'engine.doctor', 'engine.stats', 'engine.backup', 'engine.knowledge', "
            "'engine.terminal_text') if m in sys.modules))")
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           cwd=Path(engine.__file__).parent.parent)
    assert found.stdout.split() == []


def test_an_engine_offers_its_parts_and_its_facade(settings: engine.Settings) -> None:
    built = Engine(settings)
    parts = _public([n for n in vars(built)])
    assert parts == ENGINE_PARTS
    assert _public(dir(Engine)) == ENGINE_MEMBERS


def test_the_history_offers_what_the_tui_and_the_cli_read() -> None:
    assert _public([n for n, _ in inspect.getmembers(History, inspect.iscoroutinefunction)] + ["settings"]) \
        == HISTORY
