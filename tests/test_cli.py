"""The `assistant` command as a user runs it: real processes, real model, real database."""

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

ASSISTANT = [sys.executable, "-m", "app"]


def run(*args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "ASSISTANT_TEMPERATURE": "0", "ASSISTANT_SEED": "42",
           "ASSISTANT_MAX_TOKENS": "40"}
    done = subprocess.run([*ASSISTANT, *args], input=input, capture_output=True, text=True, env=env,
                          timeout=120)
    if check:
        assert done.returncode == 0, done.stderr
    return done


def db(home: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(home / "assistant.db")
    conn.row_factory = sqlite3.Row
    return conn


def test_version_and_help() -> None:
    assert run("--version").stdout.startswith("assistant, version ")
    for command in ([], ["ask"], ["feedback"], ["history"], ["doctor"]):
        assert "Usage: " in run(*command, "--help").stdout


def test_each_command_is_found_in_its_module_and_only_its_module_is_imported() -> None:
    import importlib

    from app.cli import COMMAND_MODULES

    listed = {}
    for topic in set(COMMAND_MODULES.values()):
        listed |= {c.name: topic for c in importlib.import_module(f"app.cli.{topic}").COMMANDS}
    assert listed == COMMAND_MODULES
    # `assistant ask` (and the chat app) do not pay for the other commands' imports.
    probe = ("import sys; from click.testing import CliRunner; from app.cli import main;"
             "CliRunner().invoke(main, ['ask', '--help']);"
             "print(sorted(m for m in sys.modules if m.startswith('app.cli.')))")
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "['app.cli.ask', 'app.cli.common']"


def test_ask_streams_and_logs(home: Path) -> None:
    done = run("ask", "--stats", "What is the capital of France?")
    assert done.stdout.strip()
    assert "[response 1 · conversation 1" in done.stderr
    row = db(home).execute("SELECT * FROM responses").fetchone()
    assert row["status"] == "ok" and row["output_tokens"] > 0 and row["tokens_per_s"] > 0


def test_ask_reads_stdin_and_continues(home: Path) -> None:
    run("ask", "-", input="My favourite colour is green.\n")
    run("ask", "-c", "1", "What did I say?")
    rows = db(home).execute("SELECT role, content FROM messages ORDER BY id").fetchall()
    assert [r["role"] for r in rows] == ["user", "assistant", "user", "assistant"]
    assert rows[0]["content"].startswith("My favourite colour is green.")


def test_feedback_and_history(home: Path) -> None:
    run("ask", "Say hi.")
    assert "rated up" in run("feedback", "1", "up", "--comment", "nice").stdout
    row = db(home).execute("SELECT * FROM feedback").fetchone()
    assert (row["response_id"], row["rating"], row["comment"]) == (1, 1, "nice")
    listing = run("history").stdout
    assert "Say hi." in listing and "2 msgs" in listing
    shown = run("history", "-c", "1").stdout
    assert "[response 1]" in shown
    unknown = run("ask", "-c", "42", "Hello?", check=False)
    assert unknown.returncode == 1 and "no conversation with id 42" in unknown.stderr
    missing = run("feedback", "99", "down", check=False)
    assert missing.returncode == 1 and "no response with id 99" in missing.stderr


def test_doctor_reports_health(home: Path) -> None:
    run("ask", "Hi")
    report = run("doctor").stdout
    for expected in ("GPU offload", "not in this build", "SmolLM2-135M-Instruct.Q4_1.gguf",
                     "valid (version 3", "integrity        ok", str(home)):
        assert expected in report


def test_bad_model_is_a_clear_error(bad_model: Path, home: Path, tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("not a model\n")
    for unusable in (bad_model, notes, tmp_path / "missing.gguf"):
        done = run("ask", "--model", str(unusable), "Hi", check=False)
        assert done.returncode == 1, done.stderr
        assert str(unusable) in done.stderr and "Traceback" not in done.stderr
    assert "broken.gguf is not a GGUF model" in run("ask", "-m", str(bad_model), "Hi", check=False).stderr
    # Refused before the question is saved: no conversation of one unanswered question is left.
    assert "No conversations yet" in run("history").stdout
    assert db(home).execute("SELECT COUNT(*) FROM messages").fetchone()[0] == 0
    doctor = run("--model", str(bad_model), "doctor", check=False)
    assert doctor.returncode == 1 and "FAIL" in doctor.stdout


def test_bad_config_is_a_clear_error(home: Path) -> None:
    home.mkdir()
    (home / "config.toml").write_text("n_ctx = 'huge'\n")
    done = run("ask", "Hi", check=False)
    assert done.returncode == 1 and "n_ctx" in done.stderr and "Traceback" not in done.stderr


def start_long_answer(home: Path) -> subprocess.Popen:
    env = {**os.environ, "ASSISTANT_MAX_TOKENS": "2000", "ASSISTANT_TEMPERATURE": "0"}
    proc = subprocess.Popen(
        [*ASSISTANT, "ask", "Write a very long essay about the history of Rome."],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    assert proc.stdout is not None
    proc.stdout.read(40)  # wait until the answer is streaming
    return proc


def test_ctrl_c_keeps_the_partial_answer(home: Path) -> None:
    proc = start_long_answer(home)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "partial answer is saved" in err
    row = db(home).execute("SELECT * FROM responses").fetchone()
    assert row["status"] == "cancelled"
    answer = db(home).execute("SELECT * FROM messages WHERE role = 'assistant'").fetchone()
    assert answer["status"] == "partial" and len(answer["content"]) >= 40


def test_sigkill_mid_answer_loses_no_earlier_turn(home: Path) -> None:
    run("ask", "First question.")
    proc = start_long_answer(home)
    proc.kill()
    proc.wait(timeout=30)
    conn = db(home)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    rows = conn.execute("SELECT role, content FROM messages ORDER BY id").fetchall()
    assert [r["role"] for r in rows[:2]] == ["user", "assistant"]
    assert rows[2]["content"].startswith("Write a very long essay")  # the question survived
    assert run("ask", "-c", "1", "Still there?").returncode == 0


async def stopped_answer(engine, question: str) -> int:
    """Ask, and cancel the answer once it has streamed a few tokens (as Esc does): its conversation id."""
    from engine import Started, Token

    seen: list[str] = []
    conversation: list[int] = []

    async def consume() -> None:
        async for event in engine.ask(question):
            if isinstance(event, Started):
                conversation.append(event.conversation_id)
            if isinstance(event, Token):
                seen.append(event.text)

    task = asyncio.create_task(consume())
    while len(seen) < 5:
        await asyncio.sleep(0.01)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return conversation[0]


async def test_exports_after_a_stopped_answer_alternate_and_carry_the_system_prompt(
        settings, home: Path, tmp_path: Path) -> None:
    from engine import Engine, Finished
    from tests.conftest import events_of

    engine = Engine(settings.replace(max_tokens=400))
    conversation_id = await stopped_answer(engine, "Write a very long essay about the history of Rome.")
    stopped = (await engine.history.messages(conversation_id))[-1]
    assert stopped["status"] == "partial" and stopped["content"]
    await engine.history.rate(stopped["response_id"], 1)  # rated up as it was: not a training target
    await engine.history.mark_reviewed(stopped["response_id"], "Rome grew from a village to an empire.")
    await engine.close()
    engine = Engine(settings)
    follow_up = (await events_of(engine, "Now in one sentence.", conversation_id))[-1]
    assert isinstance(follow_up, Finished)
    await engine.history.rate(follow_up.response_id, 1)

    question, partial = "Write a very long essay about the history of Rome.", stopped["content"]
    system = {"role": "system", "content": settings.system_prompt}
    run("export", "sft", str(tmp_path / "sft.jsonl"))
    sft = [json.loads(line) for line in (tmp_path / "sft.jsonl").read_text().splitlines()]
    assert [row["messages"] for row in sft] == [
        [system, {"role": "user", "content": question},
         {"role": "assistant", "content": "Rome grew from a village to an empire."}],
        [system, {"role": "user", "content": question}, {"role": "assistant", "content": partial},
         {"role": "user", "content": "Now in one sentence."}, {"role": "assistant", "content": follow_up.text}],
    ]
    run("export", "dpo", str(tmp_path / "dpo.jsonl"))
    [pair] = [json.loads(line) for line in (tmp_path / "dpo.jsonl").read_text().splitlines()]
    assert pair["prompt"] == [system, {"role": "user", "content": question}]
    assert (pair["chosen"], pair["rejected"]) == ("Rome grew from a village to an empire.", partial)
    # Cases for evals: the stopped answer is in the follow-up's history, so the turns alternate.
    await engine.history.rate(follow_up.response_id, -1)
    await engine.close()
    run("eval", "from-review", str(tmp_path / "cases.jsonl"))
    cases = {c["id"]: c for c in map(json.loads, (tmp_path / "cases.jsonl").read_text().splitlines())}
    later = cases[f"review-{follow_up.response_id}"]
    assert later["question"] == "Now in one sentence."
    assert later["history"] == [{"role": "user", "content": question}, {"role": "assistant", "content": partial}]


def test_fork_at_takes_the_message_number_that_history_shows(home: Path) -> None:
    run("ask", "Name a colour.")
    run("ask", "Name a fruit.")  # conversation 2: its messages have ids 3 and up
    run("ask", "-c", "2", "Name another one.")
    shown = run("history", "-c", "2").stdout
    assert "#1 user:" in shown and "#2 assistant [response 2]:" in shown and "#4 assistant" in shown
    assert "Forked conversation 2 as 3" in run("fork", "2", "--at", "2").stdout
    original = json.loads(run("history", "-c", "2", "--json").stdout)
    forked = json.loads(run("history", "-c", "3", "--json").stdout)
    assert [m["content"] for m in forked] == [m["content"] for m in original[:2]]
    too_far = run("fork", "2", "--at", "5", check=False)
    assert too_far.returncode == 1
    assert "Conversation 2 has no message #5: it has messages #1 to #4" in too_far.stderr
    assert len(json.loads(run("history", "--json").stdout)) == 3  # nothing was forked


def test_memory_search_lists_only_memories_similar_enough(home: Path) -> None:
    run("memory", "add", "I prefer metric units")
    run("memory", "add", "My cat is called Miso")
    found = run("memory", "search", "units of measurement").stdout
    assert "metric units" in found and "similarity" in found and "Miso" not in found
    # Before, the nearest memories were listed however far: here at similarity 0.20 and 0.07.
    nothing = run("memory", "search", "How tall is Everest?").stdout
    assert "No memory is similar to 'How tall is Everest?' (similarity 0.30 or more)" in nothing
    assert "metric units" in run("memory", "search", "How tall is Everest?", "--min-similarity", "0").stdout
    assert json.loads(run("memory", "search", "How tall is Everest?", "--json").stdout) == []
