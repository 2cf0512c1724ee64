"""Long-term memory: what the assistant knows about the user, which the user can see and edit.

SQLite holds each memory (text, kind, where it came from, when it was last used, how often,
pinned); Chroma's "memories" collection holds only its vector, keyed by id, so it can always be
rebuilt. A write to both happens inside the SQLite transaction: when Chroma fails, the SQLite
row is rolled back, so the two never disagree in the way that matters (a vector without a row
is ignored at recall and dropped by `rebuild`).

Blocking throughout (torch, Chroma, SQLite): callers on an event loop use a thread.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from memory.embedder import Embedder
from memory.errors import AssistantError, NotFoundError
from memory.proposals import extract
from memory.store import Store, StoreView, dicts, now, translated
from memory.vectors import VectorIndex

COLLECTION = "memories"
KINDS = ("preference", "fact", "decision")
MAX_CHARS = 2000
_ENABLED_KEY = "long_term_memory"


class MemoryInputError(AssistantError):
    """A memory's text or kind is not acceptable."""


@dataclass(frozen=True)
class Recalled:
    id: int
    text: str
    kind: str
    score: float  # cosine similarity to the question; 1.0 for a pinned memory


class LongTermMemory(StoreView):
    def __init__(
        self, store: Store, vectors: Callable[[], VectorIndex], embedder: Embedder | None = None
    ) -> None:
        """`vectors` opens the "memories" collection on first use (Chroma is slow to import)."""
        super().__init__(store)
        self._open_vectors = vectors
        self._vectors: VectorIndex | None = None
        self.embedder = embedder or Embedder()

    @property
    def vectors(self) -> VectorIndex:
        if self._vectors is None:
            self._vectors = self._open_vectors()
        return self._vectors

    def _embed(self, text: str) -> list[float]:
        return self.embedder.embed([text])[0]

    # on and off --------------------------------------------------------------------------------

    @translated
    def enabled(self) -> bool:
        row = self.conn.execute("SELECT value FROM app_state WHERE key = ?", [_ENABLED_KEY]).fetchone()
        return row is None or row[0] != "off"

    @translated
    def set_enabled(self, on: bool) -> None:
        self.conn.execute("INSERT OR REPLACE INTO app_state (key, value) VALUES (?, ?)",
                          [_ENABLED_KEY, "on" if on else "off"])

    # memories ----------------------------------------------------------------------------------

    def add(self, text: str, kind: str = "fact", conversation_id: int | None = None,
            message_id: int | None = None, pinned: bool = False) -> dict[str, Any]:
        text, kind = _checked(text, kind)
        # Embedded and opened first: no lock is held while torch or Chroma start.
        vector, vectors = self._embed(text), self.vectors
        return self.get(self._insert(text, kind, conversation_id, message_id, pinned, vector, vectors))

    @translated
    def _insert(self, text: str, kind: str, conversation_id: int | None, message_id: int | None,
                pinned: bool, vector: list[float], vectors: VectorIndex) -> int:
        with self._transaction():
            memory_id = self.conn.execute(
                "INSERT INTO memories (text, kind, source_conversation_id, source_message_id, created_at,"
                " pinned) VALUES (?, ?, ?, ?, ?, ?)",
                [text, kind, conversation_id, message_id, now(), int(pinned)],
            ).lastrowid
            vectors.add([memory_id], [vector])  # fails: the row is rolled back
        return memory_id

    @translated
    def get(self, memory_id: int) -> dict[str, Any]:
        found = dicts(self.conn.execute(f"{_SELECT} WHERE m.id = ?", [memory_id]))
        if not found:
            raise NotFoundError(f"There is no memory with id {memory_id}.",
                                hint="`assistant memory list` shows them.")
        return found[0]

    @translated
    def all(self) -> list[dict[str, Any]]:
        """Every memory, pinned first, then the most recently created; each with its source
        conversation's title."""
        return dicts(self.conn.execute(f"{_SELECT} ORDER BY m.pinned DESC, m.id DESC"))

    def search(self, query: str, k: int = 10, threshold: float = 0.0) -> list[dict[str, Any]]:
        """Memories most similar to `query`, each with its "score"; nothing is marked as used."""
        found = self._nearest(query, k, threshold) if self.has_any() else []
        rows = self._rows([i for i, _ in found])
        return [{**rows[i], "score": round(score, 3)} for i, score in found if i in rows]

    def recall(self, question: str, k: int, threshold: float) -> list[Recalled]:
        """What to put in the prompt for `question`: pinned memories, then the most similar ones
        above `threshold`, `k` in all; each is marked as used."""
        if k <= 0 or not self.has_any():
            return []
        chosen = [Recalled(r["id"], r["text"], r["kind"], 1.0) for r in self._pinned(k)]
        taken = {r.id for r in chosen}
        similar = []
        if len(chosen) < k:  # the question is embedded only when similarity can add something
            nearest = self._nearest(question, k + len(taken), threshold)
            similar = [(i, s) for i, s in nearest if i not in taken]
        rows = self._rows([i for i, _ in similar])
        chosen += [Recalled(i, rows[i]["text"], rows[i]["kind"], s) for i, s in similar if i in rows]
        chosen = chosen[:k]
        if chosen:
            self._mark_used([r.id for r in chosen])
        return chosen

    def _nearest(self, text: str, k: int, threshold: float) -> list[tuple[int, float]]:
        if k <= 0:
            return []
        return [(i, s) for i, s in self.vectors.nearest(self._embed(text), k) if s >= threshold]

    @translated
    def _pinned(self, k: int) -> list[dict[str, Any]]:
        return dicts(self.conn.execute(
            "SELECT id, text, kind FROM memories WHERE pinned = 1 ORDER BY id LIMIT ?", [k]))

    @translated
    def has_any(self) -> bool:
        return self.conn.execute("SELECT 1 FROM memories LIMIT 1").fetchone() is not None

    @translated
    def _rows(self, ids: list[int]) -> dict[int, dict[str, Any]]:
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        return {r["id"]: r for r in dicts(self.conn.execute(f"{_SELECT} WHERE m.id IN ({marks})", ids))}

    @translated
    def _mark_used(self, ids: list[int]) -> None:
        marks = ",".join("?" * len(ids))
        self.conn.execute(
            f"UPDATE memories SET use_count = use_count + 1, last_used_at = ? WHERE id IN ({marks})",
            [now(), *ids])

    def edit(self, memory_id: int, text: str | None = None, kind: str | None = None,
             pinned: bool | None = None) -> dict[str, Any]:
        current = self.get(memory_id)
        text, kind = _checked(text if text is not None else current["text"], kind or current["kind"])
        vector = self._embed(text) if text != current["text"] else None
        pinned = bool(current["pinned"]) if pinned is None else pinned
        self._update(memory_id, text, kind, pinned, vector, self.vectors)
        return self.get(memory_id)

    @translated
    def _update(self, memory_id: int, text: str, kind: str, pinned: bool, vector: list[float] | None,
                vectors: VectorIndex) -> None:
        with self._transaction():
            self.conn.execute("UPDATE memories SET text = ?, kind = ?, pinned = ? WHERE id = ?",
                              [text, kind, int(pinned), memory_id])
            if vector is not None:
                vectors.add([memory_id], [vector])

    def forget(self, memory_id: int) -> dict[str, Any]:
        """Remove a memory from SQLite and Chroma; returns what was forgotten."""
        memory, vectors = self.get(memory_id), self.vectors
        self._delete(memory_id, vectors)
        return memory

    @translated
    def _delete(self, memory_id: int, vectors: VectorIndex) -> None:
        with self._transaction():
            self.conn.execute("DELETE FROM memories WHERE id = ?", [memory_id])
            vectors.delete([memory_id])  # fails: the row stays

    def export(self) -> list[dict[str, Any]]:
        keep = ("text", "kind", "created_at", "last_used_at", "use_count", "pinned", "source_conversation_id",
                "source_title")
        return [{k: m[k] for k in keep} for m in self.all()]

    def import_rows(self, rows: Iterable[dict[str, Any]]) -> int:
        """Add exported memories; one whose text is already remembered is skipped. Returns how
        many were added."""
        known = {m["text"] for m in self.all()}
        added = 0
        for row in rows:
            text = " ".join(str(row.get("text", "")).split())
            if text and text not in known:
                self.add(text, row.get("kind") or "fact", pinned=bool(row.get("pinned")))
                known.add(text)
                added += 1
        return added

    def rebuild(self) -> int:
        """Embed every memory into a fresh collection (after a model change or a damaged store)."""
        rows = sorted(self.all(), key=lambda m: m["id"])
        self.vectors.reset()
        if rows:
            self.vectors.add([r["id"] for r in rows], self.embedder.embed([r["text"] for r in rows]))
        return len(rows)

    # proposals ---------------------------------------------------------------------------------

    @translated
    def propose(
        self, message: str, conversation_id: int | None, message_id: int | None
    ) -> list[dict[str, Any]]:
        """Proposals for the lasting facts stated in a user's message (none already remembered
        or pending), saved as pending for the user to accept or reject."""
        known = {r[0].lower() for r in self.conn.execute(
            "SELECT text FROM memories UNION SELECT text FROM memory_proposals WHERE status != 'accepted'")}
        new = [p for p in extract(message) if p.text.lower() not in known]
        with self._transaction():
            ids = [self.conn.execute(
                "INSERT INTO memory_proposals (text, kind, conversation_id, message_id, created_at)"
                " VALUES (?, ?, ?, ?, ?)", [p.text, p.kind, conversation_id, message_id, now()]).lastrowid
                for p in new]
        return [self.proposal(i) for i in ids]

    @translated
    def proposal(self, proposal_id: int) -> dict[str, Any]:
        found = dicts(self.conn.execute("SELECT * FROM memory_proposals WHERE id = ?", [proposal_id]))
        if not found:
            raise NotFoundError(f"There is no memory proposal with id {proposal_id}.",
                                hint="`assistant memory proposals` lists the pending ones.")
        return found[0]

    @translated
    def proposals(self) -> list[dict[str, Any]]:
        return dicts(self.conn.execute(
            "SELECT * FROM memory_proposals WHERE status = 'pending' ORDER BY id"))

    def accept(self, proposal_id: int, text: str | None = None) -> dict[str, Any]:
        """Save a proposal (as proposed, or as the user edited it) as a memory."""
        proposal = self._pending(proposal_id)
        memory = self.add(text or proposal["text"], proposal["kind"], proposal["conversation_id"],
                          proposal["message_id"])
        self._settle(proposal_id, "accepted", memory["id"])
        return memory

    def reject(self, proposal_id: int) -> None:
        self._pending(proposal_id)
        self._settle(proposal_id, "rejected", None)

    @translated
    def _settle(self, proposal_id: int, status: str, memory_id: int | None) -> None:
        self.conn.execute("UPDATE memory_proposals SET status = ?, memory_id = ? WHERE id = ?",
                          [status, memory_id, proposal_id])

    def _pending(self, proposal_id: int) -> dict[str, Any]:
        proposal = self.proposal(proposal_id)
        if proposal["status"] != "pending":
            raise MemoryInputError(f"Memory proposal {proposal_id} was already {proposal['status']}.")
        return proposal


_SELECT = """
    SELECT m.*, c.title AS source_title
    FROM memories m LEFT JOIN conversations c ON c.id = m.source_conversation_id
"""


def _checked(text: str, kind: str) -> tuple[str, str]:
    text = " ".join(text.split())
    if not text:
        raise MemoryInputError("A memory needs some text.",
                               hint='For example: assistant memory add "I prefer metric units".')
    if len(text) > MAX_CHARS:
        raise MemoryInputError(f"A memory is limited to {MAX_CHARS} characters; this one has {len(text)}.",
                               hint="Split it into shorter memories.")
    if kind not in KINDS:
        raise MemoryInputError(f"Unknown memory kind {kind!r}.", hint=f"Use one of: {', '.join(KINDS)}.")
    return text, kind
