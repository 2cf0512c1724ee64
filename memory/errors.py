"""Errors raised by the memory layer.

`AssistantError`, the root of the project's one error tree, lives here because `memory` is the
bottom layer and may not import `engine`. The whole tree is drawn in `engine/errors.py`.
"""

from __future__ import annotations


class AssistantError(Exception):
    """An error the user should see: the message names the thing and says what to do."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} {self.hint}" if self.hint else self.message


class StoreError(AssistantError):
    """The SQLite database could not be read or written."""


class DatabaseLockedError(StoreError):
    """Another process held the database longer than the busy timeout."""


class StorageFullError(StoreError):
    """The disk holding the data folder is full."""


class CorruptDatabaseError(StoreError):
    """The database file is not a SQLite database, or is damaged."""


class NotFoundError(StoreError):
    """A conversation, message or response id that does not exist."""
