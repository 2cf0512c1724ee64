"""What an answer cost: a versioned price table shipped with the app, overridable in config."""

from __future__ import annotations

import functools
import tomllib
from datetime import date
from importlib import resources

from engine.config import Price, Settings


@functools.cache
def _table() -> tuple[str, dict[str, list[Price]]]:
    data = tomllib.loads(resources.files("engine").joinpath("data/prices.toml").read_text("utf-8"))
    table: dict[str, list[Price]] = {}
    for entry in data["price"]:
        price = Price(entry["input_per_mtok"], entry["output_per_mtok"], entry["since"])
        table.setdefault(entry["model"], []).append(price)
    return data["version"], table


def table_version() -> str:
    return _table()[0]


def price_of(model: str, settings: Settings, on: date) -> Price | None:
    """The price in effect on `on`: the user's own entry if it holds by then, else the newest
    entry of the shipped table not after that date."""
    own = settings.prices.get(model)
    if own is not None and own.since <= on.isoformat():
        return own
    valid = [p for p in _table()[1].get(model, []) if p.since <= on.isoformat()]
    return max(valid, key=lambda p: p.since) if valid else None


def cost_usd(price: Price | None, prompt_tokens: int, completion_tokens: int) -> float | None:
    if price is None:
        return None
    return (prompt_tokens * price.input_per_mtok + completion_tokens * price.output_per_mtok) / 1e6
