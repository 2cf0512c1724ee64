"""Backup while the database is being written, and restore, with real processes and SQLite."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

from memory.store import Store


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "app", *args], capture_output=True, text=True, timeout=120)


def test_a_backup_taken_during_writes_is_consistent_and_restores(home: Path, tmp_path: Path) -> None:
    home.mkdir(parents=True, exist_ok=True)
    store = Store(home / "assistant.db")
    conversation = store.create_conversation("busy")
    stop = threading.Event()
    written = [0]

    def writer() -> None:  # answers keep arriving while the backup runs, each in one transaction
        while not stop.is_set():
            question = store.add_message(conversation, "user", f"question {written[0]}")
            store.record_answer(conversation, f"answer {written[0]}", False, {
                "prompt_message_id": question, "status": "ok", "backend": "local", "model": "m",
                "trace_id": "t"}, [{"name": "generation", "parent": None, "start_ms": 0.0, "duration_ms": 1.0,
                                    "attrs": None}])
            written[0] += 1

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        while written[0] < 50:
            pass
        backups = [tmp_path / f"b{i}.db" for i in range(3)]
        for target in backups:
            done = run("backup", str(target))
            assert done.returncode == 0, done.stderr
    finally:
        stop.set()
        thread.join()
    for target in backups:
        db = sqlite3.connect(target)
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        # Whole answers only: every answer message has its response row and its span.
        answers = db.execute("SELECT COUNT(*) FROM messages WHERE role = 'assistant'").fetchone()[0]
        responses = db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]
        spans = db.execute("SELECT COUNT(*) FROM spans").fetchone()[0]
        assert answers == responses == spans > 0
        assert oct(target.stat().st_mode & 0o777) == "0o600"
        db.close()
    total = store.conn.execute("SELECT COUNT(*) FROM responses").fetchone()[0]
    store.close()
    # Restore an earlier backup: the database goes back to it, and the current one is kept aside.
    kept = sqlite3.connect(backups[0]).execute("SELECT COUNT(*) FROM responses").fetchone()[0]
    assert kept < total
    done = run("restore", "--yes", str(backups[0]))
    assert done.returncode == 0, done.stderr
    db = sqlite3.connect(home / "assistant.db")
    assert db.execute("SELECT COUNT(*) FROM responses").fetchone()[0] == kept
    db.close()
    safety = next((home / "backups").glob("before-restore-*.db"))
    assert sqlite3.connect(safety).execute("SELECT COUNT(*) FROM responses").fetchone()[0] == total
    # Not a database: refused, nothing changed.
    junk = tmp_path / "junk.db"
    junk.write_text("not a database")
    refused = run("restore", "--yes", str(junk))
    assert refused.returncode == 1 and "not a readable assistant database" in refused.stderr
    assert run("backup", str(backups[0])).returncode == 1  # never overwrites


def test_restore_rebuilds_the_vector_store(home: Path, tmp_path: Path) -> None:
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "plan.md").write_text("# Plan\n\nThe garden budget is 400 euros.\n")
    assert run("index", str(notes)).returncode == 0
    assert run("backup", str(tmp_path / "b.db")).returncode == 0
    done = run("restore", "--yes", str(tmp_path / "b.db"))
    assert done.returncode == 0, done.stderr
    assert "Rebuilt the vector store: 1 chunks embedded." in done.stdout
