"""Running out of things: a full disk (a real tmpfs), memory for the model (a real address-space
limit), and a 1 MB pasted question in the TUI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from textual import events

from app.tui import AssistantApp
from app.widgets.answer import AnswerMessage
from app.widgets.chat_log import UserMessage
from app.widgets.prompt import PromptInput
from engine import Engine, Settings
from tests.conftest import wait_for
from tests.faults import ROOT, env_for
from tests.openai_server import FakeOpenAI
from tests.rag_corpus import write_many_files
from tests.test_remote import configure, provider

MEGABYTE = ("The quick brown fox jumps over the lazy dog. " * 23_300)[:1_000_000]


def in_private_tmpfs(mount: Path, size: str, *command: str) -> list[str]:
    """`command` in a mount namespace of its own, with a tmpfs of `size` at `mount`: as root with
    `unshare -m`, else in a user namespace (`unshare -rm`), where mounting is allowed too."""
    if not shutil.which("unshare"):
        pytest.skip("unshare (util-linux) is not installed: cannot mount a small filesystem")
    flags = ["-m"] if os.geteuid() == 0 else ["-r", "-m"]
    probe = subprocess.run(["unshare", *flags, "--propagation", "private", "sh", "-c",
                            f"mount -t tmpfs -o size=64k tmpfs {mount}"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here, even in a namespace: {probe.stderr.strip()}")
    script = f"mount -t tmpfs -o size={size} tmpfs {mount} && exec \"$@\""
    return ["unshare", *flags, "--propagation", "private", "sh", "-c", script, "sh", *command]


@pytest.mark.soak  # a minute of real processes: in `make soak`
def test_a_full_disk_is_a_clear_error_and_corrupts_nothing(tmp_path: Path) -> None:
    mount = tmp_path / "small"
    mount.mkdir()
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "plan.md").write_text("# Plan\n\nThe garden budget is 400 euros.\n")
    big = write_many_files(tmp_path / "many", 200)
    command = in_private_tmpfs(mount, "8m", sys.executable, "-m", "tests.diskfull", str(mount), str(folder), str(big))
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900, env=env_for(tmp_path))
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    for step in ("ask", "index", "backup", "nearly_full_index"):
        said = result[step]
        assert said["code"] == 1, (step, said)
        assert "is full; nothing more can be saved" in said["stderr"], (step, said["stderr"])
        assert "Traceback" not in said["stderr"] and "disk I/O error" not in said["stderr"]
        assert "prompt" not in said["stderr"]  # there is no prompt to keep text in, in the CLI
    assert result["backup_left"] == []  # no half-written backup
    assert result["integrity"] == result["integrity_after"] == result["integrity_nearly_full"] == "ok"
    assert result["earlier_turns_kept"]
    assert result["after"]["ask"]["code"] == result["after"]["index"]["code"] == 0  # space again: all works
    roles = [role for role, _ in result["messages"]]
    assert roles == ["user", "assistant", "user", "assistant"]  # the question on the full disk was not half-saved
    assert result["resumed_index"]["code"] == 0
    assert result["chunks"] == 200 and result["files"] == 201 and result["sqlite_equals_chroma"]


def ask_limited(home: Path, *args: str, n_ctx: int, limit_bytes: int, auto_fit: bool = False
                ) -> subprocess.CompletedProcess:
    """`assistant ask` with its address space capped (RLIMIT_AS): llama.cpp's allocations really fail.
    `auto_fit` off, as it would cap n_ctx at the model's trained context before trying."""
    if not shutil.which("prlimit"):
        pytest.skip("prlimit (util-linux) is not installed")
    env = env_for(home, ASSISTANT_N_CTX=str(n_ctx), ASSISTANT_MAX_TOKENS="8", ASSISTANT_AUTO_FIT=str(int(auto_fit)))
    return subprocess.run(["prlimit", f"--as={limit_bytes}", sys.executable, "-m", "app", *args], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=300)


