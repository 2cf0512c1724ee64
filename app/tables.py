"""Tables for the terminal that never cut a path or a number.

Rich squeezes a table wider than the terminal by cutting cells ("~/no…"), which at 80 columns
(also the width when piped) made two folders look the same. Here every column keeps its cells
whole unless the caller lets it wrap (`overflow="fold"`, for free text: a title, a memory, an
error); a table that still does not fit is printed stacked instead: one block per row, one
"column: value" line per cell.
"""

from __future__ import annotations

import textwrap
from typing import Any

import click
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

WRAP = "fold"  # a column's overflow that lets it wrap: at spaces, and inside a word longer than the column
WRAP_MIN = 20  # narrower, a wrapped column is a word per line (Rich would fold "memory" into "mem/ory")


def print_table(table: Table, console: Console | None = None) -> None:
    """Print `table` whole: as a table when it fits the console's width, else stacked."""
    console = console or Console()
    for column in table.columns:
        if column.overflow != WRAP:
            column.no_wrap = True  # paths, numbers, ids, dates: whole or not at all
        else:
            column.min_width = max(column.min_width or 0, WRAP_MIN)
    # Measured without the width limit: Measurement.get clamps to it, hiding that it does not fit.
    needed = Measurement.get(console, console.options.update_width(1 << 20), table).minimum
    if needed <= console.width:
        console.print(table)
        return
    if table.title:
        click.echo(_plain(table.title))
    headers = [_plain(column.header) for column in table.columns]
    rows = zip(*(list(column.cells) for column in table.columns), strict=True)
    for number, row in enumerate(rows):
        if number or table.title:
            click.echo()
        cells = [_plain(cell) for cell in row]
        click.echo(cells[0] or "-")  # the first column names the row (a folder, a backend, a day)
        for header, cell in zip(headers[1:], cells[1:], strict=True):
            if cell:
                # Wrapped at spaces only: a path longer than the line stays whole (the terminal
                # wraps it, and copying it gives it back in one piece).
                click.echo(textwrap.fill(f"  {header}: {cell}", console.width, subsequent_indent="    ",
                                         break_long_words=False, break_on_hyphens=False))


def text(value: Any) -> Text:
    """A cell shown as it is: brackets in a memory or a title are not Rich markup."""
    return Text(str(value))


def _plain(cell: Any) -> str:
    if isinstance(cell, Text):
        return cell.plain
    if isinstance(cell, str):
        return Text.from_markup(cell).plain
    return str(cell)
