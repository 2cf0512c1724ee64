"""Journeys through the installed `assistant` command over real pipes, as a script or a person
at a shell uses it: the same answer twice, a stopped answer exported, history as JSON, tables at
80 columns, a bad model file."""

from __future__ import annotations

import json
import re
import signal
import subprocess
from pathlib import Path

import pytest

from engine.models import default_model_path
from tests.journeys.terminal import assistant_command, environment

QUESTION = "Say hello."


def run(env: dict[str, str], *args: str, timeout: float = 180, columns: int = 80) -> subprocess.CompletedProcess:
    return subprocess.run([assistant_command(), *args], env={**env, "COLUMNS": str(columns)}, capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


@pytest.fixture
def user(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "config.toml").write_text("max_tokens = 40\nseed = 7\n")
    return environment(tmp_path)


def test_the_same_question_twice_prints_the_same_answer_twice(user):
    first = run(user, "ask", "-t", "0", "--stats", QUESTION)
    second = run(user, "ask", "-t", "0", "--stats", QUESTION)  # from the cache, while the model loads
    assert first.returncode == second.returncode == 0, (first.stderr, second.stderr)
    assert first.stdout.strip(), first.stderr
    assert second.stdout == first.stdout
    assert "[response 1 " in first.stderr
    assert "from the cache (response 1)" in second.stderr


def stop_an_answer(env: dict[str, str], question: str) -> str:
    """`ask` interrupted with Ctrl-C (SIGINT) once its answer has started streaming."""
    process = subprocess.Popen([assistant_command(), "ask", "-t", "0", "--max-tokens", "400", question],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               stdin=subprocess.DEVNULL)
    assert process.stdout is not None
    first = process.stdout.read(1)  # blocks until the answer starts
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "partial answer is saved" in err
    return first + out


def test_a_stopped_answer_is_rated_exported_and_alternates_roles(user, tmp_path):
    stop_an_answer(user, "Write a long story about a dragon and a castle.")
    history = json.loads(run(user, "history", "-c", "1", "--json").stdout)
    stopped = history[-1]
    assert stopped["role"] == "assistant" and stopped["response_id"] == 1
    assert run(user, "feedback", "1", "up").returncode == 0
    assert run(user, "review", "1", "--better", "A short story about a dragon.").returncode == 0
    follow_up = run(user, "ask", "-t", "0", "-c", "1", "Now a short poem.")
    assert follow_up.returncode == 0, follow_up.stderr
    assert run(user, "feedback", "2", "up").returncode == 0

    for kind in ("sft", "dpo"):
        out = tmp_path / f"{kind}.jsonl"
        done = run(user, "export", kind, str(out))
        assert done.returncode == 0, done.stderr
        rows = [json.loads(line) for line in out.read_text().splitlines()]
        assert rows, f"{kind} exported nothing"
        for row in rows:
            messages = row["messages"] if kind == "sft" else row["prompt"]
            assert messages[0]["role"] == "system"
            roles = [m["role"] for m in messages[1:]]
            expected = ["user", "assistant"] * len(roles)
            assert roles == expected[: len(roles)], f"{kind} roles do not alternate: {roles}"
            assert roles[-1] == ("assistant" if kind == "sft" else "user")
            assert all(m["content"].strip() for m in messages)


def test_history_of_a_conversation_with_sources_is_json_and_an_unknown_id_is_an_error(user, tmp_path):
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "pets.md").write_text("# Pets\n\nOur cat Miso is eleven years old and loves tuna.\n")
    assert run(user, "index", str(notes)).returncode == 0
    asked = run(user, "ask", "-t", "0", "How old is the cat Miso?")
    assert asked.returncode == 0, asked.stderr
    assert "pets.md" in asked.stdout
    shown = run(user, "history", "-c", "1", "--json")
    assert shown.returncode == 0, shown.stderr
    rows = json.loads(shown.stdout)
    assert [(r["number"], r["role"]) for r in rows] == [(1, "user"), (2, "assistant")]
    assert any("pets.md" in s["location"] and s["path"].endswith("pets.md") for s in rows[1]["sources"])
    missing = run(user, "history", "-c", "999")
    assert missing.returncode == 1 and not missing.stdout
    assert "no conversation with id 999" in missing.stderr


