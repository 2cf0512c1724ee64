"""Answer statistics over the response rows: latency percentiles, speed, tokens and cost per day,
per model / backend / template / folder / feature, cache hits, thumbs, errors, groundedness (p50
of the answers that had sources); and terminal plots.

Each figure is an indexed query over a time window: totals and days read one covering index
(`responses_for_stats`), and a percentile is the k-th entry of an index sorted by that column
(`responses_by_ttft`, ...), so a million rows take well under a second and none is read into Python.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from engine.errors import ConfigError
from memory.store import Store, dicts

GROUPS = {
    "model": "r.model",
    "backend": "r.backend",
    "template": "r.template || ' ' || COALESCE(r.template_version, '')",
    "feature": "CASE WHEN r.retrieved_chunk_ids IS NULL THEN 'chat' ELSE 'rag' END",
}
_SINCE = re.compile(r"^(\d+)\s*([mhdw])$")


def parse_since(text: str | None, now: datetime | None = None) -> str:
    """"7d", "24h", "30m", "2w", or a date (2026-11-01): the ISO time (UTC) the window starts."""
    now = now or datetime.now(UTC)
    if not text:
        return "0000"
    match = _SINCE.match(text.strip())
    if match:
        amount, unit = int(match[1]), match[2]
        delta = {"m": timedelta(minutes=amount), "h": timedelta(hours=amount),
                 "d": timedelta(days=amount), "w": timedelta(weeks=amount)}[unit]
        return (now - delta).isoformat()
    try:
        return datetime.fromisoformat(text.strip()).replace(tzinfo=UTC).isoformat()
    except ValueError as exc:
        raise ConfigError(f"--since {text!r} is neither a duration nor a date.",
                          hint="Use 30m, 24h, 7d, 2w, or a date like 2026-11-01.") from exc


def percentile(ordered: list[float], q: float) -> float | None:
    """The q-th percentile of sorted values, interpolating linearly between neighbours."""
    if not ordered:
        return None
    k = (len(ordered) - 1) * q / 100
    low = math.floor(k)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (k - low)


SMALL = 50_000  # fewer values than this are read and sorted in Python: faster than index walks


def percentiles(store: Store, column: str, where: str = "", args: tuple = (), count: int | None = None,
                qs: tuple[int, ...] = (50, 95, 99)) -> dict[str, float | None]:
    """Percentiles of a column over the successful answers matching `where`, interpolated like
    `percentile()`. Many values: read as the k-th entries of the index sorted by that column, so
    none is read into Python. Few (a recent window): read through the time index and sorted."""
    filters = f"r.status = 'ok' AND r.{column} IS NOT NULL {where}"
    if count is None:
        count = store.conn.execute(f"SELECT COUNT(*) FROM responses r WHERE {filters}", args).fetchone()[0]
    if count < SMALL:
        by_time = "INDEXED BY responses_for_stats" if "created_at" in where else ""
        values = sorted(row[0] for row in store.conn.execute(
            f"SELECT r.{column} FROM responses r {by_time} WHERE {filters}", args))
        return {f"p{q}": percentile(values, q) for q in qs}
    if count == 0:
        return dict.fromkeys((f"p{q}" for q in qs), None)
    result: dict[str, float | None] = {}
    for q in qs:
        k = (count - 1) * q / 100
        low = math.floor(k)
        pair = [row[0] for row in store.conn.execute(
            f"SELECT r.{column} FROM responses r WHERE {filters} ORDER BY r.{column} LIMIT 2 OFFSET ?",
            [*args, low],
        )]
        high = pair[1] if len(pair) > 1 else pair[0]
        result[f"p{q}"] = pair[0] + (high - pair[0]) * (k - low)
    return result


TOTALS = """COUNT(*) AS answers,
    COALESCE(SUM(r.status = 'error'), 0) AS errors,
    COALESCE(SUM(r.status = 'cancelled'), 0) AS cancelled,
    COALESCE(SUM(r.input_tokens), 0) AS input_tokens,
    COALESCE(SUM(r.output_tokens), 0) AS output_tokens,
    COALESCE(SUM(r.cost), 0) AS cost,
    COALESCE(SUM(r.cache_hit), 0) AS cache_hits,
    COALESCE(SUM(r.status = 'ok' AND r.ttft_ms IS NOT NULL), 0) AS n_ttft_ms,
    COALESCE(SUM(r.status = 'ok' AND r.total_ms IS NOT NULL), 0) AS n_total_ms,
    COALESCE(SUM(r.status = 'ok' AND r.tokens_per_s IS NOT NULL), 0) AS n_tokens_per_s"""
COUNTS = ("n_ttft_ms", "n_total_ms", "n_tokens_per_s")


def _summary(store: Store, where: str = "", args: tuple = (), totals: dict[str, Any] | None = None
             ) -> dict[str, Any]:
    """The figures of the answers matching `where` (SQL starting with AND, over `responses r`);
    `totals` when the caller already summed them."""
    if totals is None:
        totals = dicts(store.conn.execute(f"SELECT {TOTALS} FROM responses r WHERE 1 {where}", args))[0]
    thumbs = store.conn.execute(
        f"""SELECT COALESCE(SUM(f.rating = 1), 0), COALESCE(SUM(f.rating = -1), 0)
            FROM feedback f JOIN responses r ON r.id = f.response_id
            WHERE f.id IN (SELECT MAX(id) FROM feedback GROUP BY response_id)
              {where}""",
        args,
    ).fetchone()
    answers = totals["answers"]
    rated = thumbs[0] + thumbs[1]
    return {
        **{k: v for k, v in totals.items() if k not in COUNTS},
        "error_rate": totals["errors"] / answers if answers else None,
        "cache_hit_rate": totals["cache_hits"] / answers if answers else None,
        "thumbs_up": thumbs[0],
        "thumbs_down": thumbs[1],
        "thumbs_up_ratio": thumbs[0] / rated if rated else None,
        "ttft_ms": percentiles(store, "ttft_ms", where, args, totals["n_ttft_ms"]),
        "total_ms": percentiles(store, "total_ms", where, args, totals["n_total_ms"]),
        "tokens_per_s": percentiles(store, "tokens_per_s", where, args, totals["n_tokens_per_s"], qs=(50,)),
        # Answers that had sources only (NULL otherwise): how much of what they said the sources hold.
        "groundedness": percentiles(store, "groundedness", where, args, qs=(50,)),
    }


def _group_keys(store: Store, by: str, since: str) -> list[tuple[str, str, tuple]]:
    """(label, extra WHERE, its arguments) for each group."""
    if by == "folder":
        folders = [row[0] for row in store.conn.execute(
            """SELECT DISTINCT j.value FROM responses r JOIN spans s ON s.response_id = r.id
               AND s.name = 'retrieval', json_each(s.attrs, '$.found_in') j WHERE r.created_at >= ?""",
            [since],
        )]
        clause = ("AND r.id IN (SELECT s.response_id FROM spans s, json_each(s.attrs, '$.found_in') j"
                  " WHERE s.name = 'retrieval' AND j.value = ?)")
        return [(folder, clause, (folder,)) for folder in sorted(folders)]
    if by not in GROUPS:
        known = ", ".join([*GROUPS, "folder"])
        raise ConfigError(f"--by {by!r} is not a grouping.", hint=f"Use one of: {known}.")
    expression = GROUPS[by]
    keys = [row[0] for row in store.conn.execute(
        f"SELECT DISTINCT {expression} FROM responses r WHERE r.created_at >= ?", [since]
    )]
    return [(key, f"AND {expression} = ?", (key,)) for key in sorted(k for k in keys if k is not None)]


def _days(store: Store, since: str | None) -> list[dict[str, Any]]:
    """The totals of each day (UTC) that had answers: one range of the time index per day, which
    is faster than grouping every row by its date."""
    first, last = (store.conn.execute(f"SELECT {f}(created_at) FROM responses").fetchone()[0]
                   for f in ("MIN", "MAX"))
    if first is None:
        return []
    day = datetime.fromisoformat(max(first, since or first)[:10]).date()
    end = datetime.fromisoformat(last[:10]).date()
    days = []
    while day <= end:
        after = day + timedelta(days=1)
        low = max(day.isoformat(), since) if since else day.isoformat()
        row = dicts(store.conn.execute(
            f"SELECT {TOTALS} FROM responses r WHERE r.created_at >= ? AND r.created_at < ?",
            [low, after.isoformat()],
        ))[0]
        if row["answers"]:
            days.append({"day": day.isoformat(), **row})
        day = after
    return days


def compute(store: Store, since: str | None = None, by: str | None = None) -> dict[str, Any]:
    start = parse_since(since)
    # No window, no condition: the min, max and k-th entries are then steps along an index.
    window: tuple[str, tuple] = ("AND r.created_at >= ?", (start,)) if since else ("", ())
    # One pass over the time index gives the days, and the overall totals as their sums.
    days = _days(store, start if since else None)
    totals = {key: sum(d[key] for d in days) for key in days[0] if key != "day"} if days else None
    per_day = [{"day": d["day"], "answers": d["answers"], "tokens": d["input_tokens"] + d["output_tokens"],
                "cost": d["cost"], "errors": d["errors"]} for d in days]
    thumbs_per_day = {row["day"]: row for row in dicts(store.conn.execute(
        """SELECT substr(f.created_at, 1, 10) AS day, SUM(f.rating = 1) AS up, SUM(f.rating = -1) AS down
           FROM feedback f WHERE f.created_at >= ? GROUP BY day""",
        [start],
    ))}
    for row in per_day:
        day = thumbs_per_day.get(row["day"], {})
        row["thumbs_up"], row["thumbs_down"] = day.get("up", 0), day.get("down", 0)
    result: dict[str, Any] = {
        "since": start if since else None,
        "overall": _summary(store, *window, totals=totals),
        "per_day": per_day,
        "latency_histogram": histogram(store, *window),
    }
    if by:
        result["by"] = by
        result["groups"] = {label: _summary(store, window[0] + " " + where, window[1] + args)
                            for label, where, args in _group_keys(store, by, start)}
    return result


def histogram(store: Store, where: str = "", args: tuple = (), bins: int = 12) -> list[dict[str, float]]:
    """Answers' total time in equal-width bins from the fastest to the slowest."""
    filters = f"r.status = 'ok' AND r.total_ms IS NOT NULL {where}"
    by_time = "INDEXED BY responses_for_stats" if "created_at" in where else ""
    # Separate MIN and MAX: each is then one step along the index, not a scan.
    low = store.conn.execute(f"SELECT MIN(r.total_ms) FROM responses r {by_time} WHERE {filters}",
                             args).fetchone()[0]
    high = store.conn.execute(f"SELECT MAX(r.total_ms) FROM responses r {by_time} WHERE {filters}",
                              args).fetchone()[0]
    if low is None:
        return []
    width = (high - low) / bins or 1.0
    counts = dict(store.conn.execute(
        f"SELECT MIN(CAST((r.total_ms - ?) / ? AS INTEGER), ?) AS bin, COUNT(*) FROM responses r {by_time}"
        f" WHERE {filters} GROUP BY bin",
        [low, width, bins - 1, *args],
    ).fetchall())
    return [{"from_ms": low + i * width, "to_ms": low + (i + 1) * width, "count": counts.get(i, 0)}
            for i in range(bins)]


