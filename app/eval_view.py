"""Eval runs as rich tables: for `assistant eval` and the Evals screen."""

from __future__ import annotations

from typing import Any

from rich import box
from rich.table import Table
from rich.text import Text

from engine import (
    EVAL_METRICS,
    EVAL_SCORES,
    EvalComparison,
    flat_metrics,
    format_metric,
    format_metric_change,
)


def runs_table(runs: list[dict[str, Any]]) -> Table:
    table = Table("run", "when", "dataset", "cases", "model", "template", "pass rate", "ROUGE-L", "hit",
                  "p95 ms", "status", "baseline", title="Eval runs")
    for run in runs:
        values = flat_metrics(run.get("summary") or {})
        table.add_row(str(run["id"]), run["started_at"][:16].replace("T", " "), run["dataset_name"],
                      f"{(run.get('summary') or {}).get('cases', 0)}/{run['cases']}", run["model"],
                      f"{run['template']} {run['template_version'][:8]}",
                      format_metric("passed", values["passed"]), format_metric("rouge_l", values["rouge_l"]),
                      format_metric("hit", values["hit"]),
                      format_metric("total_p95_ms", values["total_p95_ms"]),
                      run["status"], ", ".join(run["baselines"]))
    return table


def summary_table(run: dict[str, Any]) -> Table:
    summary = run.get("summary") or {}
    values = flat_metrics(summary)
    title = (f"Run {run['id']}: {run['dataset_name']} · {run['model']} · "
             f"template {run['template']} {run['template_version'][:8]}")
    table = Table("metric", "value", "cases", title=title)
    for name, metric in EVAL_METRICS.items():
        if values[name] is not None:
            count = summary.get("metrics", {}).get(name, {}).get("n", "")
            table.add_row(metric.label, format_metric(name, values[name]), str(count))
    return table


def compare_table(comparison: EvalComparison) -> Table:
    a, b = comparison.run_a, comparison.run_b
    table = Table("metric", f"run {a['id']}", f"run {b['id']}", "change",
                  title=f"Run {a['id']} → run {b['id']}")
    for delta in comparison.deltas:
        style = "red" if delta.regression > 1e-9 else "green" if delta.improvement > 1e-9 else ""
        table.add_row(EVAL_METRICS[delta.metric].label, format_metric(delta.metric, delta.a),
                      format_metric(delta.metric, delta.b),
                      Text(format_metric_change(delta.metric, delta.change), style=style))
    return table


def worse_table(comparison: EvalComparison) -> Table:
    table = Table("case", "question", "dropped", "answer before → after",
                  title=f"{len(comparison.worse)} case{'' if len(comparison.worse) == 1 else 's'} got worse, "
                        f"{comparison.better} better")
    for change in comparison.worse:
        drops = ", ".join(f"{m} {x:.2f}→{y:.2f}" for m, x, y in change.worse)
        after = change.answer_b if not change.error_b else f"(error) {change.error_b}"
        table.add_row(change.case_id, _short(change.question, 50), drops,
                      f"{_short(change.answer_a, 60)}\n→ {_short(after, 60)}")
    return table


SHORT = {"exact": "exact", "contains": "cont.", "rouge_l": "R-L", "cosine": "cos", "hit": "hit",
         "mrr": "MRR", "recall": "recall", "citation_valid": "cit.ok", "citation_correct": "cit.exp",
         "groundedness": "ground.", "format_valid": "format", "judge": "judge", "consistency": "same"}


def cases_table(results: list[dict[str, Any]]) -> Table:
    columns = [n for n in EVAL_SCORES
               if n != "passed" and any(r["metrics"].get(n) is not None for r in results)]
    table = Table("case", "pass", *(SHORT[n] for n in columns), "ms", title="Cases", box=box.SIMPLE_HEAD,
                  caption=", ".join(f"{SHORT[n]}: {EVAL_METRICS[n].label}" for n in columns))
    for r in results:
        passed = Text("yes", style="green") if r["passed"] else Text(
            "error" if r["status"] == "error" else "no", style="red")
        values = (_two(r["metrics"].get(n)) for n in columns)
        table.add_row(Text(r["case_id"], no_wrap=True, overflow="ellipsis"), passed, *values,
                      "-" if r["total_ms"] is None else f"{r['total_ms']:,.0f}")
    return table


def _two(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _short(text: str | None, limit: int) -> str:
    line = " ".join((text or "").split())
    return line if len(line) <= limit else line[: limit - 1] + "…"
