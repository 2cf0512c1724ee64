"""Remote backends and the router, against real HTTP servers on 127.0.0.1 (tests/openai_server.py
fakes the faults; one test uses llama-cpp-python's own OpenAI-compatible server)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from pathlib import Path

import pytest

from engine import Engine, Failed, Finished, Started, load_settings
from engine.errors import ConfigError, NoBackendError
from engine.prices import table_version
from tests.conftest import events_of
from tests.openai_server import FakeOpenAI

KEY = "sk-test-7f3a9c1e5b2d4a6f8e0c"


@pytest.fixture
def server():
    with FakeOpenAI() as fake:
        yield fake


def configure(home: Path, body: str, **top: object) -> None:
    home.mkdir(parents=True, exist_ok=True)
    lines = [f"{k} = {json.dumps(v)}" for k, v in top.items()]
    (home / "config.toml").write_text("\n".join(lines) + "\n" + body)


def toml_value(value: object) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + " }"
    return json.dumps(value)


def provider(url: str, name: str = "fake", **extra: object) -> str:
    fields = {"base_url": url, "model": "fake-model", "read_timeout_s": 3.0, "backoff_s": 0.05, **extra}
    return f"[providers.{name}]\n" + "".join(f"{k} = {toml_value(v)}\n" for k, v in fields.items())


def make_engine(**changes: object) -> Engine:
    """Deterministic, and without the response cache: every question here must be routed."""
    return Engine(load_settings().replace(temperature=0.0, seed=42, max_tokens=24, cache=False, **changes))


def rows(home: Path, sql: str) -> list[sqlite3.Row]:
    conn = sqlite3.connect(home / "assistant.db")
    conn.row_factory = sqlite3.Row
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


async def ask(engine: Engine, question: str = "Say hello.", conversation_id: int | None = None) -> list:
    return await events_of(engine, question, conversation_id)


def finished(events: list) -> Finished:
    assert isinstance(events[-1], Finished), events[-1]
    return events[-1]


def started(events: list) -> Started:
    return next(e for e in events if isinstance(e, Started))


# streaming, cost, where it went -------------------------------------------------------------------


async def test_streams_from_a_healthy_server_and_records_where_it_went(home: Path, server: FakeOpenAI) -> None:
    configure(home, provider(server.url, api_key_env="FAKE_KEY")
              + '[prices."fake-model"]\ninput_per_mtok = 1.0\noutput_per_mtok = 2.0\nsince = "2025-01-01"\n',
              backends=["fake"], allow_cloud=True)
    import os
    os.environ["FAKE_KEY"] = KEY
    try:
        engine = make_engine()
        events = await ask(engine)
    finally:
        del os.environ["FAKE_KEY"]
    await engine.close()
    first = started(events)
    assert (first.backend, first.model, first.remote) == ("fake", "fake-model", True)
    assert first.endpoint == server.url.removesuffix("/v1")
    assert [e.text for e in events if hasattr(e, "text") and not isinstance(e, Finished)] == server.words
    done = finished(events)
    assert done.text == "".join(server.words)
    request = server.requests[0]
    assert request["headers"]["Authorization"] == f"Bearer {KEY}"
    assert request["body"]["stream"] is True and request["body"]["model"] == "fake-model"
    row = rows(home, "SELECT * FROM responses")[0]
    assert (row["backend"], row["model"], row["remote"], row["status"]) == ("fake", "fake-model", 1, "ok")
    assert row["endpoint"] == first.endpoint
    assert row["output_tokens"] == len(server.words)
    prompt_chars = sum(len(m["content"]) for m in request["body"]["messages"])
    assert row["input_tokens"] == prompt_chars // 4 + 7  # the server's own count, from the stream
    expected = (row["input_tokens"] * 1.0 + row["output_tokens"] * 2.0) / 1e6
    assert row["cost"] == pytest.approx(expected) and done.cost_usd == pytest.approx(expected)


async def test_an_unknown_price_is_said_and_counted_as_zero(home: Path, server: FakeOpenAI) -> None:
    configure(home, provider(server.url), backends=["fake"], allow_cloud=True)
    engine = make_engine()
    events = await ask(engine)
    await engine.close()
    assert any('[prices."fake-model"]' in note for note in started(events).notices)
    assert finished(events).cost_usd is None and rows(home, "SELECT cost FROM responses")[0]["cost"] == 0


async def test_cloud_stays_off_until_allowed(home: Path, server: FakeOpenAI) -> None:
    configure(home, provider(server.url), backends=["fake", "local"])
    engine = make_engine()
    events = await ask(engine)
    assert started(events).backend == "local" and not started(events).remote
    assert "cloud is off" in dict(started(events).passed_over)["fake"]
    assert server.requests == []
    await engine.close()
    # Only the remote backend in the route: a clear refusal, nothing sent.
    engine = make_engine(backends=("fake",))
    events = await ask(engine)
    await engine.close()
    assert isinstance(events[-1], Failed) and "cloud is off" in str(events[-1].error)
    assert server.requests == []


def test_an_api_key_in_the_config_file_is_refused_without_echoing_it(home: Path) -> None:
    configure(home, provider("http://127.0.0.1:9/v1", api_key=KEY))
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert "api_key_env" in str(caught.value) and KEY not in str(caught.value)


# faults --------------------------------------------------------------------------------------------


async def test_500_then_recovery_is_retried(home: Path, server: FakeOpenAI) -> None:
    server.then("500", "503")
    configure(home, provider(server.url, max_retries=2), backends=["fake"], allow_cloud=True)
    engine = make_engine()
    events = await ask(engine)
    await engine.close()
    assert finished(events).text == "".join(server.words)
    assert len(server.requests) == 3


async def test_429_honours_retry_after(home: Path, server: FakeOpenAI) -> None:
    server.retry_after = "0.4"
    server.then("429")
    configure(home, provider(server.url), backends=["fake"], allow_cloud=True)
    engine = make_engine()
    events = await ask(engine)
    finished(events)
    assert server.requests[1]["at"] - server.requests[0]["at"] >= 0.4
    # A Retry-After longer than max_retry_wait_s is not waited for: the next backend answers.
    server.retry_after = "120"
    server.then("429")
    configure(home, provider(server.url, max_retry_wait_s=5.0), backends=["fake", "local"], allow_cloud=True)
    engine2 = make_engine()
    began = time.monotonic()
    events = await ask(engine2)
    assert started(events).backend == "local" and time.monotonic() - began < 30
    assert "HTTP 429" in dict(started(events).passed_over)["fake"]
    await engine.close()
    await engine2.close()


async def test_a_server_that_times_out_falls_back_before_the_first_token(home: Path, server: FakeOpenAI) -> None:
    server.default = "hang"
    configure(home, provider(server.url, read_timeout_s=0.5), backends=["fake", "local"], allow_cloud=True)
    engine = make_engine()
    events = await ask(engine)
    await engine.close()
    assert started(events).backend == "local"
    assert "sent nothing for 0.5 s" in dict(started(events).passed_over)["fake"]
    finished(events)
    row = rows(home, "SELECT * FROM responses")[0]
    assert row["backend"] == "local" and row["remote"] == 0
    assert json.loads(row["route"])[0][0] == "fake"


async def test_slow_first_byte_is_waited_for_within_the_read_timeout(home: Path, server: FakeOpenAI) -> None:
    server.first_byte_delay_s = 0.8
    server.default = "slow"
    configure(home, provider(server.url, read_timeout_s=3.0), backends=["fake", "local"], allow_cloud=True)
    engine = make_engine()
    events = await ask(engine)
    await engine.close()
    assert started(events).backend == "fake"
    assert finished(events).timings.ttft_ms >= 800


@pytest.mark.parametrize("fault", ["drop", "garbage"])
async def test_no_fallback_after_the_first_token(home: Path, server: FakeOpenAI, fault: str) -> None:
    server.default = fault
    configure(home, provider(server.url), backends=["fake", "local"], allow_cloud=True)
    engine = make_engine()
    events = await ask(engine)
    await engine.close()
    assert started(events).backend == "fake"
    failed = events[-1]
    assert isinstance(failed, Failed)
    assert failed.partial_text.startswith("Hello")
    message = str(failed.error)
    assert ("dropped the connection mid-answer" in message) if fault == "drop" else ("not a chat completion" in message)
    assert len(server.requests) == 1  # never retried once text had arrived
    row = rows(home, "SELECT * FROM responses")[0]
    assert (row["status"], row["backend"]) == ("error", "fake")
    partial = rows(home, "SELECT * FROM messages WHERE role = 'assistant'")[0]
    assert partial["status"] == "partial" and partial["content"] == failed.partial_text


async def test_a_server_that_does_not_stream_events_falls_back(home: Path, server: FakeOpenAI) -> None:
    server.default = "json"
    configure(home, provider(server.url), backends=["fake", "local"], allow_cloud=True)
    engine = make_engine()
    events = await ask(engine)
    await engine.close()
    assert started(events).backend == "local"
    assert "stream of events" in dict(started(events).passed_over)["fake"]


async def test_missing_local_model_falls_back_to_the_remote(home: Path, server: FakeOpenAI, tmp_path: Path) -> None:
    configure(home, provider(server.url), backends=["local", "fake"], allow_cloud=True,
              model=str(tmp_path / "gone.gguf"))
    engine = make_engine()
    events = await ask(engine)
    await engine.close()
    assert started(events).backend == "fake"
    assert "gone.gguf" in dict(started(events).passed_over)["local"]
    finished(events)


async def test_slow_local_first_token_falls_back(home: Path, server: FakeOpenAI) -> None:
    configure(home, provider(server.url), backends=["local", "fake"], allow_cloud=True,
              first_token_deadline_s=0.001)
    engine = make_engine()
    await engine.load_model()  # the deadline is about the first token, not the load
    events = await ask(engine)
    assert started(events).backend == "fake"
    assert "no first token within" in dict(started(events).passed_over)["local"]
    # The local model is free again for the next question.
    configure(home, provider(server.url), backends=["local"], allow_cloud=True)
    await engine.close()


async def test_fallback_rules_are_declarative(home: Path, server: FakeOpenAI) -> None:
    server.default = "500"
    configure(home, provider(server.url, max_retries=0), backends=["fake", "local"], allow_cloud=True,
              fallback_on=["model_missing"])
    engine = make_engine()
    events = await ask(engine)
    await engine.close()
    assert isinstance(events[-1], Failed) and "HTTP 500" in str(events[-1].error)
    assert not any(isinstance(e, Started) for e in events)


async def test_every_backend_failing_lists_each_reason(home: Path, server: FakeOpenAI, tmp_path: Path) -> None:
    server.default = "500"
    configure(home, provider(server.url, max_retries=0), backends=["fake", "local"], allow_cloud=True,
              model=str(tmp_path / "gone.gguf"))
    engine = make_engine()
    events = await ask(engine)
    await engine.close()
    error = events[-1].error
    assert isinstance(error, NoBackendError)
    assert [name for name, _ in error.attempts] == ["fake", "local"]
    assert "HTTP 500" in str(error) and "gone.gguf" in str(error)


# circuit breaker, rate limit -----------------------------------------------------------------------


async def test_breaker_opens_and_recovers(home: Path, server: FakeOpenAI) -> None:
    server.default = "500"
    configure(home, provider(server.url, max_retries=0), backends=["fake", "local"], allow_cloud=True,
              breaker_failures=2, breaker_cooldown_s=600)
    engine = make_engine()
    for _ in range(2):
        assert started(await ask(engine)).backend == "local"
    assert len(server.requests) == 2
    health = rows(home, "SELECT * FROM backend_health WHERE name = 'fake'")[0]
    assert health["state"] == "open" and health["failures"] == 2 and "HTTP 500" in health["last_error"]
    assert engine.router.breaker_state("fake") == "open"
    events = await ask(engine)  # open: refused at once, nothing sent
    assert "circuit breaker open" in dict(started(events).passed_over)["fake"]
    assert len(server.requests) == 2
    server.default = "ok"
    engine.router.breakers["fake"].current.opened_at -= 600  # the cool-down has passed
    assert engine.router.breaker_state("fake") == "half_open"
    events = await ask(engine)  # half-open: one trial, which succeeds and closes it
    assert started(events).backend == "fake"
    assert engine.router.breaker_state("fake") == "closed"
    assert rows(home, "SELECT state FROM backend_health WHERE name = 'fake'")[0]["state"] == "closed"
    await engine.close()


async def test_breaker_state_survives_a_restart(home: Path, server: FakeOpenAI) -> None:
    server.default = "500"
    configure(home, provider(server.url, max_retries=0), backends=["fake", "local"], allow_cloud=True,
              breaker_failures=1, breaker_cooldown_s=60)
    engine = make_engine()
    await ask(engine)
    await engine.close()
    engine = make_engine()  # a new process would see the same
    events = await ask(engine)
    assert "circuit breaker open" in dict(started(events).passed_over)["fake"]
    assert len(server.requests) == 1
    await engine.close()


async def test_client_side_rate_limit(home: Path, server: FakeOpenAI) -> None:
    configure(home, provider(server.url, requests_per_minute=300), backends=["fake"], allow_cloud=True)
    engine = make_engine()
    for _ in range(3):
        finished(await ask(engine))
    await engine.close()
    times = [r["at"] for r in server.requests]
    # 300/min: one per 0.2 s (the first request also opened the connection: it arrived later).
    assert times[2] - times[1] >= 0.18 and times[2] - times[0] >= 0.34


# budgets and privacy ------------------------------------------------------------------------------


async def test_budget_warns_then_refuses_and_stays_local(home: Path, server: FakeOpenAI) -> None:
    # 1 USD per answer token: each answer of 6 tokens costs 6 USD (and a little for the prompt).
    configure(home, provider(server.url)
              + '[prices."fake-model"]\ninput_per_mtok = 0.0\noutput_per_mtok = 1000000.0\n',
              backends=["fake", "local"], allow_cloud=True, budget_daily_usd=7.0)
    engine = make_engine()
    first = await ask(engine)
    assert started(first).backend == "fake" and not started(first).notices
    second = await ask(engine)  # 6 of 7 USD spent: a warning, still allowed
    assert started(second).backend == "fake"
    assert any("86% of the day's cloud budget" in n for n in started(second).notices)
    third = await ask(engine)  # 12 of 7 USD: refused, answered locally
    assert started(third).backend == "local"
    assert "day's cloud budget of 7.00 USD is spent" in dict(started(third).passed_over)["fake"]
    assert len(server.requests) == 2
    await engine.close()


async def test_private_folder_never_goes_to_an_untrusted_backend(home: Path, server: FakeOpenAI,
                                                                 tmp_path: Path) -> None:
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "salary.md").write_text("# Salary\n\nMy salary negotiation target is 93,500 euros.\n")
    configure(home, provider(server.url) + provider(server.url, name="homelab", trusted=True),
              backends=["fake", "local"], allow_cloud=True)
    engine = make_engine()
    knowledge = await engine.knowledge()
    await asyncio.to_thread(knowledge.index, notes)
    await asyncio.to_thread(knowledge.set_private, notes, True)
    events = await ask(engine, "What is my salary negotiation target?")
    first = started(events)
    assert first.passages and first.passages[0].private
    assert first.backend == "local" and "private folder" in dict(first.passed_over)["fake"]
    assert server.requests == []
    # Later questions in that conversation carry the private answer in their history.
    events = await ask(engine, "Say hello.", first.conversation_id)
    assert started(events).backend == "local" and server.requests == []
    # A trusted server on the user's own network may take it.
    events = await events_of_backend(engine, "What is my salary negotiation target?", "homelab")
    assert started(events).backend == "homelab" and len(server.requests) == 1
    assert "93,500" in json.dumps(server.requests[0]["body"]["messages"])
    # Marked public again, the cloud may see it.
    await asyncio.to_thread(knowledge.set_private, notes, False)
    events = await ask(engine, "What is my salary negotiation target?")
    assert started(events).backend == "fake"
    await engine.close()


async def events_of_backend(engine: Engine, question: str, backend: str) -> list:
    return [e async for e in engine.ask(question, backend=backend)]


# secrets ------------------------------------------------------------------------------------------


async def test_api_key_reaches_no_log_row_column_or_error(home: Path, server: FakeOpenAI,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The fake server echoes the Authorization header in its 500 errors, like careless servers do."""
    import subprocess
    import sys

    monkeypatch.setenv("FAKE_KEY", KEY)
    server.default = "500"
    configure(home, provider(server.url, api_key_env="FAKE_KEY", max_retries=1),
              backends=["fake"], allow_cloud=True)
    engine = make_engine()
    events = await ask(engine)
    await engine.close()
    assert isinstance(events[-1], Failed)
    assert "HTTP 500" in str(events[-1].error) and KEY not in str(events[-1].error)
    assert "[redacted]" in str(events[-1].error)
    assert server.requests[0]["headers"]["Authorization"] == f"Bearer {KEY}"  # it was sent, to the server
    # The CLI too: its stderr and its log file.
    done = subprocess.run([sys.executable, "-m", "app", "ask", "--max-tokens", "8", "Hi"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode != 0 and "HTTP 500" in done.stderr and KEY not in done.stderr + done.stdout
    artifacts = [p for p in home.rglob("*") if p.is_file()]
    assert any(p.suffix == ".log" for p in artifacts) and any(p.name == "assistant.db" for p in artifacts)
    for path in artifacts:
        assert KEY.encode() not in path.read_bytes(), path
    dump = "\n".join(sqlite3.connect(home / "assistant.db").iterdump())
    assert "HTTP 500" in dump and KEY not in dump


async def test_key_from_the_os_keyring(home: Path, server: FakeOpenAI) -> None:
    import keyring
    from keyring.backend import KeyringBackend

    class MemoryKeyring(KeyringBackend):  # the OS keyring cannot run here: the narrowest seam
        priority = 1
        store = {("assistant-test", "fake"): KEY}

        def get_password(self, service, username):
            return self.store.get((service, username))

        def set_password(self, service, username, password):
            self.store[(service, username)] = password

        def delete_password(self, service, username):
            self.store.pop((service, username), None)

    previous = keyring.get_keyring()
    keyring.set_keyring(MemoryKeyring())
    try:
        configure(home, provider(server.url, api_key_keyring="assistant-test"), backends=["fake"],
                  allow_cloud=True)
        engine = make_engine()
        finished(await ask(engine))
        await engine.close()
    finally:
        keyring.set_keyring(previous)
    assert server.requests[0]["headers"]["Authorization"] == f"Bearer {KEY}"


async def test_missing_key_is_a_clear_error(home: Path, server: FakeOpenAI) -> None:
    configure(home, provider(server.url, api_key_env="NOT_SET_ANYWHERE"), backends=["fake"], allow_cloud=True)
    engine = make_engine()
    events = await ask(engine)
    await engine.close()
    assert "NOT_SET_ANYWHERE is not set" in str(events[-1].error)
    assert server.requests == []


# per-conversation backend, and a real peer server ----------------------------------------------------


async def test_a_conversation_switches_backend_and_each_answer_says_who_wrote_it(home: Path,
                                                                                 server: FakeOpenAI) -> None:
    configure(home, provider(server.url), backends=["local", "fake"], allow_cloud=True)
    engine = make_engine()
    events = await ask(engine)
    assert started(events).backend == "local"
    conversation = started(events).conversation_id
    events = [e async for e in engine.ask("And now?", conversation, backend="fake")]
    assert started(events).backend == "fake"
    events = await ask(engine, "Still you?", conversation)  # the choice sticks to the conversation
    assert started(events).backend == "fake"
    answers = [m for m in await engine.history.messages(conversation) if m["role"] == "assistant"]
    assert [(m["backend"], m["remote"]) for m in answers] == [("local", 0), ("fake", 1), ("fake", 1)]
    with pytest.raises(ConfigError, match="no backend named"):
        await anext(engine.ask("?", conversation, backend="nope"))
    await engine.close()


async def test_against_llama_cpp_server(home: Path, model_path: Path, tmp_path: Path) -> None:
    """llama-cpp-python's own OpenAI-compatible server, on SmolLM2: a real peer implementation."""
    import socket
    import subprocess
    import sys

    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = (tmp_path / "server.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", str(model_path),
                             "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048",
                             "--model_alias", "smollm2"], stdout=log, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}/v1"
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(url + "/models", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline and proc.poll() is None, (tmp_path / "server.log").read_text()
            await asyncio.sleep(0.2)
        configure(home, provider(url, name="llamacpp", trusted=True, read_timeout_s=30.0) .replace(
            'model = "fake-model"', 'model = "smollm2"'), backends=["llamacpp"], allow_cloud=True)
        engine = make_engine()
        events = await ask(engine, "What is the capital of France?")
        await engine.close()
        done = finished(events)
        assert len([e for e in events if not isinstance(e, (Started, Finished))]) > 1  # it streamed
        assert done.text.strip() and done.usage.completion_tokens > 0
        row = rows(home, "SELECT * FROM responses")[0]
        assert row["backend"] == "llamacpp" and row["input_tokens"] > 10 and row["cost"] == 0.0
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_cli_shows_where_an_answer_went_and_the_breakers(home: Path, server: FakeOpenAI) -> None:
    import subprocess
    import sys

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "app", *args], capture_output=True, text=True, timeout=120)

    configure(home, provider(server.url, max_retries=0), backends=["local", "fake"], allow_cloud=True,
              breaker_failures=1, breaker_cooldown_s=600)
    done = run("ask", "--backend", "fake", "--max-tokens", "8", "Hi")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "".join(server.words[:8])
    assert f"Sent to fake (fake-model) at {server.url.removesuffix('/v1')}" in done.stderr
    server.default = "500"
    done = run("ask", "--backend", "fake", "--max-tokens", "8", "Hi again")
    assert done.returncode == 0 and "Note: fake: fake answered HTTP 500" in done.stderr  # local took over
    report = json.loads(run("backends", "--json", "--check").stdout)
    fake = next(b for b in report["backends"] if b["name"] == "fake")
    assert fake["breaker"] == "open" and fake["kind"] == "cloud" and fake["route"] == 2
    assert fake["health"] == "ok: the server lists fake-model"
    assert report["allow_cloud"] is True and report["price_table"] == table_version()
    doctor = run("doctor").stdout
    assert "open, 1 failures in a row" in doctor and "cloud: fake-model at http://127.0.0.1" in doctor
    assert run("backends", "--check").returncode == 0
    assert run("ask", "--backend", "nope", "Hi").returncode == 2


