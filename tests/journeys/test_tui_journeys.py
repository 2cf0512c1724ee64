"""Journeys through the installed chat app in a real pseudo-terminal, read off the screen the
way a person reads it, at 160 and 80 columns."""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.models import default_model_path
from tests.journeys.terminal import Terminal, environment

CONFIG = "temperature = 0.0\nseed = 7\nmax_tokens = 60\n"
LONG = "Write a very long story about a dragon who guards a castle."


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """Overrides the suite's ASSISTANT_HOME: this user's data folder lives in the terminal's env."""
    (tmp_path / "config.toml").write_text(CONFIG)
    return tmp_path


@pytest.fixture(params=[(160, 45), (80, 24)], ids=["160x45", "80x24"])
def size(request) -> tuple[int, int]:
    return request.param


def launch(home: Path, size: tuple[int, int] = (160, 45), *args: str, **env: str) -> Terminal:
    """The app, once it has painted its prompt: keys typed before that reach a terminal still in
    cooked mode (Enter arrives as Ctrl+J, a newline in the prompt)."""
    terminal = Terminal(list(args), environment(home, **env), columns=size[0], lines=size[1])
    terminal.wait_for("Ask anything", timeout=30)
    return terminal


@pytest.fixture
def app(home: Path, size) -> Iterator[Terminal]:
    terminal = launch(home, size)
    yield terminal
    terminal.close()


def ask(terminal: Terminal, question: str) -> None:
    terminal.type(question)
    terminal.press("enter")


def answered(terminal: Terminal, number: int, timeout: float = 120) -> str:
    """Wait until answer `#number` has its footer, and the app is ready for the next question."""
    return terminal.wait_for(lambda s: bool(footer_of(s, number)) and "ready" in s, timeout)


def chat_column(screen: str) -> list[str]:
    """The conversation's side of each line: what is right of the sidebar's border."""
    return [line.split("│", 1)[-1] for line in screen.splitlines()]


def unwrapped(screen: str) -> str:
    """The conversation's text with its line breaks taken out: a path wrapped at 80 columns reads whole."""
    return "".join(line.strip(" █▌▊▎") for line in chat_column(screen))


def conversation(screen: str) -> list[str]:
    """The lines of the conversation, above the prompt's box."""
    lines = chat_column(screen)
    return lines[: next(i for i, line in enumerate(lines) if "▔▔▔" in line)]


def toasts(screen: str) -> bool:
    """Whether a notification is on screen (drawn with ▌ on its left edge), covering part of the chat."""
    return "▌" in screen


def footers(screen: str) -> list[str]:
    """The answer footers on screen: the lines naming the model that end with an answer's #id."""
    return [line.strip(" █") for line in chat_column(screen) if re.search(r"· local.*#\d+\s*$", line)]


def footer_of(screen: str, number: int) -> str:
    return next((f for f in footers(screen) if f.endswith(f"#{number}")), "")


def test_first_launch_paints_the_screen_within_5_seconds_while_the_model_loads(home, size):
    started = time.monotonic()
    terminal = launch(home, size)
    try:
        screen = terminal.wait_for(lambda s: "Ask anything" in s and "local" in s and "Ctrl+F" in s, timeout=5)
        assert time.monotonic() - started < 5
        assert "Type a question" in screen  # the first screen says what to do
        terminal.wait_for("ready", timeout=60)
    finally:
        terminal.close()


def rate_up(terminal: Terminal, number: int) -> str:
    terminal.press("ctrl+g")  # the latest answer
    terminal.wait_for("Add a comment", timeout=10)
    terminal.press("escape")  # no comment
    return terminal.wait_for(lambda s: "👍" in footer_of(s, number) and "Add a comment" not in s, timeout=10)


