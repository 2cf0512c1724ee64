"""Everything that persists: the SQLite store and its migrations."""

from memory.store import Store

__all__ = ["Store"]
