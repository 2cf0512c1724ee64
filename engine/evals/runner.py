"""Run a dataset through the real engine and record the run.

Each case is asked exactly as a user's question is (`Engine.ask`: routing, retrieval, prompt
templates, guardrails, logging), in a conversation of its own, with the earlier turns the case
gives. What differs from chat, so that runs can be compared: temperature 0 by default and a fixed
seed, no response cache (a repeat must be generated, not looked up), no A/B prompt split, no
long-term memory, and a database of its own (DATA_FOLDER/evals/evals.db, with its own index of the
dataset's folders), so evals never show up in your conversations, stats, memories or folders.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine import prompts
from engine.citations import cited_numbers, without_citations
from engine.config import Settings
from engine.engine import Engine
from engine.errors import ConfigError
from engine.evals import metrics
from engine.evals.dataset import Case, Dataset
from engine.evals.judge import Judge, load_template
from engine.events import Failed, Finished, Started, Token
from engine.paths import data_dir, ensure_private_dir
from memory.corpus import Corpus
from memory.evals import EvalLog
from memory.store import Store

DEFAULT_SEED = 42
ATTEMPT_KEYS = ("response_id", "status", "error", "backend", "ttft_ms", "total_ms", "input_tokens",
                "output_tokens", "cost")


def eval_database() -> Path:
    return ensure_private_dir(data_dir() / "evals") / "evals.db"


@dataclass(frozen=True)
class Options:
    model: str | None = None
    backend: str | None = None  # answer with this backend (default: the configured route)
    template: str | None = None  # system prompt template: a name or a .md file
    folders: tuple[Path, ...] = ()  # besides the dataset's own
    repeats: int | None = None  # answers per case (2+ measures consistency); default: the dataset's, or 1
    max_tokens: int | None = None
    temperature: float = 0.0
    judge: str | None = None  # a backend name or a GGUF file; default: the `eval_judge` setting
    rubric: str | None = None  # a template name or a .md file; default: `judge`
    limit: int | None = None  # only the first N cases


@dataclass
class Progress:
    phase: str  # "indexing FOLDER", "loading", "answering"
    done: int = 0
    total: int = 0
    case_id: str = ""
    errors: int = 0
    failed: int = 0  # cases that did not pass


@dataclass
class Outcome:
    run_id: int
    status: str
    summary: dict[str, Any]
    results: list[dict[str, Any]] = field(default_factory=list)


def eval_settings(settings: Settings, options: Options, dataset: Dataset, template: prompts.Template
                  ) -> Settings:
    changed = settings.replace(model=options.model,
                               max_tokens=options.max_tokens or dataset.max_tokens,
                               temperature=options.temperature,
                               seed=settings.seed if settings.seed is not None else DEFAULT_SEED,
                               cache=False, semantic_cache=False)
    # `replace` ignores None and 0: these are set directly. No A/B split of the system prompt; no
    # long-term memory (the eval database has none to recall, and proposals are for people).
    changed = dataclasses.replace(changed, ab_system_prompt=None, memory_top_k=0, memory_proposals=False)
    if options.template is not None:
        changed = changed.replace(system_prompt=template.text)
    return changed


async def run_eval(
    settings: Settings, dataset: Dataset, options: Options,
    progress: Callable[[Progress], None] | None = None, database: Path | None = None,
) -> Outcome:
    """Answer every case, score it, record it; returns the run. On cancel (Ctrl-C) the run is
    recorded as cancelled with the cases done, then the cancel goes on."""
    report = progress or (lambda _: None)
    template = load_template(options.template, "system", settings)
    settings = eval_settings(settings, options, dataset, template)
    folders = tuple(dict.fromkeys([*dataset.folders, *(f.expanduser().resolve() for f in options.folders)]))
    for folder in folders:
        if not folder.is_dir():
            raise ConfigError(f"The eval folder {folder} does not exist.",
                              hint="Fix the path in --folder or in the dataset's header line.")
    cases = dataset.cases[: options.limit] if options.limit else dataset.cases
    repeats = options.repeats or dataset.repeats or 1
    engine = Engine(settings, database=database or eval_database())
    engine.prefill_next_turn = False  # cases are separate conversations
    engine.answers.keep_states = False  # never continued later: no model states on disk
    judge: Judge | None = None
    try:
        if options.backend is not None and options.backend not in engine.router.backends:
            raise ConfigError(f"There is no backend named {options.backend!r}.",
                              hint=f"Known backends: {', '.join(engine.router.backends)}.")
        setup_started = time.perf_counter()
        folder_ids = await _index(engine, folders, report)
        report(Progress("loading", total=len(cases)))
        backend = engine.router.primary(options.backend)
        await engine.load_model(backend)
        if folder_ids:
            await engine.warm_up()  # the embedding model and Chroma: not in the first case's latency
        if any(c.reference is not None for c in cases):
            await asyncio.to_thread(_warm_up_scoring)  # nltk and the embedder: not in the first case's time
        judge_spec = options.judge or settings.eval_judge
        if judge_spec:
            rubric = load_template(options.rubric, "judge", settings)
            judge = Judge(judge_spec, engine.router, settings, rubric)
            await judge.load()
        store = await engine.store()
        log = EvalLog(store)
        run_id = await asyncio.to_thread(log.start_run, {
            "dataset": str(dataset.path), "dataset_name": dataset.name, "dataset_sha256": dataset.sha256,
            "cases": len(cases), "repeats": repeats, "backend": backend.name, "model": backend.model_name,
            "template": template.name, "template_version": template.version,
            "judge": f"{judge.name} ({judge.model})" if judge else None,
            "rubric_version": judge.rubric.version if judge else None,
            "config": {
                "temperature": settings.temperature, "seed": settings.seed, "max_tokens": settings.max_tokens,
                "top_p": settings.top_p, "n_ctx": settings.n_ctx, "rag_top_k": settings.rag_top_k,
                "chunk_tokens": settings.chunk_tokens, "chunk_overlap": settings.chunk_overlap,
                "folders": [str(f) for f in folders], "template_origin": template.origin,
                "sources_template_version": prompts.load("sources", settings).version,
                "setup_s": time.perf_counter() - setup_started,
            },
        })
        return await _answer_all(engine, log, run_id, cases, repeats, folder_ids, options, judge, report)
    finally:
        if judge is not None:
            await judge.close()
        await engine.close()


async def _index(engine: Engine, folders: tuple[Path, ...], report: Callable[[Progress], None]) -> list[int]:
    """Index the run's folders into the eval database (only what changed since the last run)."""
    if not folders:
        return []
    knowledge = await engine.knowledge()
    ids = []
    for folder in folders:
        def show(p: Any, name: str = folder.name) -> None:
            report(Progress(f"indexing {name}", p.files_done, p.files_total or 0))

        await asyncio.to_thread(knowledge.index, folder, show)
        ids.append((await asyncio.to_thread(knowledge.corpus.folder, folder))["id"])
    return ids


