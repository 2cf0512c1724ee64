"""Attribution after generation: which passages support each sentence of an answer.

Small models rarely write `[n]` citations (the embedded one never does), and a remote model's
citations may point anywhere; so after an answer is generated, whatever wrote it, each of its
sentences (or clauses) is compared with the passages it was given:

- lexical support: how much of the sentence's content words (stemmed; weighted by how rare each is
  among the passages, so a word every passage shares counts little and a word none of them has
  counts most) and of its word pairs the passage contains; words the answer only echoes from the
  question count less, since every retrieved passage shares them;
- semantic support: the cosine of the sentence's embedding and the passage's (the sentences are
  embedded in one batch by the model that embeds the index; the passages' vectors are the stored
  ones when the caller has them).

A sentence is supported by a passage when the two, combined, pass a threshold measured on real
answers (docs/benchmarks.md, "Attribution"). Supported sentences get the best passage's number
inline, `[n]`, unless the model cited it already; groundedness is the share of the answer's
claims (sentences worth checking: not filler, headings or questions) that some passage supports.

Pure and fast: no I/O of its own; `embed` is handed in.
"""

from __future__ import annotations

import functools
import math
import re
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

Embed = Callable[[list[str]], list[list[float]]]
EMBED_BATCH = 4  # texts per call to `embed` (memory.embedder.LIGHT_MAX_TEXTS: its numpy path)


class HasText(Protocol):
    text: str


@dataclass(frozen=True)
class Weights:
    """How lexical and semantic support combine, chosen by `bench/bench_grounded.py --calibrate`
    (docs/benchmarks.md): combined beats either alone on claims with one wrong detail (AUC 0.867
    against 0.850 lexical, 0.748 semantic), and 0.56 was the best threshold there; a hand check of
    real answers' citations agreed (precision 0.59 at 0.45, 0.78 at 0.56)."""

    lexical: float = 0.6  # share of the combined score from lexical support; the rest is the cosine
    threshold: float = 0.56  # combined score from which a passage supports a sentence
    question_words: float = 0.3  # weight of a word the question has too (it is no evidence)
    second_within: float = 0.05  # a second passage is cited too when this close to the best
    min_words: int = 3  # content words a sentence needs to be a claim worth checking


DEFAULT_WEIGHTS = Weights()


@dataclass(frozen=True)
class Support:
    number: int  # the passage's number, from 1
    score: float  # combined
    lexical: float
    semantic: float | None  # None when no embedder was given


@dataclass(frozen=True)
class Claim:
    text: str
    start: int  # offsets in the answer as generated
    end: int
    checked: bool  # worth checking: not filler, a heading, a question or a few words
    support: tuple[Support, ...] = ()  # passages above the threshold, best first
    written: tuple[int, ...] = ()  # citations the model wrote in it (numbers of real passages)
    best: Support | None = None  # the best passage, above the threshold or not (for inspection)
    scored: tuple[Support, ...] = field(default=(), compare=False, repr=False)  # every passage, best first

    @property
    def supported(self) -> bool:
        return bool(self.support)

    @property
    def cited(self) -> tuple[int, ...]:
        """The numbers shown after it: the model's own, else the attributed ones."""
        if self.written:
            return self.written
        return tuple(s.number for s in self.support)


@dataclass(frozen=True)
class Attribution:
    text: str  # the answer with `[n]` added after each supported sentence the model did not cite
    claims: tuple[Claim, ...]
    written: tuple[int, ...]  # passages the model cited, in order of first citation
    attributed: tuple[int, ...]  # passages cited only by attribution, in order of first citation
    groundedness: float | None  # share of checked claims supported; None: nothing to check against
    ms: float = 0.0
    details: dict = field(default_factory=dict, compare=False)

    @property
    def used(self) -> tuple[int, ...]:
        return self.written + self.attributed

    def record(self) -> dict:
        """What the response row keeps (JSON): enough to show the same citations when a
        conversation is reopened, and to inspect why a sentence was or was not attributed."""
        return {
            "written": list(self.written), "attributed": list(self.attributed),
            "claims": [{"start": c.start, "end": c.end, "checked": c.checked, "cited": list(c.cited),
                        "score": round(c.best.score, 3) if c.best else None} for c in self.claims],
        }