@pytest.mark.parametrize("case", ["load_failed", "out_of_memory"])
async def test_a_local_model_that_cannot_load_falls_back(home: Path, server: FakeOpenAI, bad_model: Path,
                                                         case: str) -> None:
    local = {"model": str(bad_model)} if case == "load_failed" else {"n_ctx": 50_000_000, "auto_fit": False}  # ~1 TB of KV cache
    configure(home, provider(server.url), backends=["local", "fake"], allow_cloud=True, **local)
    engine = make_engine()
    events = await ask(engine)
    await engine.close()
    assert started(events).backend == "fake"
    reason = dict(started(events).passed_over)["local"]
    assert ("not a GGUF file" in reason or "broken.gguf" in reason) if case == "load_failed" else "Not enough memory" in reason
    finished(events)


async def test_a_conversation_too_long_for_the_local_window_goes_where_it_fits(home: Path, server: FakeOpenAI) -> None:
    configure(home, provider(server.url, context_window=100_000), backends=["local", "fake"], allow_cloud=True,
              n_ctx=512, max_tokens=24)
    engine = make_engine()
    long_question = "Please summarise this log: " + "disk write ok; " * 400
    events = await ask(engine, long_question)
    assert started(events).backend == "fake" and not started(events).question_truncated
    assert "does not fit its context window" in dict(started(events).passed_over)["local"]
    assert long_question in json.dumps(server.requests[0]["body"]["messages"])
    # With nowhere better to go, the local model answers the shortened question instead of failing.
    server.default = "500"
    configure(home, provider(server.url, max_retries=0), backends=["local", "fake"], allow_cloud=True, n_ctx=512,
              max_tokens=24)
    engine2 = make_engine()
    events = await ask(engine2, long_question)
    assert started(events).backend == "local" and started(events).question_truncated
    finished(events)
    await engine.close()
    await engine2.close()


