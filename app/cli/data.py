"""Your data: index and forget folders, list them, back up and restore the database."""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path
from typing import Any

import click

from app.cli.common import counted, get_settings, with_engine
from engine import AssistantError, Settings


@click.command()
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path), required=False)
@click.option("--watch", is_flag=True, help="Stay up and re-index what changes (Ctrl-C stops).")
@click.option("--rebuild", is_flag=True, help="Recreate the vector store from the database.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def index(folder: Path | None, watch: bool, rebuild: bool, as_json: bool) -> None:
    """Index FOLDER for answers with citations; again later, only what changed is redone.

    \b
    assistant index ~/notes
    assistant index ~/notes --watch
    assistant index --rebuild
    """
    if not folder and not rebuild:
        raise click.UsageError("Give a FOLDER to index, or --rebuild.")
    try:
        index_command(get_settings(), folder, watch=watch, rebuild=rebuild, as_json=as_json)
    except AssistantError as exc:
        raise click.ClickException(str(exc)) from exc
    except KeyboardInterrupt:
        click.echo("\nStopped. Run the same command to resume where it stopped.", err=True)
        sys.exit(130)


@click.command()
@click.option("--skipped", is_flag=True, help="Also list skipped and failed files with the reason.")
@click.option("--private", "make_private", type=click.Path(path_type=Path),
              help="Mark an indexed folder private: its passages never go to an untrusted remote backend.")
@click.option("--public", "make_public", type=click.Path(path_type=Path), help="Undo --private.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def folders(skipped: bool, make_private: Path | None, make_public: Path | None, as_json: bool) -> None:
    """List indexed folders: files, chunks, last indexed, private, skipped files."""
    from engine import open_knowledge

    try:
        for folder, private in ((make_private, True), (make_public, False)):
            if folder is not None:
                open_knowledge(get_settings()).set_private(folder, private)
                click.echo(f"{folder.expanduser().resolve()} is now {'private' if private else 'public'}.")
        if make_private is None and make_public is None:
            folders_command(get_settings(), skipped=skipped, as_json=as_json)
    except AssistantError as exc:
        raise click.ClickException(str(exc)) from exc


@click.command()
@click.argument("folder", type=click.Path(path_type=Path))
def forget(folder: Path) -> None:
    """Remove FOLDER from the index (your files are not touched)."""
    from engine import open_knowledge

    try:
        removed = open_knowledge(get_settings()).forget(folder)
    except AssistantError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"Forgot {folder.expanduser().resolve()}: {counted(removed, 'chunk')} removed from the index.")


@click.command()
def prune() -> None:
    """Delete the model states kept on disk (they let a conversation go on after a restart
    without evaluating its history; each holds a conversation's text). New ones are kept as
    you talk, unless state_cache_disk_mb = 0."""
    from engine import clear_states, size_text, states_folder

    folder = states_folder()
    files, freed = clear_states(folder)
    click.echo(f"Deleted {counted(files, 'model state')} ({size_text(freed)}) from {folder}.")


def _backup_name(prefix: str) -> Path:
    from datetime import UTC, datetime

    from engine import data_dir

    return data_dir() / "backups" / f"{prefix}-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S-%f')}.db"


@click.command()
@click.argument("target", type=click.Path(dir_okay=False, path_type=Path), required=False)
def backup(target: Path | None) -> None:
    """Copy the database (conversations, answers, feedback, indexed folders) to one file.

    Consistent even while the app is answering. Default: DATA_FOLDER/backups/assistant-TIME.db.
    The vector store is not copied: `assistant restore` rebuilds it from the database.
    """
    target = (target or _backup_name("assistant")).expanduser()
    with_engine(lambda e: e.history.backup(target))
    click.echo(f"Backed up to {target} ({target.stat().st_size / 1e6:,.1f} MB).")


@click.command()
@click.argument("source", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--rebuild/--no-rebuild", default=True, show_default=True,
              help="Rebuild the vector store from the restored database.")
def restore(source: Path, yes: bool, rebuild: bool) -> None:
    """Replace the database with a backup. The current one is backed up first."""
    if not yes:
        click.confirm(f"Replace the database with {source}? (the current one is backed up first)", abort=True)
    from engine import restore_database

    safety = _backup_name("before-restore")
    try:
        chunks = restore_database(source, safety)
    except AssistantError as exc:
        raise click.ClickException(str(exc)) from exc
    kept = f" The previous database is in {safety}." if safety.exists() else ""
    click.echo(f"Restored {source}.{kept}")
    if rebuild and chunks:
        index_command(get_settings(), None, watch=False, rebuild=True, as_json=False)


# what index and folders print ----------------------------------------------------------------------

MAX_SKIPS_SHOWN = 10


def index_command(settings: Settings, folder: Path | None, *, watch: bool, rebuild: bool,
                  as_json: bool) -> None:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from engine import open_knowledge

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
                       else f"Rebuilt the vector store: {counted(done, 'chunk')} embedded.")
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
        f"Indexed {summary.folder} in {summary.seconds:.1f} s: {counted(summary.files, 'file')} "
        f"({summary.indexed} new or changed, {summary.unchanged} unchanged"
        + (f", {summary.renamed} renamed" if summary.renamed else "")
        + (f", {summary.removed} removed" if summary.removed else "")
        + f"), {counted(summary.chunks_added, 'chunk')} added, {summary.chunks_removed} removed; "
        f"{summary.skipped} skipped, {summary.failed} failed. "
        f"{rate:.0f} files/s, {chunk_rate:.0f} chunks/s."
    )
    if summary.resumed_chunks:
        click.echo(f"Resumed an interrupted run: {counted(summary.resumed_chunks, 'chunk')} embedded again.")
    if getattr(summary, "rechunked", False):
        click.echo("Chunked every file again: its chunks had been cut by an older version of assistant "
                   "(now sized so the embedding model reads each one whole).")
    for path, reason in summary.skips[:MAX_SKIPS_SHOWN]:
        click.echo(f"  skipped {path}: {reason}")
    if len(summary.skips) > MAX_SKIPS_SHOWN:
        click.echo(f"  … and {len(summary.skips) - MAX_SKIPS_SHOWN} more: `assistant folders --skipped`")
    if watching:
        click.echo("Watching for changes (Ctrl-C stops)…")