# Splitting ------------------------------------------------------------------------------------

_FENCE = re.compile(r"^\s*(```|~~~)")
# A sentence ends at . ! ? (and any closing quote or bracket) followed by space; not after the
# usual abbreviations, and not inside a number or a dotted name (no space follows there).
_SENTENCE_END = re.compile(r"(?<!\be\.g)(?<!\bi\.e)(?<!\bvs)(?<!\betc)(?<!\bcf)[.!?][\"')\]]*\s+|;\s+")
_MARKUP = re.compile(r"^\s*(?:[-*+]\s+|\d+[.)]\s+|>\s*)+")
_HEADING = re.compile(r"^\s*#{1,6}\s")
_CITATION = re.compile(r"(?<!\w)\[(\s*\d+(?:\s*,\s*\d+)*\s*)\]")
_FILLER = re.compile(
    r"^(?:i hope (?:this|that) helps|let me know|feel free|happy to help|good luck|hope this|"
    r"here(?:'s| is| are) (?:an? )?(?:example|how|the|some|a)|for example:?$|sure\b|certainly\b|of course\b)",
    re.IGNORECASE)


def split(text: str) -> list[tuple[int, int, bool]]:
    """(start, end, is_code) of each sentence, clause or fenced code block of `text`, in order;
    a Markdown line (a list item, a heading) is always one unit or more of its own."""
    units: list[tuple[int, int, bool]] = []
    offset = 0
    fence_start: int | None = None
    for line in text.splitlines(keepends=True):
        start, offset = offset, offset + len(line)
        if _FENCE.match(line):
            if fence_start is None:
                fence_start = start
            else:
                units.append((fence_start, offset, True))
                fence_start = None
            continue
        if fence_start is not None or not line.strip():
            continue
        piece_start = start
        markup = _MARKUP.match(line)  # "1. " opens a list item: it ends no sentence
        for match in _SENTENCE_END.finditer(line, markup.end() if markup else 0):
            end = start + match.end()
            units.append((piece_start, end, False))
            piece_start = end
        if line[piece_start - start:].strip():
            units.append((piece_start, offset, False))
    if fence_start is not None:  # an unclosed block (the answer stopped inside it)
        units.append((fence_start, len(text), True))
    return [(s, e, code) for s, e, code in _trimmed(text, units)]


def _trimmed(text: str, units: list[tuple[int, int, bool]]) -> list[tuple[int, int, bool]]:
    out = []
    for s, e, code in units:
        while s < e and text[s].isspace():
            s += 1
        while e > s and text[e - 1].isspace():
            e -= 1
        if e > s:
            out.append((s, e, code))
    return out


# Words ----------------------------------------------------------------------------------------

# The usual English function words (as in scikit-learn's and NLTK's lists, shortened): they say
# nothing about which passage a sentence came from.
STOP_WORDS = frozenset("""
a about above after again against all also am an and any are as at be because been before being
below between both but by can could did do does doing done down during each either else etc even
ever every few for from further get gets got had has have having he her here hers herself him
himself his how however i if in into is it its itself just let like made make makes many may me
might more most much must my myself need needs no nor not now of off often on once one only or
other our ours out over own per please rather really same say says see she should since so some
such than that the their theirs them themselves then there these they this those though through
thus to too two under until up upon us use used uses using very via want was way we well were what
when where whether which while who whom whose why will with within without would yes yet you your
yours yourself can't don't doesn't isn't won't it's that's there's here's let's you'll you're
""".split())
_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)?|\d+(?:\.\d+)*")


@functools.lru_cache(maxsize=65536)
def _stem(word: str) -> str:
    return _stemmer().stemWord(word) if len(word) > 3 else word


