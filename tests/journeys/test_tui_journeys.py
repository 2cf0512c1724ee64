"""Journeys through the installed chat app in a real pseudo-terminal, read off the screen the
way a person reads it, at 160 and 80 columns.

One app per size walks the everyday journeys in turn, as one person would in one sitting: first
launch, stop/rate/reopen, search, slash commands and memory, a folder. Each journey starts with a
new chat (Ctrl+N); a journey run alone, or after one that left the app dead, launches its own. A
second app per size, set up with tools and a second model file, walks the tool journey and the
model switch.

The test model loads in about 0.3 s, too fast to see what happens on screen during a load, so
llama.cpp's load call is slowed (tests/journeys/slow_load): the first model's by FIRST_LOAD_S,
the second model's by SWITCH_LOAD_S.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from engine.models import default_model_path
from tests.journeys.terminal import Terminal, environment

CONFIG = "temperature = 0.0\nseed = 7\nmax_tokens = 60\n"
LONG = "Write a very long story about a dragon who guards a castle."
SLOW_LOAD = Path(__file__).resolve().parent / "slow_load"
FIRST_LOAD_S = 6.0  # long enough to ask a question and stop it before the model is there
SWITCH_LOAD_S = 4.0
SIDEBAR_ITEM = re.compile(r"#\d+ · \d\d:\d\d")  # a conversation in the sidebar: its id and time


@pytest.fixture(scope="module", params=[(160, 45), (80, 24)], ids=["160x45", "80x24"])
def size(request) -> tuple[int, int]:
    return request.param


def slowed(**loads: float) -> dict[str, str]:
    """The environment that makes loading the model files named (in part) by `loads` slow."""
    spec = ",".join(f"{name}:{seconds}" for name, seconds in loads.items())
    path = os.pathsep.join(p for p in (str(SLOW_LOAD), os.environ.get("PYTHONPATH", "")) if p)
    return {"PYTHONPATH": path, "ASSISTANT_TEST_SLOW_LOAD": spec}


@dataclass
class Session:
    """One running app, and what the journeys so far did with it."""

    terminal: Terminal
    launched_s: float  # from starting the command to a painted screen (sidebar, status bar, hint)
    first_screen: str
    answers: int = 0  # answers given so far; response ids count up from 1
    journeys: list[str] = field(default_factory=list)

    def next_answer(self) -> int:
        """The #id the next answer will show."""
        self.answers += 1
        return self.answers


def launch(user: Path, size: tuple[int, int], env: dict[str, str]) -> Session:
    """The app, once it has painted its prompt: keys typed before that reach a terminal still in
    cooked mode (Enter arrives as Ctrl+J, a newline in the prompt)."""
    began = time.monotonic()
    terminal = Terminal([], environment(user, **env), columns=size[0], lines=size[1])
    screen = terminal.wait_for(lambda s: "Ask anything" in s and "local" in s and "Ctrl+F" in s, timeout=30)
    return Session(terminal, time.monotonic() - began, screen)


class Sitting:
    """An app per size, shared by the journeys of a module; relaunched when a journey killed it."""

    def __init__(self, user: Path, size: tuple[int, int], env: dict[str, str]) -> None:
        self.user, self.size, self.env = user, size, env
        self.session: Session | None = None

    def _start(self) -> Session:
        self.close()
        answers = _response_count(self.user)  # earlier journeys' answers, if any (counted while no app runs)
        self.session = launch(self.user, self.size, self.env)
        self.session.answers = answers
        return self.session

    def fresh(self) -> Session:
        """An app no journey has touched."""
        if self.session is None or self.session.journeys:
            self._start()
        assert self.session is not None
        return self.session

    def journey(self, name: str) -> Session:
        """The app, in a new chat, ready for the next journey."""
        if self.session is None or not self.session.terminal.child.isalive():
            self._start()
        session = self.session
        assert session is not None
        if session.journeys:
            terminal = session.terminal
            terminal.press("escape", "escape")  # whatever dialog or screen the last journey left open
            terminal.press("ctrl+n")
            if self.size[0] < 100 and SIDEBAR_ITEM.search(terminal.text()):
                terminal.press("ctrl+s")  # below 100 columns a new chat starts with the sidebar hidden
            terminal.wait_for(lambda s: not footers(s) and "Type a question" in s and "ready" in s
                              and not toasts(s), timeout=60)
        session.journeys.append(name)
        return session

    def close(self) -> None:
        if self.session is not None:
            self.session.terminal.close()
            self.session = None


def _response_count(user: Path) -> int:
    import sqlite3

    db = user / "data" / "assistant.db"
    if not db.exists():
        return 0
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT COUNT(*) FROM responses").fetchone()[0]
    finally:
        conn.close()


