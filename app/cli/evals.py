"""`assistant eval`: run a dataset through the engine, compare runs, gate CI on the results."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import click

from app.cli.common import counted, get_settings, with_engine
from engine import AssistantError

# The evals (engine.evals) are imported by each command, not here: `assistant` starts without it.

FAIL_UNDER_HELP = ("Exit 1 when a metric of the run is under this: 0.8 (the pass rate), 80%, or METRIC=MIN "
                   "(rouge_l=0.3). Repeatable.")
MAX_REGRESSION_HELP = ("Exit 1 when a metric regressed past this against the baseline: 0.05 (every score may "
                       "drop 5 points), or METRIC=MAX (total_p95_ms=20% for latency). Repeatable.")


class _RunByDefault(click.Group):
    """`assistant eval DATASET.jsonl` is `assistant eval run DATASET.jsonl`."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    console = Console(stderr=stderr)
    if not console.is_terminal:
        console.width = 160  # piped or captured: tables of many metrics would be cut to 80 columns
    return console


def _history() -> Any:
    from engine import EvalHistory

    try:
        return EvalHistory()
    except AssistantError as exc:
        raise click.ClickException(str(exc)) from exc


@click.group("eval", cls=_RunByDefault, invoke_without_command=True)
@click.pass_context
def eval_group(ctx: click.Context) -> None:
    """Measure answer quality, latency and cost on a dataset, and catch regressions.

    \b
    assistant eval docs/evals/sample.jsonl                 # run (same as `eval run`)
    assistant eval data.jsonl --template mine --baseline main --max-regression 0.05
    assistant eval compare main latest --fail-under 0.8    # exits 1 on a regression: for CI
    assistant eval report latest --against main -o report.md
    assistant eval from-review cases.jsonl                 # thumbs-down and reviewed answers
    """
    if ctx.invoked_subcommand is None:
        click.echo(ctx.get_help())


@eval_group.command("run")
@click.argument("dataset", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--model", "-m", help="GGUF file path, or a model name in models_dir.")
@click.option("--backend", "-b", help="Answer with this backend (default: the configured route).")
@click.option("--template", help="System prompt template: a name (`assistant prompts`) or a .md file.")
@click.option("--folder", "folders", multiple=True, type=click.Path(file_okay=False, path_type=Path),
              help="Index this folder and answer over it (besides the dataset's own). Repeatable.")
@click.option("--repeats", type=click.IntRange(1), help="Answers per case; 2+ measures consistency "
              "(default: the dataset's, else 1).")
@click.option("--max-tokens", type=click.IntRange(1), help="Longest answer in tokens.")
@click.option("--temperature", "-t", type=click.FloatRange(0), default=0.0, show_default=True,
              help="Sampling temperature.")
@click.option("--judge", help="LLM-as-judge: a backend name or a GGUF file "
              "(default: the eval_judge setting).")
@click.option("--rubric", help="The judge's rubric: a template name or a .md file (default: judge).")
@click.option("--limit", type=click.IntRange(1), help="Only the first N cases.")
@click.option("--baseline", help="Compare with the baseline of this name; with none yet, "
              "this run becomes it.")
@click.option("--fail-under", multiple=True, help=FAIL_UNDER_HELP)
@click.option("--max-regression", multiple=True, help=MAX_REGRESSION_HELP)
@click.option("--report", "report_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the Markdown report here.")
@click.option("--json", "as_json", is_flag=True, help="Print the run's summary as JSON.")
@click.pass_context
def run_command(ctx: click.Context, dataset: Path, model: str | None, backend: str | None,
                template: str | None, folders: tuple[Path, ...], repeats: int | None, max_tokens: int | None,
                temperature: float, judge: str | None, rubric: str | None, limit: int | None,
                baseline: str | None, fail_under: tuple[str, ...], max_regression: tuple[str, ...],
                report_file: Path | None, as_json: bool) -> None:
    """Run every case of DATASET (JSON Lines) through the engine and record the run."""
    from engine import EvalOptions, eval_regressions, load_dataset, parse_eval_limits, scores_below
    root = ctx.find_root().obj or {}
    try:
        gates = (parse_eval_limits(fail_under, "--fail-under"),
                 parse_eval_limits(max_regression, "--max-regression"))
        data = load_dataset(dataset)
        settings = get_settings()
    except AssistantError as exc:
        raise click.ClickException(str(exc)) from exc
    options = EvalOptions(model=model or root.get("model"), backend=backend, template=template,
                          folders=folders, repeats=repeats, max_tokens=max_tokens, temperature=temperature,
                          judge=judge, rubric=rubric, limit=limit)
    try:
        outcome = _run_with_progress(settings, data, options)
    except AssistantError as exc:
        raise click.ClickException(str(exc)) from exc
    except KeyboardInterrupt:
        click.echo("\nStopped: a run already started is recorded as cancelled, with the cases it finished.",
                   err=True)
        sys.exit(130)
    from app.eval_view import compare_table, summary_table, worse_table

    with _history() as history:
        run = history.run(outcome.run_id)
        comparison = None
        if baseline:
            base_id = history.baseline(baseline)
            if base_id is None:
                history.set_baseline(baseline, run["id"])
                run = history.run(run["id"])
                click.echo(f"There was no baseline {baseline!r}: run {run['id']} is it now.", err=True)
            elif base_id != run["id"]:
                comparison = history.compare(base_id, run["id"])
        if report_file:
            _write(report_file, history.report(run["id"], comparison.run_a["id"] if comparison else None))
    failures = scores_below(run["summary"], gates[0])
    if comparison is not None:
        failures += eval_regressions(comparison, gates[1])
    elif gates[1]:
        click.echo("Note: --max-regression needs a baseline to compare with (--baseline NAME).", err=True)
    if as_json:
        click.echo(json.dumps({"run": run, "failures": failures}, indent=2))
    else:
        console = _console()
        console.print(summary_table(run))
        if comparison is not None:
            console.print(compare_table(comparison))
            if comparison.worse:
                console.print(worse_table(comparison))
        click.echo(f"Run {run['id']} recorded: `assistant eval show {run['id']}` for each case, "
                   f"`assistant eval report {run['id']}` for a Markdown report.")
    _exit_on(failures)


def _run_with_progress(settings: Any, data: Any, options: Any) -> Any:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.progress import Progress as Bar

    from engine import run_eval

    console = _console(stderr=True)
    if not console.is_terminal:
        # Piped or in CI: a live bar draws nothing there, so the run looked stuck until its end.
        return asyncio.run(run_eval(settings, data, options, _progress_lines()))
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[note]}"), TimeElapsedColumn(), TimeRemainingColumn())
    with Bar(*columns, console=console, transient=True) as bar:
        task = bar.add_task("starting", total=None, note="")

        def show(p: Any) -> None:
            if p.phase != "answering":
                bar.update(task, description=p.phase, completed=p.done, total=p.total or None, note="")
                return
            note = f"{p.failed} failed" + (f", {p.errors} errors" if p.errors else "")
            bar.update(task, description=f"case {p.case_id}", completed=p.done, total=p.total, note=note)

        return asyncio.run(run_eval(settings, data, options, show))


