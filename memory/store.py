"""The SQLite store: the source of truth for conversations, responses and feedback.

One connection per `Store`, shared by worker threads under a lock (callers on an event loop use
`asyncio.to_thread`). WAL lets other processes read while we write; `busy_timeout` makes writers
wait for each other instead of failing; every write is one short transaction, so a crash loses
at most the turn in flight.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from memory.errors import (
    CorruptDatabaseError,
    DatabaseLockedError,
    NotFoundError,
    StorageFullError,
    StoreError,
)
from memory.migrations import APPLICATION_ID, MIGRATIONS

BUSY_TIMEOUT_S = 10.0
LOW_SPACE_BYTES = 1 << 20  # an I/O error with less free space than this is a full disk
T = TypeVar("T")

# Every text written as a message, draft, summary, response row, span or cached answer passes
# through these first. engine.secrets adds the one that masks the API keys and header values in
# use (memory cannot import engine): an answer or error that echoed a key put it in `messages`,
# their full-text index, `responses.route`, and so in every backup and export.
_redactors: list[Callable[[str], str]] = []


def add_redactor(redact: Callable[[str], str]) -> None:
    if redact not in _redactors:
        _redactors.append(redact)


def _clean(text: T) -> T:
    if isinstance(text, str):
        for redact in _redactors:
            text = redact(text)  # type: ignore[assignment]
    return text


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def dicts(cursor: sqlite3.Cursor) -> list[dict[str, Any]]:
    """The cursor's rows as dicts keyed by column name."""
    names = [c[0] for c in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def translated(method: Callable[..., T]) -> Callable[..., T]:
    """For the methods of a Store or a StoreView (another module's rows): each runs under the
    store's lock, and its sqlite3 errors become the project's error tree, naming the database file."""

    @functools.wraps(method)
    def wrapper(self: Store, *args: Any, **kwargs: Any) -> T:
        try:
            with self._lock:
                return method(self, *args, **kwargs)
        except sqlite3.Error as exc:
            raise _translate(exc, self.path) from exc

    return wrapper


def _translate(exc: sqlite3.Error, path: Path) -> StoreError:
    code = (getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF
    text = str(exc)
    if code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED) or "locked" in text:
        return DatabaseLockedError(
            f"The database {path} is locked by another program.",
            hint="Another assistant may be writing; try again in a moment.",
        )
    # On a full disk SQLite in WAL mode often fails to grow its shared-memory file first, and says
    # "disk I/O error" (SQLITE_IOERR_SHMSIZE), not "full": the free space tells which it is.
    if code == sqlite3.SQLITE_FULL or "disk is full" in text or (
            code == sqlite3.SQLITE_IOERR and _free_bytes(path) < LOW_SPACE_BYTES):
        return StorageFullError(
            f"The disk holding {path} is full; nothing more can be saved.",
            hint="Free some space, then try again; nothing saved before is lost.",
        )
    if code in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB) or "not a database" in text:
        return CorruptDatabaseError(
            f"The database {path} is damaged or not a SQLite database ({text}).",
            hint="Move it aside and start again; `assistant doctor` checks it.",
        )
    if code == sqlite3.SQLITE_IOERR:
        return StoreError(f"The database {path} failed: {text}.",
                          hint="Check the disk holding it: its free space, its permissions, its health.")
    return StoreError(f"The database {path} failed: {text}.")


def _free_bytes(path: Path) -> int:
    try:
        stat = os.statvfs(path.parent)
    except (OSError, AttributeError):  # no statvfs on Windows: assume space is not the cause
        return LOW_SPACE_BYTES
    return stat.f_bavail * stat.f_frsize


