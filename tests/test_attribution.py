"""Attribution after generation, with the real embedding model (all-MiniLM-L6-v2)."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from engine.attribution import attribute, split
from engine.citations import ATTRIBUTED, RETRIEVED, WRITTEN, resolve_citations
from memory.embedder import Embedder
from memory.retriever import Passage

# Three passages the way retrieval hands them over, worded like Textual's docs.
WORKERS = ("Workers run code concurrently with the rest of your app. To run a function in a thread, "
           "pass thread=True to the @work decorator. A thread worker must not update widgets directly: "
           "call call_from_thread to run code on the app's event loop.")
TABLE = ("The DataTable widget displays rows and columns of data. Call add_columns to create the "
         "columns, then add_rows with a list of tuples to add the rows. Set cursor_type to row to "
         "highlight whole rows.")
CSS = ("Textual apps are styled with a CSS dialect called TCSS. Set the CSS_PATH class variable to "
       "load styles from a file, or put them inline in the CSS class variable.")


def passage(number: int, text: str) -> Passage:
    return Passage(number, "/docs", f"guide/{number}.md", 1, 10, None, None, text, 0.0)


PASSAGES = [passage(1, WORKERS), passage(2, TABLE), passage(3, CSS)]


@pytest.fixture(scope="module")
def embed():
    return Embedder().embed


def test_planted_unsupported_sentence_lowers_groundedness_and_gets_no_citation(embed) -> None:
    answer = ("To run a function in a thread, pass thread=True to the @work decorator. "
              "The Eiffel Tower was finished in 1889 for the World's Fair in Paris.")
    result = attribute(answer, PASSAGES, embed, question="How do I run something in a thread?")
    supported, planted = result.claims
    assert planted.checked and not planted.supported
    assert result.groundedness is not None and result.groundedness < 1
    assert result.groundedness == pytest.approx(0.5)
    assert "1889 for the World's Fair in Paris." in result.text  # no [n] after the planted one
    assert supported.cited == (1,)


def test_an_answer_quoting_a_passage_gets_that_passages_citation(embed) -> None:
    answer = "Call add_columns to create the columns, then add_rows with a list of tuples to add the rows."
    result = attribute(answer, PASSAGES, embed, question="How do I fill a table?")
    assert result.text == answer[:-1] + " [2]."
    assert result.attributed == (2,) and result.written == ()
    assert result.groundedness == 1.0


def test_a_paraphrase_is_attributed_by_meaning(embed) -> None:
    answer = "You style the app with TCSS, Textual's own kind of CSS, which can be loaded from a file."
    result = attribute(answer, PASSAGES, embed)
    assert result.claims[0].cited == (3,)


def test_citations_the_model_wrote_stay_written_and_are_not_added_again(embed) -> None:
    answer = "Pass thread=True to the @work decorator [1]. Then call add_columns and add_rows to fill it."
    result = attribute(answer, PASSAGES, embed)
    assert result.written == (1,) and result.attributed == (2,)
    assert result.text.count("[1]") == 1 and result.text.endswith("add_rows to fill it [2].")
    text, sources = resolve_citations(result.text, PASSAGES, result.attributed)
    assert text == result.text
    assert [(s.number, s.kind) for s in sources] == [(1, WRITTEN), (2, ATTRIBUTED), (3, RETRIEVED)]
    assert [s.cited for s in sources] == [True, True, False]


def test_filler_headings_and_questions_are_not_claims(embed) -> None:
    answer = ("Sure!\n\n## Steps\n\nHere is an example:\n\n"
              "- Pass thread=True to the @work decorator.\n\nDoes that help? I hope this helps!")
    result = attribute(answer, PASSAGES, embed)
    assert [c.text for c in result.claims if c.checked] == ["- Pass thread=True to the @work decorator."]
    assert result.groundedness == 1.0


CODE = ("Fill the table in on_mount:\n\n```python\ndef on_mount(self) -> None:\n"
        "    table = self.query_one(DataTable)\n    table.add_columns(\"lane\", \"swimmer\", \"country\")\n```")


def test_a_code_block_from_a_passage_gets_its_number_on_a_line_after_it(embed) -> None:
    answer = ("Here is how:\n\n```python\ndef on_mount(self) -> None:\n    table = self.query_one(DataTable)\n"
              "    table.add_columns(\"lane\", \"swimmer\", \"country\")\n```\n\nThat is all.")
    passages = [*PASSAGES, passage(4, CODE)]
    result = attribute(answer, passages, embed)
    assert [code for _, _, code in split(answer)] == [False, True, False]
    assert result.claims[1].checked and result.claims[1].cited == (4,)
    assert "```\n[4]\n\nThat is all." in result.text  # after the block, never inside it
    assert result.attributed == (4,)
    # The answer stopped inside the block: no number (it would read as code), nothing attributed.
    unclosed = attribute(answer[:answer.rindex("```")], passages, embed)
    assert unclosed.claims[1].supported and unclosed.attributed == ()
    assert "[4]" not in unclosed.text


def test_a_code_blocks_fence_and_language_are_no_evidence(embed) -> None:
    """mkdocs' `title="app.py" hl_lines="3"` copied with no code is no claim; "python" is no word."""
    empty = attribute('```python title="data_table.py" hl_lines="24-25"\n```', [passage(1, CODE)], embed)
    assert not empty.claims[0].checked and empty.groundedness is None


