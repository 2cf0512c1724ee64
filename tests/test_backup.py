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
    assert "Rebuilt the vector store: 1 chunk embedded." in done.stdout


def foreign_database(path: Path, application_id: int = 0, tables: str = "CREATE TABLE notes (text TEXT)") -> Path:
    conn = sqlite3.connect(path)
    conn.executescript(tables)
    conn.execute("PRAGMA user_version = 1")
    conn.execute(f"PRAGMA application_id = {application_id}")
    conn.commit()
    conn.close()
    return path


def test_a_foreign_database_is_refused_and_the_way_back_after_one_works(home: Path, tmp_path: Path) -> None:
    """Issue 18: a plain SQLite file with user_version = 1 passed check_backup, replaced the
    database, and then every command failed with "no such table: responses", `restore` too."""
    from memory.migrations import APPLICATION_ID, MIGRATIONS
    from tests.faults import old_database

    home.mkdir(parents=True, exist_ok=True)
    store = Store(home / "assistant.db")
    assert store.conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID  # ours, said so
    store.add_message(store.create_conversation("kept chat"), "user", "a question worth keeping")
    store.close()
    plain = foreign_database(tmp_path / "plain.db")
    refused = run("restore", "--yes", str(plain))
    assert refused.returncode == 1 and "is not an assistant database: it lacks conversations" in refused.stderr
    # Another program's file, even with tables of the same names, is refused by its application id.
    other = foreign_database(tmp_path / "other.db", 0x12345678, "CREATE TABLE conversations (id INTEGER)")
    refused = run("restore", "--yes", str(other))
    assert refused.returncode == 1 and "belongs to another program" in refused.stderr
    listed = run("history")
    assert listed.returncode == 0 and "kept chat" in listed.stdout  # nothing changed
    assert not (home / "backups").exists() or not list((home / "backups").iterdir())

    # An older backup, from before the application id, has our tables: accepted and brought up to date.
    old = tmp_path / "old.db"
    old_database(old, conversations=2, per_conversation=2)
    done = run("restore", "--yes", str(old))
    assert done.returncode == 0, done.stderr
    db = sqlite3.connect(home / "assistant.db")
    assert db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    assert db.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    assert db.execute("SELECT COUNT(*) FROM conversations").fetchone()[0] == 2
    db.close()
    [kept] = (home / "backups").glob("before-restore-*.db")
    assert "kept chat" in str(sqlite3.connect(kept).execute("SELECT title FROM conversations").fetchall())

    # The state an older version left after restoring a foreign file: every command names the way back...
    (home / "assistant.db").write_bytes(plain.read_bytes())
    for suffix in ("-wal", "-shm"):
        Path(f"{home / 'assistant.db'}{suffix}").unlink(missing_ok=True)
    broken = run("history")
    assert broken.returncode == 1 and "Traceback" not in broken.stderr
    assert "is not an assistant database" in broken.stderr and f"assistant restore {kept}" in broken.stderr
    # ...and that way back works.
    done = run("restore", "--yes", str(kept))
    assert done.returncode == 0, done.stderr
    listed = run("history")
    assert listed.returncode == 0 and "kept chat" in listed.stdout
