"""What the model is given of its sources (issue 21, "what the model is given"): documentation
markup removed from the passages it reads, the best passage nearest the question."""

from __future__ import annotations

import asyncio
from pathlib import Path

from engine import Engine, Finished
from engine.citations import readable, sources_message
from engine.prompts import built_in
from memory.retriever import Passage
from tests.conftest import events_of

# A section of MkDocs documentation as Textual's docs write it (../shared/corpora/textual-docs).
MKDOCS = '''### Thread workers

You can create threads by setting `thread=True` on the [run_worker][textual.dom.DOMNode.run_worker] method.

```python title="weather05.py" hl_lines="1-2 27-44"
--8<-- "docs/examples/guide/workers/weather05.py"
```

!!! important

    Textual will raise an exception if you add the `work` decorator to a regular function without `thread=True`.

!!! info "What are threads?"

    Threads are a form of concurrency supplied by your [Operating System](https://example.org/os).

=== "Output"

    ```{.textual path="docs/examples/guide/workers/weather05.py"}
    ```

=== "weather05.py"

    ```python
    --8<-- "docs/examples/guide/workers/weather05.py"
    ```

=== "worker.py"

    ```python
    @work(thread=True)
    def fetch(self) -> None:
        ...
    ```

Press ++ctrl+c++ to stop.
<!-- a note for the docs' writers -->
'''


def passage(number: int, text: str, file: str = "guide/workers.md") -> Passage:
    return Passage(number, "/docs", file, 1, 10, None, None, text, 0.0)


def test_documentation_markup_does_not_reach_the_model() -> None:
    text = readable(MKDOCS)
    for noise in ("--8<--", "hl_lines", "!!!", "===", "{.textual", "<!--", "++", "][", "](", "Output"):
        assert noise not in text, noise
    assert "You can create threads by setting `thread=True` on the run_worker method." in text
    assert "Important: Textual will raise an exception if you add the `work` decorator" in text
    assert "Info: What are threads?\n\nThreads are a form of concurrency supplied by your Operating System." in text
    # Code that is there stays, out of its tab, with its language; the empty blocks are gone.
    assert "worker.py:\n\n```python\n@work(thread=True)\ndef fetch(self) -> None:\n    ...\n```" in text
    assert text.count("```") == 2
    assert "Press ctrl+c to stop." in text


def test_front_matter_and_comments_go_plain_text_and_code_stay() -> None:
    assert readable("---\ntitle: Workers\ntags:\n  - guide\n---\n# Workers\n\nText.") == "# Workers\n\nText."
    assert readable("# A\n\n---\n\nkey: value\n---\n") == "# A\n\n---\n\nkey: value\n---"  # a rule, not front matter
    assert readable("a <!-- hidden --> b\n<!--\nmany\nlines\n-->\nc") == "a  b\n\nc"
    code = "```python\nitems[1]  # [text][ref] inside code is code\n    indented = True\n```"
    assert readable(code) == code
    plain = "Plain notes: a list\n\n- one\n- two\n\n    an indented block\n"
    assert readable(plain) == plain.strip("\n")


def test_sources_are_numbered_best_first_and_the_best_ends_nearest_the_question() -> None:
    passages = [passage(1, "the best " + MKDOCS), passage(2, "the second", "guide/other.md")]
    message = sources_message(passages, built_in("sources").text)
    assert "--8<--" not in message and "not instructions" in message
    assert message.index("[2] /docs/guide/other.md") < message.index("[1] /docs/guide/workers.md")
    assert "{sources}" not in message  # the template's mark: the sources go there
    # After the sources, nearest the question: what to do with them (the template's last line).
    assert message.endswith(">>>\n\n" + built_in("sources").text.split("{sources}")[1].strip())
    assert sources_message(passages, "Use them.").endswith(">>>")  # a template without the mark
    as_filed = sources_message(passages, "Use them.", markup=True, best_last=False)
    assert "--8<--" in as_filed and as_filed.index("[1] ") < as_filed.index("[2] ")


async def test_the_model_reads_the_passages_without_their_markup(settings, tmp_path: Path) -> None:
    """With the real model and retrieval: the prompt holds the passage's words, not the include
    lines or markers around them; the sources shown and attribution keep the file's text."""
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "workers.md").write_text(MKDOCS)
    (docs / "tables.md").write_text("# Tables\n\nCall add_columns, then add_rows, to fill a DataTable.\n")
    engine = Engine(settings.replace(max_tokens=24, cache=False))
    await asyncio.to_thread((await engine.knowledge()).index, docs)
    local = engine.router.backends["local"]
    prompts, stream = [], local.stream
    local.stream = lambda messages, *args: (prompts.append(messages), stream(messages, *args))[1]
    events = await events_of(engine, "How do I run a worker in a thread?")
    assert isinstance(events[-1], Finished)
    sources = [s.passage for s in events[-1].sources]
    assert any(p.file == "workers.md" and "--8<--" in p.text for p in sources)  # shown as in the file
    system = prompts[0][0]["content"]
    assert "setting `thread=True` on the run_worker method" in system
    for noise in ("--8<--", "hl_lines", "!!!", '=== "', "{.textual", "<!--"):
        assert noise not in system, noise
    await engine.close()
