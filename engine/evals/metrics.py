"""Scores of one answer against its case, and the aggregate of a run.

Every per-case score is a number in 0..1 (higher is better), or None when the case gives nothing
to score it against (no reference, no expected sources, no checks): None is left out of the mean,
never counted as 0.
"""

from __future__ import annotations

import fnmatch
import functools
import re
import unicodedata
from dataclasses import dataclass
from typing import Any, Protocol

from engine.stats import percentile

ARTICLES = re.compile(r"\b(a|an|the)\b")


@dataclass(frozen=True)
class Metric:
    label: str
    higher_is_better: bool = True
    score: bool = True  # a 0..1 quality score; otherwise latency, tokens or cost (relative changes)
    doc: str = ""


# Per case (and averaged over the cases where they apply).
SCORES: dict[str, Metric] = {
    "passed": Metric("pass rate", doc="answered, and every check of the case held"),
    "exact": Metric("exact match",
                    doc="the answer equals the reference (case, punctuation, articles ignored)"),
    "contains": Metric("contains reference", doc="the reference appears in the answer (normalized)"),
    "rouge_l": Metric("ROUGE-L F1", doc="longest common subsequence of words with the reference"),
    "cosine": Metric("embedding cosine", doc="all-MiniLM-L6-v2 cosine similarity to the reference"),
    "hit": Metric("retrieval hit rate", doc="an expected source is among the retrieved passages"),
    "mrr": Metric("retrieval MRR", doc="1 / rank of the first retrieved passage from an expected source"),
    "recall": Metric("retrieval recall", doc="share of the expected sources retrieved"),
    "citation_valid": Metric("citations valid", doc="share of citations [n] naming a retrieved source"),
    "citation_correct": Metric("citations correct",
                               doc="share of citations naming an expected source (0 when none cited)"),
    "groundedness": Metric("groundedness",
                           doc="share of the answer's claims the retrieved passages support (attribution)"),
    "format_valid": Metric("format valid", doc="contains / not_contains / regex / JSON schema checks held"),
    "judge": Metric("LLM judge", doc="the judge model's score with the rubric, 1-5 scaled to 0..1"),
    "consistency": Metric("consistency", doc="share of repeats (temperature 0) giving the first answer"),
}
# Only in the aggregate.
TOTALS: dict[str, Metric] = {
    "error_rate": Metric("error rate", higher_is_better=False, doc="cases whose answer failed"),
    "ttft_p50_ms": Metric("first token p50 (ms)", False, False),
    "ttft_p95_ms": Metric("first token p95 (ms)", False, False),
    "ttft_p99_ms": Metric("first token p99 (ms)", False, False),
    "total_p50_ms": Metric("latency p50 (ms)", False, False),
    "total_p95_ms": Metric("latency p95 (ms)", False, False),
    "total_p99_ms": Metric("latency p99 (ms)", False, False),
    "input_tokens": Metric("prompt tokens / case", False, False),
    "output_tokens": Metric("answer tokens / case", False, False),
    "cost_usd": Metric("cost (USD)", False, False),
    "cases_per_min": Metric("throughput (cases/min)", True, False),
}
METRICS = {**SCORES, **TOTALS}