LIMIT = 3_000_000_000  # enough for Python and the model with a 2k context, not for a 128k one


def test_a_model_load_out_of_memory_explains_then_falls_back(home: Path) -> None:
    fits = ask_limited(home, "ask", "--no-cache", "Say hi.", n_ctx=2048, limit_bytes=LIMIT)
    assert fits.returncode == 0, fits.stderr  # the limit alone does not break anything
    failed = ask_limited(home, "ask", "--no-cache", "Say hi.", n_ctx=131072, limit_bytes=LIMIT)
    assert failed.returncode == 1 and "Traceback" not in failed.stderr
    assert "Not enough memory to load" in failed.stderr and "n_ctx=131072" in failed.stderr
    assert "Lower n_ctx or n_gpu_layers" in failed.stderr
    fitted = ask_limited(home, "ask", "--no-cache", "Say hi.", n_ctx=131072, limit_bytes=LIMIT, auto_fit=True)
    assert fitted.returncode == 0, fitted.stderr  # fitted to the machine instead (n_ctx capped)
    with FakeOpenAI() as server:  # with a second backend, the router falls back to it
        configure(home, provider(server.url), backends=["local", "fake"], allow_cloud=True)
        routed = ask_limited(home, "ask", "--no-cache", "Say hi.", n_ctx=131072, limit_bytes=LIMIT)
    assert routed.returncode == 0, routed.stderr
    assert "Hello from the remote server." in routed.stdout
    assert "local:" in routed.stderr and "memory" in routed.stderr  # the user is told why


async def test_a_1mb_paste_keeps_the_tui_responsive_and_is_answered(settings: Settings) -> None:
    app = AssistantApp(Engine(settings.replace(n_ctx=1024, max_tokens=8)))
    gaps: list[float] = []
    notes: list[str] = []
    notify = app.notify

    def recording_notify(message: str, **kwargs: object) -> None:
        notes.append(message)
        notify(message, **kwargs)  # type: ignore[arg-type]

    app.notify = recording_notify  # type: ignore[method-assign]
    async with app.run_test(size=(120, 40)) as pilot:
        screen = app.screen
        await wait_for(lambda: screen.status.state == "ready", 120, "model loaded")
        last = [time.monotonic()]

        def tick() -> None:  # the event loop's heartbeat: a long gap is a frozen app
            now = time.monotonic()
            gaps.append(now - last[0])
            last[0] = now

        app.set_interval(0.05, tick)
        prompt = screen.query_one(PromptInput)
        prompt.focus()
        prompt.post_message(events.Paste(MEGABYTE))
        await wait_for(lambda: prompt.question == MEGABYTE, 30, "the paste")
        assert prompt.text == "[pasted text #1: 1,000,000 characters]"
        await pilot.press(*" Summarize.")
        assert prompt.question == MEGABYTE + " Summarize."
        await pilot.press("enter")
        await wait_for(lambda: (a := list(screen.query(AnswerMessage))) and a[-1].response_id is not None,
                       240, "the answer")
        await pilot.pause(0.3)
        shown = screen.query_one(UserMessage)
        assert shown.text == MEGABYTE + " Summarize." and "more characters (kept in full)" in str(shown.render())
        assert any("shortened to fit" in note for note in notes)
        messages = await app.engine.history.messages(screen.conversation_id)
        assert messages[0]["content"] == MEGABYTE + " Summarize."  # saved whole
        assert messages[1]["status"] == "complete" and messages[1]["content"]
    assert len(gaps) > 20 and max(gaps) < 1.0, f"the event loop stalled for {max(gaps):.2f} s"


async def test_a_long_question_put_back_after_a_failure_stays_a_placeholder(settings: Settings) -> None:
    app = AssistantApp(Engine(settings))
    async with app.run_test():
        prompt = app.screen.query_one(PromptInput)
        prompt.restore(MEGABYTE)
        assert prompt.text.startswith("[pasted text #") and prompt.question == MEGABYTE
        prompt.clear()
        assert prompt.question == ""