@pytest.fixture(scope="module")
def everyday(size, tmp_path_factory) -> Iterator[Sitting]:
    """A new user's app at this size, with a slow first model load."""
    user = tmp_path_factory.mktemp("user")
    (user / "config.toml").write_text(CONFIG)
    sitting = Sitting(user, size, slowed(**{default_model_path().name: FIRST_LOAD_S}))
    yield sitting
    sitting.close()


@pytest.fixture(scope="module")
def tooled(size, tmp_path_factory) -> Iterator[Sitting]:
    """A user with the calculator tool always offered and a second model file in models_dir."""
    user = tmp_path_factory.mktemp("tooled")
    models = user / "models"
    models.mkdir()
    shutil.copy(default_model_path(), models / "second-model.gguf")
    (user / "config.toml").write_text(CONFIG + f'models_dir = "{models}"\ntool_calling = "always"\n'
                                      'tool_choice = "required"\ntools = ["calculator"]\n')
    sitting = Sitting(user, size, slowed(**{"second-model": SWITCH_LOAD_S}))
    yield sitting
    sitting.close()


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


def rate_up(terminal: Terminal, number: int) -> str:
    terminal.press("ctrl+g")  # the latest answer
    terminal.wait_for("Add a comment", timeout=10)
    terminal.press("escape")  # no comment
    return terminal.wait_for(lambda s: "👍" in footer_of(s, number) and "Add a comment" not in s, timeout=10)


def reopen(terminal: Terminal, size: tuple[int, int], title: str) -> None:
    """Click a conversation in the sidebar, which starts hidden below 100 columns."""
    narrow = size[0] < 100
    if narrow:
        terminal.press("ctrl+s")
    terminal.click_text(title)
    if narrow:  # hidden again (opening one may hide it by itself: whichever comes first)
        for _ in range(3):
            time.sleep(1.0)
            if not SIDEBAR_ITEM.search(terminal.text()):
                break
            terminal.press("ctrl+s")


# the everyday sitting ------------------------------------------------------------------------------


def test_first_launch_paints_within_5_seconds_and_a_question_stopped_while_the_model_loads_gets_its_id(
        everyday, size):
    """Esc before the engine's first event (the model still loading) left an answer with no #id:
    it could not be rated, and Ctrl+G rated an older answer."""
    session = everyday.fresh()
    everyday.journey("first launch")
    app = session.terminal
    assert session.launched_s < 5, f"first paint took {session.launched_s:.1f} s"
    assert "Type a question" in session.first_screen  # the first screen says what to do
    assert "loading model" in session.first_screen  # painted while the model loads, not after
    ask(app, "Tell me about the history of the Moon.")
    app.wait_for(lambda s: "Tell me about the history" in s and "loading model" in s, timeout=10)
    app.press("escape")  # the model is still loading: no answer has started
    number = session.next_answer()
    app.wait_for(lambda s: "stopped" in footer_of(s, number), timeout=30)
    footer = footer_of(rate_up(app, number), number)  # the stopped answer is the latest: its own #id
    assert "stopped" in footer and "👍" in footer
    app.wait_for("ready", timeout=60)
    # Reopened, that answer (no text: no message of its own) is there again, as it was shown.
    app.press("ctrl+n")
    app.wait_for(lambda s: not footers(s), timeout=10)
    reopen(app, size, "Tell me about the history")
    reopened = app.wait_for(lambda s: footer_of(s, number) and not toasts(s), timeout=30)
    assert footer_of(reopened, number) == footer


def test_stop_rate_ask_rate_new_chat_and_reopen_shows_the_same_footers(everyday, size):
    session = everyday.journey("stop, rate, ask, rate, reopen")
    app = session.terminal
    ask(app, LONG)
    app.wait_for(lambda s: "answering" in s and "dragon" in unwrapped(s).split("castle.", 1)[-1], timeout=60)
    app.press("escape")  # mid-answer
    first = session.next_answer()
    app.wait_for(lambda s: "stopped" in footer_of(s, first), timeout=30)
    stopped = footer_of(rate_up(app, first), first)  # a stopped answer is the latest answer: its own #id is rated
    assert "stopped" in stopped and "👍" in stopped
    ask(app, "Say hello.")
    second = session.next_answer()
    answered(app, second)
    rate_up(app, second)
    live = app.wait_for(lambda s: "👍" in footer_of(s, second) and not toasts(s), timeout=30)
    live_footers = footers(live)  # at 80x24 the first answer may have scrolled out of view: what is shown
    app.press("ctrl+n")
    app.wait_for(lambda s: not footers(s), timeout=10)
    reopen(app, size, "Write a very long")
    reopened = app.wait_for(lambda s: footer_of(s, second) and not toasts(s), timeout=30)
    assert footers(reopened) == live_footers
    assert conversation(reopened) == conversation(live)  # reopened looks exactly like live


