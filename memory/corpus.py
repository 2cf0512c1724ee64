"""The indexed folders in SQLite: folders, files with their indexing state, chunks, full-text search.

SQLite is the source of truth; the vector index can always be rebuilt from the chunks here. Shares
the store's connection and lock, so every method is one short transaction.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from memory.documents import Chunk
from memory.errors import NotFoundError
from memory.store import StoreView, dicts, now, translated

# Words too common to help full-text search find anything.
_STOPWORDS = frozenset(
    "a an and are as at be by did do does for from had has have how i in is it its me my of on or "
    "that the their there this to was we were what when where which who why will with you your".split()
)


class Corpus(StoreView):

    # folders -----------------------------------------------------------------------------------

    @translated
    def add_folder(self, path: Path) -> int:
        row = self.conn.execute("SELECT id FROM folders WHERE path = ?", [str(path)]).fetchone()
        if row:
            return row[0]
        return self.conn.execute(
            "INSERT INTO folders (path, added_at) VALUES (?, ?)", [str(path), now()]
        ).lastrowid

    @translated
    def folder(self, path: Path) -> dict[str, Any]:
        found = dicts(self.conn.execute("SELECT * FROM folders WHERE path = ?", [str(path)]))
        if not found:
            raise NotFoundError(
                f"The folder {path} is not indexed.", hint="`assistant folders` lists indexed folders."
            )
        return found[0]

    @translated
    def folders(self) -> list[dict[str, Any]]:
        """Every folder with its counts: files indexed, chunks, skipped and failed files."""
        sql = """
            SELECT f.*,
                (SELECT COUNT(*) FROM files WHERE folder_id = f.id AND state = 'indexed') AS files,
                (SELECT COALESCE(SUM(chunks), 0) FROM files WHERE folder_id = f.id) AS chunks,
                (SELECT COUNT(*) FROM files WHERE folder_id = f.id AND state = 'skipped') AS skipped,
                (SELECT COUNT(*) FROM files WHERE folder_id = f.id AND state = 'failed') AS failed,
                (SELECT COUNT(*) FROM files WHERE folder_id = f.id AND state = 'embedding') AS pending
            FROM folders f ORDER BY f.path
        """
        return dicts(self.conn.execute(sql))

    @translated
    def folder_ids_with_chunks(self) -> list[int]:
        """Cheap enough for every question (folders() counts every file)."""
        return [r[0] for r in self.conn.execute(
            "SELECT id FROM folders f WHERE EXISTS"
            " (SELECT 1 FROM files WHERE folder_id = f.id AND chunks > 0) ORDER BY id"
        )]

    @translated
    def set_folder_indexed(self, folder_id: int) -> None:
        self.conn.execute("UPDATE folders SET last_indexed_at = ? WHERE id = ?", [now(), folder_id])

    @translated
    def set_private(self, folder_id: int, private: bool) -> None:
        self.conn.execute("UPDATE folders SET private = ? WHERE id = ?", [int(private), folder_id])

    @translated
    def set_watch(self, folder_id: int, watch: bool) -> None:
        self.conn.execute("UPDATE folders SET watch = ? WHERE id = ?", [int(watch), folder_id])

    @translated
    def chunk_ids_of_folder(self, folder_id: int) -> list[int]:
        return [r[0] for r in self.conn.execute(
            "SELECT c.id FROM chunks c JOIN files f ON f.id = c.file_id WHERE f.folder_id = ?",
            [folder_id],
        )]

    @translated
    def remove_folder(self, folder_id: int) -> None:
        self.conn.execute("DELETE FROM folders WHERE id = ?", [folder_id])  # cascades to chunks

    @translated
    def skipped_files(self, folder_id: int) -> list[dict[str, Any]]:
        return dicts(self.conn.execute(
            "SELECT path, state, reason FROM files WHERE folder_id = ? AND state IN ('skipped', 'failed')"
            " ORDER BY path",
            [folder_id],
        ))

    # files and chunks ----------------------------------------------------------------------------

    @translated
    def files(self, folder_id: int) -> dict[str, dict[str, Any]]:
        """The folder's files by relative path."""
        rows = dicts(self.conn.execute("SELECT * FROM files WHERE folder_id = ?", [folder_id]))
        return {row["path"]: row for row in rows}

    @translated
    def mark_file(
        self, folder_id: int, path: str, size: int, mtime_ns: int, state: str,
        reason: str | None = None, sha256: str | None = None,
    ) -> list[int]:
        """Record a file that has no chunks (skipped or failed) or whose content is unchanged
        (state 'indexed', chunks kept). Returns ids of chunks removed (give them to the vectors)."""
        with self._transaction():
            removed: list[int] = []
            if state != "indexed":
                removed = self._delete_chunks_of(folder_id, path)
            self.conn.execute(
                """INSERT INTO files (folder_id, path, size, mtime_ns, sha256, state, reason, chunks)
                   VALUES (?, ?, ?, ?, ?, ?, ?, 0)
                   ON CONFLICT (folder_id, path) DO UPDATE SET size = excluded.size,
                   mtime_ns = excluded.mtime_ns, sha256 = COALESCE(excluded.sha256, files.sha256),
                   state = excluded.state, reason = excluded.reason,
                   chunks = CASE WHEN excluded.state = 'indexed' THEN files.chunks ELSE 0 END""",
                [folder_id, path, size, mtime_ns, sha256, state, reason],
            )
            return removed

    @translated
    def replace_chunks(
        self, folder_id: int, files: list[tuple[str, int, int, str, list[Chunk]]]
    ) -> tuple[list[int], dict[str, list[int]]]:
        """Store new chunks for files (path, size, mtime_ns, sha256, chunks) in one transaction,
        state 'embedding' until their vectors are stored. Returns (old chunk ids removed,
        new chunk ids by path)."""
        removed: list[int] = []
        added: dict[str, list[int]] = {}
        with self._transaction():
            for path, size, mtime_ns, sha256, chunks in files:
                removed += self._delete_chunks_of(folder_id, path)
                file_id = self.conn.execute(
                    """INSERT INTO files (folder_id, path, size, mtime_ns, sha256, state, reason, chunks)
                       VALUES (?, ?, ?, ?, ?, 'embedding', NULL, ?)
                       ON CONFLICT (folder_id, path) DO UPDATE SET size = excluded.size,
                       mtime_ns = excluded.mtime_ns, sha256 = excluded.sha256, state = 'embedding',
                       reason = NULL, chunks = excluded.chunks
                       RETURNING id""",
                    [folder_id, path, size, mtime_ns, sha256, len(chunks)],
                ).fetchone()[0]
                added[path] = [
                    self.conn.execute(
                        """INSERT INTO chunks (file_id, ordinal, text, heading, start_line, end_line, page)
                           VALUES (?, ?, ?, ?, ?, ?, ?)""",
                        [file_id, n, c.text, c.heading, c.start_line, c.end_line, c.page],
                    ).lastrowid
                    for n, c in enumerate(chunks)
                ]
        return removed, added

    @translated
    def mark_embedded(self, folder_id: int, paths: Iterable[str]) -> None:
        stamp = now()
        with self._transaction():
            self.conn.executemany(
                "UPDATE files SET state = 'indexed', indexed_at = ? WHERE folder_id = ? AND path = ?",
                [(stamp, folder_id, p) for p in paths],
            )

    @translated
    def rename_file(self, folder_id: int, old: str, new: str, mtime_ns: int) -> None:
        self.conn.execute(
            "UPDATE files SET path = ?, mtime_ns = ? WHERE folder_id = ? AND path = ?",
            [new, mtime_ns, folder_id, old],
        )

    @translated
    def remove_file(self, folder_id: int, path: str) -> list[int]:
        with self._transaction():
            removed = self._delete_chunks_of(folder_id, path)
            self.conn.execute("DELETE FROM files WHERE folder_id = ? AND path = ?", [folder_id, path])
            return removed

    def _delete_chunks_of(self, folder_id: int, path: str) -> list[int]:
        ids = [r[0] for r in self.conn.execute(
            "SELECT c.id FROM chunks c JOIN files f ON f.id = c.file_id"
            " WHERE f.folder_id = ? AND f.path = ?",
            [folder_id, path],
        )]
        if ids:
            self.conn.execute(
                "DELETE FROM chunks WHERE file_id = (SELECT id FROM files WHERE folder_id = ? AND path = ?)",
                [folder_id, path],
            )
        return ids

    @translated
    def mark_all_for_embedding(self) -> None:
        self.conn.execute("UPDATE files SET state = 'embedding' WHERE state = 'indexed' AND chunks > 0")

    @translated
    def mark_all_embedded(self) -> None:
        """Every file waiting for vectors is indexed: call once every chunk has its vector."""
        self.conn.execute("UPDATE files SET state = 'indexed', indexed_at = ? WHERE state = 'embedding'",
                          [now()])

    @translated
    def chunk_texts(self, ids: list[int]) -> list[tuple[int, int, str]]:
        """(chunk id, folder id, text) of the given chunks, in id order (deleted ones left out)."""
        found: list[tuple[int, int, str]] = []
        for start in range(0, len(ids), 500):  # under SQLite's limit on parameters
            page = ids[start : start + 500]
            found += self.conn.execute(
                f"""SELECT c.id, f.folder_id, c.text FROM chunks c JOIN files f ON f.id = c.file_id
                    WHERE c.id IN ({",".join("?" * len(page))})""",
                page,
            ).fetchall()
        return sorted(found)

    @translated
    def chunk_ids(self) -> set[int]:
        return {r[0] for r in self.conn.execute("SELECT id FROM chunks")}

    @translated
    def has_chunks(self) -> bool:
        return self.conn.execute("SELECT EXISTS (SELECT 1 FROM chunks)").fetchone()[0] == 1

    @translated
    def version(self) -> list[Any]:
        """Changes whenever what a search can find does, read without touching the chunks' text:
        chunk ids are never reused (AUTOINCREMENT), so new text raises the largest id; a removal
        lowers the files' chunk count; stored vectors give their file a new `indexed_at`."""
        return list(self.conn.execute(
            "SELECT (SELECT MAX(id) FROM chunks), COUNT(*), COALESCE(SUM(chunks), 0), MAX(indexed_at)"
            " FROM files"
        ).fetchone())

    @translated
    def chunk_count(self) -> int:
        return self.conn.execute("SELECT COUNT(*) FROM chunks").fetchone()[0]

    @translated
    def chunk_rows(self, ids: list[int]) -> dict[int, dict[str, Any]]:
        """Chunks with their file and folder, by id."""
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        rows = dicts(self.conn.execute(
            f"""SELECT c.id, c.text, c.heading, c.start_line, c.end_line, c.page,
                       f.path AS file, d.path AS folder, d.id AS folder_id, d.private
                FROM chunks c JOIN files f ON f.id = c.file_id JOIN folders d ON d.id = f.folder_id
                WHERE c.id IN ({marks})""",
            ids,
        ))
        return {row["id"]: row for row in rows}

    @translated
    def search_text(self, query: str, folder_ids: list[int], limit: int) -> list[int]:
        """Chunk ids best matching `query` by BM25, within the given folders."""
        words = [w for w in re.findall(r"\w+", query.lower()) if w not in _STOPWORDS]
        if not words or not folder_ids:
            return []
        match = " OR ".join(f'"{w}"' for w in dict.fromkeys(words))
        marks = ",".join("?" * len(folder_ids))
        return [r[0] for r in self.conn.execute(
            f"""SELECT chunks_fts.rowid FROM chunks_fts
                JOIN chunks c ON c.id = chunks_fts.rowid JOIN files f ON f.id = c.file_id
                WHERE chunks_fts MATCH ? AND f.folder_id IN ({marks})
                ORDER BY bm25(chunks_fts) LIMIT ?""",
            [match, *folder_ids, limit],
        )]

    # metadata and per-conversation folder choices ---------------------------------------------------

    @translated
    def meta(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM index_meta WHERE key = ?", [key]).fetchone()
        return row[0] if row else None

    @translated
    def set_meta(self, key: str, value: str) -> None:
        self.conn.execute(
            "INSERT INTO index_meta (key, value) VALUES (?, ?)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            [key, value],
        )

    @translated
    def clear_meta(self, key: str) -> None:
        self.conn.execute("DELETE FROM index_meta WHERE key = ?", [key])

    @translated
    def active_folder_ids(self, conversation_id: int | None) -> list[int]:
        """Folders a conversation searches: every folder, except those it switched off."""
        return [r[0] for r in self.conn.execute(
            """SELECT id FROM folders WHERE id NOT IN (
                   SELECT folder_id FROM conversation_folders WHERE conversation_id = ? AND active = 0)
               ORDER BY path""",
            [conversation_id if conversation_id is not None else -1],
        )]

    @translated
    def set_folder_active(self, conversation_id: int, folder_id: int, active: bool) -> None:
        self.conn.execute(
            "INSERT INTO conversation_folders (conversation_id, folder_id, active) VALUES (?, ?, ?)"
            " ON CONFLICT (conversation_id, folder_id) DO UPDATE SET active = excluded.active",
            [conversation_id, folder_id, int(active)],
        )

