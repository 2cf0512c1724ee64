"""Eval runs in SQLite: a run of a dataset, one result row per case, and named baselines.

Shares the store's connection and lock (like `Corpus`), so every method is one short transaction
and a run interrupted half-way keeps the cases it finished.
"""

from __future__ import annotations

import json
from typing import Any

from memory.errors import NotFoundError
from memory.store import StoreView, dicts, now, translated

_JSON_RUN = ("config", "summary")
_JSON_RESULT = ("metrics", "details")


def _decoded(row: dict[str, Any], columns: tuple[str, ...]) -> dict[str, Any]:
    for column in columns:
        if column in row:
            row[column] = json.loads(row[column]) if row[column] else {}
    return row


class EvalLog(StoreView):

    # runs --------------------------------------------------------------------------------------

    @translated
    def start_run(self, run: dict[str, Any]) -> int:
        row = {**run, "status": "running", "started_at": now(), "config": json.dumps(run["config"])}
        columns = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        return self.conn.execute(f"INSERT INTO eval_runs ({columns}) VALUES ({marks})",
                                 list(row.values())).lastrowid

    @translated
    def finish_run(self, run_id: int, status: str, summary: dict[str, Any], error: str | None = None) -> None:
        self.conn.execute(
            "UPDATE eval_runs SET status = ?, summary = ?, error = ?, finished_at = ? WHERE id = ?",
            [status, json.dumps(summary), error, now(), run_id],
        )

    @translated
    def run(self, run_id: int) -> dict[str, Any]:
        rows = dicts(self.conn.execute("SELECT * FROM eval_runs WHERE id = ?", [run_id]))
        if not rows:
            raise NotFoundError(f"There is no eval run {run_id}.", hint="`assistant eval runs` lists them.")
        return self._with_baselines(_decoded(rows[0], _JSON_RUN))

    @translated
    def runs(self, limit: int = 100) -> list[dict[str, Any]]:
        """Newest first, each with the baseline names pointing at it."""
        rows = dicts(self.conn.execute("SELECT * FROM eval_runs ORDER BY id DESC LIMIT ?", [limit]))
        return [self._with_baselines(_decoded(r, _JSON_RUN)) for r in rows]

    @translated
    def delete_run(self, run_id: int) -> None:
        self.run(run_id)
        self.conn.execute("DELETE FROM eval_runs WHERE id = ?", [run_id])

    def _with_baselines(self, row: dict[str, Any]) -> dict[str, Any]:
        row["baselines"] = [r[0] for r in self.conn.execute(
            "SELECT name FROM eval_baselines WHERE run_id = ? ORDER BY name", [row["id"]])]
        return row

    @translated
    def resolve(self, ref: str) -> int:
        """A run id from what a user types: an id, `latest`, `previous`, or a baseline's name."""
        text = ref.strip()
        if text.isdigit():
            return int(text)
        if text in ("latest", "previous"):
            ids = [r[0] for r in self.conn.execute("SELECT id FROM eval_runs ORDER BY id DESC LIMIT 2")]
            index = 0 if text == "latest" else 1
            if len(ids) <= index:
                raise NotFoundError(f"There is no {text} eval run.",
                                    hint="Run `assistant eval DATASET.jsonl`.")
            return ids[index]
        row = self.conn.execute("SELECT run_id FROM eval_baselines WHERE name = ?", [text]).fetchone()
        if row is None:
            raise NotFoundError(f"There is no eval run or baseline named {text!r}.",
                                hint="Give a run id, `latest`, `previous`, or a baseline name "
                                     "(`assistant eval runs` lists them).")
        return row[0]

    # baselines ---------------------------------------------------------------------------------

    @translated
    def set_baseline(self, name: str, run_id: int) -> None:
        self.run(run_id)
        self.conn.execute(
            "INSERT INTO eval_baselines (name, run_id, set_at) VALUES (?, ?, ?)"
            " ON CONFLICT (name) DO UPDATE SET run_id = excluded.run_id, set_at = excluded.set_at",
            [name, run_id, now()],
        )

    @translated
    def baseline(self, name: str) -> int | None:
        row = self.conn.execute("SELECT run_id FROM eval_baselines WHERE name = ?", [name]).fetchone()
        return row[0] if row else None

    # results -----------------------------------------------------------------------------------

    @translated
    def add_result(self, run_id: int, result: dict[str, Any]) -> int:
        row = {**result, "run_id": run_id,
               **{c: json.dumps(result[c], ensure_ascii=False) for c in _JSON_RESULT}}
        columns = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        return self.conn.execute(f"INSERT INTO eval_results ({columns}) VALUES ({marks})",
                                 list(row.values())).lastrowid

    @translated
    def results(self, run_id: int) -> list[dict[str, Any]]:
        rows = dicts(self.conn.execute(
            "SELECT * FROM eval_results WHERE run_id = ? ORDER BY ordinal", [run_id]))
        return [_decoded(r, _JSON_RESULT) for r in rows]
