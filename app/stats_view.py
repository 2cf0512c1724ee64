"""Stats and traces as text: rich tables for `assistant stats` and the Stats screen, and a
waterfall of an answer's spans for `assistant trace` and the trace dialog."""

from __future__ import annotations

import json
from typing import Any

from rich.table import Table


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f} ms"


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def _row(label: str, s: dict[str, Any]) -> list[str]:
    speed = s["tokens_per_s"]["p50"]
    return [
        label, str(s["answers"]),
        " / ".join(_ms(s["ttft_ms"][p]) for p in ("p50", "p95", "p99")),
        " / ".join(_ms(s["total_ms"][p]) for p in ("p50", "p95", "p99")),
        "-" if speed is None else f"{speed:.1f}",
        f"{s['input_tokens']:,} / {s['output_tokens']:,}",
        f"{s['cost']:.4f}",
        _share(s["cache_hit_rate"]),
        f"{s['thumbs_up']}/{s['thumbs_down']} ({_share(s['thumbs_up_ratio'])})",
        _share(s["error_rate"]),
        _share(s.get("groundedness", {}).get("p50")),
    ]


def stats_tables(result: dict[str, Any]) -> list[Table]:
    columns = ["", "answers", "first token p50/p95/p99", "total p50/p95/p99", "tok/s", "tokens in/out",
               "cost USD", "cache hits", "👍/👎 (up)", "errors", "grounded p50"]
    since = f" since {result['since'][:16]}" if result.get("since") else ""
    summary = Table(*columns, title=f"Answers{since}")
    summary.add_row(*_row("all", result["overall"]))
    for label, group in result.get("groups", {}).items():
        summary.add_row(*_row(f"{result['by']}: {label}", group))
    tables = [summary]
    if result["per_day"]:
        days = Table("day", "answers", "tokens", "cost USD", "👍", "👎", "errors", title="Per day")
        for d in result["per_day"]:
            days.add_row(d["day"], str(d["answers"]), f"{d['tokens']:,}", f"{d['cost']:.4f}",
                         str(d["thumbs_up"]), str(d["thumbs_down"]), str(d["errors"]))
        tables.append(days)
    return tables


def trace_lines(response: dict[str, Any], spans: list[dict[str, Any]], width: int = 40) -> list[str]:
    """The inputs of an answer, then each step as a bar on a shared time axis."""
    lines = [
        f"model {response['model']} ({response['backend']}"
        + (f", {response['endpoint']}" if response.get("endpoint") not in (None, "local") else "") + ")"
        + (f", file sha256 {response['model_hash'][:12]}" if response.get("model_hash") else ""),
        f"template {response['template']} version {response['template_version']}",
        f"tokens {response['input_tokens']} in, {response['output_tokens']} out; "
        f"first token {_ms(response['ttft_ms'])}, total {_ms(response['total_ms'])}",
    ]
    if response.get("retrieved_chunk_ids"):
        lines.append(f"retrieved chunks {', '.join(map(str, json.loads(response['retrieved_chunk_ids'])))}")
    passed = json.loads(response.get("route") or "[]")
    for name, why in passed:
        lines.append(f"passed over {name}: {why}")
    if not spans:
        return lines + ["(no trace recorded)"]
    total = max(s["start_ms"] + s["duration_ms"] for s in spans) or 1.0
    lines.append("")
    for s in spans:
        start = int(s["start_ms"] / total * width)
        length = max(1, int(s["duration_ms"] / total * width))
        bar = " " * start + "█" * min(length, width - start)
        name = ("  " if s["parent"] else "") + s["name"]
        details = ", ".join(f"{k}={v}" for k, v in s["attrs"].items()) if s["attrs"] else ""
        lines.append(f"{name:<22} {bar:<{width}} {s['duration_ms']:>9,.1f} ms  {details}")
    return lines
