"""Close the feedback loop: thumbs-down and reviewed answers become eval cases.

A reviewed answer's better answer is the case's reference; an answer reviewed as "nothing to fix"
is its own reference; a thumbs-down answer not yet reviewed becomes a case without a reference
(scored by the judge, checks, consistency and latency) that keeps the rejected answer in `meta`.
The conversation before the question comes along as `history`.
"""

from __future__ import annotations

from typing import Any

from engine.review import _prompt_messages
from memory.store import Store, dicts


def cases_from_reviews(store: Store, reviewed_only: bool = False) -> list[dict[str, Any]]:
    where = "v.reviewed_at IS NOT NULL" if reviewed_only else "(v.reviewed_at IS NOT NULL OR rating = -1)"
    rows = dicts(store.conn.execute(
        f"""SELECT * FROM (
                SELECT r.id, r.conversation_id, r.prompt_message_id, r.model, r.template_version,
                       a.content AS answer, v.reason, v.reviewed_at, v.better_answer, v.note,
                       (SELECT f.rating FROM feedback f WHERE f.response_id = r.id
                        ORDER BY f.id DESC LIMIT 1) AS rating,
                       (SELECT f.comment FROM feedback f WHERE f.response_id = r.id
                        ORDER BY f.id DESC LIMIT 1) AS comment
                FROM responses r LEFT JOIN messages a ON a.id = r.message_id
                LEFT JOIN reviews v ON v.response_id = r.id) v
            WHERE {where} ORDER BY id"""
    ))
    cases = []
    for row in rows:
        messages = _prompt_messages(store, row)
        if not messages or messages[-1]["role"] != "user":
            continue  # the question was not stored (log_content off) or is gone
        reviewed = row["reviewed_at"] is not None
        reference = row["better_answer"] or (row["answer"] if reviewed else None)
        meta = {key: value for key, value in {
            "from_response": row["id"], "model": row["model"], "template_version": row["template_version"],
            "review": row["reason"] if reviewed else None, "rating": row["rating"], "comment": row["comment"],
            "note": row["note"], "rejected_answer": row["answer"] if row["answer"] != reference else None,
        }.items() if value is not None}
        case: dict[str, Any] = {"id": f"review-{row['id']}", "question": messages[-1]["content"]}
        if reference:
            case["reference"] = reference
        if len(messages) > 1:
            case["history"] = [m for m in messages[:-1] if m["role"] in ("user", "assistant")]
        case["tags"] = ["reviewed" if reviewed else "thumbs_down"]
        case["meta"] = meta
        cases.append(case)
    return cases
