"""The settings tables of the docs, generated from the settings model in engine/settings.py.

    python -m engine.config_docs          rewrites them in README.md and docs/configuration.md
    python -m engine.config_docs --check  fails when they are out of date (tests/test_docs.py)

A table sits between `<!-- generated: NAME -->` and `<!-- end generated: NAME -->`; the prose
around it is written by hand.
"""

from __future__ import annotations

import dataclasses
import json
import re
import sys
from pathlib import Path
from typing import Any

from engine.settings import FIELDS, MCP_FIELDS, PRICE_FIELDS, PROVIDER_FIELDS

ROOT = Path(__file__).resolve().parent.parent
FILES = (ROOT / "README.md", ROOT / "docs" / "configuration.md")


def default_text(f: dataclasses.Field) -> str:
    if f.metadata.get("shown"):
        return f.metadata["shown"]
    if f.default is dataclasses.MISSING:
        return "none"  # a table of tables, empty by default
    value: Any = f.default
    if value is None:
        return "unset"
    if value == "":
        return "—"
    if isinstance(value, bool):
        return "true" if value else "false"  # as TOML writes them
    if isinstance(value, tuple):
        return json.dumps(list(value))
    if isinstance(value, str):
        return json.dumps(value)
    return str(value)


def table(fields: dict[str, dataclasses.Field], heading: str) -> str:
    rows = [f"| {heading} | default | meaning |", "|---|---|---|"]
    for name, f in fields.items():
        if name == "name":  # a provider's name is its table's name
            continue
        doc = " ".join(f.metadata["doc"].split()).replace("|", "\\|")
        rows.append(f"| `{name}` | {default_text(f)} | {doc} |")
    return "\n".join(rows)


def tables() -> dict[str, str]:
    return {
        "settings": table(FIELDS, "setting"),
        "providers": table(PROVIDER_FIELDS, "provider setting"),
        "prices": table(PRICE_FIELDS, "price setting"),
        "mcp_servers": table(MCP_FIELDS, "MCP server setting"),
    }


def render(text: str) -> str:
    """`text` with every generated table brought up to date."""
    generated = tables()

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in generated:
            raise KeyError(f"unknown generated table {name!r}")
        return f"<!-- generated: {name} -->\n{generated[name]}\n<!-- end generated: {name} -->"

    pattern = r"<!-- generated: (\w+) -->\n(?:.*?\n)?<!-- end generated: \1 -->"
    return re.sub(pattern, replace, text, flags=re.S)


def main(argv: list[str]) -> int:
    stale = []
    for path in FILES:
        text = path.read_text(encoding="utf-8")
        fresh = render(text)
        if fresh != text:
            stale.append(path)
            if "--check" not in argv:
                path.write_text(fresh, encoding="utf-8")
    if stale and "--check" in argv:
        print("Out of date: " + ", ".join(map(str, stale)) + ". Run: python -m engine.config_docs")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