def folders_command(settings: Settings, *, skipped: bool, as_json: bool) -> None:
    from engine import open_knowledge

    knowledge = open_knowledge(settings)
    rows = knowledge.folders()
    if skipped or as_json:
        for row in rows:
            row["skipped_files"] = knowledge.skipped_files(row["id"])
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("No folders indexed yet. Add one with `assistant index FOLDER`.")
        return
    from rich.console import Console
    from rich.table import Table

    from app.tables import print_table, text

    table = Table("folder", "files", "chunks", "last indexed", "skipped", "failed", "watching", "private")
    for row in rows:
        last = (row["last_indexed_at"] or "never")[:16].replace("T", " ")
        table.add_row(text(row["path"]), str(row["files"]), str(row["chunks"]), last, str(row["skipped"]),
                      str(row["failed"]), "yes" if row["watch"] else "", "yes" if row["private"] else "")
    print_table(table, Console())  # whole paths: at 80 columns ~/notes and ~/notes2 were both "~/no…"
    for path in knowledge.outdated_folders():
        click.echo(f"{path}: chunked by an older version; `assistant index {path}` cuts it again so the "
                   "embedding model reads every chunk whole (it embeds the folder again).")
    if skipped:
        for row in rows:
            for item in row["skipped_files"]:
                click.echo(f"{row['path']}/{item['path']}: {item['state']}, {item['reason']}")


COMMANDS = [index, folders, forget, backup, restore, prune]