def _progress_lines() -> Any:
    """Progress as lines on stderr: each phase once, then one line per case as it finishes."""
    seen = {"phase": "", "done": 0, "failed": 0, "errors": 0}

    def show(p: Any) -> None:
        if p.phase != "answering":
            if p.phase != seen["phase"]:
                seen["phase"] = p.phase
                click.echo(f"{p.phase}…", err=True)
            return
        if p.done > seen["done"]:
            outcome = ("error" if p.errors > seen["errors"] else "failed" if p.failed > seen["failed"]
                       else "passed")
            seen.update(done=p.done, failed=p.failed, errors=p.errors)
            click.echo(f"[{p.done}/{p.total}] {p.case_id}: {outcome}", err=True)

    return show


@eval_group.command("compare")
@click.argument("run_a")
@click.argument("run_b", default="latest")
@click.option("--fail-under", multiple=True, help=FAIL_UNDER_HELP.replace("the run", "RUN_B"))
@click.option("--max-regression", multiple=True, help=MAX_REGRESSION_HELP.replace("the baseline", "RUN_A"))
@click.option("--tolerance", type=click.FloatRange(0, 1), default=0.1, show_default=True,
              help="A case got worse when a score dropped by more than this.")
@click.option("--report", "report_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the Markdown report (RUN_B against RUN_A) here.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def compare_command(run_a: str, run_b: str, fail_under: tuple[str, ...], max_regression: tuple[str, ...],
                    tolerance: float, report_file: Path | None, as_json: bool) -> None:
    """Per-metric deltas from RUN_A to RUN_B and the cases that got worse.

    A run is an id, `latest`, `previous`, or a baseline's name. Exits 1 when a --fail-under or
    --max-regression gate fails.
    """
    from app.eval_view import compare_table, worse_table
    from engine import eval_regressions, parse_eval_limits, scores_below

    with _history() as history:
        try:
            gates = (parse_eval_limits(fail_under, "--fail-under"),
                     parse_eval_limits(max_regression, "--max-regression"))
            comparison = history.compare(run_a, run_b, tolerance)
            if report_file:
                _write(report_file, history.report(comparison.run_b["id"], comparison.run_a["id"]))
        except AssistantError as exc:
            raise click.ClickException(str(exc)) from exc
    failures = scores_below(comparison.run_b["summary"] or {}, gates[0])
    failures += eval_regressions(comparison, gates[1])
    if as_json:
        click.echo(json.dumps({
            "run_a": comparison.run_a["id"], "run_b": comparison.run_b["id"],
            "deltas": [{"metric": d.metric, "a": d.a, "b": d.b, "change": d.change,
                        "regression": d.regression} for d in comparison.deltas],
            "worse": [{"case_id": c.case_id, "question": c.question, "dropped": c.worse,
                       "answer_a": c.answer_a, "answer_b": c.answer_b, "error_b": c.error_b}
                      for c in comparison.worse],
            "better": comparison.better, "only_a": comparison.only_a, "only_b": comparison.only_b,
            "notes": comparison.notes, "failures": failures,
        }, indent=2))
    else:
        console = _console()
        console.print(compare_table(comparison))
        console.print(worse_table(comparison))
        for note in comparison.notes:
            click.echo(f"Note: {note}")
    _exit_on(failures)