def test_a_lead_in_and_its_short_list_items_are_one_claim(embed) -> None:
    classes = passage(1, "Toasts have a severity: information, warning or error. The CSS classes for "
                         "each severity are `-information`, `-warning` and `-error`.")
    answer = "The CSS classes for each severity are:\n\n- `-information`\n- `-warning`\n- `-error`"
    result = attribute(answer, [classes, PASSAGES[1]], embed)
    assert len(result.claims) == 1 and result.claims[0].checked and result.claims[0].cited == (1,)
    assert result.text == answer + " [1]"
    # Items that say something on their own stay claims of their own.
    longer = "You fill a table in two steps:\n\n- Call add_columns to create the columns.\n- Call add_rows."
    assert len(attribute(longer, PASSAGES, embed).claims) == 3


def test_a_name_in_backticks_the_passage_lacks_is_not_supported_by_it(embed) -> None:
    """The embedded model borrows a passage's words around a name it made up: `WrongType` where
    the passage says NoMatches; a command's option the passage does not give."""
    nomatch = passage(1, "If there are no matching widgets, query_one will raise a NoMatches exception.")
    wrong = attribute("If there are no matching widgets, `query_one` will raise a `WrongType` exception.",
                      [nomatch], embed)
    right = attribute("If there are no matching widgets, `query_one` will raise a `NoMatches` exception.",
                      [nomatch], embed)
    assert wrong.claims[0].best.score >= 0.56 and not wrong.claims[0].supported
    assert right.claims[0].cited == (1,)
    console = passage(1, "Run the console:\n\n```bash\ntextual console --port 7342\n```\n")
    flag = attribute("```bash\ntextual console --port 7342 -x debug\n```", [console], embed)
    assert flag.claims[0].checked and not flag.claims[0].supported


def test_without_passages_or_embedder() -> None:
    answer = "Paris is the capital of France."
    nothing = attribute(answer, [], None)
    assert nothing.groundedness is None and nothing.text == answer and nothing.used == ()
    lexical = attribute("Pass thread=True to the @work decorator to run it in a thread.", PASSAGES, None)
    assert lexical.claims[0].cited == (1,) and lexical.claims[0].support[0].semantic is None


def test_sentences_split_where_people_end_them() -> None:
    text = "Use e.g. `app.run()` here. Version 3.12 works; so does 3.13!\n1. First item\n2. Second"
    units = [text[s:e] for s, e, _ in split(text)]
    assert units == ["Use e.g. `app.run()` here.", "Version 3.12 works;", "so does 3.13!",
                     "1. First item", "2. Second"]


@dataclass
class _Text:
    text: str


def test_attribution_is_fast_once_loaded(embed) -> None:
    """A five-sentence answer over five passages, vectors given: the budget is 50 ms p95 on the
    embedded setup (bench/bench_grounded.py measures it); here only that it is far from seconds."""
    answer = " ".join([WORKERS, TABLE, CSS, "The Eiffel Tower is in Paris.", "It was built in 1889."])
    vectors = embed([p.text for p in PASSAGES])
    attribute(answer, PASSAGES, embed, vectors)  # warm: the stemmer, the model
    result = attribute(answer, PASSAGES + [_Text("unrelated"), _Text("words")], embed,
                       vectors + [None, None])
    assert result.ms < 2000
    assert len(result.claims) >= 5


# loops ----------------------------------------------------------------------------------------

def test_a_loop_is_cut_to_one_copy_and_plain_text_is_not() -> None:
    from engine.repetition import LoopGuard, trimmed

    looping = "The title comes from App.title. " + "The `title` class is defined in the `App.title` class. " * 4
    text, cut = trimmed(looping)
    assert cut and text == "The title comes from App.title. The `title` class is defined in the `App.title` class."
    listed = "Cursor types:\n\n" + "- `cursor_coordinate` (Cursor) moves the cursor cell\n" * 5
    assert trimmed(listed)[0].count("cursor_coordinate") == 1
    code = "```python\n" + "def f():\n    return time.sleep(seconds) and more words\n" * 4
    assert trimmed(code)[0].endswith("```")  # the block cut inside is closed
    plain = " ".join([WORKERS, TABLE, CSS])
    assert trimmed(plain) == (plain, False) and LoopGuard().cut(plain) is None


