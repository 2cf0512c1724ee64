"""Structured output: JSON that matches a schema, enforced by a llama.cpp grammar on the real
model, by `response_format` on a remote server, and checked either way."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from engine import Engine, Failed, Finished, Settings
from engine.errors import ConfigError
from engine.structured import InvalidOutputError
from tests.openai_server import FakeOpenAI
from tests.test_remote import configure, provider

SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "country": {"type": "string"}},
    "required": ["city", "country"],
    "additionalProperties": False,
}


async def test_the_local_model_answers_valid_json(settings: Settings) -> None:
    engine = Engine(settings.replace(max_tokens=64))
    events = [e async for e in engine.ask("What is the capital of France? Give the city and the country.",
                                          json_schema=SCHEMA)]
    await engine.close()
    done = events[-1]
    assert isinstance(done, Finished), done
    value = json.loads(done.text)
    assert set(value) == {"city", "country"} and all(isinstance(v, str) for v in value.values())


async def test_a_truncated_answer_fails_and_is_never_shown_as_valid(settings: Settings, home: Path) -> None:
    engine = Engine(settings.replace(max_tokens=4))  # too short to close the object
    events = [e async for e in engine.ask("Capital of France?", json_schema=SCHEMA)]
    await engine.close()
    failed = events[-1]
    assert isinstance(failed, Failed) and isinstance(failed.error, InvalidOutputError)
    assert not any(isinstance(e, Finished) for e in events)
    db = sqlite3.connect(home / "assistant.db")
    assert db.execute("SELECT status FROM responses").fetchone()[0] == "error"
    assert db.execute("SELECT reason FROM reviews").fetchone()[0] == "guardrail"
    db.close()


async def test_a_bad_schema_is_a_clear_error(settings: Settings) -> None:
    engine = Engine(settings)
    with pytest.raises(ConfigError, match="schema is not valid"):
        await anext(engine.ask("?", json_schema={"type": "nonsense"}))
    await engine.close()


async def test_a_remote_backend_gets_response_format_and_its_answer_is_checked(home: Path) -> None:
    with FakeOpenAI(words=['{"city": "Paris", ', '"country": "France"}']) as server:
        configure(home, provider(server.url), backends=["fake"], allow_cloud=True)
        from tests.test_remote import make_engine
        engine = make_engine()
        done = (await events_of_schema(engine))[-1]
        assert isinstance(done, Finished) and json.loads(done.text) == {"city": "Paris", "country": "France"}
        assert server.requests[0]["body"]["response_format"]["json_schema"]["schema"] == SCHEMA
        server.words = ['{"city": 42}']
        failed = (await events_of_schema(engine, "Again?"))[-1]
        await engine.close()
    assert isinstance(failed, Failed) and "not valid for the requested JSON schema" in str(failed.error)


async def events_of_schema(engine: Engine, question: str = "Capital of France?") -> list:
    return [e async for e in engine.ask(question, json_schema=SCHEMA)]


def test_cli_json_schema(home: Path, tmp_path: Path) -> None:
    schema_file = tmp_path / "schema.json"
    schema_file.write_text(json.dumps(SCHEMA))
    done = subprocess.run([sys.executable, "-m", "app", "ask", "--temperature", "0", "--max-tokens", "64",
                           "--json-schema", str(schema_file), "Capital of Japan? City and country."],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert set(json.loads(done.stdout)) == {"city", "country"}


def test_cli_asks_once_more_after_an_invalid_answer(home: Path, tmp_path: Path) -> None:
    schema_file = tmp_path / "schema.json"
    schema_file.write_text(json.dumps(SCHEMA))
    with FakeOpenAI() as server:
        server.then(['{"city": "Paris"}'], ['{"city": "Paris", ', '"country": "France"}'])  # invalid, then valid
        configure(home, provider(server.url), backends=["fake"], allow_cloud=True)
        done = subprocess.run([sys.executable, "-m", "app", "ask", "--temperature", "0", "--json-schema",
                               str(schema_file), "Capital of France?"], capture_output=True, text=True, timeout=120)
        assert len(server.requests) == 2
        # Never printed as valid: the invalid answer is only reported, on stderr.
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout) == {"city": "Paris", "country": "France"}
        assert "'country' is a required property" in done.stderr
        server.then(['{"city": 1}'], ['{"city": 2}'])  # invalid twice: fails
        done = subprocess.run([sys.executable, "-m", "app", "ask", "--no-cache", "--json-schema", str(schema_file),
                               "Capital of Spain?"], capture_output=True, text=True, timeout=120)
        assert done.returncode == 1 and done.stdout == ""
        # Invalid twice for the same reason: the reason is printed once, not twice (issue 18).
        server.then(['{"city": "Rome"}'], ['{"city": "Rome"}'])
        done = subprocess.run([sys.executable, "-m", "app", "ask", "--no-cache", "--json-schema", str(schema_file),
                               "Capital of Italy?"], capture_output=True, text=True, timeout=120)
        assert done.returncode == 1 and done.stdout == ""
        assert done.stderr.count("'country' is a required property") == 1, done.stderr
        assert "Asking once more" in done.stderr and "not valid either, for the same reason" in done.stderr


@pytest.mark.parametrize(("schema", "message"), [
    ({"$ref": "#"}, "refers to itself without end"),
    ({"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"allOf": [{"$ref": "#/$defs/a"}]}}, "$ref": "#/$defs/a"},
     "refers to itself without end"),
    ({"$ref": "#/$defs/missing"}, "a `\\$ref` that leads nowhere"),
    ({"$ref": "https://example.com/schema.json"}, "a `\\$ref` that leads nowhere"),
])
async def test_a_schema_that_cannot_be_checked_is_refused_before_anything_is_generated(
        home: Path, schema: dict, message: str) -> None:
    """{"$ref": "#"} passed the meta-schema, the answer was generated, then checking it raised
    RecursionError."""
    with FakeOpenAI(words=["{}"]) as server:
        configure(home, provider(server.url), backends=["fake"], allow_cloud=True)
        from tests.test_remote import make_engine
        engine = make_engine()
        with pytest.raises(ConfigError, match=message):
            await anext(engine.ask("Anything?", json_schema=schema))
        await engine.close()
        assert server.requests == []
    # A schema that recurses through a property is fine: a tree.
    tree = {"type": "object", "properties": {"children": {"type": "array", "items": {"$ref": "#"}}}}
    from engine.structured import check_schema, problem
    assert check_schema(tree) == tree and problem('{"children": [{"children": []}]}', tree) is None


def test_cli_refuses_a_self_referring_schema_without_a_traceback(home: Path, tmp_path: Path) -> None:
    schema_file = tmp_path / "loop.json"
    schema_file.write_text('{"$ref": "#"}')
    done = subprocess.run([sys.executable, "-m", "app", "ask", "--json-schema", str(schema_file), "Hi"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "Traceback" not in done.stderr and done.stdout == ""
    assert done.stderr.count("refers to itself without end") == 1
    assert not (home / "assistant.db").exists() or not sqlite3.connect(home / "assistant.db").execute(
        "SELECT COUNT(*) FROM messages").fetchone()[0]  # refused before the question was saved
