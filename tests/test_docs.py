"""The user docs stay true to the code."""

from pathlib import Path

from engine import config_docs
from engine.config import FIELDS, PRICE_FIELDS, PROVIDER_FIELDS
from memory.migrations import MIGRATIONS
from memory.store import Store

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_every_setting_is_documented() -> None:
    text = (DOCS / "configuration.md").read_text()
    for name in FIELDS:
        assert f"| `{name}` |" in text, f"docs/configuration.md does not document {name}"
    for name in [*PROVIDER_FIELDS, *PRICE_FIELDS]:
        if name != "name":  # a provider's name is its table's name
            assert f"| `{name}` |" in text, f"docs/configuration.md does not document {name}"


def test_the_settings_tables_are_generated_from_the_config_model() -> None:
    for path in config_docs.FILES:
        text = path.read_text()
        assert "<!-- generated: settings -->" in text, f"{path} has no generated settings table"
        assert config_docs.render(text) == text, f"{path} is out of date: run python -m engine.config_docs"


def test_every_column_is_documented(tmp_path: Path) -> None:
    store = Store(tmp_path / "a.db")
    text = (DOCS / "schema.md").read_text()
    assert f"schema version {len(MIGRATIONS)}" in text
    assert "`chunks_fts`" in text and "`messages_fts`" in text
    for table in store.db.table_names():
        if table.startswith(("sqlite_", "chunks_fts", "messages_fts")):
            continue  # SQLite's own bookkeeping and the FTS5 index's shadow tables
        assert f"### {table}" in text, f"docs/schema.md does not document table {table}"
        for column in store.db[table].columns:
            assert f"`{column.name}`" in text, f"docs/schema.md does not document {table}.{column.name}"
    store.close()
