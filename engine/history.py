"""What the answers left behind, for the TUI and the CLI: conversations and their messages, the
response log and its traces, feedback, the review queue, exports and imports, statistics.

The app reaches the database only through here (`Engine.history`), never `memory.store` itself.
Every method is async and runs SQLite in a worker thread.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from engine.citations import resolve_citations
from engine.config import Settings
from engine.library import Library
from engine.tools import ToolCall, ToolStep
from memory.store import Store

if TYPE_CHECKING:
    from engine.alerts import Alert
    from memory.transcripts import Imported

T = TypeVar("T")


class History:
    def __init__(self, settings: Settings, store: Callable[[], Awaitable[Store]], library: Library) -> None:
        self.settings = settings
        self._store = store
        self._library = library  # the sources of answers that used some

    async def _db(self, method: Callable[[Store], T]) -> T:
        store = await self._store()
        return await asyncio.to_thread(method, store)

    # conversations -----------------------------------------------------------------------------

    async def conversation(self, conversation_id: int) -> dict[str, Any]:
        return await self._db(lambda s: s.conversation(conversation_id))

    async def conversations(self, limit: int = 100) -> list[dict[str, Any]]:
        return await self._db(lambda s: s.conversations(limit))

    async def search_conversations(self, query: str) -> list[dict[str, Any]]:
        return await self._db(lambda s: s.search_conversations(query))

    async def messages(self, conversation_id: int) -> list[dict[str, Any]]:
        """The conversation's messages; answers that used sources carry them under "sources", and
        every answer the tools it called under "tool_steps" (as its 🔧 line showed them live). An
        answer stopped before any text has no message: it comes as an empty assistant row with no
        "id", so a reopened conversation shows it as it was shown live (its #id, rating, "stopped")."""
        rows = await self._db(lambda s: _with_unwritten_answers(s.messages(conversation_id),
                                                                 s.answers_without_text(conversation_id)))
        answered = [r["response_id"] for r in rows if r.get("response_id") is not None]
        spans = await self._db(lambda s: {i: s.spans(i) for i in answered})
        question = ""  # the one an answer follows: its evidence marks the same words as live
        for row in rows:
            if row.get("role") == "user":
                question = row["content"]
            if row.get("response_id") is not None:
                row["tool_steps"] = tool_steps(spans[row["response_id"]])
            if row.get("retrieved_chunk_ids"):
                passages = await self._library.passages(json.loads(row["retrieved_chunk_ids"]))
                row["sources"] = resolve_citations(row["content"], passages, _attributed(row), question)[1]
        return rows

    async def set_incognito(self, conversation_id: int, on: bool) -> None:
        await self._db(lambda s: s.set_incognito(conversation_id, on))
        if on:  # the model states kept on disk hold the conversation's text
            await asyncio.to_thread(_forget_states, conversation_id)

    async def rename_conversation(self, conversation_id: int, title: str) -> None:
        await self._db(lambda s: s.rename_conversation(conversation_id, title))

    async def delete_conversation(self, conversation_id: int) -> None:
        await self._db(lambda s: s.delete_conversation(conversation_id))
        await asyncio.to_thread(_forget_states, conversation_id)

    async def fork(
        self, conversation_id: int, message_id: int | None = None, number: int | None = None
    ) -> int:
        """A copy of the conversation up to `message_id`, or its `number`-th message (1-based, as
        `history -c` shows them); default: all of it. To go on differently."""
        from memory.transcripts import Transcripts

        return await self._db(lambda s: Transcripts(s).fork(conversation_id, message_id, number))

    async def export_conversations(self, conversation_ids: list[int] | None = None) -> list[dict[str, Any]]:
        """Conversations (default: all) as JSON-ready dicts, with sources, ratings and timings."""
        from memory.transcripts import Transcripts

        transcripts = Transcripts(await self._store())
        knowledge = await self._library.knowledge() if await self._library.anything_indexed() else None

        def sources_of(row: dict[str, Any], text: str) -> list[dict[str, Any]]:
            if knowledge is None or not row["retrieved_chunk_ids"]:
                return []
            passages = knowledge.passages(json.loads(row["retrieved_chunk_ids"]))
            return [{"number": s.number, "location": s.passage.location, "path": s.passage.path,
                     "cited": s.cited, "kind": s.kind}
                    for s in resolve_citations(text, passages, _attributed(row))[1]]

        def export() -> list[dict[str, Any]]:
            ids = conversation_ids or transcripts.conversation_ids()
            return [transcripts.export(i, sources_of) for i in ids]

        return await asyncio.to_thread(export)

    async def export_markdown(self, conversation_ids: list[int] | None = None) -> list[str]:
        """Conversations as Markdown, one text each (`export conversations --format markdown`,
        the chat's /export): the app gets the text, never the transcript module."""
        from memory.transcripts import to_markdown

        return [to_markdown(item) for item in await self.export_conversations(conversation_ids)]

    async def import_conversations(self, lines: list[str], where: str) -> Imported:
        """New conversations from an export's lines; those already here are skipped (`already_there`)."""
        from memory.transcripts import Transcripts

        return await self._db(lambda s: Transcripts(s).import_lines(lines, where))

    # feedback and review -----------------------------------------------------------------------

    async def rate(self, response_id: int, rating: int, comment: str | None = None) -> int:
        """Thumbs up (+1) or down (-1) on a response, with an optional comment."""
        return await self._db(lambda s: s.add_feedback(response_id, rating, comment))

    async def comment(self, feedback_id: int, comment: str) -> None:
        """Attach a comment to feedback given a moment ago."""
        await self._db(lambda s: s.set_feedback_comment(feedback_id, comment))

    async def reviews(self, pending: bool = True) -> list[dict[str, Any]]:
        return await self._db(lambda s: s.reviews(pending))

    async def mark_reviewed(
        self, response_id: int, better_answer: str | None, note: str | None = None
    ) -> None:
        await self._db(lambda s: s.mark_reviewed(response_id, better_answer, note))

    async def review_cases(self, reviewed_only: bool = False) -> list[dict[str, Any]]:
        """Thumbs-down and reviewed answers as eval cases (`assistant eval from-review`)."""
        from engine.evals.feedback import cases_from_reviews

        return await self._db(lambda s: cases_from_reviews(s, reviewed_only))

    async def training_rows(self, kind: str, system_prompt: str | None) -> list[dict[str, Any]]:
        """"sft": thumbs-up and reviewed answers as chat examples; "dpo": preference pairs."""
        from engine.review import fine_tuning_examples, preference_pairs

        make = {"sft": fine_tuning_examples, "dpo": preference_pairs}[kind]
        return await self._db(lambda s: make(s, system_prompt))

    # the response log --------------------------------------------------------------------------

    async def answer_to(self, question_message_id: int) -> dict[str, Any] | None:
        """The response row of the latest answer to a question, None before one is written."""
        return await self._db(lambda s: s.answer_to(question_message_id))

    async def response(self, response_id: int) -> dict[str, Any]:
        return await self._db(lambda s: s.response(response_id))

    async def trace(self, response_id: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """An answer's response row and its spans."""
        return await self._db(lambda s: (s.response(response_id), s.spans(response_id)))

    async def response_detail(self, response_id: int) -> dict[str, Any]:
        """An answer's row, with its question and answer text (None when not stored) and spans."""

        def read(s: Store) -> dict[str, Any]:
            row = s.response(response_id)
            return {"response": row, "question": s.message_text(row["prompt_message_id"]),
                    "answer": s.message_text(row["message_id"]), "spans": s.spans(response_id)}

        return await self._db(read)

    async def responses_since(self, since: str) -> list[dict[str, Any]]:
        return await self._db(lambda s: s.responses_since(since))

    async def stats(self, since: str | None = None, by: str | None = None) -> dict[str, Any]:
        from engine import stats

        return await self._db(lambda s: stats.compute(s, since, by))

    async def alerts(self) -> list[Alert]:
        from engine import alerts

        return await self._db(lambda s: alerts.check(s, self.settings))

    async def backup(self, target: Path) -> None:
        """A consistent copy of the database, even while answering (the vectors are rebuilt on restore)."""
        await self._db(lambda s: s.backup(target))


def _with_unwritten_answers(rows: list[dict[str, Any]],
                            unwritten: dict[int, dict[str, Any]]) -> list[dict[str, Any]]:
    """`rows` with an empty assistant row after each question whose answer has no message."""
    merged: list[dict[str, Any]] = []
    for index, row in enumerate(rows):
        merged.append(row)
        following = rows[index + 1]["role"] if index + 1 < len(rows) else None
        answer = unwritten.get(row["id"]) if row["role"] == "user" else None
        if answer is not None and following != "assistant":
            merged.append({"id": None, "conversation_id": row["conversation_id"], "role": "assistant",
                           "content": "", "status": "partial", "created_at": answer["created_at"],
                           "response_id": answer["response_id"], "retrieved_chunk_ids": None,
                           "backend": answer["backend"], "model": answer["model"],
                           "remote": answer["remote"], "groundedness": None, "attribution": None,
                           "rating": answer["rating"], "answer_status": answer["response_status"]})
    return merged


def tool_steps(spans: list[dict[str, Any]]) -> tuple[ToolStep, ...]:
    """The tool calls of an answer, from its trace's spans (engine.toolloop: one span per call,
    with the tool's name, status and, when content is logged, its result)."""
    steps = []
    for span in spans:
        attrs = span["attrs"]
        if span["name"].startswith("tool ") and "status" in attrs:  # not "tool decision"
            name = attrs.get("tool") or span["name"].removeprefix("tool ")
            steps.append(ToolStep(ToolCall(name, attrs.get("arguments") or {}), attrs["status"],
                                  attrs.get("result", ""), span["duration_ms"] or 0.0))
    return tuple(steps)


def _attributed(row: dict[str, Any]) -> list[int]:
    """The source numbers whose `[n]` attribution added to a saved answer (not the model)."""
    record = row.get("attribution")
    return list(json.loads(record).get("attributed", ())) if record else []


def _forget_states(conversation_id: int) -> None:
    """Delete the model states kept on disk for the conversation (engine/backends/disk_states.py)."""
    from engine.backends import disk_states

    disk_states.forget(disk_states.states_folder(), str(conversation_id))
