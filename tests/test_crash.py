"""Crash safety and concurrency, quickly: a few SIGKILL trials of each scenario in tests/faults.py
and a short concurrency soak (`make soak` runs 50 trials each and 10 minutes). Also checks that
docs/reliability.md lists every scenario these tests and the others try."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from tests import test_fuzz, test_resources, test_security
from tests.concurrency import soak
from tests.faults import (
    SCENARIOS,
    AnswerScenario,
    IndexScenario,
    RebuildScenario,
    doctor_index_check,
    run_trials,
    summary,
    vector_ids,
)
from tests.hostile import HostileScenario

SEED = int(os.environ.get("CRASH_SEED", "7"))  # the kill times are random, from this seed
DOC = Path(__file__).resolve().parent.parent / "docs" / "reliability.md"


def check(trials: list) -> None:
    result = summary(trials)
    print(result)  # where the kills landed, shown with -s
    assert result["failed"] == 0, "\n".join(t.line() for t in trials if t.problems)


def test_sigkill_during_answers_keeps_earlier_turns_and_the_answer_so_far(tmp_path: Path) -> None:
    scenario = AnswerScenario(tmp_path, max_tokens=80, verify_continue=False)
    trials = run_trials(scenario, 3, SEED)
    check(trials)
    scenario.verify_continue = True  # and the conversation goes on after a kill
    check([scenario.trial(4, random.Random(SEED))])


def test_sigkill_during_indexing_then_resume_matches_a_clean_run(tmp_path: Path) -> None:
    check(run_trials(IndexScenario(tmp_path, files=60), 1, SEED))


def test_sigkill_during_a_rebuild_then_index_brings_every_vector_back_and_doctor_sees_it(
        tmp_path: Path) -> None:
    """The report: killed at 45 s, 0 of 647 vectors left; `index` then said "54 unchanged", doctor
    said all was well, and searches used BM25 alone for good."""
    scenario = RebuildScenario(tmp_path, measure=False)
    chunks = len(scenario.chunks)
    seen: dict[str, tuple[int, dict]] = {}

    def look(moment: str, home: Path) -> None:
        seen[moment] = (len(vector_ids(home)), doctor_index_check(home))

    # Killed the moment the rebuild has dropped the vectors and starts embedding them again (the
    # random kills of `make soak` land anywhere).
    check([scenario.trial(1, random.Random(SEED), look=look, at_step="refill")])
    left, before = seen["killed"]
    assert left < chunks, f"the kill landed after the rebuild: {left} of {chunks} vectors"
    assert not before["ok"] and f"{left:,} of {chunks:,} chunks have a vector" in before["value"]
    assert "assistant index FOLDER" in before["hint"]
    after = seen["repaired"][1]
    assert after["ok"] and after["value"] == f"{chunks:,} of {chunks:,} chunks have a vector", after


@pytest.mark.parametrize("name", ["migration", "backup"])
def test_sigkill_during_migration_and_backup_loses_nothing(tmp_path: Path, name: str) -> None:
    check(run_trials(SCENARIOS[name](tmp_path), 3, SEED))


def test_tui_ask_and_index_at_once_lose_nothing_and_never_say_locked(tmp_path: Path) -> None:
    result = soak(tmp_path / "home", minutes=0.25, seed=SEED)
    assert result.problems == []
    assert result.commands.get("tui", 0) >= 1 and result.commands.get("ask", 0) >= 1
    assert result.commands.get("index", 0) >= 1 and result.answers >= 2


# Each fault tried elsewhere, with the test that tries it: both must exist and be in the doc's table.
ROWS = {
    "Ctrl-C during an answer": None,
    "TUI, `ask`, `index`, feedback, backup, history at once on one data folder":
        test_tui_ask_and_index_at_once_lose_nothing_and_never_say_locked,
    "Full disk": test_resources.test_a_full_disk_is_a_clear_error_and_corrupts_nothing,
    "Out of memory loading the model": test_resources.test_a_model_load_out_of_memory_explains_then_falls_back,
    "A 1 MB pasted question": test_resources.test_a_1mb_paste_keeps_the_tui_responsive_and_is_answered,
    "Damaged files to index (text, HTML, PDF, DOCX)": test_fuzz.test_pdf_loader_takes_damaged_files,
    "Any document to chunk": test_fuzz.test_chunker_takes_any_document,
    "Damaged GGUF model files": test_fuzz.test_mutated_models_never_abort_llama_cpp,
    "Any server-sent event stream from a remote server": test_fuzz.test_sse_parser_takes_any_stream,
    "Any config file and ASSISTANT_* variables": test_fuzz.test_config_loader_takes_any_file_and_environment,
    "Any line typed in the prompt (the slash-command parser, app/slash.py)":
        test_fuzz.test_slash_command_parser_takes_any_line,
    "Instructions hidden in indexed documents": test_security.test_citations_cannot_escape_the_indexed_folder,
}


def test_the_reliability_doc_lists_every_scenario_and_its_results() -> None:
    text = DOC.read_text()
    for scenario in [*SCENARIOS.values(), HostileScenario]:
        assert f"| {scenario.row} |" in text, f"docs/reliability.md has no row for {scenario.row}"
    for row in ROWS:
        assert f"| {row} |" in text, f"docs/reliability.md has no row for {row}"
    measured = text.split("<!-- soak:begin -->")[1].split("<!-- soak:end -->")[0]
    for scenario in [*SCENARIOS.values(), HostileScenario]:
        assert scenario.what in measured, f"the last soak did not run {scenario.name}"
    assert "Concurrency" in measured and "Fuzzing" in measured
    injection = text.split("<!-- injection:begin -->")[1].split("<!-- injection:end -->")[0]
    from tests.injection import CASES

    assert f"{len(CASES)} documents" in injection and "followed the injected instruction" in injection
    assert injection in (DOC.parent / "security.md").read_text()  # the same numbers in both docs
