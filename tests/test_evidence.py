"""Evidence under a source: the lines that match the question and the answer, words marked."""

from __future__ import annotations

import time

from engine.citations import resolve_citations
from engine.evidence import EXCERPT_CHARS, evidence
from memory.retriever import Passage

WORKERS = """\
## Thread workers

In previous examples we used `run_worker` or the `work` decorator with async functions.
If you want to make network requests without blocking the interface, use a worker.
You can create threads by setting `thread=True` on the `run_worker` method or the `work` decorator.

The rest of this section is about something else entirely."""


def passage(text: str = WORKERS, start: int = 144) -> Passage:
    return Passage(7, "/docs", "guide/workers.md", start, start + text.count("\n"), None, "Workers", text, 0.03)


def marked(line) -> list[str]:
    return [line.text[a:b] for a, b in line.marks]


def test_the_lines_sharing_most_words_are_shown_with_their_line_numbers_and_words_marked() -> None:
    lines = evidence(passage(), "How do I make network requests without freezing the interface?",
                     "Use a worker with thread=True.")
    assert [e.line for e in lines] == [147, 148]  # the passage starts at line 144 of its file
    assert marked(lines[0]) == ["network", "requests", "interface", "worker"]
    assert {"threads", "thread", "worker"} <= set(marked(lines[1]))  # run_worker's part counts


def test_a_source_sharing_no_word_shows_no_excerpt() -> None:
    assert evidence(passage(), "What is the capital of Australia?", "Canberra.") == ()
    assert evidence(passage(), "", "") == ()


def test_a_long_line_is_cut_around_its_first_match() -> None:
    line = "filler " * 60 + "the sparkline draws numbers " + "more " * 60
    [shown] = evidence(passage(line, 1), "draw a sparkline")
    assert len(shown.text) <= EXCERPT_CHARS + 2 and shown.text.startswith("…") and shown.text.endswith("…")
    assert marked(shown) == ["sparkline", "draws"]


def test_every_source_of_an_answer_carries_its_evidence() -> None:
    other = passage("Tabs\n\nSwitch between panes with a row of tabs.", 3)
    text, sources = resolve_citations("Use a worker [1].", [passage(), other],
                                      question="How do I keep network requests from blocking?")
    assert text == "Use a worker [1]."
    assert any("network" in marked(e) for e in sources[0].evidence)
    assert sources[1].evidence == ()  # retrieved, shares nothing: no excerpt


def test_evidence_is_cheap() -> None:
    passages = [passage(WORKERS * 4) for _ in range(5)]
    started = time.perf_counter()
    for _ in range(20):
        resolve_citations("Use a worker with thread=True [1]. " * 10, passages,
                          question="How do I make network requests without freezing?")
    assert (time.perf_counter() - started) / 20 < 0.02  # per answer of five sources


def test_the_screen_and_the_cli_show_each_source_with_its_matched_line() -> None:
    from app.cli.ask import _sources_text
    from app.widgets.answer import SourceLine

    p = passage("Intro\nUse a worker for network requests.\nEnd", 10)
    _, [source] = resolve_citations("A worker [1].", [p], question="What about network requests?")
    shown = SourceLine(source).content
    assert shown.plain == "[1] /docs/guide/workers.md:10-12\n    11: Use a worker for network requests."
    marked_words = [shown.plain[s.start:s.end] for s in shown.spans if "bold" in str(s.style)]
    assert marked_words == ["worker", "network", "requests"]
    piped = _sources_text([source])
    assert "[1] /docs/guide/workers.md:10-12\n        11: Use a worker for network requests.\n" in piped
    assert "\x1b[1mnetwork\x1b[0m" in _sources_text([source], styled=True)
