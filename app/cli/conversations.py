"""Conversations and their answers: history, feedback, fork, import, export, review, trace."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import click

from app.cli.common import counted, get_settings, read_lines, run, user_errors, with_engine, write_lines
from engine import Engine, printable_line, printable_text


def source_dict(source: Any) -> dict[str, Any]:
    """A source as JSON (the shape `export conversations` writes)."""
    return {"number": source.number, "location": source.passage.location, "path": source.passage.path,
            "cited": source.cited, "kind": source.kind}


@click.command()
@click.argument("response_id", type=int)
@click.argument("rating", type=click.Choice(["up", "down"]))
@click.option("--comment", help="Why: what was good or wrong.")
def feedback(response_id: int, rating: str, comment: str | None) -> None:
    """Rate an answer (RESPONSE_ID is printed by `ask --stats` and shown in `history`)."""

    async def rate() -> None:
        engine = Engine(get_settings())
        try:
            await engine.history.rate(response_id, 1 if rating == "up" else -1, comment)
        finally:
            await engine.close()

    run(rate())
    click.echo(f"Saved: response {response_id} rated {rating}.")


@click.command()
@click.option("--limit", "-n", default=20, show_default=True, help="How many conversations.")
@click.option("--conversation", "-c", type=int, help="Show this conversation's messages.")
@click.option("--search", "-s", help="Only conversations whose messages contain these words.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def history(limit: int, conversation: int | None, search: str | None, as_json: bool) -> None:
    """List recent conversations, search them (-s WORDS), or show one with -c ID."""

    async def read() -> list[dict[str, Any]]:
        engine = Engine(get_settings())
        try:
            if conversation is not None:
                await engine.history.conversation(conversation)  # an unknown id is an error naming it
                return await engine.history.messages(conversation)
            if search:
                return await engine.history.search_conversations(search)
            return await engine.history.conversations(limit)
        finally:
            await engine.close()

    rows = run(read())
    if conversation is not None:
        numbers = itertools.count(1)
        for row in rows:
            # The number within the conversation: what `fork --at N` takes (message ids are global).
            # An answer stopped before any text is no message: it has no number.
            row["number"] = next(numbers) if row["id"] is not None else None
            if "sources" in row:
                row["sources"] = [source_dict(s) for s in row["sources"]]
    if as_json:
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    if conversation is not None:
        for row in rows:
            tag = " (partial)" if row["status"] == "partial" else ""
            rid = f" [response {row['response_id']}]" if row["response_id"] else ""
            if row["number"] is None:
                why = "failed" if row.get("answer_status") == "error" else "stopped"
                click.secho(f"{row['role']}{rid}: ({why} before any text)\n", bold=True)
                continue
            click.secho(f"#{row['number']} {row['role']}{tag}{rid}:", bold=True)
            click.echo(printable_text(row["content"]) + "\n")  # answers from servers, as stored
        if rows:
            click.echo(f"`assistant fork {conversation} --at N` copies it up to message #N.")
        return
    if not rows:
        click.echo(f"No conversation mentions {search!r}." if search
                   else "No conversations yet. Start one with `assistant` or `assistant ask`.")
    import shutil
    import textwrap

    # The title wraps under itself: at 80 columns (also when piped) a line is never wider.
    width = max(shutil.get_terminal_size().columns, 60)
    for row in rows:
        msgs = f"{row['messages']} msg" + ("" if row["messages"] == 1 else "s")
        head = f"{row['id']:>5}  {row['updated_at'][:16].replace('T', ' ')}  {msgs:>8}  "
        title = printable_line(row["title"])
        click.echo(textwrap.fill(title, width, initial_indent=head, subsequent_indent=" " * len(head),
                                 break_long_words=False, break_on_hyphens=False))
        if row.get("snippet"):
            snippet = printable_line(" ".join(row["snippet"].split()))
            click.echo(textwrap.fill(snippet, width, initial_indent=" " * 7,
                                     subsequent_indent=" " * 7, break_long_words=False))


@click.command()
@click.argument("response_id", type=int, required=False)
@click.option("--better", help="The better answer (marks it reviewed).")
@click.option("--done", is_flag=True, help="Mark reviewed without a better answer.")
@click.option("--note", help="A note on what was wrong.")
@click.option("--reviewed", is_flag=True, help="List reviewed answers instead of pending ones.")
def review(response_id: int | None, better: str | None, done: bool, note: str | None, reviewed: bool) -> None:
    """The review queue: thumbs-down answers, refusals and answers their sources hardly support
    (low_groundedness, with the share that is supported), to correct or dismiss.

    \b
    assistant review                       # pending answers
    assistant review 12                    # one: question, answer, sources, trace
    assistant review 12 --better "..."     # write the better answer; marks it reviewed
    assistant review 12 --done             # nothing to fix
    """
    if response_id is None:
        rows = with_engine(lambda e: e.history.reviews(pending=not reviewed))
        if not rows:
            click.echo("Nothing to review." if not reviewed else "Nothing reviewed yet.")
        for row in rows:
            question = (row["question"] or "").replace("\n", " ")[:70]
            grounded = "" if row.get("groundedness") is None else f"{row['groundedness']:.0%}"
            click.echo(f"{row['response_id']:>6}  {row['reason']:<16} {grounded:>4}  {row['model']:<28} "
                       f"{question}")
        return
    if better is not None or done:
        with_engine(lambda e: e.history.mark_reviewed(response_id, better, note))
        click.echo(f"Response {response_id} reviewed.")
        return
    _show_response(response_id)


def _show_response(response_id: int) -> None:
    from app.stats_view import trace_lines

    detail = with_engine(lambda e: e.history.response_detail(response_id))
    row, question, answer = detail["response"], detail["question"], detail["answer"]
    click.secho(f"Response {response_id} · {row['model']} · {row['backend']} · {row['status']} · "
                f"{row['created_at'][:19].replace('T', ' ')}", bold=True)
    click.secho("\nQuestion:", bold=True)
    click.echo(question or "(not stored)")
    click.secho("\nAnswer:", bold=True)
    click.echo(answer or "(none)")
    if row["error"]:
        click.echo(f"\nError: {row['error']}")
    if row["retrieved_chunk_ids"]:
        click.echo(f"\nRetrieved chunks: {row['retrieved_chunk_ids']}")
    click.secho("\nTrace:", bold=True)
    for line in trace_lines(row, detail["spans"]):
        click.echo(line)


@click.command()
@click.argument("response_id", type=int)
def trace(response_id: int) -> None:
    """Why was it slow? One answer's steps and inputs: model, template, sources, timings."""
    _show_response(response_id)