def test_tables_at_80_columns_show_whole_paths_and_numbers(user, tmp_path):
    # Asked before any folder is indexed: its answer needs no embedding (no torch import).
    assert run(user, "ask", "-t", "0", QUESTION).returncode == 0  # a row for `stats`
    assert run(user, "feedback", "1", "down").returncode == 0  # and one for `review`
    folders = []
    for name in ("notes", "notes2"):
        folder = tmp_path / "a-rather-long-folder-name-for-the-notes-of-this-person" / name
        folder.mkdir(parents=True)
        (folder / "n.md").write_text(f"# {name}\n\nThe {name} folder holds a note.\n")
        assert run(user, "index", str(folder)).returncode == 0
        folders.append(folder)
    listed = run(user, "folders")
    assert listed.returncode == 0, listed.stderr
    flat = "".join(listed.stdout.split())  # a path may wrap, but every character of it is there
    for folder in folders:
        assert "".join(str(folder).split()) in flat or str(folder).replace(str(Path.home()), "~") in flat
    model = str(default_model_path())
    assert all(str(folder) in listed.stdout.splitlines() for folder in folders)  # each whole, on a line of its own
    shown = {}
    for command in (["stats", "--no-plots"], ["backends", "--check"], ["history"], ["models", "list"], ["doctor"],
                    ["review"], ["plugins"]):
        done = run(user, *command)
        assert done.returncode == 0, (command, done.stderr)
        assert "…" not in done.stdout, f"`assistant {' '.join(command)}` cut something at 80 columns:\n{done.stdout}"
        if command[0] in ("backends", "doctor"):  # the model file's whole path, on one line
            assert any(model in line for line in done.stdout.splitlines()), done.stdout
        shown[command[0]] = done.stdout
    assert "answers: 1" in shown["stats"] and "tokens in/out: " in shown["stats"]
    assert "👍/👎 (up): 0/1 (0%)" in shown["stats"] and "health: ok:" in shown["backends"]
    assert "SmolLM2-135M-Instruct.Q4_1" in shown["models"] and "thumbs_down" in shown["review"]
    for command in ("history", "plugins"):
        assert max(map(len, shown[command].splitlines())) <= 80, shown[command]
    assert ".docx" in shown["plugins"]
    # --json is unchanged: whole values, one object.
    assert {f["path"] for f in json.loads(run(user, "folders", "--json").stdout)} == {str(f) for f in folders}


def test_a_text_file_as_the_model_exits_1_naming_it_and_leaves_no_conversation(user, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("not a model\n")
    asked = run(user, "ask", "--model", str(notes), QUESTION)
    assert asked.returncode == 1
    assert str(notes) in asked.stderr
    assert "No conversations yet" in run(user, "history").stdout


def evaluated(env: dict[str, str], response_id: int) -> tuple[int, int]:
    """(prompt tokens llama.cpp evaluated, prompt tokens in all) for an answer, from its trace."""
    trace = run(env, "trace", str(response_id)).stdout
    evaluated_now = re.search(r"prompt evaluation .*tokens=(\d+)", trace)
    total = re.search(r"tokens (\d+) in", trace)
    assert evaluated_now and total, trace
    return int(evaluated_now.group(1)), int(total.group(1))


def test_after_a_restart_a_conversation_goes_on_from_its_state_on_disk_until_pruned(user):
    """Each `ask` is a new process: `-c` evaluates only the new words while the conversation's
    model state is on disk; doctor shows that disk and the CPU's thread plan; prune clears it."""
    assert run(user, "ask", "-t", "0", "Tell me about cats.").returncode == 0
    assert run(user, "ask", "-t", "0", "-c", "1", "And dogs?").returncode == 0
    now, total = evaluated(user, 2)
    assert now < total / 2, (now, total)  # the first turn came back from disk
    doctor = run(user, "doctor").stdout  # 80 columns
    states = next(line for line in doctor.splitlines() if "model states" in line)
    assert " in 1 file" in states and str(Path(user["ASSISTANT_HOME"]) / "states") in states, doctor
    assert re.search(r"thread plan +llama\.cpp \d+ decode", doctor), doctor
    pruned = run(user, "prune")
    assert pruned.returncode == 0 and pruned.stdout.startswith("Deleted 1 model state"), pruned.stdout
    assert " in 0 files" in run(user, "doctor").stdout
    assert run(user, "ask", "-t", "0", "-c", "1", "And birds?").returncode == 0
    now, total = evaluated(user, 3)
    assert now == total  # nothing kept: the whole history is evaluated again, and answered
