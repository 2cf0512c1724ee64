"""Shared fixtures: every test gets its own ASSISTANT_HOME; the model is the real SmolLM2 GGUF."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from engine import Engine, Settings, load_settings
from engine.models import default_model_path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

# Started in the background (a CI runner, `make test &`), the shell hands us SIGINT ignored, and
# an ignored signal stays ignored in every program we start: the Ctrl-C tests would send it to
# commands that cannot hear it. Give them a terminal's Ctrl-C.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Path:
    folder = tmp_path / "home"
    monkeypatch.setenv("ASSISTANT_HOME", str(folder))
    monkeypatch.delenv("ASSISTANT_CONFIG", raising=False)
    for name in list(os.environ):
        if name.startswith("ASSISTANT_") and name not in ("ASSISTANT_HOME",):
            monkeypatch.delenv(name)
    if request.node.get_closest_marker("disk_states") is None:
        # Every local answer would write its model state (5-45 MB) to disk: time and disk that
        # only the tests of that feature need. The journeys run as a user would, with them.
        monkeypatch.setenv("ASSISTANT_STATE_CACHE_DISK_MB", "0")
    return folder


@pytest.fixture(scope="session")
def model_path() -> Path:
    return default_model_path()


@pytest.fixture
def settings() -> Settings:
    """Deterministic settings: temperature 0 and a fixed seed."""
    return load_settings().replace(temperature=0.0, seed=42, max_tokens=48)


@pytest.fixture
async def engine(settings: Settings):
    engine = Engine(settings)
    yield engine
    await engine.close()


@pytest.fixture
def bad_model(tmp_path: Path) -> Path:
    path = tmp_path / "broken.gguf"
    path.write_bytes(b"<html>404 Not Found</html>\n" * 10)
    return path


async def wait_for(condition: Callable[[], bool], timeout: float = 30.0, what: str = "") -> None:
    """Poll `condition` on the event loop until it holds (tests never sleep a fixed time)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        await asyncio.sleep(0.02)


async def events_of(engine: Engine, question: str, conversation_id: int | None = None) -> list:
    """All events of one answer."""
    async with contextlib.aclosing(engine.ask(question, conversation_id)) as events:
        return [event async for event in events]


def count_evaluated(llm) -> list[int]:
    """The sizes of the token batches llama-cpp-python hands to llama.cpp from now on."""
    sizes: list[int] = []
    evaluate = llm.eval
    llm.eval = lambda tokens: (sizes.append(len(tokens)), evaluate(tokens))[1]
    return sizes
