"""Retrieved passages in the prompt, as untrusted data, and the citations in the answer."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

from engine.evidence import EvidenceLine, evidence
from memory.retriever import Passage

# Not right after a word character, so code such as `items[1]` is not taken for a citation.
_CITATION = re.compile(r"(?<!\w)\[(\s*\d+(?:\s*,\s*\d+)*\s*)\]")
_KEEP = {"\n", "\t"}


def clean(text: str) -> str:
    """Remove what a reader cannot see but a model reads: zero-width and other format
    characters, control characters; and defuse our own delimiters inside the text."""
    kept = "".join(
        ch for ch in text
        if ch in _KEEP or unicodedata.category(ch) not in ("Cf", "Cc", "Co", "Cn")
    )
    return kept.replace("<<<", "‹‹‹").replace(">>>", "›››")


def sources_message(passages: list[Passage], instructions: str) -> str:
    """The instructions for using sources (the `sources` prompt template), then the numbered
    sources, each inside clear delimiters: after the system prompt, or a message of its own right
    before the question (`sources_placement`)."""
    blocks = []
    for n, p in enumerate(passages, 1):
        heading = f" ({clean(p.heading)})" if p.heading else ""
        blocks.append(f"[{n}] {p.location}{heading}\n<<<\n{clean(p.text)}\n>>>")
    return f"{instructions}\n\nSources:\n\n" + "\n\n".join(blocks)


def cited_numbers(text: str) -> list[int]:
    """Every citation number in `text`, in order, including ones that match no source."""
    return [int(n) for match in _CITATION.finditer(text) for n in re.findall(r"\d+", match.group(0))]


def without_citations(text: str) -> str:
    """`text` without its `[n]` citations (and the space before each)."""
    return re.sub(r"[ \t]*" + _CITATION.pattern, "", text)


WRITTEN, ATTRIBUTED, RETRIEVED = "written", "attributed", "retrieved"


@dataclass(frozen=True)
class Source:
    number: int
    passage: Passage
    cited: bool  # the answer cites it; uncited sources were retrieved but not used
    # written: the model cited it; attributed: engine.attribution found it supporting a sentence
    # the model did not cite (its [n] was added after generation); retrieved: neither.
    kind: str = ""
    # The line(s) of the passage that match the question and the answer, their words marked
    # (engine.evidence): what the screen shows under the source, so it can be checked at a glance.
    evidence: tuple[EvidenceLine, ...] = ()

    def __post_init__(self) -> None:
        if not self.kind:
            object.__setattr__(self, "kind", WRITTEN if self.cited else RETRIEVED)


def resolve_citations(text: str, passages: list[Passage], attributed: Iterable[int] = (), question: str = ""
                      ) -> tuple[str, list[Source]]:
    """Drop citations whose number matches no passage; return the cleaned text and the sources,
    cited ones first in order of first citation. `attributed`: the numbers whose citations were
    added by attribution (engine.attribution), not written by the model. Each source carries its
    evidence: the lines matching `question` and the answer."""
    if not passages:
        return text, []
    cited: list[int] = []

    def keep_valid(match: re.Match[str]) -> str:
        numbers = [int(n) for n in re.findall(r"\d+", match.group(0))]
        valid = [n for n in numbers if 1 <= n <= len(passages)]
        for n in valid:
            if n not in cited:
                cited.append(n)
        return f"[{', '.join(map(str, valid))}]" if valid else ""

    cleaned = _CITATION.sub(keep_valid, text)
    if cleaned != text:  # a dropped citation may leave "word ." or a double space behind
        cleaned = re.sub(r"[ \t]+([.,;:!?])", r"\1", cleaned)
        cleaned = re.sub(r"(?<=\S)[ \t]{2,}(?=\S)", " ", cleaned)
    added = set(attributed)
    answer = without_citations(cleaned)

    def lines(p: Passage) -> tuple[EvidenceLine, ...]:
        return evidence(p, question, answer)

    sources = [Source(n, passages[n - 1], True, ATTRIBUTED if n in added else WRITTEN, lines(passages[n - 1]))
               for n in cited]
    sources += [Source(n, p, False, evidence=lines(p)) for n, p in enumerate(passages, 1) if n not in cited]
    return cleaned, sources
