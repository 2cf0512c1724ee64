"""The human in the loop: which answers go to the review queue, and the exports that put
feedback to use (fine-tuning sets in chat format, preference pairs for DPO)."""

from __future__ import annotations

import re
from typing import Any

from memory.store import Store, dicts

# Phrases of an assistant declining to answer; cheap, and wrong only towards "review it".
_REFUSAL = re.compile(
    r"\b(?:I(?:'m| am) (?:sorry|afraid),? (?:but )?I (?:can(?:no|')t|am unable|won't)"
    r"|I (?:can(?:no|')t|am unable to|won't) (?:help|assist|provide|answer|do that|comply)"
    r"|as an AI(?: language model)?,? I)",
    re.IGNORECASE,
)


def looks_like_refusal(text: str) -> bool:
    return bool(_REFUSAL.search(text[:2000]))


def _prompt_messages(store: Store, response: dict[str, Any]) -> list[dict[str, str]]:
    """The conversation up to and including the question the response answered."""
    rows = dicts(store.conn.execute(
        "SELECT role, content, status FROM messages WHERE conversation_id = ? AND id <= ? ORDER BY id",
        [response["conversation_id"], response["prompt_message_id"]],
    ))
    return [{"role": r["role"], "content": r["content"]} for r in rows
            if r["status"] == "complete" and r["content"]]


def _candidates(store: Store, where: str) -> list[dict[str, Any]]:
    return dicts(store.conn.execute(
        f"""SELECT r.id, r.conversation_id, r.prompt_message_id, r.model, a.content AS answer,
                   v.better_answer,
                   (SELECT f.rating FROM feedback f WHERE f.response_id = r.id ORDER BY f.id DESC LIMIT 1)
                       AS rating
            FROM responses r LEFT JOIN messages a ON a.id = r.message_id
            LEFT JOIN reviews v ON v.response_id = r.id AND v.reviewed_at IS NOT NULL
            WHERE {where} ORDER BY r.id"""
    ))


def fine_tuning_examples(store: Store, system_prompt: str | None = None) -> list[dict[str, Any]]:
    """Chat-format examples: answers rated thumbs up as they were, and reviewed answers with the
    better answer the reviewer wrote."""
    examples = []
    for r in _candidates(store, "r.status = 'ok' OR r.id IN (SELECT response_id FROM reviews)"):
        answer = r["better_answer"] or (r["answer"] if r["rating"] == 1 else None)
        prompt = _prompt_messages(store, r)
        if not answer or not prompt:
            continue
        head = [{"role": "system", "content": system_prompt}] if system_prompt else []
        examples.append({"messages": head + prompt + [{"role": "assistant", "content": answer}],
                         "response_id": r["id"], "source": "reviewed" if r["better_answer"] else "thumbs_up"})
    return examples


def preference_pairs(store: Store) -> list[dict[str, Any]]:
    """DPO pairs: the reviewer's better answer is chosen, the model's original answer rejected."""
    pairs = []
    for r in _candidates(store, "r.id IN (SELECT response_id FROM reviews WHERE better_answer IS NOT NULL)"):
        prompt = _prompt_messages(store, r)
        if prompt and r["answer"] and r["better_answer"] and r["answer"] != r["better_answer"]:
            pairs.append({"prompt": prompt, "chosen": r["better_answer"], "rejected": r["answer"],
                          "response_id": r["id"], "model": r["model"]})
    return pairs