def normalize(text: str) -> str:
    """SQuAD-style: case-folded, without punctuation or articles, single spaces."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = "".join(" " if unicodedata.category(ch).startswith("P") else ch for ch in text)
    return " ".join(ARTICLES.sub(" ", text).split())


def exact(answer: str, reference: str) -> float:
    return float(normalize(answer) == normalize(reference))


def contains(answer: str, reference: str) -> float:
    return float(normalize(reference) in normalize(answer))


class _WordTokenizer:
    """rouge-score's own tokenizer keeps only a-z and 0-9 (an answer in French or Greek would
    score 0); this one keeps every letter, and stems like it."""

    def __init__(self) -> None:
        from nltk.stem import porter

        self._stemmer = porter.PorterStemmer()

    def tokenize(self, text: str) -> list[str]:
        words = re.findall(r"\w+", unicodedata.normalize("NFKC", text).casefold())
        return [self._stemmer.stem(w) if len(w) > 3 else w for w in words]


@functools.cache
def _scorer() -> Any:
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], tokenizer=_WordTokenizer())


def rouge_l(answer: str, reference: str) -> float:
    """ROUGE-L F-measure (rouge-score, the reference implementation)."""
    return float(_scorer().score(reference, answer)["rougeL"].fmeasure)


# sources ---------------------------------------------------------------------------------------

class Located(Protocol):
    """What a retrieved passage must offer to be matched (memory.retriever.Passage does)."""

    file: str
    start_line: int
    end_line: int

    @property
    def path(self) -> str: ...


@dataclass(frozen=True)
class SourceRef:
    """An expected source: `file`, `file:12` or `file:12-20`; the file may be a glob (`notes/*.md`)."""

    pattern: str
    start: int | None = None
    end: int | None = None

    @classmethod
    def parse(cls, text: str) -> SourceRef:
        match = re.fullmatch(r"(.+?)(?::(\d+)(?:-(\d+))?)?", text.strip())
        assert match is not None  # the pattern matches any non-empty text
        start = int(match[2]) if match[2] else None
        end = int(match[3]) if match[3] else start
        return cls(match[1], start, end)

    def matches(self, passage: Located) -> bool:
        path = passage.path
        if not (fnmatch.fnmatchcase(passage.file, self.pattern) or fnmatch.fnmatchcase(path, self.pattern)
                or path.endswith("/" + self.pattern)):
            return False
        if self.start is None:
            return True
        return passage.start_line <= (self.end or self.start) and self.start <= passage.end_line


def retrieval(expected: list[SourceRef], passages: list[Located]) -> dict[str, float]:
    """Hit rate, reciprocal rank and recall of the retrieved passages (in rank order)."""
    ranks = [i for i, p in enumerate(passages, 1) if any(ref.matches(p) for ref in expected)]
    found = sum(any(ref.matches(p) for p in passages) for ref in expected)
    return {"hit": float(bool(ranks)), "mrr": 1.0 / ranks[0] if ranks else 0.0,
            "recall": found / len(expected)}


def citations(numbers: list[int], passages: list[Located], expected: list[SourceRef]
              ) -> dict[str, float | None]:
    """`numbers`: every [n] the raw answer cites, in order, including ones matching no source."""
    valid = [n for n in numbers if 1 <= n <= len(passages)]
    correct = [n for n in valid if any(ref.matches(passages[n - 1]) for ref in expected)]
    return {
        "citation_valid": len(valid) / len(numbers) if numbers else None,
        "citation_correct": (len(correct) / len(numbers) if numbers else 0.0) if expected else None,
    }


# format ----------------------------------------------------------------------------------------

def format_problems(answer: str, checks: dict[str, Any], json_schema: dict | None = None) -> list[str]:
    """What the answer fails among the case's checks; [] when it passes them all."""
    from engine.structured import problem

    problems = []
    folded = answer.casefold()
    for text in checks.get("contains", ()):
        if text.casefold() not in folded:
            problems.append(f"does not contain {text!r}")
    for text in checks.get("not_contains", ()):
        if text.casefold() in folded:
            problems.append(f"contains {text!r}")
    for pattern in checks.get("regex", ()):
        if not re.search(pattern, answer):
            problems.append(f"does not match /{pattern}/")
    for schema in (checks.get("json_schema"), json_schema):
        if schema is not None and (why := problem(answer.strip(), schema)):
            problems.append(f"JSON schema: {why}")
    return problems


def consistency(answers: list[str]) -> float | None:
    """Share of the repeats that gave the first answer word for word; None for a single answer."""
    if len(answers) < 2:
        return None
    return sum(a.strip() == answers[0].strip() for a in answers[1:]) / (len(answers) - 1)


# a run -----------------------------------------------------------------------------------------

def summarize(results: list[dict[str, Any]], duration_s: float) -> dict[str, Any]:
    """The aggregate of a run's result rows: mean of each score over the cases it applies to
    (with how many), latency percentiles over the cases' first answers, tokens, and the cost of
    every answer (repeats included)."""
    metrics: dict[str, dict[str, float | int | None]] = {}
    for name in SCORES:
        values = [r["metrics"][name] for r in results if r["metrics"].get(name) is not None]
        metrics[name] = {"mean": sum(values) / len(values) if values else None, "n": len(values)}
    attempts = [a for r in results for a in r["details"].get("attempts", [])]
    totals: dict[str, float | None] = {}
    for column in ("ttft_ms", "total_ms"):
        # Each case's first answer: a repeat reuses the model's cached prompt, so it is far faster
        # than a new question would be.
        ordered = sorted(r[column] for r in results if r.get(column) is not None)
        for q in (50, 95, 99):
            totals[f"{column.removesuffix('_ms')}_p{q}_ms"] = percentile(ordered, q)
    n = len(results)
    totals.update(
        error_rate=sum(r["status"] == "error" for r in results) / n if n else None,
        input_tokens=sum(r["input_tokens"] or 0 for r in results) / n if n else None,
        output_tokens=sum(r["output_tokens"] or 0 for r in results) / n if n else None,
        cost_usd=sum(a.get("cost") or 0.0 for a in attempts),
        cases_per_min=n / duration_s * 60 if duration_s > 0 else None,
    )
    return {"cases": n, "answers": len(attempts), "errors": sum(r["status"] == "error" for r in results),
            "duration_s": duration_s, "metrics": metrics, "totals": totals}


def flat(summary: dict[str, Any]) -> dict[str, float | None]:
    """Every aggregate figure by metric name (the names of METRICS)."""
    values: dict[str, float | None] = {name: m["mean"] for name, m in summary.get("metrics", {}).items()}
    values.update(summary.get("totals", {}))
    return {name: values.get(name) for name in METRICS}