def test_stop_rate_ask_rate_new_chat_and_reopen_shows_the_same_footers(app, size):
    ask(app, LONG)
    app.wait_for(lambda s: "answering" in s and "dragon" in unwrapped(s).split("castle.", 1)[-1], timeout=60)
    app.press("escape")  # mid-answer
    app.wait_for(lambda s: "stopped" in footer_of(s, 1), timeout=30)
    stopped = footer_of(rate_up(app, 1), 1)  # a stopped answer is the latest answer: its own #id is rated
    assert "stopped" in stopped and "👍" in stopped
    ask(app, "Say hello.")
    answered(app, 2)
    rate_up(app, 2)
    live = app.wait_for(lambda s: "👍" in footer_of(s, 2) and not toasts(s), timeout=30)
    live_footers = footers(live)  # at 80x24 answer #1 may have scrolled out of view: what is shown
    app.press("ctrl+n")
    app.wait_for(lambda s: not footers(s), timeout=10)
    narrow = size[0] < 100
    if narrow:
        app.press("ctrl+s")  # the sidebar starts hidden below 100 columns
    app.click_text("Write a very long")  # the first conversation, in the sidebar
    if narrow:
        app.press("ctrl+s")
    reopened = app.wait_for(lambda s: footer_of(s, 2) and not toasts(s), timeout=30)
    assert footers(reopened) == live_footers
    assert conversation(reopened) == conversation(live)  # reopened looks exactly like live


def test_search_then_type_lands_in_the_prompt_and_is_answered(app):
    ask(app, "What orbits Jupiter?")
    answered(app, 1)
    app.press("ctrl+n")
    app.press("f8")
    app.wait_for("Search conversations", timeout=10)
    app.type("Jupiter")
    app.press("enter")
    app.wait_for("mention", timeout=10)
    ask(app, "Say hello.")
    screen = answered(app, 2)
    assert "Rename" not in screen and "Delete" not in screen.split("\n")[-1]
    assert "Say hello." in screen


def test_slash_lists_every_command_and_remember_shows_in_memory(app):
    app.wait_for("ready", timeout=60)
    app.type("/")
    screen = app.wait_for("/help", timeout=10)
    for command in ("remember", "tools", "export", "help", "model", "folders", "memory", "fork",
                    "incognito", "backend", "wordcount"):
        assert f"/{command}" in screen, f"/{command} is not listed after typing /:\n{screen}"
    app.press("backspace")
    ask(app, "/remember My cat is called Miso.")
    app.wait_for("Remembered", timeout=20)
    app.press("f10")
    app.wait_for("My cat is called Miso", timeout=20)


def test_a_folder_answers_with_its_file_and_an_unrelated_question_lists_no_sources(app, home):
    notes = home / "notes"
    notes.mkdir()
    (notes / "pets.md").write_text("# Pets\n\nOur cat Miso is eleven years old and loves tuna.\n"
                                   "Our dog Rex sleeps in the garden shed.\n")
    app.wait_for("ready", timeout=60)
    app.press("ctrl+f")
    app.wait_for("Indexed folders", timeout=10)
    app.type(str(notes))
    app.press("enter")
    app.wait_for(lambda s: "pets.md" in s or re.search(r"notes\s.*\b1\b", s), timeout=120)
    app.press("escape")
    ask(app, "How old is the cat Miso?")
    assert "pets.md" in unwrapped(answered(app, 1))
    ask(app, "How tall is Mount Everest?")
    below = unwrapped(answered(app, 2)).split("Everest?", 1)[1]
    assert "pets.md" not in below and "retrieved" not in below


def test_switching_the_model_keeps_repainting_and_the_next_answer_names_it(home, size):
    models = home / "models"
    models.mkdir()
    shutil.copy(default_model_path(), models / "second-model.gguf")
    (home / "config.toml").write_text(CONFIG + f'models_dir = "{models}"\n')
    terminal = launch(home, size)
    try:
        terminal.wait_for("ready", timeout=60)
        terminal.press("f9")
        terminal.wait_for("second-model", timeout=20)
        terminal.press("up")  # models_dir's files are listed above the embedded one
        terminal.press("enter", pause=0)
        # Type while the new model loads: the screen must keep painting what is typed. (While
        # llama.cpp loaded, fds 1 and 2 used to point at /dev/null: nothing painted got out.)
        during_load = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            screen = terminal.text()
            if "loading model" in screen:
                during_load.append(next(line for line in chat_column(screen) if "▊ " in line and "▔" not in line))
            elif during_load:
                break
            terminal.child.send("x")
            time.sleep(0.02)
        assert len(set(during_load)) >= 2, f"the screen did not change while the model loaded: {during_load}"
        terminal.wait_for("Now answering with second-model", timeout=60)
        terminal.press("ctrl+u")  # clears the x's typed
        ask(terminal, "Say hello.")
        assert "second-model · local" in footer_of(answered(terminal, 1), 1)
    finally:
        terminal.close()
