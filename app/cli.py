"""The `assistant` command: the TUI by default, and ask / feedback / history / doctor / index."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import logging.handlers
import os
import sys
from pathlib import Path
from typing import Any

import click

from app.cli_models import models
from engine import AssistantError, Engine, Failed, Finished, Started, Token, load_settings
from engine.secrets import RedactingFilter
from engine.terminal_text import terminal_line, terminal_text


def _settings(**overrides: Any):
    try:
        return load_settings().replace(**overrides)
    except AssistantError as exc:
        raise click.ClickException(str(exc)) from exc


class _PrivateLogFile(logging.handlers.RotatingFileHandler):
    """Log files readable by the user only (0600), also the ones rotation starts anew."""

    def _open(self):  # noqa: ANN202 - a text stream, as in logging.FileHandler
        fd = os.open(self.baseFilename, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        if hasattr(os, "fchmod"):  # not on Windows, where the mode means little anyway
            os.fchmod(fd, 0o600)  # a file left by an older version, or created under another umask
        return open(fd, self.mode, encoding=self.encoding, errors=self.errors)  # noqa: SIM115


def _log_to_file() -> None:
    """Library warnings (pypdf, chromadb, ...) go to a file in the data folder: on stderr they
    would scribble over the TUI and the progress bars."""
    from engine.paths import data_dir, ensure_private_dir

    try:
        folder = ensure_private_dir(data_dir() / "logs")
        handler: logging.Handler = _PrivateLogFile(
            folder / "assistant.log", maxBytes=2_000_000, backupCount=2, encoding="utf-8"
        )
    except OSError:  # a read-only data folder must not stop the app; then logs are dropped
        handler = logging.NullHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter())  # an API key in any library's message is masked
    logging.basicConfig(level=logging.WARNING, handlers=[handler], force=True)


def counted(n: int, word: str, words: str | None = None) -> str:
    """'1 conversation', '2 conversations': `words` for an irregular plural (memory, memories)."""
    return f"{n:,} {word if n == 1 else words or word + 's'}"


def _run(coro: Any) -> Any:
    try:
        return asyncio.run(coro)
    except AssistantError as exc:
        raise click.ClickException(str(exc)) from exc


@click.group(invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="assistant", prog_name="assistant")
@click.option("--model", "-m", help="GGUF file path, or a model name in models_dir.")
@click.option("--no-plugins", is_flag=True, help="Start without third-party plugins.")
@click.pass_context
def main(ctx: click.Context, model: str | None, no_plugins: bool) -> None:
    """A local-first AI assistant. With no command, opens the chat app.

    \b
    Keys in the chat app: Enter sends, Ctrl+J inserts a newline, Esc stops the answer,
    Ctrl+G / Ctrl+B rate an answer up / down, Ctrl+P opens the command palette.
    """
    ctx.obj = {"model": model}
    if no_plugins:
        os.environ["ASSISTANT_PLUGINS"] = "0"  # for every settings read in this run
    _log_to_file()
    if ctx.invoked_subcommand is None:
        from app.tui import AssistantApp  # Textual is only imported for the TUI

        AssistantApp(Engine(_settings(model=model))).run()


@main.command()
@click.argument("question")
@click.option("--model", "-m", help="GGUF file path, or a model name in models_dir.")
@click.option("--conversation", "-c", type=int, help="Continue this conversation id.")
@click.option("--max-tokens", type=int, help="Longest answer in tokens.")
@click.option("--temperature", "-t", type=float, help="Sampling temperature (0: deterministic).")
@click.option("--seed", type=int, help="Sampling seed.")
@click.option("--system", help="System prompt for this answer.")
@click.option("--backend", "-b", help="Answer with this backend (`assistant backends` lists them); "
              "with -c, the conversation keeps it.")
@click.option("--sources/--no-sources", "show_sources", default=True, show_default=True,
              help="List the sources from indexed folders after the answer.")
@click.option("--json-schema", "schema_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Answer with JSON valid against this JSON schema file (checked; one retry).")
@click.option("--no-cache", is_flag=True,
              help="Generate anew even if this exact question was answered before.")
@click.option("--incognito", is_flag=True, default=None,
              help="This conversation writes no long-term memory (kept for its later questions).")
@click.option("--stats/--no-stats", default=None,
              help="Print response id, tokens and speed to stderr (default: when stderr is a terminal).")
@click.pass_context
def ask(ctx: click.Context, question: str, model: str | None, conversation: int | None,
        max_tokens: int | None, temperature: float | None, seed: int | None,
        system: str | None, backend: str | None, show_sources: bool, schema_file: Path | None,
        no_cache: bool, incognito: bool | None, stats: bool | None) -> None:
    """Answer QUESTION on stdout as it streams ("-" reads the question from stdin).

    \b
    assistant ask "What is a GGUF file?"
    git diff | assistant ask -
    assistant ask -c 3 "and in one sentence?"

    Passages from indexed folders (see `assistant index`) go into the prompt; the answer cites
    them as [1], [2], listed after it with file and lines.
    """
    if question == "-":
        question = sys.stdin.read()
    if not question.strip():
        raise click.UsageError("The question is empty.")
    settings = _settings(
        model=model or ctx.obj["model"], max_tokens=max_tokens, temperature=temperature,
        seed=seed, system_prompt=system,
    )
    if model or ctx.obj["model"]:
        _check_model(settings)
    show_stats = sys.stderr.isatty() if stats is None else stats
    schema = None
    if schema_file is not None:
        try:
            schema = json.loads(schema_file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise click.ClickException(f"Cannot read the JSON schema {schema_file}: {exc}.") from exc
        from engine.structured import check_schema

        try:
            check_schema(schema)  # before the question is saved: a bad schema leaves nothing behind
        except AssistantError as exc:
            raise click.ClickException(f"{schema_file}: {exc}") from exc
    engine = Engine(settings)
    engine.prefill_next_turn = False  # this process ends after the answer
    if backend is not None and backend not in engine.router.backends:
        known = ", ".join(engine.router.backends)
        raise click.UsageError(f"There is no backend named {backend!r}; known: {known}.")
    engine.router.primary(backend).start_loading()  # the model loads while the rest starts up
    try:
        code = _run(_ask(engine, question, conversation, show_stats, show_sources, backend, no_cache, schema,
                         incognito))
    except KeyboardInterrupt:
        click.echo("\nStopped; the partial answer is saved.", err=True)
        sys.exit(130)
    sys.exit(code)


def _check_model(settings: Any) -> None:
    """A --model that is not a usable GGUF file is refused before the question is saved: the
    engine saves it first (so nothing the user wrote is lost), which left a conversation of one
    unanswered question behind. Only the header is read; the weights load later, as usual."""
    from engine.gguf import read_gguf
    from engine.models import resolve_model

    try:
        read_gguf(resolve_model(settings.model, settings.models_dir))
    except AssistantError as exc:
        raise click.ClickException(str(exc)) from exc


def source_dict(source: Any) -> dict[str, Any]:
    """A source as JSON (the shape `export conversations` writes)."""
    return {"number": source.number, "location": source.passage.location, "path": source.passage.path,
            "cited": source.cited}


def _sources_text(sources: Any) -> str:
    lines = ["", "Sources:"]
    for source in sources:
        mark = f"[{source.number}]" if source.cited else "   "
        note = "" if source.cited else "  (retrieved, not cited)"
        lines.append(f"  {mark} {terminal_line(source.passage.location)}{note}")
    return "\n".join(lines) + "\n"


async def _ask(engine: Engine, question: str, conversation: int | None, show_stats: bool,
               show_sources: bool = True, backend: str | None = None, regenerate: bool = False,
               schema: dict | None = None, incognito: bool | None = None) -> int:
    if schema is not None:
        return await _ask_json(engine, question, conversation, backend, regenerate, schema)
    out = sys.stdout
    try:
        asking = engine.ask(question, conversation, backend, regenerate, incognito=incognito,
                            confirm=_confirm_tool if sys.stdin.isatty() else None)
        async with contextlib.aclosing(asking) as events:
            async for event in events:
                if isinstance(event, Token):
                    out.write(terminal_text(event.text))  # an answer is not allowed to drive the terminal
                    out.flush()
                elif isinstance(event, Started):
                    _started_notes(event, len(question))
                elif isinstance(event, Finished):
                    out.write("\n")
                    if not event.text.strip():
                        click.echo("Note: the answer is empty.", err=True)
                    if event.sources and show_sources:
                        out.write(_sources_text(event.sources))
                    for p in event.proposals:
                        fact = terminal_line(p["text"])
                        click.echo(f"Remember “{fact}”? `assistant memory accept {p['id']}` saves it, "
                                   f"`assistant memory reject {p['id']}` drops it.", err=True)
                    if show_stats:
                        t = event.timings
                        speed = f"{t.tokens_per_s:.1f} tok/s" if t.tokens_per_s else "-"
                        ttft = f"{t.ttft_ms:.0f} ms" if t.ttft_ms is not None else "-"
                        cost = "cost unknown" if event.cost_usd is None else f"{event.cost_usd:.4f} USD"
                        if event.cached_from:
                            cost = f"from the cache (response {event.cached_from})"
                        click.echo(
                            f"[response {event.response_id} · conversation {event.conversation_id} · "
                            f"{event.usage.prompt_tokens}+{event.usage.completion_tokens} tokens · "
                            f"first token {ttft} · {speed} · {cost}]",
                            err=True,
                        )
                elif isinstance(event, Failed):
                    if event.partial_text:
                        out.write("\n")
                    click.echo(f"Error: {terminal_text(str(event.error))}", err=True)
                    return 1
        return 0
    finally:
        await engine.close()


async def _ask_json(engine: Engine, question: str, conversation: int | None, backend: str | None,
                    regenerate: bool, schema: dict) -> int:
    """Structured output: printed only once valid; an invalid answer is asked again once (afresh,
    in the same place: a new conversation, or the one given)."""
    from engine.structured import InvalidOutputError

    try:
        first_problem = None
        for attempt in range(2):
            events = [e async for e in engine.ask(question, conversation, backend, regenerate or attempt > 0,
                                                  json_schema=schema)]
            last = events[-1]
            if isinstance(last, Finished):
                click.echo(terminal_text(last.text))
                return 0
            error = last.error
            if isinstance(error, InvalidOutputError) and attempt == 0:
                first_problem = error.message
                click.echo(f"Note: {terminal_text(error.message)} Asking once more.", err=True)
                continue
            if isinstance(error, InvalidOutputError) and error.message == first_problem:
                # The reason was printed once already.
                click.echo(f"Error: the second answer was not valid either, for the same reason. "
                           f"{error.hint}", err=True)
            else:
                click.echo(f"Error: {terminal_text(str(error))}", err=True)
            return 1
        return 1
    finally:
        await engine.close()


async def _confirm_tool(tool: Any, arguments: dict) -> bool:
    """Asked on the terminal before a tool with side effects runs (never when stdin is piped)."""
    shown = terminal_line(json.dumps(arguments, ensure_ascii=False))
    question = f"Let the model run {tool.name} with {shown}?"
    return await asyncio.to_thread(click.confirm, question, default=False, err=True)


def _started_notes(event: Started, question_chars: int = 0) -> None:
    """On stderr, so a piped answer stays clean: what was passed over, and where the question went.
    Notes quote text from outside (servers' errors, file text in tool results, memories): one line
    each, with control characters shown escaped."""
    for note in event.notices:
        click.echo(f"Note: {terminal_line(note)}", err=True)
    if event.remote:
        click.echo(f"↗ Sent to {event.backend} ({event.model}) at {event.endpoint}.", err=True)
    if event.similar_question:
        click.echo(f"Note: answered from a similar earlier question (response {event.cached_from}): "
                   f"“{terminal_line(event.similar_question[:80])}”. --no-cache answers this one anew.",
                   err=True)
    if event.question_truncated:
        size = f" ({question_chars:,} characters)" if question_chars else ""
        click.echo(f"Note: the question{size} was shortened to fit the context window: the model does not "
                   "read all of it. Ask about a smaller part, or use a model with a larger n_ctx.", err=True)
    for step in event.tool_steps:
        call = terminal_line(f"{step.call.name}({json.dumps(step.call.arguments, ensure_ascii=False)})")
        click.echo(f"🔧 {call} → {step.status}: {terminal_line(step.result[:200])}", err=True)
    if event.memories:
        used = "; ".join(f"#{m.id} {terminal_line(m.text)}" for m in event.memories)
        count = len(event.memories)
        click.echo(f"Note: used {count} memor{'y' if count == 1 else 'ies'}: {used}", err=True)
    if event.summarized_messages:
        verb = "is" if event.summarized_messages == 1 else "are"
        older = counted(event.summarized_messages, "older message")
        click.echo(f"Note: {older} {verb} in the prompt as a summary.", err=True)


@main.command()
@click.argument("response_id", type=int)
@click.argument("rating", type=click.Choice(["up", "down"]))
@click.option("--comment", help="Why: what was good or wrong.")
def feedback(response_id: int, rating: str, comment: str | None) -> None:
    """Rate an answer (RESPONSE_ID is printed by `ask --stats` and shown in `history`)."""

    async def rate() -> None:
        engine = Engine(_settings())
        try:
            await engine.rate(response_id, 1 if rating == "up" else -1, comment)
        finally:
            await engine.close()

    _run(rate())
    click.echo(f"Saved: response {response_id} rated {rating}.")


@main.command()
@click.option("--limit", "-n", default=20, show_default=True, help="How many conversations.")
@click.option("--conversation", "-c", type=int, help="Show this conversation's messages.")
@click.option("--search", "-s", help="Only conversations whose messages contain these words.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def history(limit: int, conversation: int | None, search: str | None, as_json: bool) -> None:
    """List recent conversations, search them (-s WORDS), or show one with -c ID."""

    async def read() -> list[dict[str, Any]]:
        engine = Engine(_settings())
        try:
            if conversation is not None:
                await engine.conversation(conversation)  # an unknown id is an error naming it
                return await engine.messages(conversation)
            if search:
                return await engine.search_conversations(search)
            return await engine.conversations(limit)
        finally:
            await engine.close()

    rows = _run(read())
    if conversation is not None:
        for number, row in enumerate(rows, 1):
            # The number within the conversation: what `fork --at N` takes (message ids are global).
            row["number"] = number
            if "sources" in row:
                row["sources"] = [source_dict(s) for s in row["sources"]]
    if as_json:
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    if conversation is not None:
        for row in rows:
            tag = " (partial)" if row["status"] == "partial" else ""
            rid = f" [response {row['response_id']}]" if row["response_id"] else ""
            click.secho(f"#{row['number']} {row['role']}{tag}{rid}:", bold=True)
            click.echo(terminal_text(row["content"]) + "\n")  # answers from servers, as stored
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
        title = terminal_line(row["title"])
        click.echo(textwrap.fill(title, width, initial_indent=head, subsequent_indent=" " * len(head),
                                 break_long_words=False, break_on_hyphens=False))
        if row.get("snippet"):
            snippet = terminal_line(" ".join(row["snippet"].split()))
            click.echo(textwrap.fill(snippet, width, initial_indent=" " * 7,
                                     subsequent_indent=" " * 7, break_long_words=False))


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def doctor(ctx: click.Context, as_json: bool) -> None:
    """Check the installation: versions, llama.cpp build and GPU offload, model file, paths, database."""
    from engine.doctor import diagnose

    checks = diagnose(_settings(model=ctx.obj["model"]))
    if as_json:
        click.echo(json.dumps([c.__dict__ for c in checks], indent=2))
    else:
        section = None
        for check in checks:
            if check.section != section:
                section = check.section
                click.secho(f"\n{section}", bold=True)
            mark = click.style("ok  ", fg="green") if check.ok else click.style("FAIL", fg="red")
            click.echo(f"  {mark} {check.name:<16} {check.value}")
            if check.hint:
                click.echo(f"       {'':<16} {check.hint}")
    if not all(c.ok for c in checks):
        sys.exit(1)


@main.command()
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
    from app.indexing import index_command

    if not folder and not rebuild:
        raise click.UsageError("Give a FOLDER to index, or --rebuild.")
    try:
        index_command(_settings(), folder, watch=watch, rebuild=rebuild, as_json=as_json)
    except AssistantError as exc:
        raise click.ClickException(str(exc)) from exc
    except KeyboardInterrupt:
        click.echo("\nStopped. Run the same command to resume where it stopped.", err=True)
        sys.exit(130)


@main.command()
@click.option("--skipped", is_flag=True, help="Also list skipped and failed files with the reason.")
@click.option("--private", "make_private", type=click.Path(path_type=Path),
              help="Mark an indexed folder private: its passages never go to an untrusted remote backend.")
@click.option("--public", "make_public", type=click.Path(path_type=Path), help="Undo --private.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def folders(skipped: bool, make_private: Path | None, make_public: Path | None, as_json: bool) -> None:
    """List indexed folders: files, chunks, last indexed, private, skipped files."""
    from app.indexing import folders_command
    from engine.knowledge import open_knowledge

    try:
        for folder, private in ((make_private, True), (make_public, False)):
            if folder is not None:
                open_knowledge(_settings()).set_private(folder, private)
                click.echo(f"{folder.expanduser().resolve()} is now {'private' if private else 'public'}.")
        if make_private is None and make_public is None:
            folders_command(_settings(), skipped=skipped, as_json=as_json)
    except AssistantError as exc:
        raise click.ClickException(str(exc)) from exc


@main.command()
@click.option("--check", is_flag=True, help="Also check that each backend answers now.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def backends(check: bool, as_json: bool) -> None:
    """List backends: the local model and configured providers, route order, circuit breakers."""
    from rich.console import Console
    from rich.table import Table

    from engine.prices import table_version

    async def report() -> tuple[list[dict[str, Any]], dict[str, Any]]:
        engine = Engine(_settings())
        try:
            return await engine.backends_report(check), await engine.router.spending()
        finally:
            await engine.close()

    rows, spending = _run(report())
    settings = _settings()
    if as_json:
        click.echo(json.dumps({"backends": rows, "allow_cloud": settings.allow_cloud,
                               "price_table": table_version(),
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
    click.echo(f"Prices: the table of {table_version()}{overridden}.")
    for period, (spent, limit) in spending.items():
        click.echo(f"Budget this {period}: {spent:.2f} of {limit:.2f} USD.")
    for row in rows:
        if row["last_error"] and row["breaker"] != "closed":
            click.echo(f"{row['name']}: last error: {row['last_error']}")


@main.command()
@click.argument("folder", type=click.Path(path_type=Path))
def forget(folder: Path) -> None:
    """Remove FOLDER from the index (your files are not touched)."""
    from engine.knowledge import open_knowledge

    try:
        removed = open_knowledge(_settings()).forget(folder)
    except AssistantError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"Forgot {folder.expanduser().resolve()}: {counted(removed, 'chunk')} removed from the index.")


def _store():
    """The database, for commands that only read and write rows (no model, no event loop)."""
    from engine.paths import database_file, ensure_private_dir
    from memory.store import Store

    try:
        ensure_private_dir(database_file().parent)
        return Store(database_file())
    except AssistantError as exc:
        raise click.ClickException(str(exc)) from exc


@main.command()
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
    from engine import alerts as alerting
    from engine import stats as statistics

    store = _store()
    try:
        result = statistics.compute(store, since, by)
        found = alerting.check(store, _settings())
    except AssistantError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        store.close()
    result["alerts"] = [a.__dict__ for a in found]
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    from app.stats_view import stats_tables
    from app.tables import print_table

    console = _console()
    for table in stats_tables(result):
        print_table(table, console)
    if plots:
        for _title, text in statistics.plots(result, width=min(console.width, 100)):
            click.echo(text)
    for alert in found:
        click.secho(f"⚠ {alert.message}", fg="yellow")


def _console():
    from rich.console import Console

    return Console()


@main.command()
@click.argument("response_id", type=int, required=False)
@click.option("--better", help="The better answer (marks it reviewed).")
@click.option("--done", is_flag=True, help="Mark reviewed without a better answer.")
@click.option("--note", help="A note on what was wrong.")
@click.option("--reviewed", is_flag=True, help="List reviewed answers instead of pending ones.")
def review(response_id: int | None, better: str | None, done: bool, note: str | None, reviewed: bool) -> None:
    """The review queue: thumbs-down answers and refusals, to correct or dismiss.

    \b
    assistant review                       # pending answers
    assistant review 12                    # one: question, answer, sources, trace
    assistant review 12 --better "..."     # write the better answer; marks it reviewed
    assistant review 12 --done             # nothing to fix
    """
    store = _store()
    try:
        if response_id is None:
            rows = store.reviews(pending=not reviewed)
            if not rows:
                click.echo("Nothing to review." if not reviewed else "Nothing reviewed yet.")
            for row in rows:
                question = (row["question"] or "").replace("\n", " ")[:70]
                click.echo(f"{row['response_id']:>6}  {row['reason']:<12} {row['model']:<28} {question}")
            return
        if better is not None or done:
            store.mark_reviewed(response_id, better, note)
            click.echo(f"Response {response_id} reviewed.")
            return
        _show_response(store, response_id)
    except AssistantError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        store.close()


def _show_response(store: Any, response_id: int) -> None:
    from app.stats_view import trace_lines

    row = store.response(response_id)
    question = store.message_text(row["prompt_message_id"])
    answer = store.message_text(row["message_id"])
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
    for line in trace_lines(row, store.spans(response_id)):
        click.echo(line)


@main.command()
@click.argument("response_id", type=int)
def trace(response_id: int) -> None:
    """Why was it slow? One answer's steps and inputs: model, template, sources, timings."""
    store = _store()
    try:
        _show_response(store, response_id)
    except AssistantError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        store.close()


@main.command()
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
        from app.cli_memory import export_conversations

        export_conversations(_settings(), output, fmt, list(conversation_ids))
        return

    from engine import prompts
    from engine.review import fine_tuning_examples, preference_pairs
    from engine.stats import parse_since

    store = _store()
    try:
        # SFT and DPO rows start with the same system message: the one answers are given with.
        system = prompts.load("system", _settings()).text if what in ("sft", "dpo") else None
        if what == "sft":
            rows = fine_tuning_examples(store, system)
        elif what == "dpo":
            rows = preference_pairs(store, system)
        else:
            rows = store.responses_since(parse_since(since))
    except AssistantError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        store.close()
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


@main.command()
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
    from engine import prompts as templates

    settings = _settings()
    try:
        if action == "list":
            import shutil

            width = shutil.get_terminal_size().columns
            for t in templates.all_templates(settings):
                line = f"{t.name:<16} {t.version}  {t.origin:<28} "
                # The first line is a preview, cut to the width; the name, version and origin never are.
                room = max(width - len(line), 20)
                first = t.text.splitlines()[0] if t.text else ""
                click.echo(line + (first if len(first) <= room else first[: room - 1] + "…"))
            click.echo(f"\nYour templates: {templates.user_folder()}")
            return
        if name is None:
            raise click.UsageError(f"`prompts {action}` needs a template NAME.")
        current = templates.load(name, settings)
        if action == "show":
            click.secho(f"{current.name} {current.version} ({current.origin})", bold=True)
            click.echo(current.text)
            return
        base = templates.load(other, settings) if other else templates.built_in(name)
        if base is None:
            raise click.ClickException(f"{name!r} is not a shipped template; give a second NAME to compare.")
        changes = templates.diff(base, current) if other is None else templates.diff(current, base)
        click.echo(changes or f"No difference: {name} is the shipped text ({current.version}).")
    except AssistantError as exc:
        raise click.ClickException(str(exc)) from exc


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def plugins(as_json: bool) -> None:
    """Plugins: built-in and installed, what each registers, and the ones that failed."""
    from plugins.manager import describe, get_plugin_manager

    settings = _settings()
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


def _backup_name(prefix: str) -> Path:
    from datetime import UTC, datetime

    from engine.paths import data_dir

    return data_dir() / "backups" / f"{prefix}-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S-%f')}.db"


@main.command()
@click.argument("target", type=click.Path(dir_okay=False, path_type=Path), required=False)
def backup(target: Path | None) -> None:
    """Copy the database (conversations, answers, feedback, indexed folders) to one file.

    Consistent even while the app is answering. Default: DATA_FOLDER/backups/assistant-TIME.db.
    The vector store is not copied: `assistant restore` rebuilds it from the database.
    """
    target = (target or _backup_name("assistant")).expanduser()
    store = _store()
    try:
        store.backup(target)
    except AssistantError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        store.close()
    click.echo(f"Backed up to {target} ({target.stat().st_size / 1e6:,.1f} MB).")


@main.command()
@click.argument("source", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--rebuild/--no-rebuild", default=True, show_default=True,
              help="Rebuild the vector store from the restored database.")
def restore(source: Path, yes: bool, rebuild: bool) -> None:
    """Replace the database with a backup. The current one is backed up first."""
    if not yes:
        click.confirm(f"Replace the database with {source}? (the current one is backed up first)", abort=True)
    from engine.backup import restore_database

    safety = _backup_name("before-restore")
    try:
        chunks = restore_database(source, safety)
    except AssistantError as exc:
        raise click.ClickException(str(exc)) from exc
    kept = f" The previous database is in {safety}." if safety.exists() else ""
    click.echo(f"Restored {source}.{kept}")
    if rebuild and chunks:
        from app.indexing import index_command

        index_command(_settings(), None, watch=False, rebuild=True, as_json=False)


def _register_commands() -> None:
    from app.cli_eval import eval_group
    from app.cli_memory import fork, import_conversations, memory
    from app.cli_serve import mcp_command, serve, web

    for command in (memory, fork, import_conversations, eval_group, serve, mcp_command, web):
        main.add_command(command)


_register_commands()
main.add_command(models)