def test_search_then_type_lands_in_the_prompt_and_is_answered(everyday):
    session = everyday.journey("search, then type")
    app = session.terminal
    ask(app, "What orbits Jupiter?")
    answered(app, session.next_answer())
    app.press("ctrl+n")
    app.press("f8")
    app.wait_for("Search conversations", timeout=10)
    app.type("Jupiter")
    app.press("enter")
    app.wait_for("mention", timeout=10)
    ask(app, "Say hello.")
    screen = answered(app, session.next_answer())
    assert "Rename" not in screen and "Delete" not in screen.split("\n")[-1]
    assert "Say hello." in screen


def test_slash_lists_every_command_and_remember_shows_in_memory(everyday):
    app = everyday.journey("slash commands, /remember, F10").terminal
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


def test_a_folder_answers_with_its_file_and_an_unrelated_question_lists_no_sources(everyday):
    session = everyday.journey("a folder, then an unrelated question")
    app = session.terminal
    notes = everyday.user / "notes"
    notes.mkdir()
    (notes / "pets.md").write_text("# Pets\n\nOur cat Miso is eleven years old and loves tuna.\n"
                                   "Our dog Rex sleeps in the garden shed.\n")
    app.press("ctrl+f")
    app.wait_for("Indexed folders", timeout=10)
    app.type(str(notes))
    app.press("enter")
    app.wait_for(lambda s: "pets.md" in s or re.search(r"notes\s.*\b1\b", s), timeout=120)
    app.press("escape")
    ask(app, "How old is the cat Miso?")
    assert "pets.md" in unwrapped(answered(app, session.next_answer()))
    ask(app, "How tall is Mount Everest?")
    below = unwrapped(answered(app, session.next_answer())).split("Everest?", 1)[1]
    assert "pets.md" not in below and "retrieved" not in below


# the tooled sitting --------------------------------------------------------------------------------


def test_a_tool_line_reopens_as_it_was_shown_live(tooled, size):
    """A reopened answer lost its 🔧 line: the tool's result was not stored."""
    session = tooled.journey("a tool call, reopened")
    app = session.terminal
    app.wait_for("ready", timeout=60)
    ask(app, "What is 12 times 7?")
    number = session.next_answer()
    live = app.wait_for(lambda s: "🔧 calculator" in footer_of(s, number) and "ready" in s and not toasts(s),
                        timeout=120)
    live_footers = footers(live)
    app.press("ctrl+n")
    app.wait_for(lambda s: not footers(s), timeout=10)
    reopen(app, size, "What is 12 times")
    reopened = app.wait_for(lambda s: footer_of(s, number) and not toasts(s), timeout=30)
    assert footers(reopened) == live_footers
    assert conversation(reopened) == conversation(live)


def test_switching_the_model_keeps_repainting_and_the_next_answer_names_it(tooled):
    session = tooled.journey("F9 to another model")
    terminal = session.terminal
    terminal.wait_for("ready", timeout=60)
    terminal.press("f9")
    terminal.wait_for("second-model", timeout=20)
    terminal.press("up")  # models_dir's files are listed above the embedded one
    terminal.press("enter", pause=0)
    # Type while the new model loads (slowed to SWITCH_LOAD_S): the screen must keep painting what
    # is typed. While llama.cpp loaded, fds 1 and 2 used to point at /dev/null: nothing got out.
    during_load: list[str] = []
    seen_loading = None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        screen = terminal.text()
        if "loading model" in screen:
            seen_loading = seen_loading or time.monotonic()
            during_load.append(next(line for line in chat_column(screen) if "▊ " in line and "▔" not in line))
        elif during_load:
            break
        terminal.child.send("x")
        time.sleep(0.05)
    loading_s = time.monotonic() - seen_loading if seen_loading else 0.0
    assert loading_s > SWITCH_LOAD_S / 2, f"the load was not seen for long ({loading_s:.1f} s): nothing was tried"
    typed = [line.count("x") for line in during_load]
    assert len(set(during_load)) >= 5 and typed == sorted(typed), \
        f"the screen did not keep changing while the model loaded: {during_load}"
    terminal.wait_for("Now answering with second-model", timeout=60)
    terminal.press("ctrl+u")  # clears the x's typed
    ask(terminal, "Say hello.")
    assert "second-model · local" in footer_of(answered(terminal, session.next_answer()), session.answers)
