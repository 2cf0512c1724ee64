"""Traces, stats, alerts, the review queue, exports and log_content: real model for the traces,
seeded databases (known latencies) for the numbers."""

from __future__ import annotations

import asyncio
import json
import random
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy
import pytest

from engine import Engine, Finished, Settings
from engine.alerts import check
from engine.review import fine_tuning_examples, looks_like_refusal, preference_pairs
from engine.stats import compute, parse_since
from engine.tracing import Trace
from memory.store import Store
from tests.conftest import events_of


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "app", *args], capture_output=True, text=True, timeout=120)


def seed(store: Store, rows: list[dict], start: datetime | None = None) -> list[int]:
    """Responses with the given fields, one conversation, a question and an answer each; a minute
    apart, ending now (or from `start`)."""
    start = start or datetime.now(UTC) - timedelta(minutes=len(rows))
    conversation = store.create_conversation("seeded")
    ids = []
    for i, fields in enumerate(rows):
        question = store.add_message(conversation, "user", fields.pop("question", f"question {i}"))
        row = {"prompt_message_id": question, "status": "ok", "backend": "local", "model": "m1",
               "template": "system", "template_version": "v1", "input_tokens": 10, "output_tokens": 5,
               "ttft_ms": 50.0, "total_ms": 100.0, "tokens_per_s": 20.0, "cost": 0.0,
               "created_at": (start + timedelta(minutes=i)).isoformat(), **fields}
        spans = row.pop("spans", None)
        _, response_id = store.record_answer(conversation, row.pop("answer", f"answer {i}"),
                                             row["status"] != "ok", row, spans)
        ids.append(response_id)
    return ids


@pytest.fixture
def store(home: Path) -> Store:
    home.mkdir(parents=True, exist_ok=True)
    store = Store(home / "assistant.db")
    yield store
    store.close()


# traces ------------------------------------------------------------------------------------------


async def test_an_answer_has_a_trace_that_adds_up(settings: Settings, home: Path) -> None:
    engine = Engine(settings)
    events = await events_of(engine, "What is the capital of France?")
    await engine.close()
    done = events[-1]
    assert isinstance(done, Finished)
    store = Store(home / "assistant.db")
    response = store.response(done.response_id)
    spans = store.spans(done.response_id)
    store.close()
    names = [s["name"] for s in spans]
    for step in ("save question", "retrieval", "routing", "load model", "prompt build", "generation",
                 "queue wait", "prompt evaluation", "first token", "decode", "logging"):
        assert step in names, step
    assert_adds_up(spans, response)
    by_name = {s["name"]: s for s in spans}
    assert by_name["prompt evaluation"]["duration_ms"] > 0
    assert by_name["first token"]["start_ms"] + by_name["first token"]["duration_ms"] == pytest.approx(
        response["ttft_ms"], abs=2.0)
    assert by_name["generation"]["attrs"]["tokens"] == response["output_tokens"]
    assert response["trace_id"]
    shown = run("trace", str(done.response_id))
    assert shown.returncode == 0 and "prompt evaluation" in shown.stdout and "SmolLM2" in shown.stdout


def assert_adds_up(spans: list[dict], response: dict) -> None:
    """The top-level steps follow one another and cover the answer's total time."""
    top = [s for s in spans if s["parent"] is None]
    covered = sum(s["duration_ms"] for s in top)
    assert covered == pytest.approx(response["total_ms"], rel=0.05, abs=5.0), [
        (s["name"], s["start_ms"], s["duration_ms"]) for s in top]
    for a, b in zip(top, top[1:], strict=False):  # one after another, no overlap
        assert b["start_ms"] >= a["start_ms"] + a["duration_ms"] - 0.5


def assert_within_steps(spans: list[dict]) -> None:
    by_name = {s["name"]: s for s in spans}
    for span in spans:
        if span["parent"] is not None:
            outer = by_name[span["parent"]]
            assert outer["start_ms"] - 0.01 <= span["start_ms"], span
            assert span["start_ms"] + span["duration_ms"] <= outer["start_ms"] + outer["duration_ms"] + 0.01, span
    evaluation, first = by_name["prompt evaluation"], by_name["first token"]
    assert evaluation["duration_ms"] <= first["duration_ms"] + 0.01