# the whole answer, with any backend -----------------------------------------------------------

PLANTED = ["The team offsite will take place in Lisbon ", "during the second week of May. ",
           "Snacks at the offsite are paid for by the moon council. ",
           "Every attendee gets a free submarine ride."]


@pytest.fixture
def remote(home):
    from tests.openai_server import FakeOpenAI
    from tests.test_remote import configure, provider

    with FakeOpenAI(PLANTED) as fake:
        configure(home, provider(fake.url), backends=["fake"], allow_cloud=True)
        yield fake


async def _indexed_engine(tmp_path, **changes):
    import asyncio

    from engine.config import load_settings
    from engine.engine import Engine
    from tests.rag_corpus import write_mixed_folder

    engine = Engine(load_settings().replace(temperature=0.0, seed=42, max_tokens=64, cache=False,
                                            index_max_file_mb=0.03, **changes))
    await asyncio.to_thread((await engine.knowledge()).index, write_mixed_folder(tmp_path / "docs"))
    return engine


async def test_a_remote_answer_is_attributed_stored_shown_again_and_queued(remote, tmp_path) -> None:
    """A backend that writes no citations (as SmolLM2 never does): the sentence taken from the
    travel notes gets their number, the two made-up ones none; groundedness 1/3 is on the event
    and the row, puts the answer in the review queue, and a reopened conversation has the same
    sources, the matched one marked as attributed."""
    from engine import stats
    from engine.events import Finished
    from tests.conftest import events_of

    engine = await _indexed_engine(tmp_path)
    try:
        events = await events_of(engine, "Where will the team offsite take place?")
        done = events[-1]
        assert isinstance(done, Finished)
        travel = next(s for s in done.sources if s.passage.file == "notes/travel.txt")
        assert (travel.cited, travel.kind) == (True, ATTRIBUTED)
        assert done.text.startswith(f"The team offsite will take place in Lisbon during the second week "
                                    f"of May [{travel.number}].")
        assert done.text.endswith("moon council. Every attendee gets a free submarine ride.")
        assert done.groundedness == pytest.approx(1 / 3)
        row = await engine.history.response(done.response_id)
        assert row["groundedness"] == pytest.approx(1 / 3)
        record = json.loads(row["attribution"])
        assert record["attributed"] == [travel.number] and record["written"] == []
        assert [c["checked"] for c in record["claims"]] == [True, True, True]
        store = await engine.store()
        queued = store.reviews()
        assert [(r["response_id"], r["reason"]) for r in queued] == [(done.response_id, "low_groundedness")]
        reopened = (await engine.history.messages(done.conversation_id))[-1]
        assert reopened["content"] == done.text and reopened["groundedness"] == pytest.approx(1 / 3)
        assert [(s.number, s.kind) for s in reopened["sources"]] == [(s.number, s.kind) for s in done.sources]
        by_model = stats.compute(store, by="model")
        assert by_model["groups"]["fake-model"]["groundedness"]["p50"] == pytest.approx(1 / 3)
    finally:
        await engine.close()


async def test_attribution_off_keeps_the_answer_as_written(remote, tmp_path) -> None:
    from tests.conftest import events_of

    engine = await _indexed_engine(tmp_path, attribution=False)
    try:
        done = (await events_of(engine, "Where will the team offsite take place?"))[-1]
        assert done.text == "".join(PLANTED) and done.groundedness is None
        assert all(not s.cited for s in done.sources)
    finally:
        await engine.close()


async def test_a_looping_answer_stops_at_the_first_repeat(home, tmp_path) -> None:
    from engine.config import load_settings
    from engine.engine import Engine
    from engine.events import Finished, Token
    from tests.conftest import events_of
    from tests.openai_server import FakeOpenAI
    from tests.test_remote import configure, provider

    loop = ["The header shows the app's title. "] + ["The title class is set by the App title class. "] * 30
    with FakeOpenAI(loop) as fake:
        configure(home, provider(fake.url), backends=["fake"], allow_cloud=True)
        for stop_loops, expected in ((True, 1), (False, 30)):
            engine = Engine(load_settings().replace(temperature=0.0, max_tokens=200, cache=False,
                                                    stop_loops=stop_loops))
            try:
                events = await events_of(engine, "Where does the header's title come from?")
            finally:
                await engine.close()
            done = events[-1]
            assert isinstance(done, Finished)
            assert done.text.count("The title class is set") == expected
            if stop_loops:
                assert done.text == "The header shows the app's title. The title class is set by the App title class."
                assert sum(isinstance(e, Token) for e in events) < 6  # stopped as the loop began


