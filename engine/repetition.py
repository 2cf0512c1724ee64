"""Stopping an answer that loops.

Small models at temperature 0 fall into loops: the same list item, sentence or code block again
and again until `max_tokens` (the embedded SmolLM2 did on 17 of 35 questions over Textual's docs,
docs/benchmarks.md "Answers that end"). Whatever the backend, the engine watches the text as it
streams; once the same run of words has come three times, the answer stops and is cut back to
before the first repeat, at the end of a sentence or line, so what is kept says everything once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_WORD = re.compile(r"\S+")
_BOUNDARY = re.compile(r"(?:[.!?:;][\"')\]*`]*\s|\n)")


@dataclass(frozen=True)
class LoopGuard:
    """`words`: the length of the run that must repeat; `times`: how often it must appear."""

    words: int = 8
    times: int = 3

    def cut(self, text: str) -> int | None:
        """Where to end `text` when it has started to loop (an offset), else None. Cheap enough
        to call after every streamed piece: it looks only at the run that ends the text."""
        spans = [(m.start(), m.end()) for m in _WORD.finditer(text)]
        if len(spans) < self.words * self.times:
            return None
        words = [text[s:e] for s, e in spans]
        tail = words[-self.words:]
        starts = [i for i in range(len(words) - self.words + 1)
                  if words[i] == tail[0] and words[i:i + self.words] == tail]
        # Overlapping occurrences count too: a run that recurs within its own length is a loop
        # with a short period (one list item again and again).
        if len(starts) < self.times:
            return None
        # One period of the loop runs from the first occurrence to the second: keep up to the
        # last sentence or line end before the second begins (or up to it, if there is none).
        second = spans[starts[1]][0]
        ends = [m.end() for m in _BOUNDARY.finditer(text, spans[starts[0]][0], second + 1)]
        end = ends[-1] if ends else second
        return len(text[:end].rstrip()) or None


def trimmed(text: str, guard: LoopGuard = LoopGuard()) -> tuple[str, bool]:
    """`text` cut where it starts to loop, and whether it was."""
    end = guard.cut(text)
    return (text, False) if end is None else (_close_fence(text[:end]), True)


def _close_fence(text: str) -> str:
    """A cut inside a code block closes it, so the rest of the screen is not drawn as code; a
    block cut before its first line is dropped."""
    lines = text.splitlines()
    fences = sum(1 for line in lines if line.lstrip().startswith(("```", "~~~")))
    if not fences % 2:
        return text
    if lines and lines[-1].lstrip().startswith(("```", "~~~")):
        return "\n".join(lines[:-1]).rstrip()
    return text + "\n```"
