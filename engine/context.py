"""Ephemeral memory: fit a conversation into the model's context window.

The prompt is the system prompt, as many of the most recent turns as fit, and the new question,
leaving `max_tokens` free for the answer. A question too long on its own is shortened in the
middle (and marked as such), so the user gets an answer instead of an "exceeds context" crash.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from engine.errors import ContextOverflowError

Message = dict[str, str]
TokenCounter = Callable[[list[Message]], int]
CUT_MARK = "\n[… {n} characters cut to fit the context window …]\n"
# No tokenizer makes tokens this long: text over budget * this many characters cannot fit, so a
# pasted megabyte is cut by length first instead of being tokenized whole at every bisection step.
MAX_CHARS_PER_TOKEN = 32


@dataclass(frozen=True)
class FittedPrompt:
    messages: list[Message]
    prompt_tokens: int
    dropped_messages: int
    question_truncated: bool


def fit_messages(
    system: str,
    history: list[Message],
    question: str,
    count_tokens: TokenCounter,
    n_ctx: int,
    max_tokens: int,
    sources: str = "",
) -> FittedPrompt:
    """`sources`, when given, is a system message right before the question, kept with it while
    older turns are left out."""
    budget = n_ctx - max_tokens
    head = [{"role": "system", "content": system}] if system else []
    before = [{"role": "system", "content": sources}] if sources else []
    if count_tokens(head + before) >= budget:
        what = "The system prompt and the sources need" if sources else "The system prompt alone needs"
        raise ContextOverflowError(
            f"{what} more than the {budget} tokens left in a context window "
            f"of {n_ctx} with {max_tokens} kept for the answer.",
            hint="Shorten system_prompt, lower max_tokens or raise n_ctx in the config.",
        )

    truncated = False
    last = {"role": "user", "content": question}
    if len(question) > budget * MAX_CHARS_PER_TOKEN or count_tokens(head + before + [last]) > budget:
        last = {"role": "user", "content": _shorten(question, head + before, budget, count_tokens)}
        truncated = True

    counted: dict[int, int] = {}  # prompt tokens by first kept message

    def fits(start: int) -> bool:
        counted[start] = count_tokens(head + history[start:] + before + [last])
        return counted[start] <= budget

    # Fewer kept messages never need more tokens, so the first start that fits is found by bisection;
    # first the common case, everything fits, in one count (each count formats the whole prompt).
    low, high = (0, 0) if fits(0) else (1, len(history))
    while low < high:
        middle = (low + high) // 2
        if fits(middle):
            high = middle
        else:
            low = middle + 1
    start = low
    while start < len(history) and history[start]["role"] != "user":
        start += 1  # never open the window on half a turn
    messages = head + history[start:] + before + [last]
    return FittedPrompt(messages, counted.get(start) or count_tokens(messages), start, truncated)


def _shorten(text: str, head: list[Message], budget: int, count_tokens: TokenCounter) -> str:
    """The longest head-and-tail cut of `text` that fits, found by bisection on its length."""

    def cut(keep: int) -> str:
        half = keep // 2
        return text[:half] + CUT_MARK.format(n=len(text) - keep) + text[len(text) - (keep - half) :]

    low, high = 0, min(len(text), budget * MAX_CHARS_PER_TOKEN)
    while low < high:
        middle = (low + high + 1) // 2
        if count_tokens(head + [{"role": "user", "content": cut(middle)}]) <= budget:
            low = middle
        else:
            high = middle - 1
    return cut(low)