async def test_connection_refused_is_retried_then_falls_back(home: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}/v1"  # nothing listens there once closed
    configure(home, provider(url, max_retries=2, headers={"X-Title": "assistant"}), backends=["fake", "local"],
              allow_cloud=True)
    engine = make_engine()
    events = await ask(engine)
    await engine.close()
    assert started(events).backend == "local"
    assert "Cannot connect to fake" in dict(started(events).passed_over)["fake"]


async def test_extra_headers_are_sent(home: Path, server: FakeOpenAI) -> None:
    configure(home, provider(server.url, headers={"X-Title": "assistant", "HTTP-Referer": "https://example.org"}),
              backends=["fake"], allow_cloud=True)
    engine = make_engine()
    finished(await ask(engine))
    await engine.close()
    headers = server.requests[0]["headers"]
    assert headers["X-Title"] == "assistant" and headers["HTTP-Referer"] == "https://example.org"


async def test_secrets_and_personal_data_are_hidden_from_a_cloud_backend(home: Path, server: FakeOpenAI) -> None:
    configure(home, provider(server.url) + provider(server.url, name="homelab", trusted=True),
              backends=["fake"], allow_cloud=True)
    engine = make_engine()
    planted = ("Why does this fail? key=sk-live-4f9a8b7c6d5e4f3a2b1c0d9e, mail me at ana.lopez@example.org, "
               "card 4111 1111 1111 1111, order 1234 5678 9012 3456.")
    events = await ask(engine, planted)
    sent = json.dumps(server.requests[0]["body"]["messages"])
    for secret in ("sk-live-4f9a8b7c6d5e4f3a2b1c0d9e", "ana.lopez@example.org", "4111 1111 1111 1111"):
        assert secret not in sent
    assert "[redacted API key]" in sent and "[redacted email address]" in sent and "[redacted card number]" in sent
    assert "1234 5678 9012 3456" in sent  # not a card number (fails the Luhn check)
    note = next(n for n in started(events).notices if n.startswith("Hidden before sending"))
    assert "1 API key" in note and "1 email address" in note and "1 card number" in note
    # A trusted server on the user's own network gets the text as written.
    events = [e async for e in engine.ask(planted, backend="homelab")]
    assert "ana.lopez@example.org" in json.dumps(server.requests[1]["body"]["messages"])
    await engine.close()
    # The question itself is stored as the user wrote it, on this machine.
    assert rows(home, "SELECT content FROM messages WHERE role = 'user'")[0]["content"] == planted