@functools.cache
def _stemmer():  # type: ignore[no-untyped-def]
    # Snowball's Porter stemmer imports in ~10 ms. nltk's took ~1 s of CPU, which ran beside the
    # first answer's prompt evaluation and made a one-shot question over folders ~0.9 s slower.
    import snowballstemmer

    return snowballstemmer.stemmer("porter")


def content_words(text: str) -> list[str]:
    """Stemmed content words in order: case-folded, function words and single letters left out;
    an identifier such as `add_columns` or `Button.Pressed` counts as its parts."""
    words = (w.replace("’", "'") for w in _WORD.findall(text.casefold()))
    return [_stem(w) for w in words if w not in STOP_WORDS and (len(w) > 1 or w.isdigit())]


def _pairs(words: list[str]) -> set[tuple[str, str]]:
    return set(zip(words, words[1:], strict=False))


# Scoring --------------------------------------------------------------------------------------

_INLINE_CODE = re.compile(r"`([^`\n]+)`")
_COMMENT = re.compile(r"^\s*(?:#|//|--|/\*|\*|<!--)")


def _code_spans(unit: str) -> list[str]:
    """The names in backticks of a sentence, case-folded (`"cell"`, `add()`, `priority=True`)."""
    return [m.group(1).strip().casefold() for m in _INLINE_CODE.finditer(unit) if m.group(1).strip()]


_OPTION = re.compile(r"(?<![\w-])--?[A-Za-z][\w-]*")


def _options(block: str) -> list[str]:
    """A command's options in a code block (`-x`, `--port`), case-folded: single letters are no
    content words, yet `textual console -x debug` is not what a passage with `textual console` says."""
    return [m.group(0).casefold() for m in _OPTION.finditer(_code_body(block))]


def _worth_checking(unit: str, words: list[str], code: bool, weights: Weights) -> bool:
    if len(set(words)) < weights.min_words:
        return False
    if code:  # a block of comments only ("# Enable syntax highlighting") holds no code to check
        return any(line.strip() and not _COMMENT.match(line) for line in _code_body(unit).splitlines())
    bare = _MARKUP.sub("", _CITATION.sub("", unit)).strip().strip("*_`")
    item = _MARKUP.sub("", _CITATION.sub("", unit)).strip().rstrip(".,;")
    if _MARKUP.match(unit) and _INLINE_CODE.fullmatch(item):
        return False  # a list item that is one name ("- `mask_input.py`") claims nothing alone
    return not (_HEADING.match(unit) or bare.endswith((":", "?")) or _FILLER.match(bare))


def _dot(a: Sequence[float], b: Sequence[float]) -> float:
    return float(sum(x * y for x, y in zip(a, b, strict=True)))


