"""A run (and its comparison with a baseline) as Markdown, with a plot drawn in characters."""

from __future__ import annotations

import re
from typing import Any

from engine.evals.compare import Comparison
from engine.evals.metrics import METRICS, SCORES, TOTALS, flat

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def fmt(name: str, value: float | None) -> str:
    if value is None:
        return "-"
    if name == "cost_usd":
        return f"{value:.4f}"
    if METRICS[name].score or name == "error_rate":
        return f"{value:.3f}"
    return f"{value:,.1f}"


def fmt_change(name: str, change: float | None) -> str:
    if change is None:
        return "-"
    return f"{change:+.3f}" if METRICS[name].score else f"{change:+.0%}"


def score_plot(summary: dict[str, Any], baseline: dict[str, Any] | None = None, width: int = 72,
               labels: tuple[str, str] = ("baseline", "this run")) -> str:
    """The mean of each measured score as a bar; with a baseline, each score's change instead.
    Plain text: no colours, so it reads the same in a Markdown file, the CLI and the TUI."""
    import plotext as plt

    values = flat(summary)
    base = flat(baseline) if baseline is not None else None
    names = [n for n in SCORES if values[n] is not None and (base is None or base[n] is not None)]
    if not names:
        return ""
    plt.clf()
    plt.theme("clear")
    plt.plotsize(width, len(names) + 4)  # one row per bar
    if base is not None:
        plt.bar(names, [values[n] - base[n] for n in names], orientation="horizontal", width=0.1)  # type: ignore[operator]
        plt.xlim(-1, 1)
        plt.title(f"Change in each score, {labels[0]} to {labels[1]}")
    else:
        plt.bar(names, [values[n] for n in names], orientation="horizontal", width=0.1)
        plt.xlim(0, 1)
        plt.title("Mean of each score (higher is better)")
    return ANSI.sub("", plt.build())


def run_heading(run: dict[str, Any]) -> str:
    judge = f", judge {run['judge']} (rubric {run['rubric_version']})" if run.get("judge") else ""
    return (f"run {run['id']} · {run['dataset_name']} ({run['cases']} cases × {run['repeats']}) · "
            f"{run['model']} on {run['backend']} · template {run['template']} {run['template_version']}"
            f"{judge} · {run['status']} · {run['started_at'][:16].replace('T', ' ')}")


def markdown(run: dict[str, Any], results: list[dict[str, Any]], comparison: Comparison | None = None,
             width: int = 72) -> str:
    summary = run.get("summary") or {}
    values = flat(summary)
    config = run.get("config") or {}
    folders = ", ".join(config.get("folders") or []) or "no folder"
    judge = f"{run['judge']}, rubric {run['rubric_version']}" if run.get("judge") else "none"
    lines = [f"# Eval report: run {run['id']} ({run['dataset_name']})", ""]
    if run.get("baselines"):
        lines += [f"Baseline: {', '.join(run['baselines'])}.", ""]
    lines += [
        "| | |", "|---|---|",
        f"| dataset | `{run['dataset']}` (sha256 {run['dataset_sha256'][:12]}) |",
        f"| cases | {summary.get('cases', 0)} of {run['cases']}, {run['repeats']} answer(s) each |",
        f"| model | {run['model']} ({run['backend']}) |",
        f"| prompt template | {run['template']} {run['template_version']} "
        f"(sources {config.get('sources_template_version', '-')}) |",
        f"| sampling | temperature {config.get('temperature')}, seed {config.get('seed')}, "
        f"max_tokens {config.get('max_tokens')} |",
        f"| retrieval | top {config.get('rag_top_k')} from {folders} |",
        f"| judge | {judge} |",
        f"| status | {run['status']}, {summary.get('duration_s', 0):.1f} s, "
        f"started {run['started_at'][:19]} UTC |",
        "",
    ]
    baseline = comparison.run_a if comparison else None
    lines += ["## Metrics", ""]
    if comparison:
        lines += [f"Compared with run {baseline['id']} ({baseline['dataset_name']}, {baseline['model']}, "  # type: ignore[index]
                  f"template {baseline['template_version']}).", "",  # type: ignore[index]
                  "| metric | baseline | this run | change | cases |", "|---|---:|---:|---:|---:|"]
        deltas = {d.metric: d for d in comparison.deltas}
        for name in METRICS:
            if name in deltas:
                d = deltas[name]
                mark = " ▼" if d.regression > 1e-9 else " ▲" if d.improvement > 1e-9 else ""
                lines.append(f"| {METRICS[name].label} | {fmt(name, d.a)} | {fmt(name, d.b)} | "
                             f"{fmt_change(name, d.change)}{mark} | {_n(summary, name)} |")
    else:
        lines += ["| metric | value | cases |", "|---|---:|---:|"]
        for name in METRICS:
            if values[name] is not None:
                lines.append(f"| {METRICS[name].label} | {fmt(name, values[name])} | {_n(summary, name)} |")
    plot = score_plot(summary, baseline.get("summary") if baseline else None, width,
                      (f"run {baseline['id']}", f"run {run['id']}") if baseline else ("", ""))
    if plot:
        lines += ["", "```text", plot.rstrip(), "```"]
    if comparison:
        lines += ["", "## Cases that got worse", ""]
        if not comparison.worse:
            lines.append("None.")
        for change in comparison.worse:
            drops = ", ".join(f"{m} {a:.2f} → {b:.2f}" for m, a, b in change.worse)
            lines += [f"- **{change.case_id}**: {_one_line(change.question)} ({drops})",
                      f"  - before: {_one_line(change.answer_a, 200)}",
                      f"  - after: {_one_line(change.answer_b, 200)}"
                      + (f" (error: {change.error_b})" if change.error_b else "")]
        lines += ["", f"{comparison.better} case(s) got better."]
        for note in comparison.notes:
            lines += ["", f"> {note}"]
    columns = _case_columns(results)
    lines += ["", "## Cases", "", "| case | passed | " + " | ".join(columns) + " | latency ms |",
              "|---|---|" + "---:|" * (len(columns) + 1)]
    for r in results:
        cells = [fmt(n, r["metrics"].get(n)) for n in columns]
        status = "yes" if r["passed"] else ("error" if r["status"] == "error" else "no")
        latency = "-" if r["total_ms"] is None else f"{r['total_ms']:,.0f}"
        lines.append(f"| {r['case_id']} | {status} | " + " | ".join(cells) + f" | {latency} |")
    failing = [r for r in results if not r["passed"]]
    if failing:
        lines += ["", "## Failed cases", ""]
        for r in failing:
            why = r["error"] or "; ".join(r["details"].get("problems", [])) or "failed"
            lines += [f"- **{r['case_id']}**: {_one_line(r['question'])}", f"  - why: {_one_line(why, 300)}",
                      f"  - answer: {_one_line(r['answer'], 300)}"]
    return "\n".join(lines) + "\n"


def _case_columns(results: list[dict[str, Any]]) -> list[str]:
    return [n for n in SCORES if n != "passed" and any(r["metrics"].get(n) is not None for r in results)]


def _n(summary: dict[str, Any], name: str) -> str:
    if name in TOTALS:
        return str(summary.get("answers" if name == "cost_usd" else "cases", ""))
    return str(summary.get("metrics", {}).get(name, {}).get("n", ""))


def _one_line(text: str, limit: int = 120) -> str:
    line = " ".join((text or "").split()).replace("|", "\\|")
    return line if len(line) <= limit else line[: limit - 1] + "…"
