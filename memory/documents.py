"""What loaders produce and the chunker consumes: text with the place it came from."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from memory.errors import AssistantError


@dataclass(frozen=True)
class Line:
    text: str
    line: int  # 1-based line number in the file; for paged formats, the line within the page
    page: int | None = None  # 1-based page number for paged formats (PDF), else None


@dataclass(frozen=True)
class Chunk:
    text: str
    start_line: int
    end_line: int
    page: int | None  # the page of the first line, for paged formats
    heading: str | None = None  # the nearest heading(s), e.g. "Budget > 2025"


class LoaderError(AssistantError):
    """A file a loader could not read; the message is the reason recorded for the skip."""


# A loader turns a file into its lines; it raises LoaderError with a short reason on bad input.
Loader = Callable[[Path], list[Line]]