def _exit_on(failures: list[str]) -> None:
    for failure in failures:
        click.secho(f"FAIL: {failure}", fg="red", err=True)
    if failures:
        sys.exit(1)


@eval_group.command("runs")
@click.option("--limit", "-n", default=20, show_default=True, help="How many runs.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def runs_command(limit: int, as_json: bool) -> None:
    """Recorded runs, newest first, with their baselines."""
    from app.eval_view import runs_table

    with _history() as history:
        rows = history.runs(limit)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    elif not rows:
        click.echo("No eval runs yet. Try `assistant eval docs/evals/sample.jsonl`.")
    else:
        _console().print(runs_table(rows))


@eval_group.command("show")
@click.argument("run", default="latest")
@click.option("--json", "as_json", is_flag=True, help="Print the run and every case as JSON.")
def show_command(run: str, as_json: bool) -> None:
    """One run: its metrics and every case (RUN: an id, `latest`, or a baseline's name)."""
    from app.eval_view import cases_table, summary_table

    with _history() as history:
        try:
            row = history.run(run)
            results = history.results(row["id"])
        except AssistantError as exc:
            raise click.ClickException(str(exc)) from exc
    if as_json:
        click.echo(json.dumps({"run": row, "results": results}, indent=2))
        return
    console = _console()
    console.print(summary_table(row))
    console.print(cases_table(results))
    for r in results:
        if not r["passed"]:
            why = r["error"] or "; ".join(r["details"].get("problems", [])) or "failed"
            click.echo(f"{r['case_id']}: {why}\n    answer: {' '.join(r['answer'].split())[:200]}")


@eval_group.command("report")
@click.argument("run", default="latest")
@click.option("--against", help="Compare with this run or baseline.")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), help="Write to this file.")
def report_command(run: str, against: str | None, output: Path | None) -> None:
    """A run as a Markdown report with a plot (and its comparison --against another)."""
    with _history() as history:
        try:
            text = history.report(run, against)
        except AssistantError as exc:
            raise click.ClickException(str(exc)) from exc
    if output:
        _write(output, text)
        click.echo(f"Wrote the report to {output}.")
    else:
        click.echo(text, nl=False)


@eval_group.command("baseline")
@click.argument("name")
@click.argument("run", default="latest")
def baseline_command(name: str, run: str) -> None:
    """Name RUN (default: latest) as the baseline NAME, for `--baseline NAME` and `compare NAME ...`."""
    with _history() as history:
        try:
            run_id = history.set_baseline(name, run)
        except AssistantError as exc:
            raise click.ClickException(str(exc)) from exc
    click.echo(f"Baseline {name!r} is run {run_id}.")


@eval_group.command("delete")
@click.argument("run")
def delete_command(run: str) -> None:
    """Delete a recorded run and its results."""
    with _history() as history:
        try:
            run_id = history.delete(run)
        except AssistantError as exc:
            raise click.ClickException(str(exc)) from exc
    click.echo(f"Deleted run {run_id}.")


@eval_group.command("from-review")
@click.argument("output", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--reviewed-only", is_flag=True,
              help="Only answers reviewed in the queue (not every thumbs-down).")
@click.option("--append", is_flag=True, help="Add to OUTPUT, skipping cases already in it.")
def from_review_command(output: Path, reviewed_only: bool, append: bool) -> None:
    """Turn thumbs-down and reviewed answers into eval cases (JSON Lines) in OUTPUT.

    A reviewer's better answer becomes the reference; the conversation before the question comes
    along as history. Then: `assistant eval OUTPUT`.
    """
    from engine import load_dataset

    cases = with_engine(lambda e: e.history.review_cases(reviewed_only))
    if not append and output.exists():
        raise click.ClickException(f"{output} already exists. Add --append to add the new cases to it.")
    known: set[str] = set()
    if append and output.exists():
        try:
            known = {c.id for c in load_dataset(output).cases}
        except AssistantError as exc:
            raise click.ClickException(str(exc)) from exc
    new = [c for c in cases if c["id"] not in known]
    lines = "".join(json.dumps(c, ensure_ascii=False) + "\n" for c in new)
    try:
        with output.open("a" if append else "w", encoding="utf-8") as fh:
            fh.write(lines)
    except OSError as exc:
        raise click.ClickException(f"Cannot write {output}: {exc.strerror}.") from exc
    skipped = len(cases) - len(new)
    there = f" ({skipped} already there)" if skipped else ""
    click.echo(f"Wrote {counted(len(new), 'case')} to {output}{there}.")
    if not cases:
        click.echo("Nothing to turn into cases yet: rate answers down (Ctrl+B, `assistant feedback ID down`) "
                   "or review them (`assistant review`).")


def _write(path: Path, text: str) -> None:
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise click.ClickException(f"Cannot write {path}: {exc.strerror}.") from exc


COMMANDS = [eval_group]