class Store:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.RLock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            conn = sqlite3.connect(
                self.path, timeout=BUSY_TIMEOUT_S, check_same_thread=False, isolation_level=None
            )
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(
                f"The database {self.path} cannot be opened: {exc}.",
                hint="Check that the data folder exists and is writable (ASSISTANT_HOME).",
            ) from exc
        # Imported here, in the thread that opens the store: its 70 ms then overlap with the
        # model load instead of delaying the first answer.
        import sqlite_utils

        self.conn = conn
        self.db = sqlite_utils.Database(conn)
        try:
            self._setup()
        except BaseException:
            conn.close()
            raise

    @translated
    def _setup(self) -> None:
        os.chmod(self.path, 0o600)
        self.conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        self._switch_to_wal()
        self.conn.execute("PRAGMA foreign_keys = ON")
        # Safe with WAL: a power cut loses at most the last commit, never corrupts.
        self.conn.execute("PRAGMA synchronous = NORMAL")
        version = self.schema_version
        if version and self.conn.execute("PRAGMA application_id").fetchone()[0] != APPLICATION_ID:
            # Not stamped as ours: an older database (fine, if it has its schema's tables), or another
            # program's file put here, on which every migration and command would fail.
            why = _not_ours(self.conn, version)
            if why:
                raise CorruptDatabaseError(f"The database {self.path} is not an assistant database: {why}.",
                                           hint=_way_back(self.path))
        self._migrate()

    def _switch_to_wal(self) -> None:
        # Switching a new file to WAL needs a moment's exclusive lock, and SQLite answers "locked"
        # at once instead of calling the busy handler: processes starting together take turns.
        deadline = time.monotonic() + BUSY_TIMEOUT_S
        while True:
            try:
                self.conn.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    def _migrate(self) -> None:
        for number in range(self.schema_version + 1, len(MIGRATIONS) + 1):
            # BEGIN IMMEDIATE takes the write lock first, so two processes starting at once
            # cannot both apply the same migration.
            with self._transaction():
                if self.schema_version >= number:  # another process got there first
                    continue
                for statement in _statements(MIGRATIONS[number - 1]):
                    self.conn.execute(statement)
                self.conn.execute(f"PRAGMA user_version = {number}")

    @property
    def schema_version(self) -> int:
        return self.conn.execute("PRAGMA user_version").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self.conn.close()

    # conversations and messages -------------------------------------------------------------

    @translated
    def create_conversation(self, title: str) -> int:
        stamp = now()
        row = {"title": _title(title), "created_at": stamp, "updated_at": stamp}
        return self.db["conversations"].insert(row).last_pk

    @translated
    def conversation(self, conversation_id: int) -> dict[str, Any]:
        return self._get("conversations", conversation_id, "conversation")

    @translated
    def conversations(self, limit: int = 100) -> list[dict[str, Any]]:
        sql = """
            SELECT c.*, (SELECT COUNT(*) FROM messages m WHERE m.conversation_id = c.id) AS messages
            FROM conversations c ORDER BY c.updated_at DESC, c.id DESC LIMIT ?
        """
        return list(self.db.query(sql, [limit]))

    @translated
    def search_conversations(self, query: str, limit: int = 50) -> list[dict[str, Any]]:
        """Conversations whose messages match every word of `query` (best first), each with a
        snippet of its best matching message."""
        words = re.findall(r"\w+", query)
        if not words:
            return []
        match = " ".join(f'"{w}"' for w in words)
        best: dict[int, str] = {}  # conversation id -> snippet of its best message, in rank order
        for conversation_id, snippet in self.conn.execute(
            """SELECT m.conversation_id, snippet(messages_fts, 0, '[', ']', '…', 12)
               FROM messages_fts JOIN messages m ON m.id = messages_fts.rowid
               WHERE messages_fts MATCH ? ORDER BY bm25(messages_fts) LIMIT 1000""",
            [match],
        ):
            best.setdefault(conversation_id, snippet)
        ids = list(best)[:limit]
        if not ids:
            return []
        marks = ",".join("?" * len(ids))
        rows = {r["id"]: r for r in dicts(self.conn.execute(
            f"""SELECT c.*, (SELECT COUNT(*) FROM messages m WHERE m.conversation_id = c.id) AS messages
                FROM conversations c WHERE c.id IN ({marks})""", ids))}
        return [{**rows[i], "snippet": best[i]} for i in ids if i in rows]

    @translated
    def rename_conversation(self, conversation_id: int, title: str) -> None:
        self._get("conversations", conversation_id, "conversation")
        self.db["conversations"].update(conversation_id, {"title": _title(title)})

    @translated
    def delete_conversation(self, conversation_id: int) -> None:
        self._get("conversations", conversation_id, "conversation")
        self.conn.execute("DELETE FROM conversations WHERE id = ?", [conversation_id])

    @translated
    def add_message(
        self, conversation_id: int, role: str, content: str, status: str = "complete"
    ) -> int:
        with self._transaction():
            return self._insert_message(conversation_id, role, content, status)

    def _insert_message(self, conversation_id: int, role: str, content: str, status: str) -> int:
        stamp = now()
        message_id = self._insert(
            "messages",
            {
                "conversation_id": conversation_id,
                "role": role,
                "content": _clean(content),
                "status": status,
                "created_at": stamp,
            },
        )
        self.conn.execute(
            "UPDATE conversations SET updated_at = ? WHERE id = ?", [stamp, conversation_id]
        )
        return message_id

    @translated
    def messages(self, conversation_id: int) -> list[dict[str, Any]]:
        """The conversation's messages in order; assistant messages carry their response id and
        latest rating."""
        sql = """
            SELECT m.*, r.id AS response_id, r.retrieved_chunk_ids, r.backend, r.model, r.remote,
                r.groundedness, r.attribution,
                (SELECT f.rating FROM feedback f WHERE f.response_id = r.id
                 ORDER BY f.id DESC LIMIT 1) AS rating
            FROM messages m LEFT JOIN responses r ON r.message_id = m.id
            WHERE m.conversation_id = ? ORDER BY m.id
        """
        return list(self.db.query(sql, [conversation_id]))

    @translated
    def answers_without_text(self, conversation_id: int) -> dict[int, dict[str, Any]]:
        """The latest answer to each question of the conversation that has a response row but no
        message (stopped or failed before any text), by question message id."""
        sql = """
            SELECT r.id AS response_id, r.prompt_message_id, r.status AS response_status, r.backend,
                r.model, r.remote, r.created_at,
                (SELECT f.rating FROM feedback f WHERE f.response_id = r.id
                 ORDER BY f.id DESC LIMIT 1) AS rating
            FROM responses r JOIN messages m ON m.id = r.prompt_message_id
            WHERE m.conversation_id = ? AND r.message_id IS NULL ORDER BY r.id
        """
        return {row["prompt_message_id"]: row for row in self.db.query(sql, [conversation_id])}

    @translated
    def set_incognito(self, conversation_id: int, on: bool) -> None:
        self._get("conversations", conversation_id, "conversation")
        self.conn.execute("UPDATE conversations SET incognito = ? WHERE id = ?", [int(on), conversation_id])

    # summaries of older turns ----------------------------------------------------------------

    @translated
    def summary(self, conversation_id: int) -> dict[str, Any] | None:
        """The latest summary of the conversation's older turns (those up to `upto_message_id`)."""
        found = dicts(self.conn.execute(
            "SELECT * FROM summaries WHERE conversation_id = ?"
            " ORDER BY upto_message_id DESC, id DESC LIMIT 1",
            [conversation_id]))
        return found[0] if found else None

    @translated
    def save_summary(self, conversation_id: int, upto_message_id: int, text: str, model: str) -> int:
        return self.conn.execute(
            "INSERT INTO summaries (conversation_id, upto_message_id, text, model, created_at)"
            " VALUES (?, ?, ?, ?, ?)",
            [conversation_id, upto_message_id, _clean(text), model, now()]).lastrowid

    # responses and feedback ------------------------------------------------------------------

    @translated
    def record_answer(
        self, conversation_id: int, text: str, partial: bool, response: dict[str, Any],
        spans: list[dict[str, Any]] | None = None, review: str | None = None,
        cache: tuple[str, float, list[int]] | None = None, draft_id: int | None = None,
    ) -> tuple[int | None, int]:
        """Save an answer (complete, or partial after an error or cancel), its response row, its
        trace's spans, when `review` gives a reason its place in the review queue, and with
        `cache` = (key, seconds to keep, source chunk ids) a cache entry, in one transaction;
        returns (message id or None when there is no text, response id). `draft_id` is the
        message `save_draft` kept while the answer streamed: it becomes the answer."""
        text = _clean(text)
        with self._transaction():
            message_id = None
            status = "partial" if partial else "complete"
            if draft_id is not None and text:
                self.conn.execute("UPDATE messages SET content = ?, status = ? WHERE id = ?",
                                  [text, status, draft_id])
                message_id = draft_id
            elif draft_id is not None:
                self.conn.execute("DELETE FROM messages WHERE id = ?", [draft_id])
            elif text:
                message_id = self._insert_message(conversation_id, "assistant", text, status)
            row = {**{k: _clean(v) for k, v in response.items()}, "conversation_id": conversation_id,
                   "message_id": message_id}
            row.setdefault("created_at", now())
            response_id = self._insert("responses", row)
            self.conn.executemany(
                "INSERT INTO spans (response_id, name, parent, start_ms, duration_ms, attrs)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                [(response_id, s["name"], s["parent"], s["start_ms"], s["duration_ms"],
                  _clean(json.dumps(s["attrs"])) if s["attrs"] else None) for s in spans or ()],
            )
            if review:
                self._enqueue_review(response_id, review)
            if cache is not None:
                key, ttl_s, chunk_ids = cache
                stamp = datetime.now(UTC)
                self.conn.execute(
                    "INSERT OR REPLACE INTO response_cache (key, response_id, text, chunk_ids, created_at,"
                    " expires_at) VALUES (?, ?, ?, ?, ?, ?)",
                    [key, response_id, text, json.dumps(chunk_ids), stamp.isoformat(),
                     (stamp + timedelta(seconds=ttl_s)).isoformat()],
                )
            return message_id, response_id

    @translated
    def save_draft(self, conversation_id: int, message_id: int | None, text: str) -> int:
        """Keep the answer so far while it streams, as a partial message (inserted the first time,
        updated after): a crash or kill -9 mid-answer then loses at most the last moment of it."""
        if message_id is None:
            with self._transaction():
                return self._insert_message(conversation_id, "assistant", text, "partial")
        # Cut anywhere, maybe inside an echoed key: redact() masks a key's start at the end too.
        self.conn.execute("UPDATE messages SET content = ? WHERE id = ?", [_clean(text), message_id])
        return message_id

    @translated
    def save_question_vector(self, response_id: int, context_key: str, vector: bytes) -> None:
        self.conn.execute(
            "INSERT OR REPLACE INTO question_vectors (response_id, context_key, vector, created_at)"
            " VALUES (?, ?, ?, ?)",
            [response_id, context_key, vector, now()],
        )

    @translated
    def similar_answers(self, context_key: str, since: str) -> list[dict[str, Any]]:
        """Answered standalone questions with the same context, newer than `since`: their
        vectors, question and answer text, and sources."""
        return dicts(self.conn.execute(
            """SELECT v.response_id, v.vector, q.content AS question, a.content AS answer,
                      r.retrieved_chunk_ids
               FROM question_vectors v JOIN responses r ON r.id = v.response_id
               JOIN messages q ON q.id = r.prompt_message_id JOIN messages a ON a.id = r.message_id
               WHERE v.context_key = ? AND v.created_at >= ? AND r.status = 'ok'""",
            [context_key, since],
        ))

    @translated
    def cached_answer(self, key: str) -> dict[str, Any] | None:
        """A live cache entry (an expired one is deleted), counted as a hit."""
        stamp = now()
        with self._transaction():
            self.conn.execute("DELETE FROM response_cache WHERE expires_at <= ?", [stamp])
            rows = dicts(self.conn.execute("SELECT * FROM response_cache WHERE key = ?", [key]))
            if rows:
                self.conn.execute("UPDATE response_cache SET hits = hits + 1 WHERE key = ?", [key])
        return rows[0] if rows else None

    @translated
    def spans(self, response_id: int) -> list[dict[str, Any]]:
        rows = dicts(self.conn.execute(
            "SELECT name, parent, start_ms, duration_ms, attrs FROM spans WHERE response_id = ? ORDER BY id",
            [response_id],
        ))
        for row in rows:
            row["attrs"] = json.loads(row["attrs"]) if row["attrs"] else {}
        return rows

    @translated
    def message_text(self, message_id: int | None) -> str | None:
        row = self.conn.execute("SELECT content FROM messages WHERE id = ?", [message_id]).fetchone()
        return row[0] if row else None

    @translated
    def responses_since(self, since: str) -> list[dict[str, Any]]:
        return dicts(self.conn.execute("SELECT * FROM responses WHERE created_at >= ? ORDER BY id", [since]))

    # review queue ------------------------------------------------------------------------------

    def _enqueue_review(self, response_id: int, reason: str) -> None:
        self.conn.execute(
            "INSERT INTO reviews (response_id, reason, queued_at) VALUES (?, ?, ?)"
            " ON CONFLICT (response_id) DO NOTHING",
            [response_id, reason, now()],
        )

    @translated
    def enqueue_review(self, response_id: int, reason: str) -> None:
        """Put an answer in the review queue (thumbs down, a guardrail, a refusal)."""
        self._get("responses", response_id, "response")
        self._enqueue_review(response_id, reason)

    @translated
    def reviews(self, pending: bool = True, limit: int = 200) -> list[dict[str, Any]]:
        """Queued answers, oldest first, with their question and answer."""
        return dicts(self.conn.execute(
            f"""SELECT v.*, r.conversation_id, r.model, r.backend, r.status, r.created_at AS answered_at,
                       r.groundedness,
                       q.content AS question, a.content AS answer
                FROM reviews v JOIN responses r ON r.id = v.response_id
                LEFT JOIN messages q ON q.id = r.prompt_message_id
                LEFT JOIN messages a ON a.id = r.message_id
                WHERE v.reviewed_at IS {"NULL" if pending else "NOT NULL"}
                ORDER BY v.queued_at, v.response_id LIMIT ?""",
            [limit],
        ))

    @translated
    def mark_reviewed(self, response_id: int, better_answer: str | None, note: str | None = None) -> None:
        self._get("responses", response_id, "response")
        with self._transaction():
            self._enqueue_review(response_id, "manual")  # reviewing an answer not yet queued is fine
            self.conn.execute(
                "UPDATE reviews SET reviewed_at = ?, better_answer = ?, note = ? WHERE response_id = ?",
                [now(), better_answer, note, response_id],
            )

    @translated
    def response(self, response_id: int) -> dict[str, Any]:
        return self._get("responses", response_id, "response")

    @translated
    def answer_to(self, prompt_message_id: int) -> dict[str, Any] | None:
        """The latest response row to a question; its answer may have no message (stopped before
        any text)."""
        found = dicts(self.conn.execute(
            "SELECT * FROM responses WHERE prompt_message_id = ? ORDER BY id DESC LIMIT 1",
            [prompt_message_id]))
        return found[0] if found else None

    @translated
    def add_feedback(self, response_id: int, rating: int, comment: str | None = None) -> int:
        if rating not in (-1, 1):
            raise ValueError(f"rating must be +1 or -1, not {rating!r}")
        self._get("responses", response_id, "response")
        row = {"response_id": response_id, "rating": rating, "comment": comment, "created_at": now()}
        with self._transaction():
            feedback_id = self._insert("feedback", row)
            if rating < 0:
                self._enqueue_review(response_id, "thumbs_down")
        return feedback_id

    @translated
    def set_feedback_comment(self, feedback_id: int, comment: str) -> None:
        self._get("feedback", feedback_id, "feedback")
        self.db["feedback"].update(feedback_id, {"comment": comment})

    @translated
    def feedback(self, response_id: int) -> list[dict[str, Any]]:
        return list(self.db["feedback"].rows_where("response_id = ?", [response_id], order_by="id"))

    @translated
    def used_private_sources(self, conversation_id: int) -> bool:
        """Whether an earlier answer here drew on a private folder (its passages, or a tool that
        could read one, whose span says so): its words are in the history."""
        row = self.conn.execute(
            """SELECT 1 FROM responses r, json_each(r.retrieved_chunk_ids) j
               JOIN chunks c ON c.id = j.value JOIN files f ON f.id = c.file_id
               JOIN folders d ON d.id = f.folder_id
               WHERE r.conversation_id = ? AND r.retrieved_chunk_ids IS NOT NULL AND d.private = 1
               UNION ALL
               SELECT 1 FROM responses r JOIN spans s ON s.response_id = r.id
               WHERE r.conversation_id = ? AND s.name LIKE 'tool %' AND json_extract(s.attrs, '$.private') = 1
               LIMIT 1""",
            [conversation_id, conversation_id],
        ).fetchone()
        return row is not None

    @translated
    def untrusted_history(self, conversation_id: int) -> str | None:
        """Why text that is not the user's is in the conversation's history, or None: an earlier
        answer drew on passages or on tool results (their words may be in it, instructions
        included), or an answer has no record of where it came from (forked or imported)."""
        c = [conversation_id]
        if self.conn.execute("SELECT 1 FROM responses WHERE conversation_id = ? AND retrieved_chunk_ids"
                             " IS NOT NULL AND retrieved_chunk_ids != '[]' LIMIT 1", c).fetchone():
            return "passages from your files are in this conversation's earlier turns"
        if self.conn.execute("SELECT 1 FROM responses r JOIN spans s ON s.response_id = r.id"
                             " WHERE r.conversation_id = ? AND s.name LIKE 'tool %'"
                             " AND s.name != 'tool decision' LIMIT 1", c).fetchone():
            return "tool results are in this conversation's earlier turns"
        if self.conn.execute("SELECT 1 FROM messages m WHERE m.conversation_id = ? AND m.role = 'assistant'"
                             " AND NOT EXISTS (SELECT 1 FROM responses r WHERE r.message_id = m.id)"
                             " LIMIT 1", c).fetchone():
            return "this conversation holds answers from elsewhere (forked or imported)"
        return None

    @translated
    def set_conversation_template(self, conversation_id: int, name: str) -> None:
        self.conn.execute("UPDATE conversations SET system_template = ? WHERE id = ?",
                          [name, conversation_id])

    @translated
    def set_conversation_backend(self, conversation_id: int, backend: str | None) -> None:
        self._get("conversations", conversation_id, "conversation")
        self.conn.execute("UPDATE conversations SET backend = ? WHERE id = ?", [backend, conversation_id])

    # routing: money spent, circuit breakers ---------------------------------------------------

    @translated
    def spent_usd(self, since: str) -> float:
        """Cost of the answers that went to a remote backend since `since` (ISO time, UTC)."""
        row = self.conn.execute(
            "SELECT COALESCE(SUM(cost), 0) FROM responses WHERE remote = 1 AND created_at >= ?", [since]
        ).fetchone()
        return float(row[0])

    @translated
    def breakers(self) -> dict[str, dict[str, Any]]:
        return {row["name"]: row for row in dicts(self.conn.execute("SELECT * FROM backend_health"))}

    @translated
    def save_breaker(self, name: str, state: str, failures: int, opened_at: float | None,
                     last_error: str | None) -> None:
        self.conn.execute(
            """INSERT INTO backend_health (name, state, failures, opened_at, last_error, updated_at)
               VALUES (?, ?, ?, ?, ?, ?)
               ON CONFLICT (name) DO UPDATE SET state = excluded.state, failures = excluded.failures,
                   opened_at = excluded.opened_at, last_error = excluded.last_error,
                   updated_at = excluded.updated_at""",
            [name, state, failures, opened_at, _clean(last_error), now()],
        )

    # model file hashes, cached because hashing gigabytes is slow ------------------------------

    @translated
    def cached_model_hash(self, path: str, size: int, mtime_ns: int) -> str | None:
        row = self.conn.execute(
            "SELECT sha256 FROM model_files WHERE path = ? AND size = ? AND mtime_ns = ?",
            [path, size, mtime_ns],
        ).fetchone()
        return row[0] if row else None

    @translated
    def save_model_hash(self, path: str, size: int, mtime_ns: int, sha256: str) -> None:
        row = {"path": path, "size": size, "mtime_ns": mtime_ns, "sha256": sha256}
        self.db["model_files"].upsert(row, pk="path")

    # backup and restore --------------------------------------------------------------------------

    @translated
    def backup(self, target: Path) -> None:
        """A consistent copy in one file (`VACUUM INTO`: one read transaction, so answers being
        written meanwhile are either wholly in it or not at all)."""
        _copy_into(self.conn, target)

    @staticmethod
    def backup_file(path: Path, target: Path) -> None:
        """`backup` of the database at `path` without opening it as a store, so it works on a
        database that is not ours or is out of date too (what `restore` keeps before replacing it)."""
        try:
            conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_S)
            try:
                _copy_into(conn, target)
            finally:
                conn.close()
        except sqlite3.Error as exc:
            raise _translate(exc, path) from exc

    @staticmethod
    def check_backup(source: Path) -> None:
        """Raise unless `source` is a sound assistant database of this or an older schema: stamped
        with our application id, or (older backups) holding every table and column its schema had."""
        try:
            backup = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
            try:
                check = backup.execute("PRAGMA integrity_check").fetchone()[0]
                version = backup.execute("PRAGMA user_version").fetchone()[0]
                why = _not_ours(backup, version) if check == "ok" and 0 < version <= len(MIGRATIONS) else None
            finally:
                backup.close()
        except sqlite3.Error as exc:
            raise CorruptDatabaseError(f"{source} is not a readable assistant database: {exc}.") from exc
        if check != "ok":
            raise CorruptDatabaseError(f"{source} is not a sound assistant database ({check}).")
        if not version:
            raise CorruptDatabaseError(f"{source} is not an assistant database: it has no schema version.",
                                       hint="Restore a file made by `assistant backup`.")
        if version > len(MIGRATIONS):
            raise StoreError(f"{source} comes from a newer version of assistant (schema {version}).",
                             hint="Upgrade assistant, then restore it.")
        if why:
            raise CorruptDatabaseError(f"{source} is not an assistant database: {why}.",
                                       hint="Restore a file made by `assistant backup`.")

    @translated
    def restore_from(self, source: Path) -> None:
        """Replace this database's contents with a backup's, page by page under SQLite's own lock
        (other processes see either the old or the new database), then bring its schema up to date."""
        self.check_backup(source)
        backup = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
        try:
            backup.backup(self.conn)
        finally:
            backup.close()
        self._migrate()

    @staticmethod
    def restore_file(path: Path, source: Path) -> None:
        """`restore_from` onto the database at `path` without opening it as a store: the way back
        works even when the database there is not ours. Open it afterwards (`Store(path)` migrates)."""
        Store.check_backup(source)
        try:
            backup = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
            target = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S)
            try:
                backup.backup(target)
            finally:
                target.close()
                backup.close()
        except sqlite3.Error as exc:
            raise _translate(exc, path) from exc

    # health ------------------------------------------------------------------------------------

    @translated
    def health(self) -> dict[str, Any]:
        counts = {
            table: self.conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
            for table in ("conversations", "messages", "responses", "feedback")
        }
        return {
            "path": str(self.path),
            "schema_version": self.schema_version,
            "journal_mode": self.conn.execute("PRAGMA journal_mode").fetchone()[0],
            "integrity": self.conn.execute("PRAGMA quick_check").fetchone()[0],
            **counts,
        }

    # helpers -------------------------------------------------------------------------------------

    def _get(self, table: str, row_id: int, what: str) -> dict[str, Any]:
        found = dicts(self.conn.execute(f"SELECT * FROM {table} WHERE id = ?", [row_id]))
        if not found:
            raise NotFoundError(f"There is no {what} with id {row_id}.")
        return found[0]

    def _insert(self, table: str, row: dict[str, Any]) -> int:
        # Raw SQL: sqlite-utils commits on its own, which would end our transaction early.
        columns = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        sql = f"INSERT INTO {table} ({columns}) VALUES ({marks})"
        return self.conn.execute(sql, list(row.values())).lastrowid

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")


