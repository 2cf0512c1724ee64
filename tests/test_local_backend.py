"""The local backend on the real SmolLM2 GGUF, deterministic (temperature 0, fixed seed)."""

import asyncio
import contextlib
from pathlib import Path

import pytest

from engine.backends.base import SamplingParams, StreamResult
from engine.backends.local import LocalBackend, default_threads
from engine.errors import ContextOverflowError, InvalidModelError, ModelNotFoundError

PARAMS = SamplingParams(max_tokens=40, temperature=0.0, top_p=1.0, seed=42)
QUESTION = [{"role": "user", "content": "Count from one to twenty in words."}]


@pytest.fixture
async def backend():
    backend = LocalBackend(n_ctx=512)
    yield backend
    await asyncio.to_thread(backend.close)


async def collect(backend: LocalBackend, messages=QUESTION, params=PARAMS) -> tuple[list[str], StreamResult]:
    result = StreamResult()
    pieces = [piece async for piece in backend.stream(messages, params, result)]
    return pieces, result


async def test_streams_tokens(backend: LocalBackend) -> None:
    pieces, result = await collect(backend)
    assert len(pieces) > 1  # streamed in pieces, not in one block at the end
    assert result.completion_tokens >= len(pieces) - 1
    assert result.finish_reason in ("stop", "length")
    assert backend.model_name == "SmolLM2-135M-Instruct.Q4_1"
    assert backend.n_gpu_layers == 0  # this llama.cpp build has no GPU offload
    # the cores free when it decoded (engine/cpu_budget.py): fewer on a busy machine, never more
    assert 1 <= backend.n_threads <= default_threads()


async def test_temperature_zero_is_deterministic(backend: LocalBackend) -> None:
    first, _ = await collect(backend)
    second, _ = await collect(backend)
    assert "".join(first) == "".join(second)


async def test_cancelling_stops_decoding(backend: LocalBackend) -> None:
    long = SamplingParams(max_tokens=400, temperature=0.0, top_p=1.0, seed=1)
    essay = [{"role": "user", "content": "Write a very long essay about the history of Rome."}]
    result = StreamResult()
    pieces = []
    async with contextlib.aclosing(backend.stream(essay, long, result)) as stream:
        async for piece in stream:
            pieces.append(piece)
            if len(pieces) == 5:
                break
    # aclose() returns only after the worker thread stopped: at most the tokens of one batch
    # window (BATCH_S) more than were received were decoded, far from the 400 asked for
    received = len(backend._tokenize("".join(pieces), add_bos=False))
    assert result.finish_reason == "cancelled"
    assert received <= result.completion_tokens <= received + 15
    # ... and the model is free at once for the next question
    pieces, _ = await asyncio.wait_for(collect(backend), timeout=30)
    assert pieces


async def test_task_cancel_stops_decoding(backend: LocalBackend) -> None:
    long = SamplingParams(max_tokens=400, temperature=0.0, top_p=1.0, seed=1)
    result = StreamResult()
    got_first = asyncio.Event()

    async def consume() -> None:
        async for _ in backend.stream(QUESTION, long, result):
            got_first.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(got_first.wait(), 30)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert result.finish_reason == "cancelled"
    assert result.completion_tokens < 400


async def test_counts_prompt_tokens_with_the_models_template(backend: LocalBackend) -> None:
    await backend.load()
    one = await asyncio.to_thread(backend.count_tokens, QUESTION)
    two = await asyncio.to_thread(backend.count_tokens, QUESTION + QUESTION)
    assert 10 < one < two


async def test_long_conversation_fits_a_small_context(backend: LocalBackend) -> None:
    history = []
    for i in range(60):
        history.append({"role": "user", "content": f"Tell me fact number {i} about the sea, please."})
        history.append({"role": "assistant", "content": f"Fact {i}: the sea is large and salty. " * 3})
    fitted = await backend.fit("You are helpful.", history, "And one more?", max_tokens=64)
    assert fitted.prompt_tokens <= 512 - 64
    assert fitted.dropped_messages > 0
    assert fitted.messages[0]["role"] == "system" and fitted.messages[1]["role"] == "user"
    assert fitted.messages[-1] == {"role": "user", "content": "And one more?"}
    pieces, result = await collect(backend, fitted.messages, SamplingParams(64, 0.0, 1.0, 42))
    assert pieces and fitted.prompt_tokens + result.completion_tokens <= 512


