"""The in-process engine of `assistant`: the one surface the TUI, the CLI and the HTTP API use.

Only the error base comes with the package. Everything else here, `Engine` and its settings and
events too, is imported on first use (PEP 562 `__getattr__`), so `import engine` costs next to
nothing: the chat app draws its first frame with `AssistantError` alone and imports the engine
(~100 ms: the answer pipeline's modules) in a thread after it; and a command that never reads a
GGUF header or an eval never imports the modules that do.
"""

import importlib
import typing

from engine.errors import AssistantError

# The names imported on first use: name -> "module", or "module:name" where the surface calls it
# otherwise: a name too general here (`describe`, `fmt`, `load`...), or a submodule's name
# (`terminal_text`: once the submodule is imported, the package's attribute is the module).
_LAZY = {
    # the engine, its settings, its events
    "AskOptions": "engine.request",
    "Engine": "engine.engine",
    "Event": "engine.events",
    "Failed": "engine.events",
    "Finished": "engine.events",
    "Settings": "engine.config",
    "Started": "engine.events",
    "Timings": "engine.events",
    "Token": "engine.events",
    "Usage": "engine.events",
    "load_settings": "engine.config",
    # errors the app tells apart (each an AssistantError)
    "ConfigError": "engine.errors",
    "ContextOverflowError": "engine.errors",
    "GenerationError": "engine.errors",
    "InvalidOutputError": "engine.structured",
    "ModelError": "engine.errors",
    "NotFoundError": "engine.errors",
    "StoreError": "engine.errors",
    # the data folder, logs, backups, the indexed folders, model states on disk
    "RedactingFilter": "engine.secrets",
    "clear_states": "engine.backends.disk_states:clear",
    "data_dir": "engine.paths",
    "ensure_private_dir": "engine.paths",
    "keep_a_core_for_the_display": "engine.cpu_budget",
    "open_knowledge": "engine.knowledge",
    "restore_database": "engine.backup",
    "states_folder": "engine.backends.disk_states",
    # models: files, headers, the registry, downloads, what fits this machine
    "DEFAULT_MODEL_FILE": "engine.models",
    "ModelShape": "engine.fit",
    "Registry": "engine.registry",
    "check_model_name": "engine.registry:check_name",
    "describe_model": "engine.registry:describe",
    "detect_hardware": "engine.hardware:detect",
    "diagnose": "engine.doctor",
    "download_file_name": "engine.download:file_name",
    "download_model": "engine.download:pull",
    "expand_source": "engine.download",
    "fit_for": "engine.doctor",
    "model_catalog": "engine.models:catalog",
    "read_gguf": "engine.gguf",
    "resolve_model": "engine.models",
    "size_text": "engine.fit",
    # answers as shown: terminal text, evidence, structured output
    "check_schema": "engine.structured",
    "evidence_segments": "engine.evidence:segments",
    "printable_line": "engine.terminal_text:terminal_line",
    "printable_text": "engine.terminal_text:terminal_text",
    # prompt templates, prices, statistics
    "all_templates": "engine.prompts",
    "built_in_template": "engine.prompts:built_in",
    "load_template": "engine.prompts:load",
    "parse_since": "engine.stats",
    "price_table_version": "engine.prices:table_version",
    "stats_plots": "engine.stats:plots",
    "template_diff": "engine.prompts:diff",
    "templates_folder": "engine.prompts:user_folder",
    # evals
    "EVAL_METRICS": "engine.evals:METRICS",
    "EVAL_SCORES": "engine.evals:SCORES",
    "EvalComparison": "engine.evals:Comparison",
    "EvalHistory": "engine.evals",
    "EvalOptions": "engine.evals:Options",
    "eval_regressions": "engine.evals:regressions",
    "flat_metrics": "engine.evals.metrics:flat",
    "format_metric": "engine.evals.report:fmt",
    "format_metric_change": "engine.evals.report:fmt_change",
    "load_dataset": "engine.evals",
    "parse_eval_limits": "engine.evals:parse_limits",
    "run_eval": "engine.evals",
    "score_plot": "engine.evals.report",
    "scores_below": "engine.evals:below",
}