@click.command()
@click.argument("what", type=click.Choice(["sft", "dpo", "responses", "conversations"]))
@click.argument("output", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv", "markdown"]), default="jsonl",
              show_default=True, help="csv: for `responses`; markdown: for `conversations`.")
@click.option("--since", help="For `responses`: only answers since (7d, 2026-11-01, ...).")
@click.option("--id", "-c", "conversation_ids", type=int, multiple=True,
              help="For `conversations`: only this one (repeatable). Default: all.")
def export(what: str, output: Path, fmt: str, since: str | None, conversation_ids: tuple[int, ...]) -> None:
    """Export conversations, feedback for fine-tuning, or the response log.

    \b
    conversations  with citations, ratings and timings (JSONL, which `assistant import` reads
                   back, or Markdown)
    sft            thumbs-up and reviewed answers as chat-format examples (JSONL)
    dpo            preference pairs: the reviewer's answer chosen, the model's rejected (JSONL)
    responses      every response row (JSONL or CSV)

    SFT and DPO rows start with the system prompt and alternate questions and answers. An answer
    stopped mid-way (Esc, Ctrl-C) stays in as far as it got, since the next question follows it;
    it becomes a training target only through a reviewer's better answer.
    """
    import csv

    if what == "conversations":
        export_conversations(output, fmt, list(conversation_ids))
        return

    from engine import load_template, parse_since

    with user_errors():
        if what in ("sft", "dpo"):
            # SFT and DPO rows start with the same system message: the one answers are given with.
            system = load_template("system", get_settings()).text
            rows = with_engine(lambda e: e.history.training_rows(what, system))
        else:
            after = parse_since(since)
            rows = with_engine(lambda e: e.history.responses_since(after))
    try:
        with output.open("w", encoding="utf-8", newline="") as fh:
            if fmt == "csv" and what == "responses":
                writer = csv.DictWriter(fh, fieldnames=list(rows[0]) if rows else ["id"])
                writer.writeheader()
                writer.writerows(rows)
            else:
                for row in rows:
                    fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    except OSError as exc:
        raise click.ClickException(f"Cannot write {output}: {exc.strerror}.") from exc
    click.echo(f"Wrote {counted(len(rows), what + ' row')} to {output}.")


@click.command()
@click.argument("conversation_id", type=int)
@click.option("--at", "number", type=int,
              help="Keep messages #1 to #N, as numbered by `assistant history -c ID` (default: all).")
def fork(conversation_id: int, number: int | None) -> None:
    """Copy a conversation up to a message, to go on from there differently.

    \b
    assistant history -c 3        # its messages, numbered #1, #2, ...
    assistant fork 3 --at 2       # a new conversation with messages #1 and #2
    """

    # Numbers within the conversation, not message ids: those are global and never shown.
    new_id = with_engine(lambda e: e.history.fork(conversation_id, number=number))
    click.echo(f"Forked conversation {conversation_id} as {new_id}: "
               f"`assistant ask -c {new_id} \"...\"` goes on.")


@click.command("import")
@click.argument("source", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def import_conversations(source: Path) -> None:
    """Import conversations from a JSONL export (`assistant export conversations`)."""
    lines = read_lines(source)
    done = with_engine(lambda e: e.history.import_conversations(lines, str(source)))
    ids = done.ids
    which = f" (id {ids[0]})" if len(ids) == 1 else f" (ids {ids[0]}-{ids[-1]})" if ids else ""
    message = f"{counted(len(ids), 'conversation')} imported{which}"
    if done.already_there:  # the same file imported twice: nothing is copied again
        message += f", {len(done.already_there):,} already there"
    click.echo(message + ".")


def export_conversations(output: Path, fmt: str, conversation_ids: list[int]) -> None:
    if fmt == "csv":
        raise click.UsageError("Conversations export as jsonl or markdown.")
    if fmt == "markdown":
        items = with_engine(lambda e: e.history.export_markdown(conversation_ids or None))
        write_lines(output, ["\n\n---\n\n".join(items)])
    else:
        items = with_engine(lambda e: e.history.export_conversations(conversation_ids or None))
        write_lines(output, [json.dumps(i, ensure_ascii=False) for i in items])
    click.echo(f"Wrote {counted(len(items), 'conversation')} to {output}.")


COMMANDS = [history, feedback, fork, import_conversations, export, review, trace]