def attribute(
    answer: str,
    passages: Sequence[HasText],
    embed: Embed | None = None,
    passage_vectors: Sequence[Sequence[float] | None] | None = None,
    question: str = "",
    weights: Weights = DEFAULT_WEIGHTS,
) -> Attribution:
    """Attribute each sentence of `answer` (as generated, with any `[n]` the model wrote: numbers
    matching no passage should be dropped first, see citations.resolve_citations) to `passages`,
    numbered from 1. `embed` (unit vectors) adds semantic support: the sentences are embedded in
    one call, and a passage too when `passage_vectors` has no vector for it (None there)."""
    started = time.perf_counter()
    units = split(answer)
    if not passages or not units:
        return Attribution(answer, tuple(Claim(answer[s:e], s, e, False) for s, e, _ in units),
                           _written_order(answer, len(passages)), (), None,
                           (time.perf_counter() - started) * 1000)
    passage_words = [content_words(p.text) for p in passages]
    passage_texts = [p.text.casefold() for p in passages]
    passage_sets = [set(w) for w in passage_words]
    passage_pairs = [_pairs(w) for w in passage_words]
    frequency = Counter(w for words in passage_sets for w in words)
    n = len(passages)
    asked = set(content_words(question))

    def weight(word: str) -> float:
        # 1 for a word no passage has, down to ~0.3 for one that every passage has.
        rarity = math.log(1 + n / max(frequency[word], 1)) / math.log(1 + n)
        return rarity * (weights.question_words if word in asked else 1.0)

    units = _with_lists(answer, units, weights.min_words)
    # A list item's "1." is no content word; nor is a citation's number, nor a code block's fences
    # ("```python" would be a word every Python passage has).
    unit_words = [content_words(_code_body(answer[s:e]) if code
                                else _MARKUP.sub("", _CITATION.sub("", answer[s:e])))
                  for s, e, code in units]
    checked = [_worth_checking(answer[s:e], w, code, weights)
               for (s, e, code), w in zip(units, unit_words, strict=True)]

    def lexical_support(words: list[str]) -> list[float]:
        total = sum(weight(w) for w in set(words)) or 1.0
        pairs = _pairs(words)
        scores = []
        for have, have_pairs in zip(passage_sets, passage_pairs, strict=True):
            unigram = sum(weight(w) for w in set(words) if w in have) / total
            bigram = len(pairs & have_pairs) / len(pairs) if pairs else unigram
            scores.append((unigram + bigram) / 2)
        return scores

    lexicals = [lexical_support(w) if c else [] for w, c in zip(unit_words, checked, strict=True)]
    # The cosine (clamped to 0..1) moves the combined score by at most 1 - weights.lexical: a
    # sentence whose words settle it either way is not embedded (most of attribution's time).
    low = (weights.threshold - (1 - weights.lexical)) / weights.lexical
    high = weights.threshold / weights.lexical
    unsettled = [c and low <= max(lex) < high for c, lex in zip(checked, lexicals, strict=True)]
    semantic = _semantic(answer, units, unsettled, passages, embed, passage_vectors)

    claims = []
    for index, ((s, e, code), check) in enumerate(zip(units, checked, strict=True)):
        unit = answer[s:e]
        written = tuple(dict.fromkeys(int(x) for m in _CITATION.finditer(unit)
                                      for x in re.findall(r"\d+", m.group(0)) if 1 <= int(x) <= n))
        if not check:
            claims.append(Claim(unit, s, e, False, written=written))
            continue
        scored = []
        row = semantic[index] if semantic is not None else None
        for number, lexical in enumerate(lexicals[index], 1):
            cosine = min(max(row[number - 1], 0.0), 1.0) if row is not None else None
            if cosine is None:  # settled by its words, or no embedder: lexical alone
                score = lexical
            else:
                score = weights.lexical * lexical + (1 - weights.lexical) * cosine
            scored.append(Support(number, round(score, 4), round(lexical, 4),
                                  None if cosine is None else round(cosine, 4)))
        scored.sort(key=lambda x: -x.score)
        best = scored[0]
        # A name in backticks is the sentence's most specific detail: a passage that does not
        # have it (`WrongType` where the passage says NoMatches) does not support the sentence.
        spans = _options(unit) if code else _code_spans(unit)
        support = tuple(x for x in scored[:2] if x.score >= weights.threshold
                        and x.score >= best.score - weights.second_within
                        and all(span in passage_texts[x.number - 1] for span in spans))
        claims.append(Claim(unit, s, e, True, support, written, best, tuple(scored)))

    text = _annotated(answer, claims)
    written_all = _written_order(answer, n)
    attributed = tuple(dict.fromkeys(x for c in claims if not c.written and not _unclosed_code(c)
                                     for x in c.cited if x not in written_all))
    checked_claims = [c for c in claims if c.checked]
    groundedness = sum(c.supported for c in checked_claims) / len(checked_claims) if checked_claims else None
    return Attribution(text, tuple(claims), written_all, attributed, groundedness,
                       (time.perf_counter() - started) * 1000)


