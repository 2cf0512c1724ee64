"""Conversations as portable files (JSONL and Markdown), import back from JSONL, and forks.

One JSONL line per conversation: {"format": "assistant.conversation/1", "conversation": {...},
"messages": [{role, content, status, created_at, response: {...timings, tokens, cost...},
rating, feedback: [...], sources: [{number, location, cited, ...}]}]}. Import creates new
conversations (new ids) with their messages, response rows, ratings and sources, so an export of
the import gives the same file except for ids. A conversation already in the database (the same
start time and messages: the same file imported twice, or an export imported where it came from)
is skipped, not copied again.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from memory.errors import AssistantError, NotFoundError
from memory.store import StoreView, dicts, now, translated

FORMAT = "assistant.conversation/1"
_CONVERSATION_KEYS = ("id", "title", "created_at", "updated_at", "backend", "system_template", "incognito")
_RESPONSE_KEYS = ("status", "error", "backend", "model", "model_hash", "template", "template_version",
                  "input_tokens", "output_tokens", "ttft_ms", "total_ms", "tokens_per_s", "cost", "cache_hit",
                  "endpoint", "remote", "created_at")
_NEW_CONVERSATION = ("INSERT INTO conversations (title, created_at, updated_at, backend, system_template,"
                     " incognito) VALUES (?, ?, ?, ?, ?, ?)")
SourcesOf = Callable[[dict[str, Any], str], list[dict[str, Any]]]  # (response row, answer) -> its sources


class ImportFormatError(AssistantError):
    """A file to import is not an export of conversations."""


@dataclass
class Imported:
    ids: list[int] = field(default_factory=list)  # the new conversations
    already_there: list[int] = field(default_factory=list)  # the conversations that matched, skipped


class Transcripts(StoreView):

    # export ------------------------------------------------------------------------------------

    @translated
    def conversation_ids(self) -> list[int]:
        return [r[0] for r in self.conn.execute("SELECT id FROM conversations ORDER BY id")]

    @translated
    def export(self, conversation_id: int, sources_of: SourcesOf) -> dict[str, Any]:
        """One conversation as a JSON-ready dict."""
        conversation = self.store._get("conversations", conversation_id, "conversation")
        messages = []
        for m in dicts(self.conn.execute(
                "SELECT * FROM messages WHERE conversation_id = ? ORDER BY id", [conversation_id])):
            item: dict[str, Any] = {k: m[k] for k in ("role", "content", "status", "created_at")}
            response = dicts(self.conn.execute("SELECT * FROM responses WHERE message_id = ?", [m["id"]]))
            if response:
                row = response[0]
                item["response"] = {k: row[k] for k in _RESPONSE_KEYS}
                feedback = dicts(self.conn.execute(
                    "SELECT rating, comment, created_at FROM feedback WHERE response_id = ? ORDER BY id",
                    [row["id"]]))
                item["rating"] = feedback[-1]["rating"] if feedback else None
                item["feedback"] = feedback
                item["sources"] = (json.loads(row["imported_sources"]) if row["imported_sources"]
                                   else sources_of(row, m["content"]))
            messages.append(item)
        return {"format": FORMAT, "conversation": {k: conversation[k] for k in _CONVERSATION_KEYS},
                "messages": messages}

    # import ------------------------------------------------------------------------------------

    def import_lines(self, lines: Iterable[str], where: str) -> Imported:
        """Create a conversation for each exported line that is not in the database yet. A bad
        line stops the import before anything is written, naming the line."""
        done = Imported()
        for item in list(_parse(lines, where)):
            existing = self._existing(item)
            if existing is None:
                done.ids.append(self._import(item))
            else:
                done.already_there.append(existing)
        return done

    @translated
    def _existing(self, item: dict[str, Any]) -> int | None:
        """The conversation this export already is: the same start time and the same messages
        (role, text, time). Ids and titles do not count: they change on import and by renaming."""
        started = item["conversation"].get("created_at")
        wanted = [(m["role"], m["content"], m.get("created_at")) for m in item["messages"]]
        for (conversation_id,) in self.conn.execute(
                "SELECT id FROM conversations WHERE created_at = ? ORDER BY id", [started]).fetchall():
            have = [tuple(r) for r in self.conn.execute(
                "SELECT role, content, created_at FROM messages WHERE conversation_id = ? ORDER BY id",
                [conversation_id])]
            if have == wanted:
                return conversation_id
        return None

    @translated
    def _import(self, item: dict[str, Any]) -> int:
        c = item["conversation"]
        with self._transaction():
            conversation_id = self.conn.execute(
                _NEW_CONVERSATION,
                [c.get("title") or "Imported", c.get("created_at") or now(), c.get("updated_at") or now(),
                 c.get("backend"), c.get("system_template"), int(bool(c.get("incognito")))]).lastrowid
            prompt_id = None
            for m in item["messages"]:
                message_id = self.conn.execute(
                    "INSERT INTO messages (conversation_id, role, content, status, created_at)"
                    " VALUES (?, ?, ?, ?, ?)",
                    [conversation_id, m["role"], m["content"], m.get("status") or "complete",
                     m.get("created_at") or now()]).lastrowid
                if m["role"] == "user":
                    prompt_id = message_id
                if response := m.get("response"):
                    row = {k: response.get(k) for k in _RESPONSE_KEYS}
                    row.update(conversation_id=conversation_id, message_id=message_id,
                               prompt_message_id=prompt_id,
                               imported_sources=json.dumps(m.get("sources") or []))
                    row["status"] = row["status"] or "ok"
                    row["backend"], row["model"] = row["backend"] or "imported", row["model"] or "unknown"
                    row["cost"], row["cache_hit"] = row["cost"] or 0, row["cache_hit"] or 0
                    row["created_at"] = row["created_at"] or now()
                    columns = ", ".join(row)
                    response_id = self.conn.execute(
                        f"INSERT INTO responses ({columns}) VALUES ({', '.join('?' * len(row))})",
                        list(row.values())).lastrowid
                    for f in m.get("feedback") or []:
                        self.conn.execute(
                            "INSERT INTO feedback (response_id, rating, comment, created_at)"
                            " VALUES (?, ?, ?, ?)",
                            [response_id, f["rating"], f.get("comment"), f.get("created_at") or now()])
        return conversation_id

    # fork --------------------------------------------------------------------------------------

    @translated
    def fork(self, conversation_id: int, message_id: int | None = None, number: int | None = None) -> int:
        """A new conversation with the messages up to `message_id` (default: all), or up to its
        `number`-th message (1-based, as `assistant history -c` numbers them: message ids are
        global, so a person cannot count them), the same backend, template, folders and
        incognito flag, and the summary when it covers no later message. The original is untouched."""
        source = self.store._get("conversations", conversation_id, "conversation")
        ids = [r[0] for r in self.conn.execute(
            "SELECT id FROM messages WHERE conversation_id = ? ORDER BY id", [conversation_id])]
        if number is not None:
            if not 1 <= number <= len(ids):
                has = f"messages #1 to #{len(ids)}" if ids else "no messages"
                raise NotFoundError(f"Conversation {conversation_id} has no message #{number}: it has {has}.",
                                    hint=f"`assistant history -c {conversation_id}` numbers its messages.")
            message_id = ids[number - 1]
        if message_id is None:
            message_id = ids[-1] if ids else 0
        elif message_id not in ids:
            raise ImportFormatError(f"Message {message_id} is not in conversation {conversation_id}.",
                                    hint=f"`assistant history -c {conversation_id}` lists its messages.")
        with self._transaction():
            stamp = now()
            new_id = self.conn.execute(
                _NEW_CONVERSATION,
                [f"Fork of {source['title']}"[:80], stamp, stamp, source["backend"],
                 source["system_template"], source["incognito"]]).lastrowid
            copied: dict[int, int] = {}
            for m in dicts(self.conn.execute(
                    "SELECT * FROM messages WHERE conversation_id = ? AND id <= ? ORDER BY id",
                    [conversation_id, message_id])):
                copied[m["id"]] = self.conn.execute(
                    "INSERT INTO messages (conversation_id, role, content, status, created_at)"
                    " VALUES (?, ?, ?, ?, ?)",
                    [new_id, m["role"], m["content"], m["status"], m["created_at"]]).lastrowid
            self.conn.execute(
                "INSERT INTO conversation_folders (conversation_id, folder_id, active)"
                " SELECT ?, folder_id, active FROM conversation_folders WHERE conversation_id = ?",
                [new_id, conversation_id])
            summary = dicts(self.conn.execute(
                "SELECT * FROM summaries WHERE conversation_id = ? AND upto_message_id <= ?"
                " ORDER BY upto_message_id DESC LIMIT 1", [conversation_id, message_id]))
            if summary and summary[0]["upto_message_id"] in copied:
                s = summary[0]
                self.conn.execute(
                    "INSERT INTO summaries (conversation_id, upto_message_id, text, model, created_at)"
                    " VALUES (?, ?, ?, ?, ?)",
                    [new_id, copied[s["upto_message_id"]], s["text"], s["model"], stamp])
        return new_id


def to_markdown(item: dict[str, Any]) -> str:
    """A conversation export as Markdown: questions, answers with model, timings, rating and
    numbered sources."""
    c = item["conversation"]
    started = c["created_at"][:19].replace("T", " ")
    lines = [f"# {c['title']}", "", f"*Conversation {c['id']}, started {started}*", ""]
    for m in item["messages"]:
        if m["role"] == "user":
            lines += ["## You", "", m["content"], ""]
            continue
        r = m.get("response") or {}
        facts = [r.get("model") or "", _ms(r.get("ttft_ms"), "first token"), _ms(r.get("total_ms"), "total")]
        if r.get("tokens_per_s"):
            facts.append(f"{r['tokens_per_s']:.0f} tok/s")
        if r.get("cost"):
            facts.append(f"${r['cost']:.4f}")
        rating = {1: "👍", -1: "👎"}.get(m.get("rating"))
        if rating:
            facts.append(rating)
        if m.get("status") == "partial":
            facts.append("stopped")
        lines += [f"## Assistant ({' · '.join(f for f in facts if f)})", "", m["content"], ""]
        for s in m.get("sources") or []:
            mark = "" if s.get("cited") else " (retrieved, not cited)"
            lines.append(f"- [{s['number']}] `{s['location']}`{mark}")
        if m.get("sources"):
            lines.append("")
    return "\n".join(lines)


def _ms(value: float | None, what: str) -> str:
    return f"{value / 1000:.2f} s {what}" if value else ""


def _parse(lines: Iterable[str], where: str) -> Iterator[dict[str, Any]]:
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            valid = (item.get("format") == FORMAT and isinstance(item.get("conversation"), dict)
                     and all(m.get("role") in ("user", "assistant", "system")
                             and isinstance(m.get("content"), str) for m in item["messages"]))
        except (json.JSONDecodeError, AttributeError, TypeError, KeyError) as exc:
            raise ImportFormatError(f"{where}, line {number}, is not a conversation export: {exc}.",
                                    hint="Import files written by `assistant export conversations`.") from exc
        if not valid:
            raise ImportFormatError(f"{where}, line {number}, is not a conversation export ({FORMAT}).",
                                    hint="Import files written by `assistant export conversations`.")
        yield item
