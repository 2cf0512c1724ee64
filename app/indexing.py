"""`assistant index` and `assistant folders`: progress bars and tables for the terminal."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from engine import Settings
from engine.knowledge import open_knowledge

MAX_SKIPS_SHOWN = 10


def index_command(settings: Settings, folder: Path | None, *, watch: bool, rebuild: bool,
                  as_json: bool) -> None:
    knowledge = open_knowledge(settings)
    console = Console(stderr=True)
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[speed]}"), TimeRemainingColumn(), console=console,
        disable=as_json, transient=True,
    ) as bar:
        task = bar.add_task("scanning", total=None, speed="")

        def show(progress: Any) -> None:
            if progress.waiting_for:
                bar.update(task, description=f"waiting for {progress.waiting_for}")
                return
            bar.update(
                task, total=progress.files_total or None, completed=progress.files_done,
                description=f"indexing {Path(progress.folder).name}",
                speed=f"{progress.files_per_s:.0f} files/s · {progress.chunks_per_s:.0f} chunks/s",
            )

        if rebuild:
            done = knowledge.rebuild(show)
            click.echo(json.dumps({"rebuilt_chunks": done}) if as_json
                       else f"Rebuilt the vector store: {_counted(done, 'chunk')} embedded.")
        if folder is None:
            return
        if watch:
            stop = threading.Event()
            try:
                knowledge.watch(folder, lambda s: _report(s, as_json, watching=True), show, stop)
            finally:
                stop.set()
        else:
            _report(knowledge.index(folder, show), as_json)


def _report(summary: Any, as_json: bool, watching: bool = False) -> None:
    if as_json:
        click.echo(json.dumps(summary.as_dict()))
        return
    rate = summary.indexed / summary.seconds if summary.seconds else 0
    chunk_rate = summary.chunks_added / summary.seconds if summary.seconds else 0
    click.echo(
        f"Indexed {summary.folder} in {summary.seconds:.1f} s: {_counted(summary.files, 'file')} "
        f"({summary.indexed} new or changed, {summary.unchanged} unchanged"
        + (f", {summary.renamed} renamed" if summary.renamed else "")
        + (f", {summary.removed} removed" if summary.removed else "")
        + f"), {_counted(summary.chunks_added, 'chunk')} added, {summary.chunks_removed} removed; "
        f"{summary.skipped} skipped, {summary.failed} failed. "
        f"{rate:.0f} files/s, {chunk_rate:.0f} chunks/s."
    )
    if summary.resumed_chunks:
        click.echo(f"Resumed an interrupted run: {_counted(summary.resumed_chunks, 'chunk')} embedded again.")
    for path, reason in summary.skips[:MAX_SKIPS_SHOWN]:
        click.echo(f"  skipped {path}: {reason}")
    if len(summary.skips) > MAX_SKIPS_SHOWN:
        click.echo(f"  … and {len(summary.skips) - MAX_SKIPS_SHOWN} more: `assistant folders --skipped`")
    if watching:
        click.echo("Watching for changes (Ctrl-C stops)…")


def _counted(n: int, word: str) -> str:
    from app.cli import counted  # here: app.cli imports this module

    return counted(n, word)


def folders_command(settings: Settings, *, skipped: bool, as_json: bool) -> None:
    knowledge = open_knowledge(settings)
    rows = knowledge.folders()
    if skipped or as_json:
        for row in rows:
            row["skipped_files"] = knowledge.corpus.skipped_files(row["id"])
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("No folders indexed yet. Add one with `assistant index FOLDER`.")
        return
    from app.tables import print_table, text

    table = Table("folder", "files", "chunks", "last indexed", "skipped", "failed", "watching", "private")
    for row in rows:
        last = (row["last_indexed_at"] or "never")[:16].replace("T", " ")
        table.add_row(text(row["path"]), str(row["files"]), str(row["chunks"]), last, str(row["skipped"]),
                      str(row["failed"]), "yes" if row["watch"] else "", "yes" if row["private"] else "")
    print_table(table, Console())  # whole paths: at 80 columns ~/notes and ~/notes2 were both "~/no…"
    if skipped:
        for row in rows:
            for item in row["skipped_files"]:
                click.echo(f"{row['path']}/{item['path']}: {item['state']}, {item['reason']}")