async def _answer_all(
    engine: Engine, log: EvalLog, run_id: int, cases: tuple[Case, ...], repeats: int, folder_ids: list[int],
    options: Options, judge: Judge | None, report: Callable[[Progress], None],
) -> Outcome:
    results: list[dict[str, Any]] = []
    started = time.perf_counter()
    in_engine = 0.0
    status, error = "cancelled", None
    state = Progress("answering", 0, len(cases))
    report(state)
    try:
        for ordinal, case in enumerate(cases):
            state.case_id = case.id
            report(state)
            attempts = []
            for _ in range(repeats):
                attempt = await _ask(engine, case, folder_ids, options.backend)
                in_engine += attempt["engine_s"]
                attempts.append(attempt)
            grade = await judge.grade(case.question, case.reference, attempts[0]["answer"]) if judge else None
            result = await asyncio.to_thread(_score, case, ordinal, attempts, grade)
            await asyncio.to_thread(log.add_result, run_id, result)
            results.append(result)
            state.done += 1
            state.errors += result["status"] == "error"
            state.failed += not result["passed"]
            report(state)
        status = "complete"
    except Exception as exc:  # recorded, then raised: a bug or the database failing
        status, error = "failed", f"{type(exc).__name__}: {exc}"
        raise
    finally:
        duration = time.perf_counter() - started
        summary = metrics.summarize(results, duration)
        summary["engine_s"] = in_engine  # time inside Engine.ask: the rest is the harness's
        await asyncio.shield(asyncio.to_thread(log.finish_run, run_id, status, summary, error))
    return Outcome(run_id, status, summary, results)


