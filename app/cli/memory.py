"""`assistant memory ...`: long-term memories, listed, searched, edited, proposed, exported."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from app.cli.common import counted, get_settings, read_lines, with_engine, write_lines
from engine import Engine


def _source(memory: dict[str, Any]) -> str:
    if memory.get("source_conversation_id"):
        return f"conversation {memory['source_conversation_id']} ({memory.get('source_title') or 'deleted'})"
    return "added by hand"


def _table(memories: list[dict[str, Any]], with_score: bool = False) -> None:
    import sys

    from rich.console import Console
    from rich.table import Table

    if not sys.stdout.isatty():  # piped: one whole line per memory, for grep
        for m in memories:
            score = f" · similarity {m['score']:.2f}" if with_score else ""
            pin = " · pinned" if m["pinned"] else ""
            used = f"used {m['use_count']}×"
            click.echo(f"#{m['id']} [{m['kind']}] {m['text']} — {_source(m)} · {used}{pin}{score}")
        return

    from app.tables import WRAP, print_table, text

    table = Table("id", "kind", "memory", "from", "created", "last used", "uses", "pinned")
    if with_score:
        table.add_column("similarity")
    for column in table.columns[2:4]:  # the memory and where it came from wrap; ids and dates stay whole
        column.overflow = WRAP
    for m in memories:
        cells = [str(m["id"]), m["kind"], text(m["text"]), text(_source(m)), m["created_at"][:10],
                 (m["last_used_at"] or "never")[:10], str(m["use_count"]), "📌" if m["pinned"] else ""]
        table.add_row(*cells, *([f"{m['score']:.2f}"] if with_score else []))
    print_table(table, Console())


@click.group()
def memory() -> None:
    """Long-term memory: what the assistant knows about you, recalled when relevant.

    \b
    assistant memory list                         # every memory and where it came from
    assistant memory add "I prefer metric units"  # remember something by hand
    assistant memory search "units"               # by meaning, with similarity
    assistant memory edit 3 --text "..." --pin    # change one; pinned ones go into every prompt
    assistant memory forget 3                     # removed from the database and the vector store
    assistant memory proposals                    # facts you stated, waiting for a yes or no
    assistant memory accept 5 / reject 5
    assistant memory export memories.jsonl / import memories.jsonl
    assistant memory off / on / status            # off: nothing recalled, proposed or saved
    """


@memory.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_memories(as_json: bool) -> None:
    """Every memory: pinned first, then the newest."""
    memories = with_engine(lambda e: e.memories.all())
    if as_json:
        click.echo(json.dumps(memories, indent=2, ensure_ascii=False))
    elif not memories:
        click.echo('No memories yet. `assistant memory add "..."` or accept a proposal.')
    else:
        _table(memories)


@memory.command()
@click.argument("query")
@click.option("--limit", "-n", default=10, show_default=True)
@click.option("--min-similarity", type=float,
              help="Only memories at least this similar (default: memory_threshold, as recall uses).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def search(query: str, limit: int, min_similarity: float | None, as_json: bool) -> None:
    """Memories closest in meaning to QUERY, as similar as recall needs them to be."""
    # The floor recall uses (memory_threshold, 0.3), measured with the embedding model: a query
    # about a memory scored 0.36-0.73 with it, an unrelated one at most 0.26 with any memory; the
    # nearest memory came back at 0.02 for a query about nothing stored, and was listed.
    floor = get_settings().memory_threshold if min_similarity is None else min_similarity

    async def work(engine: Engine) -> tuple[list[dict[str, Any]], bool]:
        found = await engine.memories.search(query, limit)
        return [m for m in found if m["score"] >= floor], bool(found) or bool(await engine.memories.all())

    found, any_memory = with_engine(work)
    if as_json:
        click.echo(json.dumps(found, indent=2, ensure_ascii=False))
    elif not any_memory:
        click.echo('No memories yet. `assistant memory add "..."` or accept a proposal.')
    elif not found:
        click.echo(f"No memory is similar to {query!r} (similarity {floor:.2f} or more). "
                   "`assistant memory list` shows them all; --min-similarity 0 lists the nearest anyway.")
    else:
        _table(found, with_score=True)


@memory.command()
@click.argument("text")
@click.option("--kind", type=click.Choice(["preference", "fact", "decision"]), default="fact",
              show_default=True)
@click.option("--pin", is_flag=True, help="Recall it for every question.")
def add(text: str, kind: str, pin: bool) -> None:
    """Remember TEXT."""
    saved = with_engine(lambda e: e.memories.add(text, kind, pinned=pin))
    click.echo(f"Remembered #{saved['id']}: {saved['text']}")


@memory.command()
@click.argument("memory_id", type=int)
@click.option("--text", help="New text.")
@click.option("--kind", type=click.Choice(["preference", "fact", "decision"]))
@click.option("--pin/--unpin", default=None, help="Recall it for every question, or not.")
def edit(memory_id: int, text: str | None, kind: str | None, pin: bool | None) -> None:
    """Change a memory's text, kind or pin."""
    saved = with_engine(lambda e: e.memories.edit(memory_id, text, kind, pin))
    click.echo(f"#{saved['id']} ({saved['kind']}{', pinned' if saved['pinned'] else ''}): {saved['text']}")


