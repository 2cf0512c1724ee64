"""Numbered schema migrations. PRAGMA user_version holds the number of the last one applied.

Append new migrations; never edit one that has shipped. The schema is documented in
docs/schema.md.
"""

from __future__ import annotations

# SQLite's application id for our databases ("asst"), set by migration 11: `restore` tells an
# assistant database from any other SQLite file by it (and, for older backups, by their tables).
APPLICATION_ID = 0x61737374

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
    # 2: indexed folders, their files (with per-file state for resuming), chunks with locations,
    # full-text search over chunks, per-conversation folder choices, retrieved chunks per answer.
    """
    CREATE TABLE folders (
        id INTEGER PRIMARY KEY,
        path TEXT NOT NULL UNIQUE,
        added_at TEXT NOT NULL,
        last_indexed_at TEXT,
        watch INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE files (
        id INTEGER PRIMARY KEY,
        folder_id INTEGER NOT NULL REFERENCES folders(id) ON DELETE CASCADE,
        path TEXT NOT NULL,
        size INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL,
        sha256 TEXT,
        state TEXT NOT NULL CHECK (state IN ('embedding', 'indexed', 'failed', 'skipped')),
        reason TEXT,
        chunks INTEGER NOT NULL DEFAULT 0,
        indexed_at TEXT,
        UNIQUE (folder_id, path)
    );
    CREATE TABLE chunks (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        file_id INTEGER NOT NULL REFERENCES files(id) ON DELETE CASCADE,
        ordinal INTEGER NOT NULL,
        text TEXT NOT NULL,
        heading TEXT,
        start_line INTEGER NOT NULL,
        end_line INTEGER NOT NULL,
        page INTEGER
    );
    CREATE INDEX chunks_by_file ON chunks(file_id, ordinal);
    CREATE VIRTUAL TABLE chunks_fts USING fts5(
        text, heading, content='chunks', content_rowid='id', tokenize='porter unicode61'
    );
    CREATE TRIGGER chunks_fts_insert AFTER INSERT ON chunks BEGIN
        INSERT INTO chunks_fts(rowid, text, heading) VALUES (new.id, new.text, new.heading);
    END;
    CREATE TRIGGER chunks_fts_delete AFTER DELETE ON chunks BEGIN
        INSERT INTO chunks_fts(chunks_fts, rowid, text, heading)
        VALUES ('delete', old.id, old.text, old.heading);
    END;
    CREATE TABLE index_meta (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    CREATE TABLE conversation_folders (
        conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
        folder_id INTEGER NOT NULL REFERENCES folders(id) ON DELETE CASCADE,
        active INTEGER NOT NULL,
        PRIMARY KEY (conversation_id, folder_id)
    );
    ALTER TABLE responses ADD COLUMN retrieved_chunk_ids TEXT;
    """,
    # 3: routing. Private folders, a backend chosen per conversation, where each answer went,
    # and the circuit breakers' state, shared by every process on this data folder.
    """
    ALTER TABLE folders ADD COLUMN private INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE conversations ADD COLUMN backend TEXT;
    ALTER TABLE responses ADD COLUMN endpoint TEXT;
    ALTER TABLE responses ADD COLUMN remote INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE responses ADD COLUMN route TEXT;
    CREATE INDEX responses_by_time ON responses(created_at);
    CREATE TABLE backend_health (
        name TEXT PRIMARY KEY,
        state TEXT NOT NULL CHECK (state IN ('closed', 'open', 'half_open')),
        failures INTEGER NOT NULL,
        opened_at REAL,
        last_error TEXT,
        updated_at TEXT NOT NULL
    );
    """,
    # 4: observability. A trace of spans per answer, the review queue, and an index that lets
    # stats read a time window without touching the table.
    """
    CREATE TABLE spans (
        id INTEGER PRIMARY KEY,
        response_id INTEGER NOT NULL REFERENCES responses(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        parent TEXT,
        start_ms REAL NOT NULL,
        duration_ms REAL NOT NULL,
        attrs TEXT
    );
    CREATE INDEX spans_by_response ON spans(response_id);
    CREATE TABLE reviews (
        response_id INTEGER PRIMARY KEY REFERENCES responses(id) ON DELETE CASCADE,
        reason TEXT NOT NULL,
        queued_at TEXT NOT NULL,
        reviewed_at TEXT,
        better_answer TEXT,
        note TEXT
    );
    CREATE INDEX reviews_pending ON reviews(reviewed_at, queued_at);
    CREATE INDEX responses_for_stats ON responses(
        created_at, status, ttft_ms, total_ms, tokens_per_s, input_tokens, output_tokens, cost, cache_hit
    );
    CREATE INDEX responses_by_ttft ON responses(status, ttft_ms, created_at);
    CREATE INDEX responses_by_total ON responses(status, total_ms, created_at);
    CREATE INDEX responses_by_speed ON responses(status, tokens_per_s, created_at);
    """,
    # 5: the exact response cache, and which answer a cached one repeats.
    """
    CREATE TABLE response_cache (
        key TEXT PRIMARY KEY,
        response_id INTEGER REFERENCES responses(id) ON DELETE CASCADE,
        text TEXT NOT NULL,
        chunk_ids TEXT,
        created_at TEXT NOT NULL,
        expires_at TEXT NOT NULL,
        hits INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX response_cache_by_expiry ON response_cache(expires_at);
    ALTER TABLE responses ADD COLUMN cached_from INTEGER;
    """,
    # 6: the system prompt template a conversation was given (A/B tests of prompts).
    """
    ALTER TABLE conversations ADD COLUMN system_template TEXT;
    """,
    # 7: the semantic cache: each cacheable standalone question's embedding, by what else decided
    # its answer (model, templates, settings, retrieved passages).
    """
    CREATE TABLE question_vectors (
        response_id INTEGER PRIMARY KEY REFERENCES responses(id) ON DELETE CASCADE,
        context_key TEXT NOT NULL,
        vector BLOB NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE INDEX question_vectors_by_context ON question_vectors(context_key);
    """,
    # 8: full-text search over every conversation's messages.
    """
    CREATE VIRTUAL TABLE messages_fts USING fts5(
        content, content='messages', content_rowid='id', tokenize='porter unicode61'
    );
    CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN
        INSERT INTO messages_fts(rowid, content) VALUES (new.id, new.content);
    END;
    CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
        INSERT INTO messages_fts(messages_fts, rowid, content) VALUES ('delete', old.id, old.content);
    END;
    CREATE TRIGGER messages_fts_update AFTER UPDATE OF content ON messages BEGIN
        INSERT INTO messages_fts(messages_fts, rowid, content) VALUES ('delete', old.id, old.content);
        INSERT INTO messages_fts(rowid, content) VALUES (new.id, new.content);
    END;
    INSERT INTO messages_fts(messages_fts) VALUES ('rebuild');
    """,
    # 9: long-term memory (vectors in Chroma's "memories" collection), proposals awaiting the
    # user's yes or no, summaries of older turns, incognito conversations, the memories an answer
    # used, and small app-wide switches (`assistant memory off`).
    """
    CREATE TABLE memories (
        id INTEGER PRIMARY KEY,
        text TEXT NOT NULL,
        kind TEXT NOT NULL DEFAULT 'fact' CHECK (kind IN ('preference', 'fact', 'decision')),
        source_conversation_id INTEGER REFERENCES conversations(id) ON DELETE SET NULL,
        source_message_id INTEGER REFERENCES messages(id) ON DELETE SET NULL,
        created_at TEXT NOT NULL,
        last_used_at TEXT,
        use_count INTEGER NOT NULL DEFAULT 0,
        pinned INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE memory_proposals (
        id INTEGER PRIMARY KEY,
        text TEXT NOT NULL,
        kind TEXT NOT NULL,
        conversation_id INTEGER REFERENCES conversations(id) ON DELETE CASCADE,
        message_id INTEGER REFERENCES messages(id) ON DELETE CASCADE,
        status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'accepted', 'rejected')),
        memory_id INTEGER REFERENCES memories(id) ON DELETE SET NULL,
        created_at TEXT NOT NULL
    );
    CREATE INDEX memory_proposals_by_status ON memory_proposals(status, id);
    CREATE TABLE summaries (
        id INTEGER PRIMARY KEY,
        conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
        upto_message_id INTEGER NOT NULL,
        text TEXT NOT NULL,
        model TEXT NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE INDEX summaries_by_conversation ON summaries(conversation_id, upto_message_id);
    CREATE TABLE app_state (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    ALTER TABLE conversations ADD COLUMN incognito INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE responses ADD COLUMN memory_ids TEXT;
    ALTER TABLE responses ADD COLUMN imported_sources TEXT;
    """,
    # 10: evals. A run of a dataset through the engine, one result per case, and named baselines.
    """
    CREATE TABLE eval_runs (
        id INTEGER PRIMARY KEY,
        dataset TEXT NOT NULL,
        dataset_name TEXT NOT NULL,
        dataset_sha256 TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('running', 'complete', 'cancelled', 'failed')),
        error TEXT,
        cases INTEGER NOT NULL,
        repeats INTEGER NOT NULL,
        backend TEXT NOT NULL,
        model TEXT NOT NULL,
        template TEXT NOT NULL,
        template_version TEXT NOT NULL,
        judge TEXT,
        rubric_version TEXT,
        config TEXT NOT NULL,
        summary TEXT,
        started_at TEXT NOT NULL,
        finished_at TEXT
    );
    CREATE TABLE eval_results (
        id INTEGER PRIMARY KEY,
        run_id INTEGER NOT NULL REFERENCES eval_runs(id) ON DELETE CASCADE,
        ordinal INTEGER NOT NULL,
        case_id TEXT NOT NULL,
        question TEXT NOT NULL,
        reference TEXT,
        answer TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('ok', 'error')),
        error TEXT,
        passed INTEGER NOT NULL,
        metrics TEXT NOT NULL,
        details TEXT NOT NULL,
        response_id INTEGER REFERENCES responses(id) ON DELETE SET NULL,
        ttft_ms REAL,
        total_ms REAL,
        input_tokens INTEGER,
        output_tokens INTEGER,
        cost REAL NOT NULL DEFAULT 0,
        UNIQUE (run_id, case_id)
    );
    CREATE TABLE eval_baselines (
        name TEXT PRIMARY KEY,
        run_id INTEGER NOT NULL REFERENCES eval_runs(id) ON DELETE CASCADE,
        set_at TEXT NOT NULL
    );
    """,
    # 11: the database says whose it is (PRAGMA application_id), so a restore can refuse a foreign one.
    f"PRAGMA application_id = {APPLICATION_ID};",
    # 12: groundedness of an answer that used sources (the share of its claims some source supports)
    # and its attribution (which sentence each citation follows, written by the model or added);
    # indexed like the latencies, so its percentiles are index walks.
    """
    ALTER TABLE responses ADD COLUMN groundedness REAL;
    ALTER TABLE responses ADD COLUMN attribution TEXT;
    CREATE INDEX responses_by_groundedness ON responses(status, groundedness, created_at);
    """,
]
