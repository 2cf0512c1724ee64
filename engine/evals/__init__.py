"""Evals: run a dataset of questions through the engine, score the answers, compare runs.

The public surface for the CLI and the TUI; see docs/evals.md for the dataset format and metrics.
"""

from engine.evals.compare import Comparison, below, compare, parse_limits, regressions
from engine.evals.dataset import Case, Dataset, DatasetError, load_dataset
from engine.evals.history import EvalHistory
from engine.evals.metrics import METRICS, SCORES, TOTALS
from engine.evals.runner import Options, Outcome, Progress, eval_database, run_eval

__all__ = [
    "METRICS",
    "SCORES",
    "TOTALS",
    "Case",
    "Comparison",
    "Dataset",
    "DatasetError",
    "EvalHistory",
    "Options",
    "Outcome",
    "Progress",
    "below",
    "compare",
    "eval_database",
    "load_dataset",
    "parse_limits",
    "regressions",
    "run_eval",
]
