"""Two runs side by side: per-metric deltas, the cases that got worse, and the CI gates
(`--fail-under`, `--max-regression`)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from engine.errors import ConfigError
from engine.evals.metrics import METRICS, SCORES, flat

EPSILON = 1e-9
CASE_TOLERANCE = 0.1  # a case is "worse" when a score drops by more than this


@dataclass(frozen=True)
class Delta:
    metric: str
    a: float | None
    b: float | None

    @property
    def change(self) -> float | None:
        """B - A for scores; the relative change (B / A - 1) for latency, tokens and cost."""
        if self.a is None or self.b is None:
            return None
        if METRICS[self.metric].score:
            return self.b - self.a
        return (self.b - self.a) / self.a if self.a else (0.0 if self.b == self.a else None)

    @property
    def regression(self) -> float:
        """How much worse B is (0 when not worse): points for scores, a share for the rest."""
        change = self.change
        if change is None:
            return 0.0
        return max(0.0, -change if METRICS[self.metric].higher_is_better else change)

    @property
    def improvement(self) -> float:
        change = self.change
        if change is None:
            return 0.0
        return max(0.0, change if METRICS[self.metric].higher_is_better else -change)


@dataclass(frozen=True)
class CaseChange:
    case_id: str
    question: str
    worse: list[tuple[str, float, float]]  # (metric, A, B) that dropped by more than the tolerance
    answer_a: str
    answer_b: str
    error_b: str | None


@dataclass
class Comparison:
    run_a: dict[str, Any]
    run_b: dict[str, Any]
    deltas: list[Delta]
    worse: list[CaseChange]
    better: int
    only_a: list[str] = field(default_factory=list)
    only_b: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def compare(run_a: dict[str, Any], results_a: list[dict[str, Any]], run_b: dict[str, Any],
            results_b: list[dict[str, Any]], tolerance: float = CASE_TOLERANCE) -> Comparison:
    a_values, b_values = flat(run_a.get("summary") or {}), flat(run_b.get("summary") or {})
    deltas = [Delta(name, a_values[name], b_values[name]) for name in METRICS
              if a_values[name] is not None or b_values[name] is not None]
    by_id = {r["case_id"]: r for r in results_a}
    worse, better = [], 0
    for rb in results_b:
        ra = by_id.get(rb["case_id"])
        if ra is None:
            continue
        dropped, rose = [], False
        for name in SCORES:
            va, vb = ra["metrics"].get(name), rb["metrics"].get(name)
            if va is None or vb is None:
                continue
            if va - vb > tolerance + EPSILON:
                dropped.append((name, va, vb))
            elif vb - va > tolerance + EPSILON:
                rose = True
        if dropped:
            worse.append(CaseChange(rb["case_id"], rb["question"], dropped, ra["answer"], rb["answer"],
                                    rb["error"]))
        elif rose:
            better += 1
    ids_b = {r["case_id"] for r in results_b}
    notes = []
    if run_a["dataset_sha256"] != run_b["dataset_sha256"]:
        names = [f"{r['dataset_name']} {r['dataset_sha256'][:8]}" for r in (run_a, run_b)]
        notes.append(f"The runs used different datasets ({', '.join(names)}): only cases with the same id "
                     "are compared one to one.")
    for run in (run_a, run_b):
        if run["status"] != "complete":
            notes.append(f"Run {run['id']} is {run['status']}: its figures cover the cases it finished.")
    return Comparison(run_a, run_b, deltas, worse, better,
                      only_a=[r["case_id"] for r in results_a if r["case_id"] not in ids_b],
                      only_b=[r["case_id"] for r in results_b if r["case_id"] not in by_id], notes=notes)


# gates -----------------------------------------------------------------------------------------

def parse_limits(specs: tuple[str, ...] | list[str], option: str) -> dict[str, float]:
    """`0.8`, `80%`, `rouge_l=0.3`, `total_p95_ms=20%` -> {metric or "*": fraction}."""
    limits: dict[str, float] = {}
    for spec in specs:
        name, _, value = spec.rpartition("=")
        name = name.strip() or "*"
        match = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*(%?)\s*", value)
        if match is None:
            raise ConfigError(f"{option} {spec!r} is not a number.",
                              hint=f"Write {option} 0.8, {option} 80% or {option} METRIC=VALUE.")
        number = float(match[1]) / (100 if match[2] else 1)
        if name != "*" and name not in METRICS:
            raise ConfigError(f"{option} names an unknown metric {name!r}.",
                              hint=f"Known metrics: {', '.join(METRICS)}.")
        limits[name] = number
    return limits


def below(summary: dict[str, Any], fail_under: dict[str, float]) -> list[str]:
    """Why the run fails `--fail-under` (a bare number is the pass rate); [] when it passes."""
    values = flat(summary)
    failures = []
    for name, minimum in fail_under.items():
        metric = "passed" if name == "*" else name
        value, label = values[metric], METRICS[metric].label
        if value is None:
            failures.append(f"{label} ({metric}) was not measured in this run, "
                            f"so it cannot reach {minimum:g}.")
        elif METRICS[metric].higher_is_better and value < minimum - EPSILON:
            failures.append(f"{label} ({metric}) is {value:.3f}, under {minimum:g}.")
        elif not METRICS[metric].higher_is_better and value > minimum + EPSILON:
            failures.append(f"{label} ({metric}) is {value:.3f}, over the limit {minimum:g}.")
    return failures


def regressions(comparison: Comparison, max_regression: dict[str, float]) -> list[str]:
    """Why B regressed past `--max-regression` against A; a bare number applies to every score
    (points, 0.05 = 5 points); a metric's own limit to it (latency, tokens, cost: relative)."""
    failures = []
    for delta in comparison.deltas:
        metric = METRICS[delta.metric]
        limit = max_regression.get(delta.metric, max_regression.get("*") if metric.score else None)
        if limit is None or delta.change is None:
            continue
        if delta.regression > limit + EPSILON:
            amount = f"{delta.regression:.3f}" if metric.score else f"{delta.regression:.0%}"
            failures.append(f"{metric.label} ({delta.metric}) regressed by {amount} "
                            f"({_fmt(delta.a)} -> {_fmt(delta.b)}), more than {limit:g}.")
    return failures


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}" if abs(value) < 10 else f"{value:,.0f}"