def plots(stats: dict[str, Any], width: int = 80, height: int = 12) -> list[tuple[str, str]]:
    """(title, text) plots drawn with characters: the latency histogram, cost per day, thumbs
    per day. Plain text (no colours), so the CLI and the TUI show the same thing."""
    import plotext as plt

    drawn = []

    def draw(title: str, fill, values: list[float] | None = None) -> None:
        plt.clf()
        plt.plotsize(width, height)
        plt.theme("clear")
        fill()
        if values is not None and not any(values):  # all zero: plotext would draw an axis of -1..1
            plt.ylim(0, 1)
        plt.title(title)
        drawn.append((title, plt.build()))

    bins = stats["latency_histogram"]
    if bins:
        draw("Answer latency (ms): how many answers took how long",
             lambda: plt.bar([f"{b['from_ms']:.0f}" for b in bins], [b["count"] for b in bins]))
    days = stats["per_day"]
    if days:
        labels = [d["day"][5:] for d in days]
        costs = [d["cost"] for d in days]
        draw("Cost per day (USD)", lambda: plt.bar(labels, costs), costs)
        if any(d["thumbs_up"] or d["thumbs_down"] for d in days):
            def thumbs() -> None:
                plt.multiple_bar(labels, [[d["thumbs_up"] for d in days], [d["thumbs_down"] for d in days]],
                                 labels=["up", "down"])
            draw("Thumbs per day", thumbs)
    return drawn