@pytest.mark.parametrize("words, reason", [
    (["Your", " key", " is", " sk-test-AAAABBBBCCCCDDDDEEEE"], "guardrail"),
    (["I'm sorry,", " but I can't", " help with that."], "refusal"),
    (["Paris", " is the capital."], None),
])
async def test_flagged_answers_go_to_review(home: Path, words: list[str], reason: str | None) -> None:
    with FakeOpenAI(words=words) as server:
        configure(home, provider(server.url), backends=["fake"], allow_cloud=True)
        engine = make_engine()
        done = finished(await ask(engine))
        await engine.close()
    assert done.text == "".join(words)  # flagged, not rejected: the answer stands
    queued = rows(home, "SELECT * FROM reviews")
    assert [(r["response_id"], r["reason"]) for r in queued] == ([(done.response_id, reason)] if reason else [])


# hostile servers (issue 18): every read is bounded in time and size ---------------------------------

HOSTILE_READ_LIMIT = 16 << 20  # bytes a server may get to send before the client stops reading
# (the answer's bounds are far smaller; the rest is what the loopback socket buffers hold)


async def test_keepalive_comments_do_not_outlast_the_total_timeout(home: Path, server: FakeOpenAI) -> None:
    """SSE comments every 0.2 s reset the read timeout forever; total_timeout_s ends them and the
    next backend answers."""
    server.default = "keepalive"
    configure(home, provider(server.url, read_timeout_s=1.0, total_timeout_s=2.0, max_retries=0),
              backends=["fake", "local"], allow_cloud=True)
    engine = make_engine()
    await engine.load_model()  # the time measured is the remote's, not the local model's load
    began = time.monotonic()
    events = await ask(engine)
    elapsed = time.monotonic() - began
    await engine.close()
    assert started(events).backend == "local" and finished(events).text
    assert "did not finish within total_timeout_s=2" in dict(started(events).passed_over)["fake"]
    assert elapsed < 2.0 + 20  # 2 s of the remote, then a short local answer
    assert server.sent[0] < 4096  # a few comment lines, not 90 s of them


