import sqlite3
import stat
import threading
from pathlib import Path

import pytest

import memory.store
from memory.errors import CorruptDatabaseError, DatabaseLockedError, NotFoundError
from memory.migrations import MIGRATIONS
from memory.store import Store


@pytest.fixture
def store(tmp_path: Path):
    store = Store(tmp_path / "data" / "assistant.db")
    yield store
    store.close()


def response_row(status: str, **extra) -> dict:
    return {"status": status, "backend": "local", "model": "m", "output_tokens": 3, **extra}


def test_migrations_on_a_blank_database(store: Store) -> None:
    assert store.schema_version == len(MIGRATIONS)
    tables = set(store.db.table_names())
    assert {"conversations", "messages", "responses", "feedback", "model_files"} <= tables
    assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert store.conn.execute("PRAGMA busy_timeout").fetchone()[0] >= 1000
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.path.parent.stat().st_mode) == 0o700


def test_reopening_does_not_migrate_again(store: Store) -> None:
    cid = store.create_conversation("hello")
    again = Store(store.path)
    assert again.schema_version == len(MIGRATIONS)
    assert again.conversation(cid)["title"] == "hello"
    again.close()


def test_two_processes_starting_at_once_migrate_once(tmp_path: Path) -> None:
    path = tmp_path / "race.db"
    errors: list[BaseException] = []

    def open_store() -> None:
        try:
            Store(path).close()
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=open_store) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert Store(path).schema_version == len(MIGRATIONS)


@pytest.mark.parametrize(
    ("status", "text", "partial"),
    [("ok", "Paris.", False), ("error", "", True), ("cancelled", "Par", True)],
)
def test_rows_for_success_error_and_cancel(store: Store, status: str, text: str, partial: bool) -> None:
    cid = store.create_conversation("capital?")
    store.add_message(cid, "user", "capital?")
    message_id, response_id = store.record_answer(
        cid, text, partial, response_row(status, error="boom" if status == "error" else None)
    )
    row = store.response(response_id)
    assert row["status"] == status and row["conversation_id"] == cid
    messages = store.messages(cid)
    if text:
        assert messages[-1]["content"] == text
        assert messages[-1]["status"] == ("partial" if partial else "complete")
        assert messages[-1]["response_id"] == response_id
        assert row["message_id"] == message_id
    else:
        assert message_id is None and len(messages) == 1
        assert row["error"] == "boom"


def test_feedback_and_cascade(store: Store) -> None:
    cid = store.create_conversation("q")
    _, rid = store.record_answer(cid, "a", False, response_row("ok"))
    fid = store.add_feedback(rid, 1)
    store.set_feedback_comment(fid, "helpful")
    store.add_feedback(rid, -1)
    assert [f["rating"] for f in store.feedback(rid)] == [1, -1]
    assert store.feedback(rid)[0]["comment"] == "helpful"
    assert store.messages(cid)[-1]["rating"] == -1  # the latest rating wins
    with pytest.raises(NotFoundError, match="no response with id 999"):
        store.add_feedback(999, 1)
    store.delete_conversation(cid)
    assert store.health()["responses"] == 0 and store.health()["feedback"] == 0


def test_rename_and_list(store: Store) -> None:
    first = store.create_conversation("first")
    second = store.create_conversation("  second\n question  ")
    store.rename_conversation(first, "renamed")
    store.add_message(first, "user", "bump")  # most recently used comes first
    rows = store.conversations()
    assert [r["id"] for r in rows] == [first, second]
    assert rows[0]["title"] == "renamed" and rows[1]["title"] == "second question"
    assert rows[0]["messages"] == 1


def test_corrupt_database_is_named(tmp_path: Path) -> None:
    path = tmp_path / "assistant.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(CorruptDatabaseError, match="assistant.db is damaged"):
        Store(path)


def test_locked_database_gives_a_clear_error(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    cid = store.create_conversation("q")
    other = sqlite3.connect(store.path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    store.conn.execute("PRAGMA busy_timeout = 100")
    try:
        with pytest.raises(DatabaseLockedError, match="locked by another program"):
            store.add_message(cid, "user", "hello")
    finally:
        other.execute("ROLLBACK")
        other.close()
    store.add_message(cid, "user", "hello")  # works again once the other writer is gone
    assert memory.store.BUSY_TIMEOUT_S >= 5


def test_model_hash_cache(store: Store) -> None:
    assert store.cached_model_hash("/m.gguf", 10, 1) is None
    store.save_model_hash("/m.gguf", 10, 1, "abc")
    assert store.cached_model_hash("/m.gguf", 10, 1) == "abc"
    assert store.cached_model_hash("/m.gguf", 11, 1) is None


def test_full_text_search_over_conversations(tmp_path: Path) -> None:
    store = Store(tmp_path / "a.db")
    garden = store.create_conversation("garden")
    store.add_message(garden, "user", "How deep should I plant tulip bulbs?")
    store.add_message(garden, "assistant", "Plant tulips about 15 cm deep, pointy end up.")
    cooking = store.create_conversation("cooking")
    store.add_message(cooking, "user", "A recipe for onion soup?")
    found = store.search_conversations("tulip planting")  # stemmed: planting ~ plant, tulip ~ tulips
    assert [r["id"] for r in found] == [garden] and "[" in found[0]["snippet"]
    assert store.search_conversations('onion "soup') [0]["id"] == cooking  # quotes in the query are harmless
    assert store.search_conversations("---") == []
    store.delete_conversation(garden)
    assert store.search_conversations("tulip") == []
    store.close()