class StoreView:
    """One job's view of a store (the corpus, memories, transcripts...): the same connection, lock
    and transactions, so each of its methods is one short transaction too."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.conn = store.conn
        self.path = store.path  # for error messages
        self._lock = store._lock
        self._transaction = store._transaction


def _copy_into(conn: sqlite3.Connection, target: Path) -> None:
    if target.exists():
        raise StoreError(f"{target} already exists.", hint="Choose another file name.")
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    # Written under a temporary name, created private before SQLite writes a byte, and
    # renamed only once complete: a backup killed half-way leaves no file at `target` that
    # looks like a backup, and no moment where other users can read the copy.
    partial = target.with_name(f".{target.name}.partial-{os.getpid()}")
    _remove_stale_partials(target)
    os.close(os.open(partial, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    try:
        conn.execute("VACUUM INTO ?", [str(partial)])
        with open(partial, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


def _tables(conn: sqlite3.Connection) -> dict[str, set[str]]:
    names = [r[0] for r in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]
    return {name: {r[0] for r in conn.execute("SELECT name FROM pragma_table_info(?)", [name])}
            for name in names}


@functools.cache
def _schema(version: int) -> dict[str, frozenset[str]]:
    """The tables (and their columns) a database of schema `version` has: the migrations, applied
    to an empty database in memory."""
    conn = sqlite3.connect(":memory:")
    try:
        for script in MIGRATIONS[:version]:
            for statement in _statements(script):
                conn.execute(statement)
        return {name: frozenset(columns) for name, columns in _tables(conn).items()}
    finally:
        conn.close()


def _not_ours(conn: sqlite3.Connection, version: int) -> str | None:
    """Why the database on `conn` (of schema `version`) is not an assistant database, or None."""
    app_id = conn.execute("PRAGMA application_id").fetchone()[0]
    if app_id not in (0, APPLICATION_ID):
        return f"it belongs to another program (SQLite application id {app_id:#010x})"
    found = _tables(conn)
    missing = [name for name in _schema(version) if name not in found]
    missing += [f"{name}.{column}" for name, columns in _schema(version).items() if name in found
                for column in sorted(columns - found[name])]
    if not missing:
        return None
    more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
    return f"it lacks {', '.join(missing[:5])}{more} of schema {version}"


def _way_back(path: Path) -> str:
    """How to get an assistant database back at `path`: the newest sound copy `restore` kept."""
    for saved in sorted((path.parent / "backups").glob("before-restore-*.db"), reverse=True):
        try:
            Store.check_backup(saved)
        except StoreError:
            continue
        return f"The database from before the last restore is kept: `assistant restore {saved}` puts it back."
    return "Move it aside to start afresh, or `assistant restore` a backup made by `assistant backup`."


def _remove_stale_partials(target: Path) -> None:
    """Half-written copies of `target` left by backups that were killed (their process is gone)."""
    for path in target.parent.glob(f".{target.name}.partial-*"):
        pid = path.name.rsplit("-", 1)[-1]
        if pid.isdigit() and int(pid) != os.getpid():
            try:
                os.kill(int(pid), 0)
                continue  # another backup to the same name is running
            except ProcessLookupError:
                pass
            except PermissionError:
                continue
        path.unlink(missing_ok=True)


def _statements(script: str) -> list[str]:
    """Split a migration into statements; triggers hold semicolons of their own."""
    statements, current = [], ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            statements.append(current.strip())
            current = ""
    if current.strip():
        statements.append(current.strip())
    return statements


def _title(text: str) -> str:
    line = " ".join(text.split())
    return (line[:77] + "...") if len(line) > 80 else (line or "New chat")