if typing.TYPE_CHECKING:  # the same names, for type checkers (tests/test_public_surface.py compares)
    from engine.backends.disk_states import clear as clear_states
    from engine.backends.disk_states import states_folder
    from engine.backup import restore_database
    from engine.config import Settings, load_settings
    from engine.cpu_budget import keep_a_core_for_the_display
    from engine.doctor import diagnose, fit_for
    from engine.download import expand_source
    from engine.download import file_name as download_file_name
    from engine.download import pull as download_model
    from engine.engine import Engine
    from engine.errors import (
        ConfigError,
        ContextOverflowError,
        GenerationError,
        ModelError,
        NotFoundError,
        StoreError,
    )
    from engine.evals import METRICS as EVAL_METRICS
    from engine.evals import SCORES as EVAL_SCORES
    from engine.evals import Comparison as EvalComparison
    from engine.evals import EvalHistory, load_dataset, run_eval
    from engine.evals import Options as EvalOptions
    from engine.evals import below as scores_below
    from engine.evals import parse_limits as parse_eval_limits
    from engine.evals import regressions as eval_regressions
    from engine.evals.metrics import flat as flat_metrics
    from engine.evals.report import fmt as format_metric
    from engine.evals.report import fmt_change as format_metric_change
    from engine.evals.report import score_plot
    from engine.events import Event, Failed, Finished, Started, Timings, Token, Usage
    from engine.evidence import segments as evidence_segments
    from engine.fit import ModelShape, size_text
    from engine.gguf import read_gguf
    from engine.hardware import detect as detect_hardware
    from engine.knowledge import open_knowledge
    from engine.models import DEFAULT_MODEL_FILE, resolve_model
    from engine.models import catalog as model_catalog
    from engine.paths import data_dir, ensure_private_dir
    from engine.prices import table_version as price_table_version
    from engine.prompts import all_templates
    from engine.prompts import built_in as built_in_template
    from engine.prompts import diff as template_diff
    from engine.prompts import load as load_template
    from engine.prompts import user_folder as templates_folder
    from engine.registry import Registry
    from engine.registry import check_name as check_model_name
    from engine.registry import describe as describe_model
    from engine.request import AskOptions
    from engine.secrets import RedactingFilter
    from engine.stats import parse_since
    from engine.stats import plots as stats_plots
    from engine.structured import InvalidOutputError, check_schema
    from engine.terminal_text import terminal_line as printable_line
    from engine.terminal_text import terminal_text as printable_text


def __getattr__(name: str) -> typing.Any:
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'engine' has no attribute {name!r}")
    module, _, attribute = target.partition(":")
    value = getattr(importlib.import_module(module), attribute or name)
    globals()[name] = value  # looked up once
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


__all__ = [
    "DEFAULT_MODEL_FILE",
    "EVAL_METRICS",
    "EVAL_SCORES",
    "AskOptions",
    "AssistantError",
    "ConfigError",
    "ContextOverflowError",
    "Engine",
    "EvalComparison",
    "EvalHistory",
    "EvalOptions",
    "Event",
    "Failed",
    "Finished",
    "GenerationError",
    "InvalidOutputError",
    "ModelError",
    "ModelShape",
    "NotFoundError",
    "RedactingFilter",
    "Registry",
    "Settings",
    "Started",
    "StoreError",
    "Timings",
    "Token",
    "Usage",
    "all_templates",
    "built_in_template",
    "check_model_name",
    "check_schema",
    "clear_states",
    "data_dir",
    "describe_model",
    "detect_hardware",
    "diagnose",
    "download_file_name",
    "download_model",
    "ensure_private_dir",
    "eval_regressions",
    "evidence_segments",
    "expand_source",
    "fit_for",
    "flat_metrics",
    "format_metric",
    "format_metric_change",
    "keep_a_core_for_the_display",
    "load_dataset",
    "load_settings",
    "load_template",
    "model_catalog",
    "open_knowledge",
    "parse_eval_limits",
    "parse_since",
    "price_table_version",
    "printable_line",
    "printable_text",
    "read_gguf",
    "resolve_model",
    "restore_database",
    "run_eval",
    "score_plot",
    "scores_below",
    "size_text",
    "states_folder",
    "stats_plots",
    "template_diff",
    "templates_folder",
]
