"""Restoring the database from a backup, for the CLI (the store owns the SQLite side)."""

from __future__ import annotations

from pathlib import Path

from engine.paths import database_file, ensure_private_dir
from memory.store import Store


def restore_database(source: Path, safety: Path) -> int:
    """Put the backup `source` in place of the database, after keeping the current one in
    `safety`; returns how many indexed chunks the restored database holds (their vectors need a
    rebuild). The current database is never opened as a store, so this also works when it is not
    an assistant database at all: the way back after a bad restore."""
    path = database_file()
    Store.check_backup(source)  # before anything changes
    ensure_private_dir(path.parent)
    if path.exists():
        Store.backup_file(path, safety)
    Store.restore_file(path, source)
    store = Store(path)  # brings an older backup's schema up to date
    try:
        return store.conn.execute("SELECT COUNT(*) FROM chunks").fetchone()[0]
    finally:
        store.close()
