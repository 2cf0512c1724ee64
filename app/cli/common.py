"""What every `assistant` command shares: settings, running a coroutine, our errors as clean exits,
and small text helpers (the log file: app/logfile.py). Topic modules import from here, never from
each other."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import click

from engine import AssistantError, Engine, Settings, load_settings

T = TypeVar("T")


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Our errors (a bad setting, an unknown id, a locked database) end the command with their
    message and exit 1, never a traceback. A context manager, and a decorator too."""
    try:
        yield
    except AssistantError as exc:
        raise click.ClickException(str(exc)) from exc


def get_settings(**overrides: Any) -> Settings:
    """The settings (config file, environment) with the command's options on top; None: not given."""
    with user_errors():
        return load_settings().replace(**overrides)


def root_model() -> str | None:
    """`assistant --model X COMMAND`: the model given before the command, if any."""
    obj = click.get_current_context().find_root().obj
    return obj.get("model") if isinstance(obj, dict) else None


def run(coro: Awaitable[T]) -> T:
    """Run a coroutine to its end, from a command (there is no event loop yet)."""
    with user_errors():
        return asyncio.run(coro)  # type: ignore[arg-type]


def with_engine(work: Callable[[Engine], Awaitable[T]]) -> T:
    """Run `work` with an engine (no model is loaded unless `work` asks), closed afterwards."""

    async def run_work() -> T:
        engine = Engine(get_settings())
        try:
            return await work(engine)
        finally:
            await engine.close()

    return run(run_work())


def counted(n: int, word: str, words: str | None = None) -> str:
    """'1 conversation', '2 conversations': `words` for an irregular plural (memory, memories)."""
    return f"{n:,} {word if n == 1 else words or word + 's'}"


def console(stderr: bool = False) -> Any:
    """A rich console (imported only when a command prints a table)."""
    from rich.console import Console

    return Console(stderr=stderr)


def write_lines(output: Path, lines: list[str]) -> None:
    try:
        output.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    except OSError as exc:
        raise click.ClickException(f"Cannot write {output}: {exc.strerror}.") from exc


def read_lines(source: Path) -> list[str]:
    try:
        return source.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise click.ClickException(f"Cannot read {source}: {exc}.") from exc