@memory.command()
@click.argument("memory_id", type=int)
def forget(memory_id: int) -> None:
    """Forget a memory (removed from the database and the vector store)."""
    gone = with_engine(lambda e: e.memories.forget(memory_id))
    click.echo(f"Forgot #{memory_id}: {gone['text']}")


@memory.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def proposals(as_json: bool) -> None:
    """Memories proposed from what you said, waiting for a yes or no."""
    pending = with_engine(lambda e: e.memories.proposals())
    if as_json:
        click.echo(json.dumps(pending, indent=2, ensure_ascii=False))
        return
    if not pending:
        click.echo("No proposals waiting.")
    for p in pending:
        click.echo(f"[{p['id']}] ({p['kind']}, conversation {p['conversation_id']}) {p['text']}")


@memory.command()
@click.argument("proposal_id", type=int)
@click.option("--text", help="Save it with this text instead.")
def accept(proposal_id: int, text: str | None) -> None:
    """Save a proposal as a memory."""
    saved = with_engine(lambda e: e.memories.accept(proposal_id, text))
    click.echo(f"Remembered #{saved['id']}: {saved['text']}")


@memory.command()
@click.argument("proposal_id", type=int)
def reject(proposal_id: int) -> None:
    """Drop a proposal (the same text is not proposed again)."""
    with_engine(lambda e: e.memories.reject(proposal_id))
    click.echo(f"Rejected proposal {proposal_id}.")


@memory.command("export")
@click.argument("output", type=click.Path(dir_okay=False, path_type=Path))
def export_memories(output: Path) -> None:
    """Write every memory to OUTPUT as JSONL."""
    rows = with_engine(lambda e: e.memories.export())
    write_lines(output, [json.dumps(r, ensure_ascii=False) for r in rows])
    click.echo(f"Wrote {counted(len(rows), 'memory', 'memories')} to {output}.")


@memory.command("import")
@click.argument("source", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def import_memories(source: Path) -> None:
    """Add the memories of a JSONL export (ones already remembered are skipped)."""
    rows = []
    for number, line in enumerate(read_lines(source), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise click.ClickException(f"{source}, line {number}, is not JSON: {exc}.") from exc
    added = with_engine(lambda e: e.memories.import_rows(rows))
    click.echo(f"Added {added} of {counted(len(rows), 'memory', 'memories')}.")


@memory.command("rebuild")
def rebuild_memories() -> None:
    """Recreate the memories' vectors from the database."""
    count = with_engine(lambda e: e.memories.rebuild())
    click.echo(f"Re-embedded {counted(count, 'memory', 'memories')}.")


@memory.command("on")
def memory_on() -> None:
    """Recall, propose and save long-term memories (the default)."""
    with_engine(lambda e: e.memories.set_enabled(True))
    click.echo("Long-term memory is on.")


@memory.command("off")
def memory_off() -> None:
    """Stop recalling, proposing and saving long-term memories (they are kept)."""
    with_engine(lambda e: e.memories.set_enabled(False))
    click.echo("Long-term memory is off: nothing is recalled, proposed or saved. "
               "`assistant memory on` undoes it.")


@memory.command("status")
def memory_status() -> None:
    """Whether long-term memory is on, and how many memories and proposals there are."""

    async def status(engine: Engine) -> tuple[bool, int, int]:
        return (await engine.memories.enabled(), len(await engine.memories.all()),
                len(await engine.memories.proposals()))

    on, count, pending = with_engine(status)
    click.echo(f"Long-term memory is {'on' if on else 'off'}: {counted(count, 'memory', 'memories')}, "
               f"{counted(pending, 'proposal')} waiting.")


COMMANDS = [memory]
