"""What the screens share: the engine handed in (the one way a screen reaches it), our errors
shown as a notification, and the row under a table's cursor."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from textual.dom import DOMNode
from textual.screen import Screen

from engine import AssistantError

if TYPE_CHECKING:  # the chat screen's first frame needs neither (DataTable alone is ~25 ms to import)
    from textual.widgets import DataTable

    from engine import Engine

T = TypeVar("T")
Handler = TypeVar("Handler", bound=Callable[..., Awaitable[Any]])


class EngineScreen(Screen):
    """A screen over the engine, which it is given when made."""

    def __init__(self, engine: Engine) -> None:
        super().__init__()
        self.engine = engine


def show_error(node: DOMNode, exc: AssistantError, title: str = "", timeout: float | None = None) -> None:
    """Our error as a notification: its message (what went wrong and what to do), no traceback."""
    node.notify(str(exc), title=title, severity="error", timeout=timeout)


def shows_errors(title: str = "", timeout: float | None = None) -> Callable[[Handler], Handler]:
    """For a screen's async handler or worker: an AssistantError raised in it ends it with
    `show_error`, instead of a crashed worker. Put it under `@work` and `@on`."""

    def decorate(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def run(self: DOMNode, *args: Any, **kwargs: Any) -> Any:
            try:
                return await handler(self, *args, **kwargs)
            except AssistantError as exc:
                show_error(self, exc, title, timeout)
                return None

        return run  # type: ignore[return-value]

    return decorate


def row_at_cursor(table: DataTable, rows: Sequence[T]) -> T | None:
    """The row of `rows` (the table's rows, in order) under the cursor; None when there is none."""
    row = table.cursor_row
    if not rows or row is None or not 0 <= row < len(rows):
        return None
    return rows[row]
