"""Alerts over the recent answers, each compared with what came before (thresholds in config):
latency spike, error-rate spike, spending ahead of the budget's pace, searches of indexed folders
that find nothing, a model file whose contents changed between answers, and answers whose sources
support less of what they say (groundedness: the hallucination threshold, or a drop)."""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import UTC, datetime

from engine.config import Settings
from engine.stats import percentile
from memory.store import Store, dicts

BASELINE_WINDOWS = 10  # the baseline is up to this many windows of answers before the recent one
MIN_SEARCHES = 5
MIN_GROUNDED = 5  # answers with sources in the window before their groundedness is judged
GROUNDEDNESS_DROP = 0.2  # a fall of the window's median by this much from before is an alert too


@dataclass(frozen=True)
class Alert:
    kind: str  # latency, errors, budget, retrieval, model_changed, groundedness
    message: str


def check(store: Store, settings: Settings, now: datetime | None = None) -> list[Alert]:
    now = now or datetime.now(UTC)
    window = max(2, settings.alert_window)
    recent = dicts(store.conn.execute(
        "SELECT id, status, total_ms, model, backend, model_hash FROM responses ORDER BY id DESC LIMIT ?",
        [window * (BASELINE_WINDOWS + 1)],
    ))
    latest, before = recent[:window], recent[window:]
    alerts: list[Alert] = []
    if len(latest) == window and len(before) >= window:
        alerts += _latency(latest, before, settings) + _errors(latest, before, settings)
    alerts += _budget(store, settings, now) + _retrieval(store, settings, window) + _model_changed(latest)
    return alerts + _groundedness(store, settings, window)


def _p95(rows: list[dict]) -> float | None:
    return percentile(sorted(r["total_ms"] for r in rows if r["status"] == "ok" and r["total_ms"]), 95)


def _latency(latest: list[dict], before: list[dict], settings: Settings) -> list[Alert]:
    now_p95, base_p95 = _p95(latest), _p95(before)
    if now_p95 and base_p95 and now_p95 >= settings.alert_latency_ratio * base_p95:
        return [Alert("latency", f"Latency spike: p95 of the last {len(latest)} answers is {now_p95:.0f} ms, "
                                 f"{now_p95 / base_p95:.1f}x the {base_p95:.0f} ms before.")]
    return []


def _errors(latest: list[dict], before: list[dict], settings: Settings) -> list[Alert]:
    rate = sum(r["status"] == "error" for r in latest) / len(latest)
    base = sum(r["status"] == "error" for r in before) / len(before)
    if rate >= settings.alert_error_rate and rate >= 2 * base:
        return [Alert("errors", f"Error spike: {rate:.0%} of the last {len(latest)} answers failed "
                                f"(before: {base:.0%}).")]
    return []


def _budget(store: Store, settings: Settings, now: datetime) -> list[Alert]:
    alerts = []
    day_start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    month_start = day_start.replace(day=1)
    if settings.budget_monthly_usd:
        spent = store.spent_usd(month_start.isoformat())
        days = calendar.monthrange(now.year, now.month)[1]
        elapsed = (now - month_start).total_seconds() / (days * 86400)
        projected = spent / max(elapsed, 1 / (days * 24))  # at least an hour in, or day one shouts
        if projected > settings.budget_monthly_usd:
            alerts.append(Alert("budget", f"Cloud spending is ahead of the monthly budget's pace: "
                                          f"{spent:.2f} USD so far, {projected:.2f} USD projected for the "
                                          f"month (budget {settings.budget_monthly_usd:.2f})."))
    if settings.budget_daily_usd:
        spent = store.spent_usd(day_start.isoformat())
        elapsed = (now - day_start).total_seconds() / 86400
        limit = settings.budget_daily_usd
        if spent >= 0.8 * limit or spent / max(elapsed, 1 / 24) > limit:
            alerts.append(Alert("budget", f"Cloud spending today: {spent:.2f} of {limit:.2f} USD, "
                                          "ahead of the daily budget's pace."))
    return alerts


def _retrieval(store: Store, settings: Settings, window: int) -> list[Alert]:
    """Searches of indexed folders that found nothing: a broken index, or a wrong folder choice.
    What was found counts, used or not: a question no file is about rightly uses no passage."""
    rows = store.conn.execute(
        """SELECT COALESCE(json_extract(attrs, '$.candidates'), json_extract(attrs, '$.passages'))
           FROM spans WHERE name = 'retrieval' AND json_extract(attrs, '$.folders') > 0
           ORDER BY id DESC LIMIT ?""",
        [window],
    ).fetchall()
    if len(rows) < MIN_SEARCHES:
        return []
    empty = sum(1 for (passages,) in rows if not passages)
    if empty / len(rows) >= settings.alert_empty_retrieval_rate:
        return [Alert("retrieval", f"Retrieval found nothing for {empty} of the last {len(rows)} "
                                   "questions that searched indexed folders: re-index them "
                                   "(`assistant index --rebuild`) or check which folders the "
                                   "conversations use.")]
    return []


def _groundedness(store: Store, settings: Settings, window: int) -> list[Alert]:
    """The median groundedness of the latest answers that had sources, against the hallucination
    threshold and against the answers before them."""
    values = [row[0] for row in store.conn.execute(
        "SELECT groundedness FROM responses WHERE status = 'ok' AND groundedness IS NOT NULL"
        " ORDER BY id DESC LIMIT ?", [window * (BASELINE_WINDOWS + 1)])]
    latest, before = values[:window], values[window:]
    if len(latest) < min(MIN_GROUNDED, window):
        return []
    now = percentile(sorted(latest), 50)
    base = percentile(sorted(before), 50) if len(before) >= len(latest) else None
    assert now is not None
    if now < settings.hallucination_threshold:
        return [Alert("groundedness", f"Answers may be made up: the median groundedness of the last "
                                      f"{len(latest)} answers with sources is {now:.0%}, below the "
                                      f"hallucination threshold of {settings.hallucination_threshold:.0%}: "
                                      "most of what they say is in none of their sources (`assistant "
                                      "review` lists them).")]
    if base is not None and base - now >= GROUNDEDNESS_DROP:
        return [Alert("groundedness", f"Groundedness dropped: the median of the last {len(latest)} answers "
                                      f"with sources is {now:.0%}, down from {base:.0%} before.")]
    return []


def _model_changed(latest: list[dict]) -> list[Alert]:
    """A local model whose file hash differs between recent answers: the file was replaced."""
    alerts = []
    by_model: dict[str, list[dict]] = {}
    for row in latest:
        if row["backend"] == "local" and row["model_hash"]:
            by_model.setdefault(row["model"], []).append(row)
    for model, rows in by_model.items():
        newest, oldest = rows[0]["model_hash"], rows[-1]["model_hash"]
        if newest != oldest:
            changed_at = next(r["id"] for r in reversed(rows) if r["model_hash"] == newest)
            alerts.append(Alert("model_changed", f"The model file of {model} changed: hash {oldest[:12]} "
                                                 f"before, {newest[:12]} since response {changed_at}. "
                                                 "Answers may differ."))
    return alerts
