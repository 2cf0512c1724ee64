"""Model states on disk, on the real SmolLM2 GGUF: a conversation continued by a new model (a
restart) answers as a fresh evaluation would, evaluating only the new words; damaged, cut and
foreign files are ignored; the folder keeps to its bound."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import numpy as np
import pytest

from engine.backends import disk_states
from engine.backends.base import SamplingParams, StreamResult
from engine.backends.disk_states import DiskStates, SavedState
from engine.backends.local import LocalBackend

pytestmark = pytest.mark.disk_states  # tests/conftest.py: states stay on for these

PARAMS = SamplingParams(max_tokens=24, temperature=0.0, top_p=1.0, seed=42)
SYSTEM = {"role": "system", "content": "You are a helpful assistant."}
# A conversation long enough that evaluating it again is plain in the counts (about 400 tokens).
HISTORY = [SYSTEM]
for topic in ("rivers of Europe", "the water cycle", "how bridges carry weight", "tides and the moon"):
    HISTORY += [{"role": "user", "content": f"Tell me about {topic}."},
                {"role": "assistant", "content": f"Here is a short overview of {topic}. " * 8}]
NEXT = {"role": "user", "content": "Which of these did we talk about first?"}


def backend_for(states: Path | None, **options) -> LocalBackend:
    # Fixed threads: the plan follows the free cores, and a sum split over one thread or two can
    # round differently, so bit-equal answers are compared on equal threads (a busy machine, or
    # the other test worker, would otherwise change the plan between two evaluations).
    options.setdefault("n_threads", 2)
    return LocalBackend(n_ctx=1024, states_dir=states, state_cache_disk_mb=options.pop("mb", 512), **options)


async def answer(backend: LocalBackend, messages: list) -> tuple[str, StreamResult]:
    result = StreamResult()
    text = "".join([piece async for piece in backend.stream(messages, PARAMS, result)])
    return text, result


async def closed(backend: LocalBackend) -> None:
    await asyncio.to_thread(backend.close)


def state_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.state"))


async def keep_conversation(states: Path) -> str:
    """A first run: answer the last question of HISTORY, keep the state, exit. Returns the answer."""
    first = backend_for(states)
    text, _ = await answer(first, HISTORY[:-1])
    first.keep_state("7")
    await closed(first)  # close() waits for the state to be on disk
    return text


@pytest.fixture(scope="module")
def conversation() -> tuple[list, str]:
    """HISTORY with the model's own last answer, then NEXT; and NEXT's answer evaluated from
    nothing: what every restored state must also give."""
    async def run() -> tuple[list, str]:
        backend = backend_for(None)
        first, _ = await answer(backend, HISTORY[:-1])
        await closed(backend)
        messages = [*HISTORY[:-1], {"role": "assistant", "content": first}, NEXT]
        backend = backend_for(None)
        text, result = await answer(backend, messages)
        await closed(backend)
        assert result.prompt_tokens_evaluated > 300
        return messages, text

    return asyncio.run(run())


async def test_a_restart_continues_from_disk_with_the_same_answer(tmp_path: Path, conversation: tuple[list, str]) -> None:
    states = tmp_path / "states"
    await keep_conversation(states)
    [kept] = state_files(states)
    assert kept.stat().st_mode & 0o077 == 0  # it holds the conversation: the user's only

    second = backend_for(states)  # a new Llama: nothing in memory
    text, result = await answer(second, conversation[0])
    await closed(second)
    assert text == conversation[1]
    # Only the end of the previous answer, the new question and the template's markers
    assert result.prompt_tokens_evaluated < 40


def kv_bytes(backend: LocalBackend) -> bytes:
    from engine.backends.state_cache import snapshot

    return bytes(snapshot(backend._llm, None).data)


async def test_the_restored_state_is_the_one_kept_and_answers_as_it_would_have(tmp_path: Path) -> None:
    """A state read back is bit for bit the state the running model held: the answer after a
    restart is the one the same process would have given from memory (whatever the history's
    length; a fresh evaluation may differ from both on long histories, see docs/benchmarks.md)."""
    states = tmp_path / "states"
    first = backend_for(states)
    text, _ = await answer(first, HISTORY[:-1])
    first.keep_state("7")
    kept = await first._run(kv_bytes, first)  # after the state was taken: what went to disk
    messages = [*HISTORY[:-1], {"role": "assistant", "content": text}, NEXT]
    live, _ = await answer(first, messages)  # the same process goes on, from the state in memory
    await closed(first)

    second = backend_for(states)
    await second.load()
    assert await second._run(second._restore_sync, "7") > 300
    assert await second._run(kv_bytes, second) == kept
    restored, result = await answer(second, messages)
    await closed(second)
    assert restored == live
    assert result.prompt_tokens_evaluated < 40


async def test_opening_a_conversation_restores_it_before_the_question(tmp_path: Path, conversation: tuple[list, str]) -> None:
    states = tmp_path / "states"
    await keep_conversation(states)
    second = backend_for(states)
    await second.load()
    restored = await second._run(second._restore_sync, "7")  # what restore() runs while the user types
    assert restored > 300
    assert await second._run(second._restore_sync, "8") == 0  # no state of that conversation
    text, result = await answer(second, conversation[0])
    await closed(second)
    assert text == conversation[1]
    assert result.prompt_tokens_evaluated < 40


def damage(path: Path, how: str) -> None:
    blob = bytearray(path.read_bytes())
    if how == "corrupt":
        blob[len(blob) // 2] ^= 0xFF  # one flipped byte inside the KV cache
    elif how == "truncated":
        del blob[len(blob) // 3 :]
    elif how == "foreign":  # a valid file of another model: same name, its own fingerprint
        store = DiskStates(path.parent, 1 << 30, {"model_sha256": "another model"})
        header, offset = disk_states._header(bytes(blob))
        tokens = np.frombuffer(bytes(blob), dtype="<i4", count=header["n_tokens"], offset=offset)
        other = store.write(SavedState(tokens, b"\0" * 1000))
        assert other is not None
        blob = bytearray(other.read_bytes())
        other.unlink()
    elif how == "refused":  # our fingerprint, a right checksum, but a KV cache llama.cpp refuses
        header, offset = disk_states._header(bytes(blob))
        store = DiskStates(path.parent, 1 << 30, header["fingerprint"])
        tokens = np.frombuffer(bytes(blob), dtype="<i4", count=header["n_tokens"], offset=offset)
        state = bytes(blob[offset + 4 * len(tokens) : -32])
        path.unlink()
        store.write(SavedState(tokens, state[: len(state) // 2]))
        return
    path.write_bytes(bytes(blob))


@pytest.mark.parametrize("how", ["corrupt", "truncated", "foreign", "refused"])
async def test_a_bad_state_file_is_ignored(tmp_path: Path, conversation: tuple[list, str], how: str) -> None:
    states = tmp_path / "states"
    await keep_conversation(states)
    [kept] = state_files(states)
    damage(kept, how)

    second = backend_for(states)
    text, result = await answer(second, conversation[0])
    await closed(second)
    assert text == conversation[1]  # never a wrong answer...
    assert result.prompt_tokens_evaluated > 300  # ...the history is evaluated as if there were no state
    if how != "foreign":  # a damaged file is removed; another model's is its own business
        assert kept not in state_files(states)


async def test_other_context_settings_do_not_use_the_state(tmp_path: Path) -> None:
    states = tmp_path / "states"
    await keep_conversation(states)
    other = LocalBackend(n_ctx=2048, states_dir=states, state_cache_disk_mb=512)
    _, result = await answer(other, [*HISTORY[:-1], NEXT])
    await closed(other)
    assert result.prompt_tokens_evaluated > 300


async def test_a_longer_state_of_the_conversation_replaces_the_shorter(
        tmp_path: Path, conversation: tuple[list, str]) -> None:
    states = tmp_path / "states"
    await keep_conversation(states)
    [first] = state_files(states)
    backend = backend_for(states)
    await answer(backend, conversation[0])
    backend.keep_state("7")
    await closed(backend)
    [second] = state_files(states)
    assert second != first  # one file per conversation, the longest


async def test_nothing_is_written_unless_asked_and_zero_clears(tmp_path: Path) -> None:
    states = tmp_path / "states"
    backend = backend_for(states)
    await answer(backend, QUESTION)
    await closed(backend)
    assert state_files(states) == []  # no keep_state (incognito, log_content off): no file

    await keep_conversation(states)
    assert state_files(states)
    off = backend_for(states, mb=0)
    await off.load()
    assert state_files(states) == []  # state_cache_disk_mb = 0 clears what was kept
    await answer(off, QUESTION)
    off.keep_state("7")
    await closed(off)
    assert state_files(states) == []  # ...and writes none


QUESTION = [{"role": "user", "content": "Say hello."}]


# The folder on its own (real files, bytes of a chosen size)

def saved(tokens: list[int], size: int, tag: str | None = None) -> SavedState:
    return SavedState(np.array(tokens, dtype=np.int32), bytes(range(256)) * (size // 256), tag=tag)


def test_the_disk_bound_evicts_the_least_recently_used(tmp_path: Path) -> None:
    store = DiskStates(tmp_path, capacity_bytes=3 * 100_000, fingerprint={"model_sha256": "x"})
    a = store.write(saved([1, 2, 3], 90_000))
    b = store.write(saved([4, 5, 6], 90_000))
    past = time.time() - 100
    os.utime(a, (past, past))
    os.utime(b, (past + 1, past + 1))
    assert store.read(a) is not None  # a used now: b is the least recently used
    c = store.write(saved([7, 8, 9], 90_000))
    d = store.write(saved([10, 11], 90_000))
    assert a.exists() and c.exists() and d.exists() and not b.exists()
    assert disk_states.usage(tmp_path)[1] <= store.capacity_bytes
    assert store.write(saved([12], 400_000)) is None  # never one file over the bound
    assert disk_states.usage(tmp_path)[0] == 3


def test_longest_prefix_and_forget(tmp_path: Path) -> None:
    store = DiskStates(tmp_path, capacity_bytes=1 << 30, fingerprint={"model_sha256": "x"})
    short = store.write(saved([1, 2, 3], 1000, tag="1"))
    other = store.write(saved([1, 9, 9, 9], 1000, tag="2"))
    assert store.longest([1, 2, 3, 4]) == (short, 3)
    assert store.longest([1, 9, 9, 9, 9]) == (other, 4)
    assert store.longest([5, 6]) is None
    assert store.longest([1, 2, 3, 4], longer_than=3) is None  # the model holds as much already
    longer = store.write(saved([1, 2, 3, 4, 5], 1000, tag="1"))
    assert not short.exists() and longer.exists()  # superseded by the state that extends it
    assert store.forget("1") == 1 and not longer.exists() and other.exists()
    size = other.stat().st_size
    assert disk_states.clear(tmp_path) == (1, size)
    assert disk_states.usage(tmp_path) == (0, 0)


def test_a_file_left_half_written_is_never_read(tmp_path: Path) -> None:
    store = DiskStates(tmp_path, capacity_bytes=1 << 30, fingerprint={"model_sha256": "x"})
    path = store.write(saved([1, 2, 3], 1000))
    (tmp_path / f".{path.name}.123.1.tmp").write_bytes(path.read_bytes()[:500])  # a writer that died
    path.unlink()
    assert store.longest([1, 2, 3]) is None


def test_model_hash_is_remembered(tmp_path: Path) -> None:
    model = tmp_path / "m.gguf"
    model.write_bytes(b"weights" * 1000)
    cache = tmp_path / "hashes.json"
    assert disk_states.file_sha256(model, cache, compute=False) is None
    digest = disk_states.file_sha256(model, cache)
    assert disk_states.file_sha256(model, cache, compute=False) == digest
    assert json.loads(cache.read_text())
    model.write_bytes(b"other weights" * 1000)  # another file under the same name
    assert disk_states.file_sha256(model, cache, compute=False) is None


# Through the engine and the app: what is kept, what is not, and the TUI's reopening

def kept_tags(home: Path) -> list[str | None]:
    tags = []
    for path in state_files(home / "states"):
        header, _ = disk_states._header(path.read_bytes()[: 1 << 16])
        tags.append(header["tag"])
    return tags


async def test_the_engine_keeps_a_state_per_conversation_and_forgets_deleted_ones(settings, home: Path) -> None:
    from engine import Engine
    from tests.conftest import events_of

    async with Engine(settings) as engine:
        first = (await events_of(engine, "Tell me about cats."))[-1]
        second = (await events_of(engine, "Tell me about dogs."))[-1]
    assert sorted(kept_tags(home)) == sorted([str(first.conversation_id), str(second.conversation_id)])
    async with Engine(settings) as engine:
        await engine.history.delete_conversation(first.conversation_id)
        assert kept_tags(home) == [str(second.conversation_id)]
        await engine.history.set_incognito(second.conversation_id, True)  # a state holds the text
        assert kept_tags(home) == []


@pytest.mark.parametrize("private", ["incognito", "log_content_off"])
async def test_incognito_and_unlogged_conversations_write_no_state(settings, home: Path, private: str) -> None:
    import contextlib

    from engine import Engine, Finished

    if private == "log_content_off":
        settings = settings.replace(log_content=False)
    async with Engine(settings) as engine:
        async with contextlib.aclosing(engine.ask("Tell me about cats.", incognito=private == "incognito")) as events:
            assert isinstance([e async for e in events][-1], Finished)
    assert state_files(home / "states") == []


async def test_a_disk_bound_of_zero_set_by_the_environment_writes_no_state(
        home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What tests/conftest.py sets for every other test module: answers there write no state."""
    from engine import Engine, load_settings
    from tests.conftest import events_of

    monkeypatch.setenv("ASSISTANT_STATE_CACHE_DISK_MB", "0")
    settings = load_settings().replace(temperature=0.0, seed=42, max_tokens=8)
    assert settings.state_cache_disk_mb == 0
    async with Engine(settings) as engine:
        await events_of(engine, "Tell me about cats.")
    assert state_files(home / "states") == []


