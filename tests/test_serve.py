"""`assistant serve` through real clients: the official `openai` package, `llm` (the peer CLI) with
an OpenAI-compatible extra model, raw HTTP for the edges. One server process for the module, on
127.0.0.1, the real SmolLM2 model, small max_tokens; its database is read to check the rows."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest

from engine import Engine, load_settings
from tests.serve_process import FACT, MEMORY, ROOT, ServeProcess, prepare_home

MAX_BODY_KB = 64
PROMPT_LIMIT = 20_000
QUEUE = 4


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    home = tmp_path_factory.mktemp("serve") / "home"
    prepare_home(home, home.parent / "notes")
    env = {"ASSISTANT_TEMPERATURE": "0", "ASSISTANT_SEED": "42", "ASSISTANT_MAX_TOKENS": "16"}
    with ServeProcess(home, "--queue", str(QUEUE), "--max-body-kb", str(MAX_BODY_KB),
                      "--max-prompt-chars", str(PROMPT_LIMIT), env=env) as process:
        yield process


@pytest.fixture(scope="module")
def client(server: ServeProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url, api_key="not-needed-on-loopback", max_retries=0)


def _response_row(server: ServeProcess, response_id: int) -> dict:
    names = ["status", "backend", "output_tokens", "input_tokens", "retrieved_chunk_ids", "memory_ids",
             "cache_hit", "conversation_id", "content"]
    row = server.rows(
        "SELECT r.status, r.backend, r.output_tokens, r.input_tokens, r.retrieved_chunk_ids, r.memory_ids,"
        " r.cache_hit, m.conversation_id, m.content FROM responses r JOIN messages m ON m.id = r.message_id"
        " WHERE r.id = ?", response_id)
    assert row, f"no response row {response_id}"
    return dict(zip(names, row[0], strict=True))


def test_models_lists_the_aliases_and_the_embedding_model(client: openai.OpenAI) -> None:
    ids = [m.id for m in client.models.list()]
    assert ids == ["assistant", "assistant-rag", "all-MiniLM-L6-v2"]


def test_openai_client_gets_an_answer_logged_like_one_typed_in_the_app(client: openai.OpenAI,
                                                                        server: ServeProcess) -> None:
    answer = client.chat.completions.create(
        model="assistant", messages=[{"role": "user", "content": "Name one planet."}], max_tokens=8, seed=1)
    choice = answer.choices[0]
    assert choice.message.role == "assistant" and choice.message.content.strip()
    assert choice.finish_reason in ("stop", "length")
    assert 0 < answer.usage.completion_tokens <= 8
    extra = answer.model_extra["assistant"]
    row = _response_row(server, extra["response_id"])
    assert row["status"] == "ok" and row["backend"] == "local"
    assert row["content"] == choice.message.content  # the conversation holds what the client got
    assert row["output_tokens"] == answer.usage.completion_tokens
    assert row["retrieved_chunk_ids"] is None and row["memory_ids"] is None  # plain model: no folders


def test_openai_client_streams_chunks_as_openai_does(client: openai.OpenAI, server: ServeProcess) -> None:
    stream = client.chat.completions.create(
        model="assistant", messages=[{"role": "user", "content": "Count from one to five."}], max_tokens=12,
        stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert len({c.id for c in chunks}) == 1 and chunks[0].id.startswith("chatcmpl-")
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    pieces = [c for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(pieces) >= 2, "streamed in pieces, not in one block"
    finish = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finish) == 1 and finish[0].choices[0].finish_reason in ("stop", "length")
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens <= 12  # the usage chunk last
    row = _response_row(server, finish[0].model_extra["assistant"]["response_id"])
    assert row["status"] == "ok" and row["content"] == text


def test_sse_wire_format_ends_with_done(server: ServeProcess) -> None:
    with httpx.stream("POST", f"{server.url}/chat/completions", timeout=60, json={
            "model": "assistant", "messages": [{"role": "user", "content": "Say yes."}], "max_tokens": 4,
            "stream": True}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        raw = response.read().decode()
    events = [e for e in raw.split("\n\n") if e]
    assert all(e.startswith("data: ") for e in events)
    assert events[-1] == "data: [DONE]"
    assert json.loads(events[0][6:])["object"] == "chat.completion.chunk"


def test_stop_and_max_tokens_and_seed_shape_the_answer(client: openai.OpenAI) -> None:
    question = [{"role": "user", "content": "List three fruits, separated by commas."}]
    full = client.chat.completions.create(model="assistant", messages=question, max_tokens=16, temperature=0)
    text = full.choices[0].message.content
    words = text.split()
    assert len(words) >= 3, text
    stop = words[2]
    cut = client.chat.completions.create(model="assistant", messages=question, max_tokens=16, temperature=0,
                                         stop=[stop])
    assert cut.choices[0].message.content == text[:text.index(stop)]
    short = client.chat.completions.create(model="assistant", messages=question, max_tokens=3, temperature=0)
    assert short.usage.completion_tokens <= 3 and short.choices[0].finish_reason == "length"


def test_response_format_json_schema_gives_valid_json(client: openai.OpenAI) -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "string", "enum": ["yes", "no"]}},
              "required": ["answer"], "additionalProperties": False}
    answer = client.chat.completions.create(
        model="assistant", messages=[{"role": "user", "content": "Is the sky blue? Answer in JSON."}],
        max_tokens=24, response_format={"type": "json_schema", "json_schema": {"name": "a", "schema": schema}})
    assert json.loads(answer.choices[0].message.content)["answer"] in ("yes", "no")
    with pytest.raises(openai.BadRequestError, match="schema"):
        client.chat.completions.create(model="assistant", messages=[{"role": "user", "content": "x"}],
                                       response_format={"type": "json_schema",
                                                        "json_schema": {"name": "a", "schema": {"type": 7}}})


def test_an_answer_that_fails_its_schema_is_an_error_also_mid_stream(client: openai.OpenAI) -> None:
    # Four tokens cannot hold the JSON: the guardrail rejects the answer once it has streamed.
    schema = {"type": "object", "properties": {"story": {"type": "string", "minLength": 200}},
              "required": ["story"]}
    ask = {"model": "assistant", "max_tokens": 4,
           "messages": [{"role": "user", "content": "Tell a story as JSON."}],
           "response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": schema}}}
    with pytest.raises(openai.InternalServerError, match="not valid for the requested JSON schema"):
        client.chat.completions.create(**ask)
    chunks = []
    with pytest.raises(openai.APIError, match="not valid for the requested JSON schema"):
        for chunk in client.chat.completions.create(**ask, stream=True):
            chunks.append(chunk)
    assert chunks and chunks[0].choices[0].delta.role == "assistant"  # the error came after the start


def test_a_system_message_replaces_the_system_prompt(client: openai.OpenAI) -> None:
    question = {"role": "user", "content": "Reply with one word."}
    plain = client.chat.completions.create(model="assistant", messages=[question], max_tokens=2)
    system = {"role": "system", "content": "You are terse. " * 40}
    steered = client.chat.completions.create(model="assistant", messages=[system, question], max_tokens=2)
    # Our own system prompt is about 30 tokens; the client's is 160: it took its place.
    assert steered.usage.prompt_tokens - plain.usage.prompt_tokens > 80


def test_the_whole_conversation_sent_again_continues_the_same_one(client: openai.OpenAI,
                                                                  server: ServeProcess) -> None:
    first = [{"role": "user", "content": "My name is Ada. Say hello."}]
    a1 = client.chat.completions.create(model="assistant", messages=first, max_tokens=8)
    again = [*first, {"role": "assistant", "content": a1.choices[0].message.content},
             {"role": "user", "content": "What is my name?"}]
    a2 = client.chat.completions.create(model="assistant", messages=again, max_tokens=8)
    conversation = a1.model_extra["assistant"]["conversation_id"]
    assert a2.model_extra["assistant"]["conversation_id"] == conversation
    # A history this server never answered is imported as a conversation of its own.
    other = [*first, {"role": "assistant", "content": "Hello, Ada!"}, {"role": "user", "content": "And mine?"}]
    a3 = client.chat.completions.create(model="assistant", messages=other, max_tokens=8)
    imported = a3.model_extra["assistant"]["conversation_id"]
    assert imported != conversation
    messages = server.rows("SELECT role, content FROM messages WHERE conversation_id = ? ORDER BY id", imported)
    assert messages[:3] == [("user", first[0]["content"]), ("assistant", "Hello, Ada!"), ("user", "And mine?")]
    assert messages[3] == ("assistant", a3.choices[0].message.content)


def test_assistant_rag_answers_from_the_folders_and_memory_with_sources(client: openai.OpenAI,
                                                                        server: ServeProcess) -> None:
    answer = client.chat.completions.create(
        model="assistant-rag", messages=[{"role": "user", "content": "Where does my cat Miso sleep?"}],
        max_tokens=16)
    sources = answer.model_extra["sources"]
    assert sources and sources[0]["path"].endswith("notes/pets.md")
    first, last = sources[0]["lines"]
    assert first <= 5 <= last and sources[0]["location"].endswith(f"pets.md:{first}-{last}")
    assert FACT in sources[0]["text"]
    row = _response_row(server, answer.model_extra["assistant"]["response_id"])
    assert json.loads(row["retrieved_chunk_ids"])  # the row records the passages used
    colour = client.chat.completions.create(
        model="assistant-rag", messages=[{"role": "user", "content": "What is my favourite colour?"}],
        max_tokens=8)
    memories = colour.model_extra["assistant"]["memories"]
    assert [m["text"] for m in memories] == [MEMORY]
    # The same question to the plain model: no folders, no memories.
    plain = client.chat.completions.create(
        model="assistant", messages=[{"role": "user", "content": "Where does my cat Miso sleep?"}], max_tokens=4)
    assert plain.model_extra["sources"] == [] and plain.model_extra["assistant"]["memories"] == []
    # The body field says the same as the model id.
    extra = client.chat.completions.create(
        model="assistant", messages=[{"role": "user", "content": "Where does my cat Miso sleep?"}], max_tokens=4,
        extra_body={"rag": True})
    assert extra.model_extra["sources"]


def test_embeddings_come_from_the_local_model(client: openai.OpenAI) -> None:
    result = client.embeddings.create(model="all-MiniLM-L6-v2", input=["a small cat", "a kitten", "tax law"])
    vectors = [d.embedding for d in result.data]
    assert [d.index for d in result.data] == [0, 1, 2] and all(len(v) == 384 for v in vectors)
    assert all(math.isclose(sum(x * x for x in v), 1.0, rel_tol=1e-3) for v in vectors)

    def cos(a: list[float], b: list[float]) -> float:
        return sum(x * y for x, y in zip(a, b, strict=True))

    assert cos(vectors[0], vectors[1]) > cos(vectors[0], vectors[2])
    assert result.usage.prompt_tokens > 0
    with pytest.raises(openai.NotFoundError, match="all-MiniLM-L6-v2"):
        client.embeddings.create(model="text-embedding-3-small", input="x")


def test_feedback_from_another_client_attaches_to_the_row(client: openai.OpenAI, server: ServeProcess) -> None:
    answer = client.chat.completions.create(
        model="assistant", messages=[{"role": "user", "content": "Name a river."}], max_tokens=6)
    response_id = answer.model_extra["assistant"]["response_id"]
    up = httpx.post(f"{server.url}/feedback", json={"id": answer.id, "rating": "up", "comment": "good"})
    assert up.status_code == 200 and up.json()["response_id"] == response_id
    down = httpx.post(f"{server.url}/feedback", json={"response_id": response_id, "rating": -1})
    assert down.status_code == 200
    assert server.rows("SELECT rating, comment FROM feedback WHERE response_id = ? ORDER BY id",
                       response_id) == [(1, "good"), (-1, None)]
    assert httpx.post(f"{server.url}/feedback", json={"response_id": 99999, "rating": "up"}).status_code == 404
    bad = httpx.post(f"{server.url}/feedback", json={"response_id": response_id, "rating": "meh"})
    assert bad.status_code == 400 and "up or down" in bad.json()["error"]["message"]


@pytest.mark.parametrize(("body", "status", "words"), [
    ({"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]}, 404, "no model 'gpt-4o'"),
    ({"model": "assistant"}, 400, "messages must be a non-empty list"),
    ({"model": "assistant", "messages": [{"role": "assistant", "content": "x"}]}, 400, "last message"),
    ({"model": "assistant", "messages": [{"role": "user", "content": "x"}], "temperature": 9}, 400, "temperature"),
    ({"model": "assistant", "messages": [{"role": "user", "content": "x"}], "max_tokens": 0}, 400, "max_tokens"),
    ({"model": "assistant", "messages": [{"role": "user", "content": "x"}], "n": 2}, 400, "n = 1"),
    ({"model": "assistant", "messages": [{"role": "user", "content": "x"}],
      "tools": [{"type": "function", "function": {"name": "f"}}]}, 400, "Tools sent by the client"),
    ({"model": "assistant", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, 400,
     "only text"),
    ({"model": "assistant", "messages": [{"role": "user", "content": "x" * (PROMPT_LIMIT + 1)}]}, 400,
     "--max-prompt-chars"),
])
def test_bad_requests_get_a_clear_4xx_in_openai_shape(server: ServeProcess, body: dict, status: int,
                                                      words: str) -> None:
    response = httpx.post(f"{server.url}/chat/completions", json=body, timeout=30)
    assert response.status_code == status
    error = response.json()["error"]
    assert words in error["message"] and error["type"] and "code" in error


def test_body_size_and_json_are_checked_before_anything_runs(server: ServeProcess) -> None:
    big = json.dumps({"model": "assistant", "messages": [{"role": "user", "content": "x" * MAX_BODY_KB * 1024}]})
    response = httpx.post(f"{server.url}/chat/completions", content=big, timeout=30)
    assert response.status_code == 413 and "--max-body-kb" in response.json()["error"]["message"]

    def chunks():  # no Content-Length: the limit holds while reading
        for _ in range(MAX_BODY_KB + 8):
            yield b"x" * 1024

    chunked = httpx.post(f"{server.url}/chat/completions", content=chunks(), timeout=30)
    assert chunked.status_code == 413
    broken = httpx.post(f"{server.url}/chat/completions", content=b"{not json", timeout=30)
    assert broken.status_code == 400 and "not valid JSON" in broken.json()["error"]["message"]


def test_a_client_that_disconnects_cancels_its_generation(server: ServeProcess) -> None:
    before = server.rows("SELECT COALESCE(MAX(id), 0) FROM responses")[0][0]
    question = {"model": "assistant", "messages": [{"role": "user", "content": "Tell a very long story about "
                                                                                "a lighthouse keeper."}],
                "max_tokens": 400, "stream": True}
    with httpx.stream("POST", f"{server.url}/chat/completions", json=question, timeout=60) as response:
        for line in response.iter_lines():
            if '"content":"' in line and '"content":""' not in line:
                break  # the first words arrived: hang up
    deadline = time.monotonic() + 30
    rows: list = []
    while time.monotonic() < deadline and not rows:
        rows = server.rows("SELECT status, output_tokens FROM responses WHERE id > ?", before)
        time.sleep(0.05)
    assert rows and rows[0][0] == "cancelled", rows
    assert rows[0][1] < 400  # it stopped early
    assert httpx.get(f"{server.base}/health").json()["running"] == 0


def test_twenty_concurrent_clients_get_an_answer_or_429_and_no_row_is_lost(server: ServeProcess) -> None:
    async def burst(tag: str) -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=120) as http:
            return await asyncio.gather(*(http.post(f"{server.url}/chat/completions", json={
                "model": "assistant", "max_tokens": 8,
                "messages": [{"role": "user", "content": f"Say the number {tag}{i}."}]}) for i in range(20)))

    before = server.rows("SELECT COALESCE(MAX(id), 0) FROM responses")[0][0]
    started = time.monotonic()
    responses = asyncio.run(burst("a"))
    assert time.monotonic() - started < 60
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {200, 429}, statuses
    answered = [r for r in responses if r.status_code == 200]
    busy = [r for r in responses if r.status_code == 429]
    assert len(answered) >= QUEUE + 1 and busy  # 1 running + QUEUE waiting were taken in
    assert all(int(r.headers["Retry-After"]) >= 1 and r.json()["error"]["code"] == "queue_full" for r in busy)
    assert all(r.json()["choices"][0]["message"]["content"] for r in answered)
    ids = {r.json()["assistant"]["response_id"] for r in answered}
    rows = server.rows("SELECT id, status FROM responses WHERE id > ?", before)
    assert sorted(rows) == sorted((i, "ok") for i in ids)  # one row per answer: none lost, none extra
    # Memory stays flat from one burst to the next.
    rss = server.rss_mb()
    asyncio.run(burst("b"))
    assert server.rss_mb() - rss < 40


def test_llm_cli_with_an_extra_openai_model_talks_to_the_server(server: ServeProcess, tmp_path: Path) -> None:
    llm_home = tmp_path / "llm"
    llm_home.mkdir()
    (llm_home / "extra-openai-models.yaml").write_text(
        f"- model_id: mine\n  model_name: assistant\n  api_base: \"{server.url}\"\n"
        f"- model_id: mine-rag\n  model_name: assistant-rag\n  api_base: \"{server.url}\"\n")
    env = {**os.environ, "LLM_USER_PATH": str(llm_home)}
    llm = str(Path(sys.executable).parent / "llm")
    before = server.rows("SELECT COUNT(*) FROM responses")[0][0]
    streamed = subprocess.run([llm, "-m", "mine", "-o", "max_tokens", "6", "Name a tree."], env=env,
                              capture_output=True, text=True, timeout=120)
    assert streamed.returncode == 0, streamed.stderr
    whole = subprocess.run([llm, "-m", "mine-rag", "--no-stream", "-o", "max_tokens", "6",
                            "Where does my cat Miso sleep?"], env=env, capture_output=True, text=True, timeout=120)
    assert whole.returncode == 0, whole.stderr
    rows = server.rows("SELECT r.status, m.content, r.retrieved_chunk_ids FROM responses r"
                       " JOIN messages m ON m.id = r.message_id ORDER BY r.id DESC LIMIT 2")
    assert server.rows("SELECT COUNT(*) FROM responses")[0][0] - before == 2
    assert [r[0] for r in rows] == ["ok", "ok"]
    assert rows[1][1].strip() == streamed.stdout.strip() and rows[0][1].strip() == whole.stdout.strip()
    assert rows[0][2] and not rows[1][2]  # mine-rag used the folders, mine did not


# in-process: the guards that need no model --------------------------------------------------------

def _app(**options):
    from app.serve import ServeOptions, create_app

    return create_app(Engine(load_settings()), ServeOptions(**options))


async def test_a_token_guards_every_route_but_health_and_is_never_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    token = "s3cret-token-for-the-test"
    transport = httpx.ASGITransport(app=_app(host="0.0.0.0", token=token))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        assert (await http.get("/health")).status_code == 200
        missing = await http.get("/v1/models")
        assert missing.status_code == 401 and missing.json()["error"]["code"] == "invalid_api_key"
        assert missing.headers["WWW-Authenticate"] == "Bearer"
        wrong = await http.get("/v1/models", headers={"Authorization": "Bearer s3cret-token-for-the-tesT"})
        assert wrong.status_code == 401 and token not in wrong.text
        right = await http.get("/v1/models", headers={"Authorization": f"Bearer {token}"})
        assert right.status_code == 200
    assert token not in caplog.text


def test_another_address_without_a_token_is_refused_before_anything_starts() -> None:
    from app.serve import ServeOptions
    from engine.errors import ConfigError

    with pytest.raises(ConfigError, match="ASSISTANT_SERVE_TOKEN"):
        ServeOptions(host="0.0.0.0").check()
    ServeOptions(host="::1").check()  # loopback, IPv6
    result = subprocess.run([sys.executable, "-m", "app", "serve", "--host", "0.0.0.0"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60,
                            env={**os.environ, "ASSISTANT_SERVE_TOKEN": ""})
    assert result.returncode == 1 and "ASSISTANT_SERVE_TOKEN" in result.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        busy = subprocess.run([sys.executable, "-m", "app", "serve", "--port", port], cwd=ROOT,
                              capture_output=True, text=True, timeout=60)
    assert busy.returncode == 1 and f"Cannot listen on 127.0.0.1:{port}" in busy.stderr


def test_a_model_that_cannot_load_stops_the_server_with_its_reason(tmp_path: Path) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"<html>404</html>" * 8)
    result = subprocess.run([sys.executable, "-m", "app", "serve", "--port", "0", "--model", str(bad)], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and f"{bad} is not a GGUF model" in result.stderr
    assert "Traceback" not in result.stderr


async def test_no_cors_headers_unless_an_origin_is_configured() -> None:
    preflight = {"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=_app()), base_url="http://test") as http:
        plain = await http.get("/v1/models", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in plain.headers
        assert "access-control-allow-origin" not in (await http.options("/v1/chat/completions",
                                                                         headers=preflight)).headers
    app = _app(cors_origins=("https://good.example",))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
        good = await http.get("/v1/models", headers={"Origin": "https://good.example"})
        assert good.headers["access-control-allow-origin"] == "https://good.example"
        evil = await http.get("/v1/models", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in evil.headers