async def test_too_long_question_is_shortened(backend: LocalBackend) -> None:
    question = "word " * 3000
    fitted = await backend.fit("You are helpful.", [], question, max_tokens=64)
    assert fitted.question_truncated
    assert "characters cut to fit the context window" in fitted.messages[-1]["content"]
    assert fitted.prompt_tokens <= 512 - 64


async def test_huge_system_prompt_is_a_clear_error(backend: LocalBackend) -> None:
    with pytest.raises(ContextOverflowError, match="system prompt"):
        await backend.fit("rule " * 2000, [], "hi", max_tokens=64)


# Like Mistral's: roles must alternate, a system message only first.
STRICT_TEMPLATE = (
    "{% for m in messages %}{% if m['role'] == 'system' and not loop.first %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant') }}{% endif %}"
    "[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}"
)


async def test_sources_sit_before_the_question_or_in_it_when_the_template_refuses(backend: LocalBackend) -> None:
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    history = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]
    fitted = await backend.fit("You are helpful.", history, "When?", 64, sources="Sources: [1] at nine")
    assert fitted.messages[1:] == [*history, {"role": "system", "content": "Sources: [1] at nine"},
                                   {"role": "user", "content": "When?"}]
    await backend._run(lambda: None)  # loaded: now give it a template that refuses
    backend._formatter = Jinja2ChatFormatter(STRICT_TEMPLATE, "", "")
    fitted = await backend.fit("You are helpful.", history, "When?", 64, sources="Sources: [1] at nine")
    assert fitted.messages[1:] == [*history, {"role": "user", "content": "Sources: [1] at nine\n\nWhen?"}]


async def test_sources_too_long_for_the_window_are_a_context_overflow(backend: LocalBackend) -> None:
    with pytest.raises(ContextOverflowError, match="system prompt and the sources"):
        await backend.fit("You are helpful.", [], "When?", 64, sources="source " * 2000)


async def test_bad_model_file_never_reaches_llama_cpp(bad_model: Path) -> None:
    backend = LocalBackend(bad_model)
    with pytest.raises(InvalidModelError, match="broken.gguf is not a GGUF model"):
        await backend.load()
    assert not backend.loaded


async def test_unknown_model_name(tmp_path: Path) -> None:
    backend = LocalBackend("no-such-model", models_dir=tmp_path)
    with pytest.raises(ModelNotFoundError, match="No model named 'no-such-model'"):
        await backend.load()


async def test_model_by_name_from_models_dir(tmp_path: Path, model_path: Path) -> None:
    (tmp_path / "smol.gguf").symlink_to(model_path)
    backend = LocalBackend("smol", models_dir=tmp_path, n_ctx=256)
    await backend.load()
    assert backend.model_path == tmp_path / "smol.gguf"
    await asyncio.to_thread(backend.close)


async def test_all_layers_offloaded_when_llama_cpp_reports_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """No GPU here: the one seam mocked is llama.cpp's own capability report."""
    import llama_cpp

    monkeypatch.setattr(llama_cpp, "llama_supports_gpu_offload", lambda: True)
    backend = LocalBackend(n_ctx=256)
    await backend.load()
    assert backend.n_gpu_layers == -1
    await asyncio.to_thread(backend.close)


def test_loading_never_redirects_the_process_output_and_logs_to_our_logger(tmp_path: Path) -> None:
    """llama-cpp-python's `verbose=False` used to dup2 /dev/null over fds 1 and 2 for the whole
    load, so whatever another thread printed meanwhile (an answer, the TUI) was lost."""
    import subprocess
    import sys

    script = """
import logging, os, threading, time
from engine.backends.local import LocalBackend
records = []
logging.getLogger("llama.cpp").addHandler(type("H", (logging.Handler,), {"emit": lambda s, r: records.append(r)})())
logging.getLogger("llama.cpp").setLevel(logging.DEBUG)
backend = LocalBackend(n_ctx=512)
backend.start_loading()
ticks = 0
while not backend._loading.done():  # written to fd 1 by this thread while llama.cpp loads in its own
    os.write(1, b"tick\\n"); ticks += 1; time.sleep(0.001)
backend._loading.result()
os.write(1, f"ticks={ticks} records={len(records)}\\n".encode())
backend.close()
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).parent.parent)
    assert done.returncode == 0, done.stderr
    *ticks, summary = done.stdout.splitlines()
    written = dict(part.split("=") for part in summary.split())
    assert int(written["ticks"]) > 10 and len(ticks) == int(written["ticks"])  # not one lost
    assert int(written["records"]) > 0  # llama.cpp's messages reached our logger
    assert "llama_model_loader" not in done.stderr  # and not the terminal