async def test_reopening_from_the_sidebar_restores_the_state_before_the_question(settings, home: Path) -> None:
    from app.tui import AssistantApp
    from app.widgets.conversation_list import ConversationItem, ConversationList
    from engine import Engine
    from tests.conftest import events_of, wait_for

    async with Engine(settings) as engine:
        done = (await events_of(engine, "Tell me about cats."))[-1]
    [kept] = state_files(home / "states")

    app = AssistantApp(Engine(settings))  # a restart: a new process would hold nothing more
    async with app.run_test(size=(120, 40)) as pilot:
        screen = app.screen
        await wait_for(lambda: screen.status.state == "ready", what="model loaded")
        backend = app.engine.router.backends["local"]
        assert backend._llm.n_tokens == 0
        sidebar = screen.query_one(ConversationList)
        await wait_for(lambda: len(sidebar.query(ConversationItem)) == 1, what="sidebar filled")
        sidebar.focus()
        await pilot.press("enter")
        await wait_for(lambda: screen.conversation_id == done.conversation_id, what="conversation opened")
        # while the user types, the model already holds the conversation
        header, _ = disk_states._header(kept.read_bytes()[: 1 << 16])
        await wait_for(lambda: backend._llm.n_tokens >= header["n_tokens"], what="state restored")
    await app.engine.close()


