"""How similar the passages found for a question are to it, when the folder answers it and when it
does not: the numbers behind `rag_min_similarity` (docs/benchmarks.md, "Which sources are shown").

Indexes Textual's docs (../shared/corpora/textual-docs, real documents nobody here wrote) into a
temporary data folder, asks questions written in a user's words (each with the file that answers
it) and questions the docs cannot answer, and prints for each the cosine similarity between the
question and its passages. Chooses no floor itself: it prints how many answerable questions keep
their file, and how many unrelated ones still list a source, at each floor.

    .venv/bin/python bench/retrieval_floor.py [--corpus DIR] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

CORPUS = Path(__file__).resolve().parent.parent.parent / "shared" / "corpora" / "textual-docs"

# (question, the file that answers it), in a user's words rather than the docs'.
ANSWERABLE = [
    ("How do I make a key press call a method in my app?", "docs/guide/input.md"),
    ("How can I run a long network request without freezing the interface?", "docs/guide/workers.md"),
    ("How do I show a popup dialog that covers the screen and returns a choice?", "docs/guide/screens.md"),
    ("How can I test my app by simulating clicks?", "docs/guide/testing.md"),
    ("How do I change the colors of the whole app with a theme?", "docs/guide/design.md"),
    ("How do I put widgets side by side in a row?", "docs/guide/layout.md"),
    ("How do I arrange widgets in a grid with several columns?", "docs/guide/layout.md"),
    ("How do I find all the buttons on the screen from code?", "docs/guide/queries.md"),
    ("How do I update the display automatically when an attribute changes?", "docs/guide/reactivity.md"),
    ("How can a widget send a custom message to its parent?", "docs/guide/events.md"),
    ("How do I make something fade out smoothly over a second?", "docs/guide/animation.md"),
    ("How do I see print output and logs while my app is running?", "docs/guide/devtools.md"),
    ("How do I add my own commands to the command palette?", "docs/guide/command_palette.md"),
    ("How do I show a table of rows and columns?", "docs/widgets/data_table.md"),
    ("Which widget shows a folder's files as a tree I can expand?", "docs/widgets/directory_tree.md"),
    ("How do I let the user pick one option from a dropdown?", "docs/widgets/select.md"),
    ("How do I show a progress bar for a download?", "docs/widgets/progress_bar.md"),
    ("How can I show a short notification that disappears by itself?", "docs/widgets/toast.md"),
    ("Is there a multi-line text editor widget with syntax highlighting?", "docs/widgets/text_area.md"),
    ("How do I make an on/off toggle?", "docs/widgets/switch.md"),
    ("How do I put content in tabs the user can switch between?", "docs/widgets/tabbed_content.md"),
    ("How do I restrict a text input to a phone number format?", "docs/widgets/masked_input.md"),
    ("How do I render Markdown text inside my app?", "docs/widgets/markdown.md"),
    ("How do I style a widget with CSS using its id?", "docs/guide/CSS.md"),
    ("What happens when I call exit on the app, and can it return a value?", "docs/guide/app.md"),
    ("How do I show a footer with the available key bindings?", "docs/widgets/footer.md"),
]

# Questions the docs cannot answer: general knowledge, and everyday requests to an assistant.
UNRELATED = [
    "How tall is Everest?",
    "What is the capital of Australia?",
    "Who wrote Pride and Prejudice?",
    "How many legs does a spider have?",
    "What is a good recipe for banana bread?",
    "When did the Second World War end?",
    "How do I get a red wine stain out of a carpet?",
    "What is the boiling point of water at high altitude?",
    "Translate 'good morning' into Spanish.",
    "How often should I feed my cat?",
    "What's the best way to train for a marathon?",
    "Explain how vaccines work.",
    "What is the distance from the Earth to the Moon?",
    "Recommend a good science fiction novel.",
    "How do I file my taxes?",
    "Say hello.",
]


def measure(corpus: Path) -> dict:
    from engine.config import load_settings
    from engine.knowledge import Knowledge
    from memory.store import Store

    home = Path(tempfile.mkdtemp(prefix="retrieval-floor-"))
    os.environ["ASSISTANT_HOME"] = str(home)
    store = Store(home / "assistant.db")
    knowledge = Knowledge(load_settings(), store, home)
    summary = knowledge.index(corpus)
    folder_ids = knowledge.searchable(None)
    from memory.retriever import retrieve

    def found(question: str) -> list:
        # No floor: every passage the search would have placed in the prompt before.
        return retrieve(knowledge.corpus, knowledge.vectors, knowledge.embedder, question, folder_ids, k=5)

    answerable = []
    for question, file in ANSWERABLE:
        passages = found(question)
        own = [p.similarity for p in passages if p.file == file]
        answerable.append({"question": question, "file": file, "found": bool(own),
                           "best_own": max(own) if own else None,
                           "similarities": [round(p.similarity, 3) for p in passages]})
    unrelated = []
    for question in UNRELATED:
        passages = found(question)
        unrelated.append({"question": question, "best": max((p.similarity for p in passages), default=None),
                          "similarities": [round(p.similarity, 3) for p in passages]})
    store.close()
    return {"chunks": summary.chunks_added, "files": summary.indexed, "answerable": answerable,
            "unrelated": unrelated}


def report(results: dict) -> None:
    answerable, unrelated = results["answerable"], results["unrelated"]
    print(f"{results['files']} files, {results['chunks']} chunks")
    print("\nanswerable: similarity of the best passage from the file that answers it (top 5, no floor)")
    for row in sorted(answerable, key=lambda r: r["best_own"] or 0):
        best = f"{row['best_own']:.3f}" if row["found"] else "  -  "
        print(f"  {best}  {row['question']}  ({row['file']})")
    print("\nunrelated: similarity of the best passage found (top 5, no floor)")
    for row in sorted(unrelated, key=lambda r: r["best"] or 0):
        print(f"  {row['best']:.3f}  {row['question']}")
    found = [r for r in answerable if r["found"]]
    print(f"\nfloor   answerable keeping their file (of {len(found)} found)   unrelated listing a source "
          f"(of {len(unrelated)})   passages kept per answerable question")
    for floor in (0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4):
        kept = sum(r["best_own"] >= floor for r in found)
        listed = sum((r["best"] or -1) >= floor for r in unrelated)
        per = sum(sum(s >= floor for s in r["similarities"]) for r in answerable) / len(answerable)
        print(f"  {floor:.2f}   {kept:>2}                                          {listed:>2}"
              f"                            {per:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
    results = measure(args.corpus)
    report(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
