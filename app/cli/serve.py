"""`assistant serve`, `assistant mcp` and `assistant web`: the assistant for other programs and a
browser. Their servers are imported only when the command runs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from app.cli.common import get_settings
from engine import AssistantError, Engine

F = TypeVar("F", bound=Callable[..., Any])


def listening(port: int, token_variable: str, token_help: str) -> Callable[[F], F]:
    """--host, --port and --token, as `serve` and `web` take them (each with its own port and variable)."""
    options = [
        click.option("--host", default="127.0.0.1", show_default=True,
                     help="Address to listen on. Any but a loopback address needs a token."),
        click.option("--port", default=port, show_default=True, type=click.IntRange(0, 65535),
                     help="Port (0: any free one, printed at start)."),
        click.option("--token", envvar=token_variable, show_envvar=True, help=token_help),
    ]

    def decorate(command: F) -> F:
        for option in reversed(options):  # the first one listed comes first in --help
            command = option(command)
        return command

    return decorate


@click.command()
@listening(8000, "ASSISTANT_SERVE_TOKEN",
           "Clients must send `Authorization: Bearer TOKEN` (prefer the variable: ps shows options).")
@click.option("--concurrency", default=1, show_default=True, type=click.IntRange(1),
              help="Answers generated at once.")
@click.option("--queue", default=16, show_default=True, type=click.IntRange(0),
              help="Requests that may wait for a turn; more are refused with 429 and Retry-After.")
@click.option("--max-body-kb", default=1024, show_default=True, type=click.IntRange(1),
              help="Largest request body (413 beyond).")
@click.option("--max-prompt-chars", default=100_000, show_default=True, type=click.IntRange(1),
              help="Most characters in a request's messages (400 beyond).")
@click.option("--cors-origin", "cors_origins", multiple=True,
              help="Allow browser pages from this origin (repeatable). None: no CORS headers.")
@click.option("--quiet", is_flag=True, help="No line per request.")
@click.option("--model", "-m", help="GGUF file path, or a model name in models_dir.")
@click.pass_context
def serve(ctx: click.Context, host: str, port: int, token: str | None, concurrency: int, queue: int,
          max_body_kb: int, max_prompt_chars: int, cors_origins: tuple[str, ...], quiet: bool,
          model: str | None) -> None:
    """An OpenAI-compatible HTTP API: /v1/chat/completions, /v1/models, /v1/embeddings.

    \b
    assistant serve                         # http://127.0.0.1:8000/v1
    curl http://127.0.0.1:8000/v1/chat/completions -H 'Content-Type: application/json' \\
      -d '{"model": "assistant", "messages": [{"role": "user", "content": "Hi"}]}'

    Model `assistant` answers from the model alone; `assistant-rag` also uses your indexed
    folders and memory and lists its sources. Every answer is logged like one typed in the app.
    Details: docs/serve.md.
    """
    from app.serve import ServeOptions
    from app.serve import serve as run

    options = ServeOptions(host=host, port=port, token=token or None, concurrency=concurrency, queue=queue,
                           max_body_bytes=max_body_kb * 1024, max_prompt_chars=max_prompt_chars,
                           cors_origins=cors_origins, access_log=not quiet)
    try:
        options.check()
        engine = Engine(get_settings(model=model or (ctx.obj or {}).get("model")))

        def announce(url: str) -> None:
            guard = "Bearer token required" if token else "no token (loopback only)"
            click.echo(f"Serving {engine.backend.model_name} on {url} ({guard}); Ctrl-C stops.", err=True)

        run(engine, options, announce)
    except AssistantError as exc:
        raise click.ClickException(str(exc)) from exc


@click.command("mcp")
@click.pass_context
def mcp_command(ctx: click.Context) -> None:
    """Your indexed folders and memory as MCP tools over stdio, for agents.

    \b
    Tools: search_folders, read_passage, search_memory (read-only); with
    `mcp_writes = true` in the config file also remember and index_folder.
    An agent starts it itself; its config: docs/serve.md.
    """
    try:
        import mcp  # noqa: F401
    except ImportError as exc:
        raise click.ClickException("The MCP server needs the `mcp` package: pipx inject assistant mcp "
                                   "(or pip install 'assistant[mcp]').") from exc
    from app.mcp_server import run

    try:
        run(get_settings(model=(ctx.obj or {}).get("model")))
    except AssistantError as exc:
        raise click.ClickException(str(exc)) from exc


@click.command()
@listening(8080, "ASSISTANT_WEB_TOKEN", "Needed in the URL once (/?token=...), then kept in a cookie.")
@click.option("--public-url", help="The address browsers use, when it is not http://HOST:PORT.")
@click.option("--model", "-m", help="GGUF file path, or a model name in models_dir.")
@click.pass_context
def web(ctx: click.Context, host: str, port: int, token: str | None, public_url: str | None,
        model: str | None) -> None:
    """The chat app in a browser (textual-serve): each tab runs its own app.

    \b
    assistant web        # then open http://127.0.0.1:8080/
    """
    from app.web import serve as run

    try:
        run(model or (ctx.obj or {}).get("model"), host, port, token or None,
            lambda url: click.echo(f"The chat app is at {url} ; Ctrl-C stops.", err=True), public_url)
    except AssistantError as exc:
        raise click.ClickException(str(exc)) from exc


COMMANDS = [serve, mcp_command, web]
