"""Where the benchmarks find the real documents they ask about: Textual's docs (MIT) in the shared
corpora folder next to the checkout, and the questions written over them."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEXTUAL_DOCS = ROOT.parent / "shared" / "corpora" / "textual-docs"
TEXTUAL_DOCS_QUESTIONS = ROOT / "docs" / "evals" / "textual-docs.jsonl"