def assert_possible(spans: list[dict]) -> None:
    """Every part lies within its step, and llama.cpp's prompt evaluation, as measured, ends
    before the first token: nothing had to be cut to fit."""
    assert_within_steps(spans)
    assert not [s for s in spans if "measured_ms" in (s["attrs"] or {})]


# The cause is in engine/backends/local.py (another change in flight there): decode() must call
# llama_synchronize() before llama_perf_context_reset(). Strict: remove this mark with that fix.
async def test_trace_parts_never_outlast_their_step_over_a_new_folder_and_after_prefill(
        settings: Settings, home: Path, tmp_path: Path) -> None:
    """Found in the app: the first answer over a folder indexed after a chat showed `generation
    8,990.6 ms` holding `prompt evaluation 293,856.8 ms`. The turn evaluated ahead after the chat's
    answer leaves llama.cpp's batch open (no logits are read), so the next answer's prompt
    evaluation counted from that moment: all the time the folder took to index."""
    notes = tmp_path / "pets"
    notes.mkdir()
    (notes / "biscuit.md").write_text("# Biscuit\n\nOur dog Biscuit eats salmon kibble twice a day.\n")
    engine = Engine(settings.replace(cache=False))
    chat = await events_of(engine, "Say hello.")
    local = engine.router.backends["local"]
    await local._run(lambda: None)  # the next turn has been evaluated ahead
    await asyncio.to_thread((await engine.knowledge()).index, notes)  # meanwhile, seconds go by
    over_folder = await events_of(engine, "What does our dog Biscuit eat?", chat[-1].conversation_id)
    assert over_folder[0].passages  # the first answer over the folder
    other = await events_of(engine, "Say goodbye.")
    await local._run(lambda: None)
    await asyncio.sleep(0.5)  # the user reads the answer
    after_prefill = await events_of(engine, "And once more?", other[-1].conversation_id)
    await engine.close()
    store = Store(home / "assistant.db")
    try:
        for events in (chat, over_folder, other, after_prefill):
            assert isinstance(events[-1], Finished)
            assert_possible(store.spans(events[-1].response_id))
        # Over the folder, the sentences were attributed after generation: a step of its own.
        spans = store.spans(over_folder[-1].response_id)
        assert "attribution" in [s["name"] for s in spans if s["parent"] is None]
        assert_adds_up(spans, store.response(over_folder[-1].response_id))
    finally:
        store.close()


def test_a_part_measured_longer_than_its_step_is_cut_to_fit_and_says_so(model_path: Path) -> None:
    from engine.answer_log import generation_spans
    from engine.backends.base import StreamResult
    from engine.backends.local import LocalBackend
    from engine.router import Route

    trace = Trace(origin=100.0)
    result = StreamResult(completion_tokens=20, started_at=100.2, prompt_eval_ms=293_856.8,
                          prompt_tokens_evaluated=40)
    route = Route(LocalBackend(model_path), None, [], "Hi", None, result,  # type: ignore[arg-type]
                  stream_started_at=100.1, first_at=100.5)
    generation_spans(trace, route, last_at=109.0, ended_at=109.204)
    trace.add("server wait", 99.0, 200.0, "generation")  # any part, from any clock
    spans = trace.rows()
    by_name = {s["name"]: s for s in spans}
    assert_within_steps(spans)
    evaluation = by_name["prompt evaluation"]
    assert evaluation["duration_ms"] == pytest.approx(300.0)  # up to the first token
    assert evaluation["attrs"]["measured_ms"] == 293_856.8  # what llama.cpp said, kept for a look
    wait = by_name["server wait"]
    assert (wait["start_ms"], wait["duration_ms"]) == (pytest.approx(100.0), pytest.approx(9104.0))