async def _ask(engine: Engine, case: Case, folder_ids: list[int], backend: str | None) -> dict[str, Any]:
    """One answer to the case, in a new conversation that searches only the run's folders."""
    store = await engine.store()
    conversation_id = await asyncio.to_thread(_conversation, store, case, folder_ids)
    pieces: list[str] = []
    passages: list[Any] = []
    attempt: dict[str, Any] = {"status": "error", "error": None, "response_id": None, "ttft_ms": None,
                               "total_ms": None, "input_tokens": None, "output_tokens": None, "cost": 0.0}
    started = time.perf_counter()
    events = engine.ask(case.question, conversation_id, backend, json_schema=case.json_schema)
    async with contextlib.aclosing(events) as stream:
        async for event in stream:
            if isinstance(event, Started):
                passages = list(event.passages)
                attempt["backend"] = event.backend
            elif isinstance(event, Token):
                pieces.append(event.text)
            elif isinstance(event, Finished):
                # The answer as saved: a loop cut off, the [n] that attribution added.
                pieces[:] = [event.text]
                attempt["groundedness"] = event.groundedness
                attempt.update(status="ok", response_id=event.response_id, ttft_ms=event.timings.ttft_ms,
                               total_ms=event.timings.total_ms, input_tokens=event.usage.prompt_tokens,
                               output_tokens=event.usage.completion_tokens, cost=event.cost_usd or 0.0)
            elif isinstance(event, Failed):
                attempt.update(error=str(event.error), response_id=event.response_id)
    attempt["engine_s"] = time.perf_counter() - started
    attempt["answer"] = "".join(pieces)
    attempt["passages"] = passages
    return attempt


def _conversation(store: Store, case: Case, folder_ids: list[int]) -> int:
    conversation_id = store.create_conversation(f"eval {case.id}: {case.question}")
    corpus = Corpus(store)
    for folder_id in corpus.folder_ids_with_chunks():
        if folder_id not in folder_ids:  # indexed for another dataset: not this run's
            corpus.set_folder_active(conversation_id, folder_id, False)
    for turn in case.history:
        store.add_message(conversation_id, turn["role"], turn["content"])
    return conversation_id


def _score(case: Case, ordinal: int, attempts: list[dict[str, Any]], grade: Any) -> dict[str, Any]:
    """The result row of a case: its first answer scored, the repeats compared (in a thread:
    it embeds, and ROUGE loads nltk)."""
    first = attempts[0]
    cited_answer, passages = first["answer"], first["passages"]
    # Against the reference: the words, not the [n] (JSON is taken as it is: [1] may be its own).
    answer = cited_answer if case.json_schema else without_citations(cited_answer)
    values: dict[str, float | None] = dict.fromkeys(metrics.SCORES)
    values["groundedness"] = first.get("groundedness")
    if case.reference is not None:
        values["exact"] = metrics.exact(answer, case.reference)
        values["contains"] = metrics.contains(answer, case.reference)
        values["rouge_l"] = metrics.rouge_l(answer, case.reference)
        values["cosine"] = _cosine(answer, case.reference)
    expected = [metrics.SourceRef.parse(s) for s in case.expected_sources]
    numbers = cited_numbers(cited_answer)
    if expected:
        values.update(metrics.retrieval(expected, passages))
    values.update(metrics.citations(numbers, passages, expected))
    problems = None
    if case.checks or case.json_schema:
        problems = metrics.format_problems(answer, case.checks, case.json_schema)
        values["format_valid"] = float(not problems)
    values["consistency"] = metrics.consistency([a["answer"] for a in attempts])
    if grade is not None:
        values["judge"] = grade.score
    ok = first["status"] == "ok"
    values["passed"] = float(ok and not problems)
    details: dict[str, Any] = {
        "retrieved": [{"rank": i, "location": p.location, "chunk_id": p.chunk_id,
                       "expected": any(r.matches(p) for r in expected)} for i, p in enumerate(passages, 1)],
        "cited": numbers,
        "problems": problems or [],
        "attempts": [{k: a.get(k) for k in ATTEMPT_KEYS}
                     | {"same_as_first": _same(a["answer"], cited_answer)} for a in attempts],
        "tags": list(case.tags),
    }
    if grade is not None:
        details["judge"] = {"raw": grade.raw, "reason": grade.reason, "ms": grade.ms, "tokens": grade.tokens}
    return {
        "ordinal": ordinal, "case_id": case.id, "question": case.question, "reference": case.reference,
        "answer": answer, "status": first["status"], "error": first["error"], "passed": int(values["passed"]),
        "metrics": values, "details": details, "response_id": first["response_id"],
        "ttft_ms": first["ttft_ms"], "total_ms": first["total_ms"], "input_tokens": first["input_tokens"],
        "output_tokens": first["output_tokens"], "cost": sum(a["cost"] for a in attempts),
    }


def _warm_up_scoring() -> None:
    metrics.rouge_l("warm up", "warm up")
    _cosine("warm up", "warm up")


def _same(a: str, b: str) -> bool:
    return a.strip() == b.strip()


def _cosine(answer: str, reference: str) -> float:
    if not answer.strip():
        return 0.0
    from memory.embedder import Embedder

    a, b = Embedder().embed([answer, reference])
    return max(0.0, min(1.0, sum(x * y for x, y in zip(a, b, strict=True))))