async def test_an_endless_error_body_is_not_read_whole(home: Path, server: FakeOpenAI) -> None:
    server.default = "endless_500"
    configure(home, provider(server.url, max_retries=0, total_timeout_s=30.0), backends=["fake"],
              allow_cloud=True)
    engine = make_engine()
    began = time.monotonic()
    events = await ask(engine)
    await engine.close()
    assert time.monotonic() - began < 10
    error = str(events[-1].error)
    assert isinstance(events[-1], Failed) and "HTTP 500" in error and len(error) < 2500
    assert server.sent[0] < HOSTILE_READ_LIMIT


async def test_a_data_line_that_never_ends_is_refused(home: Path, server: FakeOpenAI) -> None:
    server.default = "endless_line"
    configure(home, provider(server.url, max_retries=0, total_timeout_s=30.0), backends=["fake", "local"],
              allow_cloud=True)
    engine = make_engine()
    events = await ask(engine)
    await engine.close()
    assert started(events).backend == "local"
    assert "streamed a line longer than 1 MiB" in dict(started(events).passed_over)["fake"]
    assert server.sent[0] < HOSTILE_READ_LIMIT


async def test_an_answer_far_past_max_tokens_is_cut(home: Path, server: FakeOpenAI) -> None:
    server.default = "huge"  # 50 MB whatever max_tokens says
    configure(home, provider(server.url, total_timeout_s=60.0), backends=["fake"], allow_cloud=True)
    engine = Engine(load_settings().replace(temperature=0.0, seed=42, max_tokens=30, cache=False))
    events = await ask(engine)
    await engine.close()
    done = finished(events)
    assert 0 < len(done.text) <= 4096  # max(4096, 16 characters a token)
    stored = rows(home, "SELECT content FROM messages WHERE role = 'assistant'")[0]["content"]
    assert stored == done.text
    assert rows(home, "SELECT output_tokens FROM responses")[0]["output_tokens"] <= 30
    assert server.sent[0] < HOSTILE_READ_LIMIT
    assert (home / "assistant.db").stat().st_size < 5 << 20


