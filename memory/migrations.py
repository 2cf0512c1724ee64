"""Numbered schema migrations. PRAGMA user_version holds the number of the last one applied.

Append new migrations; never edit one that has shipped. The schema is documented in
docs/schema.md.
"""

from __future__ import annotations

MIGRATIONS: list[str] = [
    # 1: conversations, their messages, one response row per answer, and feedback on responses.
    """
    CREATE TABLE conversations (
        id INTEGER PRIMARY KEY,
        title TEXT NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE TABLE messages (
        id INTEGER PRIMARY KEY,
        conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
        role TEXT NOT NULL CHECK (role IN ('system', 'user', 'assistant')),
        content TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'complete' CHECK (status IN ('complete', 'partial')),
        created_at TEXT NOT NULL
    );
    CREATE INDEX messages_by_conversation ON messages(conversation_id, id);
    CREATE TABLE responses (
        id INTEGER PRIMARY KEY,
        conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
        prompt_message_id INTEGER REFERENCES messages(id) ON DELETE SET NULL,
        message_id INTEGER REFERENCES messages(id) ON DELETE SET NULL,
        status TEXT NOT NULL CHECK (status IN ('ok', 'error', 'cancelled')),
        error TEXT,
        backend TEXT NOT NULL,
        model TEXT NOT NULL,
        model_hash TEXT,
        template TEXT,
        template_version TEXT,
        input_tokens INTEGER,
        output_tokens INTEGER,
        ttft_ms REAL,
        total_ms REAL,
        tokens_per_s REAL,
        cost REAL NOT NULL DEFAULT 0,
        cache_hit INTEGER NOT NULL DEFAULT 0,
        trace_id TEXT,
        created_at TEXT NOT NULL
    );
    CREATE INDEX responses_by_conversation ON responses(conversation_id);
    CREATE INDEX responses_by_message ON responses(message_id);
    CREATE TABLE feedback (
        id INTEGER PRIMARY KEY,
        response_id INTEGER NOT NULL REFERENCES responses(id) ON DELETE CASCADE,
        rating INTEGER NOT NULL CHECK (rating IN (-1, 1)),
        comment TEXT,
        created_at TEXT NOT NULL
    );
    CREATE INDEX feedback_by_response ON feedback(response_id);
    CREATE TABLE model_files (
        path TEXT PRIMARY KEY,
        size INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL,
        sha256 TEXT NOT NULL
    );
    """,
]
