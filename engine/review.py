"""The human in the loop: which answers go to the review queue (thumbs down, refusals,
guardrails, low groundedness), and the exports that put
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


LOW_GROUNDEDNESS = "low_groundedness"  # the queue's reason for an answer its sources hardly support


def poorly_grounded(groundedness: float | None, threshold: float) -> bool:
    """An answer that had sources, most of whose claims none of them supports (the
    `hallucination_threshold` setting): a person should look before anyone relies on it."""
    return groundedness is not None and groundedness < threshold


def _prompt_messages(store: Store, response: dict[str, Any]) -> list[dict[str, str]]:
    """The conversation up to and including the question the response answered, as alternating
    user and assistant turns ending with that question.

    A stopped answer (Esc, Ctrl-C: a partial message) stays in as what the user saw: the next
    question follows it, and dropping it would leave two questions in a row. A question with no
    answer at all (an error before the first token) is joined to the next one, for the same reason.
    """
    rows = dicts(store.conn.execute(
        "SELECT role, content, status FROM messages WHERE conversation_id = ? AND id <= ? ORDER BY id",
        [response["conversation_id"], response["prompt_message_id"]],
    ))
    turns: list[dict[str, str]] = []
    for r in rows:
        if r["role"] not in ("user", "assistant") or not r["content"].strip():
            continue
        if not turns and r["role"] == "assistant":
            continue  # a conversation starts with a question
        if turns and turns[-1]["role"] == r["role"]:
            turns[-1] = {"role": r["role"], "content": f"{turns[-1]['content']}\n\n{r['content']}"}
        else:
            turns.append({"role": r["role"], "content": r["content"]})
    return turns if turns and turns[-1]["role"] == "user" else []


def _candidates(store: Store, where: str) -> list[dict[str, Any]]:
    return dicts(store.conn.execute(
        f"""SELECT r.id, r.conversation_id, r.prompt_message_id, r.model, r.status, a.content AS answer,
                   v.better_answer,
                   (SELECT f.rating FROM feedback f WHERE f.response_id = r.id ORDER BY f.id DESC LIMIT 1)
                       AS rating
            FROM responses r LEFT JOIN messages a ON a.id = r.message_id
            LEFT JOIN reviews v ON v.response_id = r.id AND v.reviewed_at IS NOT NULL
            WHERE {where} ORDER BY r.id"""
    ))


def _system(system_prompt: str | None) -> list[dict[str, str]]:
    return [{"role": "system", "content": system_prompt}] if system_prompt else []


def fine_tuning_examples(store: Store, system_prompt: str | None = None) -> list[dict[str, Any]]:
    """Chat-format examples: answers rated thumbs up as they were, and reviewed answers with the
    better answer the reviewer wrote. A stopped answer is context for later turns but never a
    target as it was, even rated up: it ends mid-sentence; a reviewer's better answer for it is."""
    examples = []
    for r in _candidates(store, "r.status = 'ok' OR r.id IN (SELECT response_id FROM reviews)"):
        whole = r["status"] == "ok"
        answer = r["better_answer"] or (r["answer"] if r["rating"] == 1 and whole else None)
        prompt = _prompt_messages(store, r)
        if not answer or not prompt:
            continue
        messages = _system(system_prompt) + prompt + [{"role": "assistant", "content": answer}]
        examples.append({"messages": messages, "response_id": r["id"],
                         "source": "reviewed" if r["better_answer"] else "thumbs_up"})
    return examples


def preference_pairs(store: Store, system_prompt: str | None = None) -> list[dict[str, Any]]:
    """DPO pairs: the reviewer's better answer is chosen, the model's original answer rejected;
    the prompt starts with the same system message as the SFT examples. A stopped answer that
    was reviewed is rejected as far as it got: the reviewer preferred another answer to it."""
    pairs = []
    for r in _candidates(store, "r.id IN (SELECT response_id FROM reviews WHERE better_answer IS NOT NULL)"):
        prompt = _prompt_messages(store, r)
        if prompt and r["answer"] and r["better_answer"] and r["answer"] != r["better_answer"]:
            pairs.append({"prompt": _system(system_prompt) + prompt, "chosen": r["better_answer"],
                          "rejected": r["answer"], "response_id": r["id"], "model": r["model"]})
    return pairs