def test_stream_lines_split_on_every_line_ending_even_across_reads() -> None:
    from engine.backends.openai_compat import _split_lines

    assert _split_lines(b"data: a\r\ndata: b\n\ndata: c\rrest") == ([b"data: a", b"data: b", b"", b"data: c"], b"rest")
    lines, rest = _split_lines(b"data: x\r")  # its LF may be in the next read: not a blank line
    assert (lines, rest) == ([], b"data: x\r")
    assert _split_lines(rest + b"\n\n") == ([b"data: x", b""], b"")


def test_the_cli_says_how_much_of_a_long_question_was_cut_and_when_the_answer_is_empty(home: Path) -> None:
    """Issue 18: a 1 MB question on stdin was shortened and answered with nothing, silently."""
    import subprocess
    import sys

    question = "Summarise this log: " + "disk write ok; " * 70_000  # about 1 MB
    with FakeOpenAI(words=[""]) as server:  # a server that answers nothing
        configure(home, provider(server.url, context_window=2048), backends=["fake"], allow_cloud=True)
        done = subprocess.run([sys.executable, "-m", "app", "ask", "--max-tokens", "16", "-"], input=question,
                              capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"Note: the question ({len(question):,} characters) was shortened to fit the context window" \
        in done.stderr
    assert "Note: the answer is empty." in done.stderr and done.stdout.strip() == ""


# tool decisions pass the same gates as answers (issue 18, items 1 and 2) --------------------------


def tool_engine(**changes: object) -> Engine:
    return make_engine(tool_calling="always", tools=("calculator",), **changes)


async def test_tool_decisions_stay_local_while_cloud_is_off(home: Path, server: FakeOpenAI) -> None:
    """Decisions went straight to the route's first backend: the server got the question and the key."""
    configure(home, provider(server.url), backends=["fake", "local"])
    engine = tool_engine()
    events = await ask(engine, "My account password is hunter2. What is 17 * 23?")
    assert started(events).backend == "local" and "cloud is off" in dict(started(events).passed_over)["fake"]
    finished(events)
    assert server.requests == []
    await engine.close()
    engine = tool_engine(backends=("fake",))  # nothing else to ask: a clear refusal, nothing sent
    events = await ask(engine, "My account password is hunter2. What is 17 * 23?")
    await engine.close()
    assert isinstance(events[-1], Failed) and "cloud is off" in str(events[-1].error)
    assert server.requests == []


async def test_tool_decisions_never_send_a_private_folder_to_an_untrusted_backend(
        home: Path, server: FakeOpenAI, tmp_path: Path) -> None:
    notes = tmp_path / "ops"
    notes.mkdir()
    token = "ghp_" + "A1b2C3d4E5" * 4
    (notes / "deploy.md").write_text(f"# Deploy\n\nThe deploy token is {token}; ops contact ops@example.com.\n")
    configure(home, provider(server.url), backends=["fake", "local"], allow_cloud=True)
    engine = tool_engine()
    knowledge = await engine.knowledge()
    await asyncio.to_thread(knowledge.index, notes)
    await asyncio.to_thread(knowledge.set_private, notes, True)
    events = await ask(engine, "What is the deploy token?")
    first = started(events)
    assert first.passages and first.passages[0].private
    assert first.backend == "local" and "private folder" in dict(first.passed_over)["fake"]
    assert server.requests == []
    await engine.close()


async def test_a_tool_that_reads_a_private_folder_keeps_what_follows_off_an_untrusted_backend(
        home: Path, server: FakeOpenAI, tmp_path: Path) -> None:
    """No passage was retrieved (rag_top_k = 0), so the first decision may go out; the file the tool
    read is private, so neither the next decision nor the answer nor the next turn may."""
    notes = tmp_path / "ops"
    notes.mkdir()
    token = "ghp_" + "Z9y8X7w6V5" * 4
    (notes / "deploy.md").write_text(f"# Deploy\n\nThe deploy token is {token}.\n")
    configure(home, provider(server.url), backends=["fake", "local"], allow_cloud=True, rag_top_k=0)
    server.then({"tool": "read_file", "arguments": json.dumps({"path": "deploy.md"})})
    engine = make_engine(tool_calling="always", tools=("read_file",))
    knowledge = await engine.knowledge()
    await asyncio.to_thread(knowledge.index, notes)
    await asyncio.to_thread(knowledge.set_private, notes, True)
    events = await ask(engine, "Read deploy.md for me.")
    first = started(events)
    [step] = [s for s in first.tool_steps if s.call.name == "read_file" and s.status == "ok"][:1]
    assert token in step.result
    assert first.backend == "local" and "private folder" in dict(first.passed_over)["fake"]
    assert len(server.requests) == 1 and "ghp_" not in json.dumps(server.requests)
    events = await ask(engine, "Say hello.", first.conversation_id)  # the history holds the file's words
    assert started(events).backend == "local" and len(server.requests) == 1
    await engine.close()


async def test_tool_decisions_stop_at_a_spent_budget(home: Path, server: FakeOpenAI) -> None:
    configure(home, provider(server.url), backends=["fake", "local"], allow_cloud=True, budget_daily_usd=0.0)
    engine = tool_engine()
    events = await ask(engine, "What is 17 * 23?")
    await engine.close()
    assert started(events).backend == "local"
    assert "cloud budget of 0.00 USD is spent" in dict(started(events).passed_over)["fake"]
    assert server.requests == []


async def test_tool_decisions_fall_back_on_a_500_and_respect_an_open_breaker(home: Path, server: FakeOpenAI) -> None:
    """A 500 to the decision made `ask` fail; with tools off it fell back. Now the decision falls
    back too (to the real local model), opens the breaker, and the open breaker sends nothing."""
    server.default = "500"
    configure(home, provider(server.url, max_retries=0), backends=["fake", "local"], allow_cloud=True,
              breaker_failures=1, breaker_cooldown_s=600)
    engine = tool_engine()
    events = await ask(engine, "What is 17 * 23?")
    assert started(events).backend == "local" and finished(events).text
    assert "circuit breaker open" in dict(started(events).passed_over)["fake"]
    assert len(server.requests) == 1  # the decision's; the answer saw the breaker open
    assert engine.router.breaker_state("fake") == "open"
    events = await ask(engine, "What is 6 * 7?")
    assert started(events).backend == "local" and finished(events).text
    assert len(server.requests) == 1  # open: neither the decision nor the answer went out
    await engine.close()


async def test_tool_decisions_fall_back_when_the_api_key_is_unset(home: Path, server: FakeOpenAI) -> None:
    configure(home, provider(server.url, api_key_env="NOT_SET_ANYWHERE"), backends=["fake", "local"],
              allow_cloud=True)
    engine = tool_engine()
    events = await ask(engine, "What is 17 * 23?")
    await engine.close()
    assert started(events).backend == "local" and finished(events).text
    assert "NOT_SET_ANYWHERE is not set" in dict(started(events).passed_over)["fake"]
    assert server.requests == []


async def test_secrets_are_hidden_from_a_cloud_backend_in_tool_decisions(home: Path, server: FakeOpenAI) -> None:
    configure(home, provider(server.url), backends=["fake"], allow_cloud=True)
    engine = tool_engine()
    planted = "key=sk-live-4f9a8b7c6d5e4f3a2b1c0d9e, mail ana.lopez@example.org. What is 17 * 23?"
    events = await ask(engine, planted)
    await engine.close()
    finished(events)
    decision, answer = server.requests[0]["body"], server.requests[-1]["body"]
    assert decision["tools"][0]["function"]["name"] == "calculator" and "tools" not in answer
    for body in (decision, answer):
        sent = json.dumps(body["messages"])
        assert "sk-live-4f9a8b7c6d5e4f3a2b1c0d9e" not in sent and "ana.lopez@example.org" not in sent
        assert "[redacted API key]" in sent and "[redacted email address]" in sent
    assert any(n.startswith("Hidden before sending to fake (tool decision)") for n in started(events).notices)
