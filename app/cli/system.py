"""The installation and its parts: doctor, backends, stats, prompts, plugins."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from app.cli.common import console, get_settings, run, with_engine
from engine import AssistantError, Engine


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def doctor(ctx: click.Context, as_json: bool) -> None:
    """Check the installation: versions, llama.cpp build and GPU offload, model file, paths, database."""
    from engine import diagnose

    checks = diagnose(get_settings(model=ctx.obj["model"]))
    if as_json:
        click.echo(json.dumps([c.__dict__ for c in checks], indent=2))
    else:
        section = None
        for check in checks:
            if check.section != section:
                section = check.section
                click.secho(f"\n{section}", bold=True)
            mark = (click.style("FAIL", fg="red") if not check.ok else
                    click.style("WARN", fg="yellow") if check.warn else click.style("ok  ", fg="green"))
            click.echo(f"  {mark} {check.name:<16} {check.value}")
            if check.hint:
                click.echo(f"       {'':<16} {check.hint}")
    if not all(c.ok for c in checks):
        sys.exit(1)


@click.command()
@click.option("--check", is_flag=True, help="Also check that each backend answers now.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def backends(check: bool, as_json: bool) -> None:
    """List backends: the local model and configured providers, route order, circuit breakers."""
    from rich.console import Console
    from rich.table import Table

    from engine import price_table_version

    async def report() -> tuple[list[dict[str, Any]], dict[str, Any]]:
        engine = Engine(get_settings())
        try:
            return await engine.backends_report(check), await engine.router.spending()
        finally:
            await engine.close()

    rows, spending = run(report())
    settings = get_settings()
    if as_json:
        click.echo(json.dumps({"backends": rows, "allow_cloud": settings.allow_cloud,
                               "price_table": price_table_version(),
                               "spending": {k: {"spent": v[0], "limit": v[1]} for k, v in spending.items()}},
                              indent=2))
        return
    from app.tables import WRAP, print_table, text

    table = Table("backend", "kind", "model", "endpoint", "route", "breaker", "USD/Mtok in/out",
                  *(["health"] if check else []))
    for name in ("breaker", "health"):  # sentences, free to wrap; names, paths and prices stay whole
        for column in table.columns:
            if column.header == name:
                column.overflow = WRAP
    for row in rows:
        breaker = row["breaker"]
        if row["failures"]:
            breaker += f" ({row['failures']} failed" + (f", retry in {row['retry_in_s']:.0f} s)"
                                                        if row["breaker"] == "open" else ")")
        price = row["usd_per_mtok"]
        table.add_row(row["name"], row["kind"], row["model"], row["endpoint"],
                      str(row["route"] or "-"), breaker,
                      "unknown" if price is None else f"{price['input']:g} / {price['output']:g}",
                      *([text(row["health"])] if check else []))
    print_table(table, Console())
    cloud = "allowed" if settings.allow_cloud else "off (set allow_cloud = true to use remote backends)"
    click.echo(f"Cloud: {cloud}.")
    overridden = f"; your [prices] for {', '.join(settings.prices)}" if settings.prices else ""
    click.echo(f"Prices: the table of {price_table_version()}{overridden}.")
    for period, (spent, limit) in spending.items():
        click.echo(f"Budget this {period}: {spent:.2f} of {limit:.2f} USD.")
    for row in rows:
        if row["last_error"] and row["breaker"] != "closed":
            click.echo(f"{row['name']}: last error: {row['last_error']}")


@click.command()
@click.option("--since", help="Only answers since: 30m, 24h, 7d, 2w, or a date (2026-11-01).")
@click.option("--by", type=click.Choice(["model", "backend", "template", "folder", "feature"]),
              help="One row per model, backend, prompt template, indexed folder, or feature (chat / rag).")
@click.option("--plots/--no-plots", default=True, show_default=True, help="Draw the plots.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (no plots).")
def stats(since: str | None, by: str | None, plots: bool, as_json: bool) -> None:
    """Answers, latency percentiles, speed, tokens and cost per day, thumbs, errors; and alerts.

    \b
    assistant stats --since 7d
    assistant stats --by model --no-plots
    assistant stats --json | jq .overall.ttft_ms
    """
    from engine import stats_plots

    async def read(engine: Engine) -> tuple[dict[str, Any], list[Any]]:
        return await engine.history.stats(since, by), await engine.history.alerts()

    result, found = with_engine(read)
    result["alerts"] = [a.__dict__ for a in found]
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    from app.stats_view import stats_tables
    from app.tables import print_table

    out = console()
    for table in stats_tables(result):
        print_table(table, out)
    if plots:
        for _title, text in stats_plots(result, width=min(out.width, 100)):
            click.echo(text)
    for alert in found:
        click.secho(f"⚠ {alert.message}", fg="yellow")


@click.command()
@click.argument("action", type=click.Choice(["list", "show", "diff"]), default="list")
@click.argument("name", required=False)
@click.argument("other", required=False)
def prompts(action: str, name: str | None, other: str | None) -> None:
    """Prompt templates: each with its version (a hash of its text) and where it comes from.

    \b
    assistant prompts                      # every template, version, origin
    assistant prompts show sources         # one template's text
    assistant prompts diff system          # your override against the shipped text
    assistant prompts diff system system-b # two templates
    Override one by writing PROMPTS_FOLDER/NAME.md (the folder is printed by `list`).
    """
    from engine import all_templates, built_in_template, load_template, template_diff, templates_folder

    settings = get_settings()
    try:
        if action == "list":
            import shutil

            width = shutil.get_terminal_size().columns
            for t in all_templates(settings):
                line = f"{t.name:<16} {t.version}  {t.origin:<28} "
                # The first line is a preview, cut to the width; the name, version and origin never are.
                room = max(width - len(line), 20)
                first = t.text.splitlines()[0] if t.text else ""
                click.echo(line + (first if len(first) <= room else first[: room - 1] + "…"))
            click.echo(f"\nYour templates: {templates_folder()}")
            return
        if name is None:
            raise click.UsageError(f"`prompts {action}` needs a template NAME.")
        current = load_template(name, settings)
        if action == "show":
            click.secho(f"{current.name} {current.version} ({current.origin})", bold=True)
            click.echo(current.text)
            return
        base = load_template(other, settings) if other else built_in_template(name)
        if base is None:
            raise click.ClickException(f"{name!r} is not a shipped template; give a second NAME to compare.")
        changes = template_diff(base, current) if other is None else template_diff(current, base)
        click.echo(changes or f"No difference: {name} is the shipped text ({current.version}).")
    except AssistantError as exc:
        raise click.ClickException(str(exc)) from exc


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def plugins(as_json: bool) -> None:
    """Plugins: built-in and installed, what each registers, and the ones that failed."""
    from plugins.manager import describe, get_plugin_manager

    settings = get_settings()
    manager = get_plugin_manager(load_entry_points=settings.plugins)
    rows = describe(manager)
    if as_json:
        click.echo(json.dumps({"plugins": rows, "errors": manager.errors, "third_party": settings.plugins},
                              indent=2))
        return
    import shutil
    import textwrap

    width = max(shutil.get_terminal_size().columns, 40)
    for row in rows:
        click.secho(f"{row['name']}  ({row['source']})", bold=True)
        lines = [(kind, "; ".join(items)) for kind, items in row["registers"].items()]
        others = [h for h in row["hooks"] if not h.startswith("register_")]
        if others:
            lines.append(("observes", ", ".join(others)))
        for kind, items in lines:  # long lists (a loader's file types) wrap under themselves, whole
            click.echo(textwrap.fill(items, width, initial_indent=f"  {kind}: ", subsequent_indent="    ",
                                     break_long_words=False, break_on_hyphens=False))
    if not settings.plugins:
        click.echo("\nThird-party plugins are off (--no-plugins, or plugins = false).")
    for error in manager.errors:
        click.secho(f"\n{error} (disabled)", fg="red")


COMMANDS = [doctor, backends, stats, prompts, plugins]
