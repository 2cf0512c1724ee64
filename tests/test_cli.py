"""The `assistant` command as a user runs it: real processes, real model, real database."""

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


def test_bad_model_is_a_clear_error(bad_model: Path, home: Path) -> None:
    done = run("ask", "--model", str(bad_model), "Hi", check=False)
    assert done.returncode == 1
    assert "broken.gguf is not a GGUF model" in done.stderr and "Traceback" not in done.stderr
    assert db(home).execute("SELECT status FROM responses").fetchone()["status"] == "error"
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