def cli_ask(home: Path, *args: str) -> str:
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "app", "ask", "--no-stats", "--no-cache", "-t", "0", "--seed", "42",
                           "--max-tokens", "24", "--system", LONG_SYSTEM, *args],
                          env={**os.environ, "ASSISTANT_HOME": str(home)}, capture_output=True, text=True,
                          timeout=240, cwd=Path(__file__).parent.parent)
    assert done.returncode == 0, done.stderr
    return done.stdout


LONG_SYSTEM = "You are a careful assistant. " + " ".join(
    f"Rule {n}: answer briefly, stay on the topic of the question, and say when you do not know." for n in range(25))


async def evaluated_tokens(home: Path, monkeypatch: pytest.MonkeyPatch, settings) -> int:
    """The prompt tokens llama.cpp evaluated for the last answer in `home` (its trace)."""
    from engine import Engine

    monkeypatch.setenv("ASSISTANT_HOME", str(home))
    async with Engine(settings) as engine:
        [conversation] = await engine.history.conversations()
        rows = await engine.history.messages(conversation["id"])
        _, spans = await engine.history.trace(rows[-1]["response_id"])
    [span] = [s for s in spans if s["name"] == "prompt evaluation"]
    return json.loads(span["attrs"])["tokens"] if isinstance(span["attrs"], str) else span["attrs"]["tokens"]


