"""`assistant ask`: one question answered on stdout as it streams; notes and stats on stderr."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from pathlib import Path
from typing import Any

import click

from app.cli.common import counted, get_settings, run, user_errors
from engine import (
    AssistantError,
    Engine,
    Failed,
    Finished,
    Started,
    Token,
    evidence_segments,
    printable_line,
    printable_text,
)


@click.command()
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
    settings = get_settings(
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
        from engine import check_schema

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
        code = run(_ask(engine, question, conversation, show_stats, show_sources, backend, no_cache, schema,
                         incognito))
    except KeyboardInterrupt:
        click.echo("\nStopped; the partial answer is saved.", err=True)
        sys.exit(130)
    sys.exit(code)


def _check_model(settings: Any) -> None:
    """A --model that is not a usable GGUF file is refused before the question is saved: the
    engine saves it first (so nothing the user wrote is lost), which left a conversation of one
    unanswered question behind. Only the header is read; the weights load later, as usual."""
    from engine import read_gguf, resolve_model

    with user_errors():
        read_gguf(resolve_model(settings.model, settings.models_dir))


def _sources_text(sources: Any, groundedness: float | None = None, styled: bool = False) -> str:
    """The sources under an answer, each with the line(s) that matched (the question's and the
    answer's words in bold on a terminal)."""
    lines = ["", "Sources:"]
    for source in sources:
        mark = f"[{source.number}]" if source.cited else "   "
        # matched: the model did not cite it, the assistant found it supports a sentence.
        note = ("  (retrieved, not cited)" if not source.cited
                else "  (matched)" if getattr(source, "kind", "") == "attributed" else "")
        lines.append(f"  {mark} {printable_line(source.passage.location)}{note}")
        for line in getattr(source, "evidence", ()):
            runs = [(printable_line(run), matched and styled) for run, matched in evidence_segments(line)]
            text = "".join(click.style(run, bold=True) if bold else run for run, bold in runs)
            lines.append(f"        {line.line}: {text}")
    if groundedness is not None:
        lines.append(f"Grounded: {groundedness:.0%} of the answer's claims are supported by these sources.")
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
                    out.write(printable_text(event.text))  # an answer is not allowed to drive the terminal
                    out.flush()
                elif isinstance(event, Started):
                    _started_notes(event, len(question))
                elif isinstance(event, Finished):
                    out.write("\n")
                    if not event.text.strip():
                        click.echo("Note: the answer is empty.", err=True)
                    if event.sources and show_sources:
                        out.write(_sources_text(event.sources, event.groundedness, styled=out.isatty()))
                    for p in event.proposals:
                        fact = printable_line(p["text"])
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
                    click.echo(f"Error: {printable_text(str(event.error))}", err=True)
                    return 1
        return 0
    finally:
        await engine.close()


async def _ask_json(engine: Engine, question: str, conversation: int | None, backend: str | None,
                    regenerate: bool, schema: dict) -> int:
    """Structured output: printed only once valid; an invalid answer is asked again once (afresh,
    in the same place: a new conversation, or the one given)."""
    from engine import InvalidOutputError

    try:
        first_problem = None
        for attempt in range(2):
            events = [e async for e in engine.ask(question, conversation, backend, regenerate or attempt > 0,
                                                  json_schema=schema)]
            last = events[-1]
            if isinstance(last, Finished):
                click.echo(printable_text(last.text))
                return 0
            error = last.error
            if isinstance(error, InvalidOutputError) and attempt == 0:
                first_problem = error.message
                click.echo(f"Note: {printable_text(error.message)} Asking once more.", err=True)
                continue
            if isinstance(error, InvalidOutputError) and error.message == first_problem:
                # The reason was printed once already.
                click.echo(f"Error: the second answer was not valid either, for the same reason. "
                           f"{error.hint}", err=True)
            else:
                click.echo(f"Error: {printable_text(str(error))}", err=True)
            return 1
        return 1
    finally:
        await engine.close()


async def _confirm_tool(tool: Any, arguments: dict) -> bool:
    """Asked on the terminal before a tool with side effects runs (never when stdin is piped)."""
    shown = printable_line(json.dumps(arguments, ensure_ascii=False))
    question = f"Let the model run {tool.name} with {shown}?"
    return await asyncio.to_thread(click.confirm, question, default=False, err=True)


def _started_notes(event: Started, question_chars: int = 0) -> None:
    """On stderr, so a piped answer stays clean: what was passed over, and where the question went.
    Notes quote text from outside (servers' errors, file text in tool results, memories): one line
    each, with control characters shown escaped."""
    for note in event.notices:
        click.echo(f"Note: {printable_line(note)}", err=True)
    if event.remote:
        click.echo(f"↗ Sent to {event.backend} ({event.model}) at {event.endpoint}.", err=True)
    if event.similar_question:
        click.echo(f"Note: answered from a similar earlier question (response {event.cached_from}): "
                   f"“{printable_line(event.similar_question[:80])}”. --no-cache answers this one anew.",
                   err=True)
    if event.question_truncated:
        size = f" ({question_chars:,} characters)" if question_chars else ""
        click.echo(f"Note: the question{size} was shortened to fit the context window: the model does not "
                   "read all of it. Ask about a smaller part, or use a model with a larger n_ctx.", err=True)
    for step in event.tool_steps:
        call = printable_line(f"{step.call.name}({json.dumps(step.call.arguments, ensure_ascii=False)})")
        click.echo(f"🔧 {call} → {step.status}: {printable_line(step.result[:200])}", err=True)
    if event.memories:
        used = "; ".join(f"#{m.id} {printable_line(m.text)}" for m in event.memories)
        count = len(event.memories)
        click.echo(f"Note: used {count} memor{'y' if count == 1 else 'ies'}: {used}", err=True)
    if event.summarized_messages:
        verb = "is" if event.summarized_messages == 1 else "are"
        older = counted(event.summarized_messages, "older message")
        click.echo(f"Note: {older} {verb} in the prompt as a summary.", err=True)


COMMANDS = [ask]