# stats -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("read", ["sorted in Python", "index walks"])
def test_stats_give_the_exact_percentiles_of_a_seeded_database(store: Store, read: str,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from engine import stats

    monkeypatch.setattr(stats, "SMALL", 50_000 if read == "sorted in Python" else 0)
    rng = random.Random(7)
    rows = []
    for i in range(400):
        model = "m1" if i % 4 else "m2"
        rows.append({"model": model, "ttft_ms": rng.uniform(20, 400), "total_ms": rng.uniform(500, 9000),
                     "tokens_per_s": rng.uniform(10, 90), "cost": 0.001 * (i % 3),
                     "status": "error" if i % 20 == 0 else "ok", "cache_hit": int(i % 10 == 0)})
    ids = seed(store, [dict(r) for r in rows])
    for response_id in ids[:30]:
        store.add_feedback(response_id, 1 if response_id % 3 else -1)
    store.add_feedback(ids[1], -1)  # the latest rating of a response counts
    result = compute(store)
    ok = [r for r in rows if r["status"] == "ok"]
    overall = result["overall"]
    for column in ("ttft_ms", "total_ms"):
        values = [r[column] for r in ok]
        for q in (50, 95, 99):
            assert overall[column][f"p{q}"] == pytest.approx(numpy.percentile(values, q), rel=1e-12)
    assert overall["tokens_per_s"]["p50"] == pytest.approx(numpy.median([r["tokens_per_s"] for r in ok]))
    assert overall["answers"] == 400 and overall["errors"] == 20 and overall["error_rate"] == 0.05
    assert overall["cache_hit_rate"] == 0.1
    assert overall["cost"] == pytest.approx(sum(r["cost"] for r in rows))
    ratings = {rid: (1 if rid % 3 else -1) for rid in ids[:30]}
    ratings[ids[1]] = -1
    assert overall["thumbs_up"] == sum(v == 1 for v in ratings.values())
    assert overall["thumbs_down"] == sum(v == -1 for v in ratings.values())
    by_model = compute(store, by="model")["groups"]
    m2 = [r["total_ms"] for r in ok if r["model"] == "m2"]
    assert by_model["m2"]["total_ms"]["p95"] == pytest.approx(numpy.percentile(m2, 95))
    assert by_model["m1"]["answers"] + by_model["m2"]["answers"] == 400
    assert sum(d["answers"] for d in result["per_day"]) == 400
    # A window: only the last 60 minutes (the seeded answers are a minute apart).
    assert compute(store, since="60m")["overall"]["answers"] in (59, 60, 61)


def test_stats_by_folder_and_feature(store: Store) -> None:
    def retrieval(folders: list[str]) -> list[dict]:
        return [{"name": "retrieval", "parent": None, "start_ms": 0.0, "duration_ms": 1.0,
                 "attrs": {"folders": 1, "passages": len(folders), "found_in": folders}}]

    seed(store, [{"spans": retrieval(["/notes"]), "retrieved_chunk_ids": "[1]", "total_ms": 100.0},
                 {"spans": retrieval(["/notes", "/code"]), "retrieved_chunk_ids": "[2]", "total_ms": 300.0},
                 {"total_ms": 50.0}])
    by_folder = compute(store, by="folder")["groups"]
    assert by_folder["/notes"]["answers"] == 2 and by_folder["/code"]["answers"] == 1
    by_feature = compute(store, by="feature")["groups"]
    assert by_feature["rag"]["answers"] == 2 and by_feature["chat"]["answers"] == 1


def test_since_accepts_durations_and_dates() -> None:
    now = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
    assert parse_since("7d", now) == (now - timedelta(days=7)).isoformat()
    assert parse_since("90m", now) == (now - timedelta(minutes=90)).isoformat()
    assert parse_since("2026-11-01", now).startswith("2026-11-01T00:00:00")
    with pytest.raises(Exception, match="neither a duration nor a date"):
        parse_since("last week", now)


# alerts ------------------------------------------------------------------------------------------


def test_alerts_fire_on_seeded_spikes_and_not_on_normal_data(store: Store, settings: Settings) -> None:
    rng = random.Random(3)
    normal = [{"total_ms": rng.uniform(80, 120), "model_hash": "a" * 64} for _ in range(200)]
    seed(store, normal)
    assert check(store, settings) == []
    seed(store, [{"total_ms": rng.uniform(400, 500), "model_hash": "a" * 64} for _ in range(20)])
    assert [a.kind for a in check(store, settings)] == ["latency"]
    seed(store, [{"status": "error" if i % 2 else "ok", "model_hash": "a" * 64} for i in range(20)])
    kinds = [a.kind for a in check(store, settings)]
    assert "errors" in kinds
    seed(store, [{"model_hash": "b" * 64} for _ in range(5)])
    changed = [a for a in check(store, settings) if a.kind == "model_changed"]
    assert changed and "aaaaaaaaaaaa" in changed[0].message and "bbbbbbbbbbbb" in changed[0].message


def test_alerts_on_empty_retrieval_and_budget_pace(store: Store, settings: Settings) -> None:
    found = [{"name": "retrieval", "parent": None, "start_ms": 0.0, "duration_ms": 1.0,
              "attrs": {"folders": 2, "passages": 5, "found_in": ["/n"]}}]
    empty = [{"name": "retrieval", "parent": None, "start_ms": 0.0, "duration_ms": 1.0,
              "attrs": {"folders": 2, "passages": 0, "found_in": []}}]
    seed(store, [{"spans": found} for _ in range(10)])
    assert check(store, settings) == []
    seed(store, [{"spans": empty} for _ in range(12)])
    assert [a.kind for a in check(store, settings)] == ["retrieval"]
    budgeted = settings.replace(budget_monthly_usd=10.0)
    now = datetime(2026, 11, 3, 12, 0, tzinfo=UTC)  # 2.5 of 30 days gone
    seed(store, [{"remote": 1, "cost": 0.5}], start=now - timedelta(hours=1))
    assert not [a for a in check(store, budgeted, now) if a.kind == "budget"]  # on pace for 6 USD of 10
    seed(store, [{"remote": 1, "cost": 1.0}], start=now - timedelta(minutes=30))
    pace = [a for a in check(store, budgeted, now) if a.kind == "budget"]  # 1.50 so far: 18 USD pace
    assert pace and "projected" in pace[0].message


# review queue and exports -------------------------------------------------------------------------


def test_review_flow_and_exports_round_trip(store: Store, home: Path, tmp_path: Path) -> None:
    ids = seed(store, [
        {"question": "What is 2+2?", "answer": "5"},
        {"question": "Capital of Italy?", "answer": "Rome."},
        {"question": "Write a poem", "answer": "I'm sorry, but I can't help with that."},
    ])
    store.add_feedback(ids[0], -1, "wrong")
    store.add_feedback(ids[1], 1)
    store.enqueue_review(ids[2], "refusal")
    pending = store.reviews()
    assert [(r["response_id"], r["reason"]) for r in pending] == [(ids[0], "thumbs_down"), (ids[2], "refusal")]
    assert pending[0]["question"] == "What is 2+2?" and pending[0]["answer"] == "5"
    listed = run("review")
    assert listed.returncode == 0 and "thumbs_down" in listed.stdout and "Capital" not in listed.stdout
    shown = run("review", str(ids[0]))
    assert "What is 2+2?" in shown.stdout and "Trace:" in shown.stdout
    assert run("review", str(ids[0]), "--better", "4", "--note", "arithmetic").returncode == 0
    assert run("review", str(ids[2]), "--done").returncode == 0
    assert store.reviews() == []
    assert [r["better_answer"] for r in store.reviews(pending=False)] == ["4", None]

    sft = tmp_path / "sft.jsonl"
    dpo = tmp_path / "dpo.jsonl"
    assert run("export", "sft", str(sft)).returncode == 0
    assert run("export", "dpo", str(dpo)).returncode == 0
    examples = [json.loads(line) for line in sft.read_text().splitlines()]
    assert examples == fine_tuning_examples(store, Settings().system_prompt)
    answers = {e["messages"][-1]["content"] for e in examples}
    assert answers == {"4", "Rome."}  # the reviewed answer replaces the bad one; thumbs up kept
    assert examples[0]["messages"][0]["role"] == "system" and examples[0]["messages"][-2]["content"] == "What is 2+2?"
    pairs = [json.loads(line) for line in dpo.read_text().splitlines()]
    assert pairs == preference_pairs(store, Settings().system_prompt)  # the same system message as SFT
    assert pairs[0]["chosen"] == "4" and pairs[0]["rejected"] == "5"
    assert pairs[0]["prompt"][-1] == {"role": "user", "content": "What is 2+2?"}
    out_csv, out_jsonl = tmp_path / "r.csv", tmp_path / "r.jsonl"
    assert run("export", "responses", str(out_csv), "--format", "csv").returncode == 0
    assert run("export", "responses", str(out_jsonl)).returncode == 0
    import csv
    assert [int(r["id"]) for r in csv.DictReader(out_csv.open())] == ids
    assert [json.loads(line)["id"] for line in out_jsonl.read_text().splitlines()] == ids


def test_refusals_are_detected() -> None:
    assert looks_like_refusal("I'm sorry, but I can't help with that request.")
    assert looks_like_refusal("As an AI language model, I cannot browse the web.")
    assert looks_like_refusal("I cannot provide medical advice.")
    assert not looks_like_refusal("Paris is the capital of France.")
    assert not looks_like_refusal("You can't go wrong with a good night's sleep.")


# log_content = false ----------------------------------------------------------------------------------


async def test_no_prompt_text_reaches_the_database_when_content_logging_is_off(settings: Settings,
                                                                              home: Path) -> None:
    engine = Engine(settings.replace(log_content=False))
    first = await events_of(engine, "My cat is called Zanzibarquux. Remember it.")
    conversation = first[-1].conversation_id
    second = await events_of(engine, "What is my cat called?", conversation)
    await engine.close()
    assert isinstance(second[-1], Finished)
    assert second[0].prompt_tokens > first[0].prompt_tokens  # the first turn was in the prompt
    db = sqlite3.connect(home / "assistant.db")
    dump = "\n".join(db.iterdump())
    assert "Zanzibarquux" not in dump and "What is my cat called" not in dump
    assert first[-1].text and first[-1].text not in dump
    rows = db.execute("SELECT input_tokens, output_tokens, total_ms FROM responses").fetchall()
    assert len(rows) == 2 and all(r[0] and r[1] and r[2] for r in rows)
    assert db.execute("SELECT COUNT(*) FROM spans").fetchone()[0] > 10
    db.close()


def test_cli_stats_json_and_alerts(store: Store) -> None:
    seed(store, [{"total_ms": 100.0 + i} for i in range(30)])
    done = run("stats", "--json", "--by", "model")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["overall"]["answers"] == 30 and "m1" in result["groups"] and result["alerts"] == []
    text = run("stats", "--since", "7d")
    assert text.returncode == 0 and "Answer latency" in text.stdout and "Per day" in text.stdout
    assert "Thumbs per day" not in text.stdout  # no feedback yet: no empty plot
    ids = seed(store, [{"total_ms": 900.0 + i} for i in range(20)])  # a latency spike
    store.add_feedback(ids[0], 1)
    store.add_feedback(ids[1], -1)
    text = run("stats")
    assert "Thumbs per day" in text.stdout and "Cost per day" in text.stdout
    assert "⚠ Latency spike" in text.stdout
    assert run("stats", "--since", "yesterday-ish").returncode == 1


# observers: OpenTelemetry export, and a broken observer ------------------------------------------------


async def test_traces_reach_an_otlp_collector(settings: Settings) -> None:
    """A real HTTP server on 127.0.0.1 stands in for the collector and decodes what arrives."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    received: list[ExportTraceServiceRequest] = []

    class Collector(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            request = ExportTraceServiceRequest()
            request.ParseFromString(body)
            received.append(request)
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Collector)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        engine = Engine(settings.replace(otlp_endpoint=f"http://127.0.0.1:{server.server_address[1]}"))
        events = await events_of(engine, "Say hi.")
        await engine.close()  # waits for the observers
    finally:
        server.shutdown()
    spans = [s for r in received for rs in r.resource_spans for ss in rs.scope_spans for s in ss.spans]
    names = {s.name for s in spans}
    assert {"answer", "generation", "decode", "routing", "logging"} <= names
    root = next(s for s in spans if s.name == "answer")
    attributes = {a.key: a.value for a in root.attributes}
    assert attributes["assistant.response_id"].int_value == events[-1].response_id
    decode = next(s for s in spans if s.name == "decode")
    generation = next(s for s in spans if s.name == "generation")
    assert decode.parent_span_id == generation.span_id and generation.parent_span_id == root.span_id


async def test_a_failing_observer_is_disabled_and_answers_go_on(settings: Settings) -> None:
    from plugins.hookspecs import hookimpl

    class Broken:
        calls = 0

        @hookimpl
        def on_response_logged(self, response: dict, spans: list[dict]) -> None:
            Broken.calls += 1
            raise RuntimeError("observer bug")

    engine = Engine(settings)
    manager = await __import__("asyncio").to_thread(engine.plugins)
    manager.register(Broken(), name="broken")
    first = await events_of(engine, "Say hi.")
    second = await events_of(engine, "Say hello.")
    await engine.close()
    assert isinstance(first[-1], Finished) and isinstance(second[-1], Finished)
    assert Broken.calls == 1
    assert any("broken" in e and "observer bug" in e for e in manager.errors)