async def test_ask_c_in_a_new_process_continues_from_disk_with_the_fresh_answer(
        tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch, settings) -> None:
    import shutil

    cli_ask(home, "Tell me about rivers.")
    assert len(state_files(home / "states")) == 1  # written before the process ended
    fresh = tmp_path / "fresh"
    shutil.copytree(home, fresh, ignore=shutil.ignore_patterns("*.state"))

    continued = cli_ask(home, "-c", "1", "Which is the longest?")
    evaluated = cli_ask(fresh, "-c", "1", "Which is the longest?")
    assert continued == evaluated and continued.strip()
    assert await evaluated_tokens(home, monkeypatch, settings) < 40
    assert await evaluated_tokens(fresh, monkeypatch, settings) > 300


def test_the_llama_cpp_build_is_told_apart_by_its_libraries_files(tmp_path: Path, monkeypatch) -> None:
    """A reinstall (another build: CPU, CUDA) writes new library files: states from the old build
    are then keyed apart, without reading the libraries' bytes on every load."""
    import os
    import types

    from engine.backends import state_cache

    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "libllama.so").write_bytes(b"x" * 100)
    monkeypatch.setattr(state_cache, "llama_cpp", types.SimpleNamespace(__file__=str(tmp_path / "__init__.py"),
                                                                         __version__="0.3.36"))
    build = state_cache.llama_build.__wrapped__
    before = build()
    assert before.startswith("0.3.36+") and build() == before
    (lib / "libllama.so").write_bytes(b"y" * 101)  # another build, another size
    resized = build()
    assert resized != before
    os.utime(lib / "libllama.so", ns=(1, 1))  # the same size, written at another time
    assert build() not in (before, resized)