# the numbers that come from it ----------------------------------------------------------------

def _answers(store, values: list[float | None]) -> None:
    from datetime import UTC, datetime

    conversation = store.create_conversation("groundedness")
    for value in values:
        store.record_answer(conversation, "An answer.", False, {
            "status": "ok", "backend": "local", "model": "m", "created_at": datetime.now(UTC).isoformat(),
            "groundedness": value, "retrieved_chunk_ids": "[1]" if value is not None else None})


def test_an_alert_when_groundedness_falls_below_the_threshold_or_drops(home) -> None:
    from engine import alerts
    from engine.config import load_settings
    from memory.store import Store

    settings = load_settings().replace(alert_window=5)
    store = Store(home / "assistant.db")
    _answers(store, [1.0, 0.9, None, 1.0, 0.8, 1.0] * 2)
    assert not [a for a in alerts.check(store, settings) if a.kind == "groundedness"]
    _answers(store, [0.6, 0.7, 0.6, 0.6, 0.7])  # above the threshold, but a drop from 1.0
    found = [a.message for a in alerts.check(store, settings) if a.kind == "groundedness"]
    assert found and "dropped" in found[0] and "60%" in found[0]
    _answers(store, [0.2, 0.0, 0.4, 0.3, 0.2])
    found = [a.message for a in alerts.check(store, settings) if a.kind == "groundedness"]
    assert found and "below the hallucination threshold of 50%" in found[0]
    store.close()


def test_groundedness_is_an_eval_metric_averaged_where_it_applies() -> None:
    from engine.evals import metrics

    results = [{"metrics": {"groundedness": g}, "details": {}, "status": "ok", "input_tokens": 1,
                "output_tokens": 1, "ttft_ms": 1.0, "total_ms": 1.0} for g in (1.0, 0.5, None)]
    summary = metrics.summarize(results, 1.0)
    assert summary["metrics"]["groundedness"] == {"mean": 0.75, "n": 2}


async def test_the_footer_shows_groundedness_live_and_when_reopened(remote, tmp_path) -> None:
    from app.tui import AssistantApp
    from app.widgets.answer import AnswerMessage, SourceLine
    from tests.conftest import wait_for
    from tests.test_tui import ask, finished_answer

    engine = await _indexed_engine(tmp_path)
    app = AssistantApp(engine)
    async with app.run_test(size=(120, 40)) as pilot:
        await ask(pilot, "Where will the team offsite take place?")
        answer = await finished_answer(app)
        await wait_for(lambda: "grounded 33%" in answer.footer_text(), what="groundedness in the footer")
        lines = [str(line.render()) for line in app.screen.query(SourceLine)]
        assert any("notes/travel.txt" in line and "(matched)" in line for line in lines)
        conversation = app.screen.conversation_id
        await app.screen.action_new_chat()
        await app.screen.open_conversation(conversation)
        await wait_for(lambda: len(app.screen.query(AnswerMessage)) == 1, what="reopened")
        again = app.screen.query_one(AnswerMessage)
        assert "grounded 33%" in again.footer_text() and again.text == answer.text


def test_the_passages_vectors_come_from_retrievals_read_not_a_second_one(tmp_path) -> None:
    """Attribution's cosine needs the passages' stored vectors: retrieval read them already (for
    the fusion), with the passages' text; they are handed on, and dropped once the store changes."""
    from memory.vectors import VectorIndex

    index = VectorIndex(tmp_path / "chroma")
    index.add([1, 2, 3], [[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    assert set(index.similarities([1.0, 0.0], [1, 2, 3])) == {1, 2, 3}
    reads = []
    original = index._call
    index._call = lambda *a, **k: reads.append(a[1]) or original(*a, **k)  # type: ignore[method-assign]
    assert index.vectors([3, 1]) == {3: pytest.approx([0.6, 0.8]), 1: pytest.approx([1.0, 0.0])}
    assert reads == []
    index.add([4], [[0.0, -1.0]])
    assert index.vectors([1, 4])[4] == pytest.approx([0.0, -1.0]) and reads[-1] == "get"


def test_attribution_stems_words_without_importing_nltk() -> None:
    """nltk's import (~1 s of CPU) ran beside the first answer's prompt evaluation: a one-shot
    question over folders was ~0.9 s slower (docs/benchmarks.md, start-up, session 10)."""
    import subprocess
    import sys

    code = ("import sys; from engine.attribution import content_words; "
            "print(content_words('Displaying the rows'), 'nltk' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split()[-1] == "False", done.stdout
    assert "'row'" in done.stdout  # stemmed: 'rows' -> 'row'