def _semantic(answer: str, units: list[tuple[int, int, bool]], checked: list[bool],
              passages: Sequence[HasText], embed: Embed | None,
              passage_vectors: Sequence[Sequence[float] | None] | None) -> list[list[float] | None] | None:
    """Cosine of each checked sentence to each passage (None for the others, and for code blocks:
    the embedding model reads prose, and a long block is most of the time spent); None without
    `embed`."""
    if embed is None:
        return None
    wanted = [i for i, c in enumerate(checked) if c and not units[i][2]]
    vectors = list(passage_vectors) if passage_vectors is not None else [None] * len(passages)
    missing = [i for i, v in enumerate(vectors) if v is None]
    texts = [_CITATION.sub("", answer[units[i][0]:units[i][1]]) for i in wanted]
    texts += [passages[i].text for i in missing]
    # A few at a time: the embedder takes up to four texts through its numpy encoder, more go to
    # torch (seconds to load in a process that has not, and slower than numpy for a few sentences).
    embedded = [v for i in range(0, len(texts), EMBED_BATCH) for v in embed(texts[i:i + EMBED_BATCH])]
    for offset, i in enumerate(missing):
        vectors[i] = embedded[len(wanted) + offset]
    rows: list[list[float] | None] = [None for _ in units]
    for offset, i in enumerate(wanted):
        rows[i] = [_dot(embedded[offset], v) for v in vectors]  # type: ignore[arg-type]
    return rows


def _is_code(claim: Claim) -> bool:
    return claim.text.lstrip().startswith(("```", "~~~"))


def _unclosed_code(claim: Claim) -> bool:
    """A code block the answer stopped inside: a citation after it would read as code."""
    if not _is_code(claim):
        return False
    lines = claim.text.strip().splitlines()
    return len(lines) < 2 or not _FENCE.match(lines[-1])


def _code_body(unit: str) -> str:
    """A fenced block without its fence lines (the opening one holds the language, and mkdocs'
    attributes such as title="app.py")."""
    lines = unit.strip().splitlines()
    if lines and _FENCE.match(lines[0]):
        lines = lines[1:]
    if lines and _FENCE.match(lines[-1]):
        lines = lines[:-1]
    return "\n".join(lines)


def _with_lists(answer: str, units: list[tuple[int, int, bool]], min_words: int
                ) -> list[tuple[int, int, bool]]:
    """A lead-in ending with ":" and the short list items after it are one claim ("The classes
    are:" / "- `-error`" / "- `-warning`"): neither says anything checkable alone."""
    out: list[tuple[int, int, bool]] = []
    i = 0
    while i < len(units):
        s, e, code = units[i]
        j = i + 1
        if not code and answer[s:e].rstrip().endswith(":"):
            while j < len(units) and not units[j][2] and _MARKUP.match(answer[units[j][0]:units[j][1]]) \
                    and len(set(content_words(answer[units[j][0]:units[j][1]]))) < min_words:
                j += 1
        if j > i + 1:
            out.append((s, units[j - 1][1], False))
        else:
            out.append((s, e, code))
        i = j
    return out


def _annotated(answer: str, claims: list[Claim]) -> str:
    """The answer with ` [n]` after each supported claim the model did not cite: before the
    sentence's closing punctuation, so it reads like a written citation. A code block's goes on a
    line of its own after the block (inside it, it would read as code); a block the answer stopped
    inside gets none."""
    out, last = [], 0
    for c in claims:
        if c.written or not c.support or _unclosed_code(c):
            continue
        if _is_code(c):
            out.append(answer[last:c.end])
            out.append(f"\n[{', '.join(map(str, sorted(c.cited)))}]")
            last = c.end
            continue
        end = c.end
        while end > c.start and answer[end - 1] in ".!?;:,":
            end -= 1
        if end == c.start:
            end = c.end
        out.append(answer[last:end])
        out.append(f" [{', '.join(map(str, sorted(c.cited)))}]")
        last = end
    out.append(answer[last:])
    return "".join(out)


def _written_order(text: str, n: int) -> tuple[int, ...]:
    return tuple(dict.fromkeys(int(x) for m in _CITATION.finditer(text)
                               for x in re.findall(r"\d+", m.group(0)) if 1 <= int(x) <= n))
