"""The line(s) of a source that match: a short excerpt under each source of an answer, with the
question's and the answer's words marked, so a person can check a source at a glance.

Cheap on purpose (no model, no embedding): the passage's lines are scored by the distinct content
words they share with the question and the answer (a light stemming, so "workers" meets "worker"),
and the best line, with its best neighbour when that one matches too, is the excerpt.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from memory.retriever import Passage

EXCERPT_CHARS = 160  # of one line: a long line is cut around its first match
MAX_LINES = 2

_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")  # snake_case parts apart: "worker" finds run_worker
# Words too common to say a line is about the question.
_STOPWORDS = frozenset(
    "a about above after all also am an and any are as at be been before being but by can could did do "
    "does doing down each few for from further had has have having he her here hers him his how i if in "
    "into is it its itself just me more most my no nor not now of off on once only or other our out over "
    "own same she should so some such than that the their them then there these they this those through "
    "to too under until up very was we were what when where which while who whom why will with would you "
    "your yours want need get make like use using used way something thing things one without within".split()
)
_SUFFIXES = ("ations", "ation", "ings", "ing", "ies", "ied", "ers", "er", "es", "ed", "ly", "s")


@dataclass(frozen=True)
class EvidenceLine:
    line: int  # the line's number in its file (for a text file; PDF and HTML: the passage's own count)
    text: str  # the line, or the part of a long line around its first match
    marks: tuple[tuple[int, int], ...]  # [start, end) of each matched word in `text`


def stem(word: str) -> str:
    word = word.lower().replace("’", "'")
    for suffix in _SUFFIXES:
        if len(word) - len(suffix) >= 3 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


def content_stems(*texts: str) -> frozenset[str]:
    """The stems of the words in `texts` that can say what a line is about."""
    return frozenset(
        stem(w) for text in texts for w in _WORD.findall(text)
        if len(w) > 1 and w.lower() not in _STOPWORDS and not w.isdigit()
    )


def evidence(passage: Passage, question: str = "", answer: str = "") -> tuple[EvidenceLine, ...]:
    """The passage's line(s) sharing the most content words with the question and the answer, each
    with its matches marked; () when no line shares any."""
    wanted = content_stems(question, answer)
    if not wanted:
        return ()
    lines = passage.text.split("\n")
    found = [_matches(text, wanted) for text in lines]
    scores = [len({s for s, _ in marks}) for marks in found]
    best = max(range(len(lines)), key=lambda i: (scores[i], -i), default=None)
    if best is None or scores[best] == 0:
        return ()
    chosen = [best]
    neighbours = [i for i in (best - 1, best + 1) if 0 <= i < len(lines) and scores[i] > 0]
    if neighbours and MAX_LINES > 1:
        chosen.append(max(neighbours, key=lambda i: (scores[i], -i)))
    return tuple(_excerpt(passage.start_line + i, lines[i], found[i]) for i in sorted(chosen))


def _matches(text: str, wanted: frozenset[str]) -> list[tuple[str, tuple[int, int]]]:
    return [(s, m.span()) for m in _WORD.finditer(text) if (s := stem(m.group())) in wanted
            and m.group().lower() not in _STOPWORDS]


def _excerpt(number: int, text: str, found: list[tuple[str, tuple[int, int]]]) -> EvidenceLine:
    stripped = text.rstrip()
    start = len(stripped) - len(stripped.lstrip())
    end = len(stripped)
    if end - start > EXCERPT_CHARS:
        first = found[0][1][0]
        start = max(start, first - EXCERPT_CHARS // 4)
        end = min(end, start + EXCERPT_CHARS)
    shown = stripped[start:end]
    prefix = "…" if start > len(text) - len(text.lstrip()) else ""
    suffix = "…" if end < len(stripped) else ""
    shift = len(prefix) - start
    marks = tuple((a + shift, b + shift) for _, (a, b) in found if a >= start and b <= end)
    return EvidenceLine(number, prefix + shown + suffix, marks)


def segments(line: EvidenceLine) -> list[tuple[str, bool]]:
    """The line's text in runs, each with whether it is a matched word (for the screen to mark)."""
    runs: list[tuple[str, bool]] = []
    position = 0
    for start, end in line.marks:
        if start > position:
            runs.append((line.text[position:start], False))
        runs.append((line.text[start:end], True))
        position = end
    if position < len(line.text):
        runs.append((line.text[position:], False))
    return runs
