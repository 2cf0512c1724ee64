"""Recorded eval runs, read back: listing, resolving `latest` or a baseline's name, comparing,
reports. Blocking (SQLite): the TUI calls it from a thread."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.errors import ConfigError
from engine.evals.compare import CASE_TOLERANCE, Comparison, compare
from engine.evals.report import markdown
from memory.evals import EvalLog
from memory.store import Store


class EvalHistory:
    def __init__(self, database: Path | None = None) -> None:
        from engine.evals.runner import eval_database

        self.store = Store(database or eval_database())
        self.log = EvalLog(self.store)

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> EvalHistory:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def runs(self, limit: int = 100) -> list[dict[str, Any]]:
        return self.log.runs(limit)

    def run(self, ref: str | int) -> dict[str, Any]:
        return self.log.run(self.log.resolve(str(ref)))

    def results(self, run_id: int) -> list[dict[str, Any]]:
        return self.log.results(run_id)

    def compare(self, ref_a: str | int, ref_b: str | int, tolerance: float = CASE_TOLERANCE) -> Comparison:
        a, b = self.run(ref_a), self.run(ref_b)
        return compare(a, self.results(a["id"]), b, self.results(b["id"]), tolerance)

    def report(self, ref: str | int, against: str | int | None = None, width: int = 72) -> str:
        run = self.run(ref)
        comparison = self.compare(against, run["id"]) if against is not None else None
        return markdown(run, self.results(run["id"]), comparison, width)

    def set_baseline(self, name: str, ref: str | int) -> int:
        if not name.strip() or name.strip().isdigit() or name in ("latest", "previous"):
            raise ConfigError(f"{name!r} cannot name a baseline: it reads as a run.",
                              hint="Use a word, such as main or before-rag.")
        run_id = self.log.resolve(str(ref))
        self.log.set_baseline(name, run_id)
        return run_id

    def baseline(self, name: str) -> int | None:
        return self.log.baseline(name)

    def delete(self, ref: str | int) -> int:
        run_id = self.log.resolve(str(ref))
        self.log.delete_run(run_id)
        return run_id
