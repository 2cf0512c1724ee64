"""What every `assistant` command shares: settings, running a coroutine, our errors as clean exits,
the log file, and small text helpers. Topic modules import from here, never from each other."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import logging.handlers
import os
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import click

from engine import AssistantError, Engine, RedactingFilter, Settings, load_settings

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


class _PrivateLogFile(logging.handlers.RotatingFileHandler):
    """Log files readable by the user only (0600), also the ones rotation starts anew."""

    def _open(self):  # noqa: ANN202 - a text stream, as in logging.FileHandler
        fd = os.open(self.baseFilename, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        if hasattr(os, "fchmod"):  # not on Windows, where the mode means little anyway
            os.fchmod(fd, 0o600)  # a file left by an older version, or created under another umask
        return open(fd, self.mode, encoding=self.encoding, errors=self.errors)  # noqa: SIM115


def log_to_file() -> None:
    """Library warnings (pypdf, chromadb, ...) go to a file in the data folder: on stderr they
    would scribble over the TUI and the progress bars."""
    from engine import data_dir, ensure_private_dir

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
