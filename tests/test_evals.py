"""Evals: a dataset through the real engine and model, scored, recorded, compared, gated."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from engine import Engine
from engine.errors import ConfigError
from engine.evals import METRICS, DatasetError, EvalHistory, Options, load_dataset, parse_limits, run_eval
from engine.evals import metrics as m
from engine.evals.compare import below, compare, regressions
from engine.evals.runner import eval_database
from memory.retriever import Passage
from tests.conftest import events_of
from tests.test_cli import run

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "docs" / "evals" / "sample.jsonl"


def passage(file: str, start: int, end: int, chunk_id: int = 1) -> Passage:
    return Passage(chunk_id, "/data/docs", file, start, end, None, None, "text", 0.0)


# metrics, by hand ------------------------------------------------------------------------------

def test_retrieval_and_citation_metrics_are_exact_on_a_hand_built_case() -> None:
    retrieved = [passage("a.md", 1, 10, 1), passage("notes/b.md", 5, 20, 2), passage("c.md", 1, 3, 3),
                 passage("notes/b.md", 30, 40, 4)]
    expected = [m.SourceRef.parse(s) for s in ("b.md:12", "c.md", "d.md")]
    # b.md:12 is in the 2nd passage (not the 4th: lines 30-40), c.md is the 3rd, d.md is missing.
    assert m.retrieval(expected, retrieved) == {"hit": 1.0, "mrr": 0.5, "recall": pytest.approx(2 / 3)}
    assert m.retrieval([m.SourceRef.parse("notes/*.md:35-36")], retrieved) == {"hit": 1.0, "mrr": 0.25,
                                                                             "recall": 1.0}
    assert m.retrieval([m.SourceRef.parse("d.md")], retrieved) == {"hit": 0.0, "mrr": 0.0, "recall": 0.0}
    # [2] is expected, [1] is not, [9] names no retrieved source.
    assert m.citations([2, 1, 9], retrieved, expected) == {"citation_valid": pytest.approx(2 / 3),
                                                          "citation_correct": pytest.approx(1 / 3)}
    assert m.citations([], retrieved, expected) == {"citation_valid": None, "citation_correct": 0.0}
    assert m.citations([1], retrieved, []) == {"citation_valid": 1.0, "citation_correct": None}


def test_text_format_and_consistency_metrics() -> None:
    assert m.exact("The Paris.", "paris") == 1.0 and m.exact("Paris, France", "Paris") == 0.0
    assert m.contains("It is Paris, of course.", "paris") == 1.0
    assert m.rouge_l("the cat sat on the mat", "the cat sat on the mat") == 1.0
    assert 0 < m.rouge_l("a cat was sitting on a mat", "the cat sat on the mat") < 1
    assert m.rouge_l("Le café est fermé", "le café est ouvert") == pytest.approx(0.75)  # non-ASCII words count
    checks = {"contains": ["25"], "not_contains": ["sorry"], "regex": [r"\bdays?\b"],
              "json_schema": {"type": "object"}}
    assert m.format_problems("25 days", checks) == ["JSON schema: not JSON (Extra data: line 1 column 4 (char 3))"]
    assert m.format_problems("Sorry, 3 weeks", {k: checks[k] for k in ("contains", "not_contains", "regex")}) == [
        "does not contain '25'", "contains 'sorry'", r"does not match /\bdays?\b/"]
    assert m.consistency(["a"]) is None and m.consistency(["a", "a ", "b"]) == 0.5


def test_dataset_errors_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    for text, expected in [
        ('{"question": "q", "refrence": "r"}\n', "line 1: unknown case key 'refrence'"),
        ('{"question": "q"}\nnot json\n', "line 2 is not JSON"),
        ('{"id": 1, "question": "a"}\n{"id": "1", "question": "b"}\n', "the id '1' is also used on line 1"),
        ('{"question": "q", "checks": {"regex": "("}}\n', "the regex '(' is not valid"),
        ('{"question": "q", "json_schema": {"type": 3}}\n', "The JSON schema is not valid"),
        ('{"dataset": "x"}\n', "has no cases"),
    ]:
        path.write_text(text)
        with pytest.raises(DatasetError, match=expected.replace("(", r"\(")):
            load_dataset(path)
    sample = load_dataset(SAMPLE)
    assert sample.name == "sample" and sample.repeats == 2 and len(sample.cases) == 8
    assert sample.folders == ((SAMPLE.parent / "corpus").resolve(),)


def test_gates_parse_and_judge(tmp_path: Path) -> None:
    assert parse_limits(["0.8", "rouge_l=30%", "total_p95_ms=0.2"], "--fail-under") == {
        "*": 0.8, "rouge_l": 0.3, "total_p95_ms": 0.2}
    with pytest.raises(ConfigError, match="unknown metric 'rouge'"):
        parse_limits(["rouge=0.3"], "--fail-under")
    with pytest.raises(ConfigError, match="is not a number"):
        parse_limits(["lots"], "--max-regression")

    def run_row(run_id: int, passed: list[int], total_ms: float) -> tuple[dict, list[dict]]:
        results = [{"case_id": str(i), "question": f"q{i}", "answer": "a", "error": None, "status": "ok",
                    "passed": p, "input_tokens": 10, "output_tokens": 5, "ttft_ms": total_ms / 2,
                    "total_ms": total_ms, "metrics": {"passed": float(p), "rouge_l": 0.5}, "details": {}}
                   for i, p in enumerate(passed)]
        return {"id": run_id, "status": "complete", "dataset_sha256": "x", "dataset_name": "d",
                "summary": m.summarize(results, 60.0)}, results

    a, b = run_row(1, [1, 1, 1, 1], 100.0), run_row(2, [1, 1, 0, 1], 130.0)
    comparison = compare(*a, *b)
    assert [c.case_id for c in comparison.worse] == ["2"] and comparison.worse[0].worse == [("passed", 1.0, 0.0)]
    assert below(b[0]["summary"], {"*": 0.8}) == ["pass rate (passed) is 0.750, under 0.8."]
    assert below(b[0]["summary"], {"judge": 0.5}) == [
        "LLM judge (judge) was not measured in this run, so it cannot reach 0.5."]
    assert regressions(comparison, {"*": 0.3}) == []
    assert regressions(comparison, {"*": 0.2}) == [
        "pass rate (passed) regressed by 0.250 (1.000 -> 0.750), more than 0.2."]
    assert regressions(comparison, {"total_p95_ms": 0.2}) == [
        "latency p95 (ms) (total_p95_ms) regressed by 30% (100 -> 130), more than 0.2."]


# the real engine -------------------------------------------------------------------------------

def test_sample_dataset_with_the_real_model_produces_every_metric(home: Path, tmp_path: Path) -> None:
    done = run("eval", str(SAMPLE), "--judge", "local", "--max-tokens", "40", "--json",
               "--report", str(tmp_path / "report.md"))
    summary = json.loads(done.stdout)["run"]["summary"]
    values = m.flat(summary)
    missing = [name for name in METRICS if values[name] is None]
    assert not missing, f"not measured: {missing}"
    assert summary["cases"] == 8 and summary["answers"] == 16 and summary["errors"] == 0
    assert summary["metrics"]["hit"]["n"] == 7 and summary["metrics"]["consistency"]["n"] == 8
    assert values["cost_usd"] == 0.0 and values["total_p50_ms"] <= values["total_p95_ms"] <= values["total_p99_ms"]

    with EvalHistory() as history:
        run_row = history.run("latest")
        results = history.results(run_row["id"])
        answers = history.store.conn.execute("SELECT COUNT(*) FROM responses WHERE status = 'ok'").fetchone()[0]
    assert run_row["status"] == "complete" and run_row["judge"].startswith("local")
    assert run_row["rubric_version"] and run_row["template"] == "system"
    assert answers == 16  # every answer went through Engine.ask and was logged, in the eval database
    by_id = {r["case_id"]: r for r in results}
    for r in results:
        retrieved = r["details"]["retrieved"]
        ranks = [x["rank"] for x in retrieved if x["expected"]]
        if r["metrics"]["hit"] is not None:  # the scores agree with the passages recorded
            assert r["metrics"]["hit"] == float(bool(ranks))
            assert r["metrics"]["mrr"] == (1 / ranks[0] if ranks else 0.0)
    general = by_id["capital-france"]  # no expected sources: retrieval is not scored, only recorded
    assert general["metrics"]["hit"] is None and not any(x["expected"] for x in general["details"]["retrieved"])
    assert json.loads(by_id["kestrel-json"]["answer"])["source"] in ("[1]", "[2]", "[3]", "[4]", "[5]")
    assert not (home / "assistant.db").exists() or sqlite3.connect(home / "assistant.db").execute(
        "SELECT COUNT(*) FROM conversations").fetchone()[0] == 0  # the user's history stays clean

    report = (tmp_path / "report.md").read_text()
    assert "# Eval report: run 1 (sample)" in report and "| retrieval MRR |" in report
    assert "```text" in report and "Mean of each score" in report and "\x1b" not in report  # the plot
    shown = run("eval", "show", "latest").stdout
    assert "kestrel-weight" in shown and "LLM judge" in shown


def test_broken_template_is_a_regression_and_compare_exits_non_zero(home: Path, tmp_path: Path) -> None:
    dataset = tmp_path / "two.jsonl"
    dataset.write_text("".join(json.dumps(c) + "\n" for c in [
        {"id": "weight", "question": "How much does the Kestrel drone weigh?", "reference": "1.2 kg",
         "expected_sources": ["products/kestrel.md"]},
        {"id": "heron", "question": "How heavy a parcel can the Heron robot carry?", "reference": "Up to 20 kg.",
         "expected_sources": ["products/heron.md"]},
    ]))
    corpus = str(SAMPLE.parent / "corpus")
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text("n_ctx = 1024\n")  # a small window: quick to fill
    first = run("eval", str(dataset), "--folder", corpus, "--max-tokens", "24", "--baseline", "main")
    assert "There was no baseline 'main': run 1 is it now." in first.stderr
    # ~880 tokens of house rules: the template fits the 1,024-token window, but crowds out every source.
    broken = tmp_path / "bloated.md"
    broken.write_text("You are a helpful assistant.\n\n" + " ".join(["Follow the house style."] * 172))
    second = run("eval", str(dataset), "--folder", corpus, "--max-tokens", "24", "--template", str(broken),
                  "--baseline", "main", "--max-regression", "0.1", check=False)
    assert second.returncode == 1, second.stderr
    assert "FAIL: retrieval hit rate (hit) regressed by 1.000 (1.000 -> 0.000), more than 0.1." in second.stderr
    compared = run("eval", "compare", "main", "latest", "--max-regression", "0.1", "--json", check=False)
    assert compared.returncode == 1
    report = json.loads(compared.stdout)
    assert {c["case_id"] for c in report["worse"]} == {"weight", "heron"}
    assert report["failures"] and any(d["metric"] == "hit" and d["change"] == -1.0 for d in report["deltas"])
    text = run("eval", "compare", "1", "2", check=False).stdout
    assert "2 cases got worse" in text
    report_text = run("eval", "report", "latest", "--against", "main").stdout
    assert "Change in each score, run 1 to run 2" in report_text and "## Cases that got worse" in report_text
    with EvalHistory() as history:
        assert history.run(2)["template"] == "bloated" and history.run(2)["template_version"] != history.run(
            1)["template_version"]
    assert run("eval", "compare", "main", "main", "--max-regression", "0").returncode == 0
    missing = run("eval", "compare", "main", "nope", check=False)
    assert missing.returncode == 1 and "no eval run or baseline named 'nope'" in missing.stderr


def test_a_piped_eval_shows_progress_on_stderr_per_case(home: Path, tmp_path: Path) -> None:
    dataset = tmp_path / "two.jsonl"
    dataset.write_text("".join(json.dumps(c) + "\n" for c in [
        {"id": "capital", "question": "What is the capital of France?", "reference": "Paris"},
        {"id": "never", "question": "Say hello.", "checks": {"contains": ["zzzz-not-said"]}},
    ]))
    done = run("eval", str(dataset), "--max-tokens", "8")  # stderr is a pipe here, as in CI
    lines = done.stderr.splitlines()
    assert "loading…" in lines
    assert "[1/2] capital: passed" in lines or "[1/2] capital: failed" in lines
    assert "[2/2] never: failed" in lines
    assert lines.index("loading…") < [i for i, line in enumerate(lines) if line.startswith("[2/2]")][0]
    assert "Run 1 recorded" in done.stdout and "[1/2]" not in done.stdout


async def test_thumbs_down_and_reviewed_answers_become_cases(settings, tmp_path: Path, home: Path) -> None:
    engine = Engine(settings.replace(max_tokens=8))
    first = (await events_of(engine, "My name is Ada."))[-1]
    second = (await events_of(engine, "What is my name?", first.conversation_id))[-1]
    third = (await events_of(engine, "Name a colour."))[-1]
    await engine.history.rate(second.response_id, -1, "forgot my name")
    await engine.history.mark_reviewed(second.response_id, "Your name is Ada.")
    await engine.history.rate(third.response_id, -1)
    await engine.close()
    output = tmp_path / "cases.jsonl"
    assert "Wrote 2 cases" in run("eval", "from-review", str(output)).stdout
    cases = {c.id: c for c in load_dataset(output).cases}
    reviewed = cases[f"review-{second.response_id}"]
    assert reviewed.question == "What is my name?" and reviewed.reference == "Your name is Ada."
    assert reviewed.history[0] == {"role": "user", "content": "My name is Ada."}
    assert reviewed.meta["comment"] == "forgot my name" and reviewed.tags == ("reviewed",)
    unreviewed = cases[f"review-{third.response_id}"]
    assert unreviewed.reference is None and unreviewed.meta["rejected_answer"] == third.text
    again = run("eval", "from-review", str(output), check=False)
    assert again.returncode == 1 and "already exists" in again.stderr
    assert "Wrote 0 cases" in run("eval", "from-review", str(output), "--append").stdout
    # And they run: the history comes along as the conversation before the question.
    outcome = await run_eval(settings, load_dataset(output), Options(max_tokens=8))
    assert outcome.status == "complete" and outcome.summary["cases"] == 2
    with EvalHistory() as history:
        response_id = history.results(outcome.run_id)[0]["response_id"]
        row = history.store.response(response_id)
        turns = history.store.messages(row["conversation_id"])
    assert [t["content"] for t in turns[:2]] == ["My name is Ada.", first.text]
    assert eval_database().parent == home / "evals"


async def test_evals_screen_shows_runs_and_compares(settings, tmp_path: Path) -> None:
    from app.screens.evals import EvalsScreen
    from app.tui import AssistantApp

    dataset = tmp_path / "one.jsonl"
    dataset.write_text('{"id": "fr", "question": "What is the capital of France?", "reference": "Paris"}\n')
    for _ in range(2):
        await run_eval(settings, load_dataset(dataset), Options(max_tokens=8))
    app = AssistantApp(Engine(settings))
    async with app.run_test(size=(160, 50)) as pilot:
        await pilot.press("f12")
        screen = app.screen
        assert isinstance(screen, EvalsScreen)
        await pilot.pause()
        await screen.workers.wait_for_complete()
        assert [r["id"] for r in screen.runs] == [2, 1]
        assert "Run 2: one" in str(screen.query_one("#eval-title").render())
        await pilot.press("down", "b", "up")  # compare the others with run 1, then look at run 2
        await pilot.pause()
        await screen.workers.wait_for_complete()
        assert "compared with run 1" in str(screen.query_one("#eval-title").render())
        await pilot.press("escape")
        assert not isinstance(app.screen, EvalsScreen)
