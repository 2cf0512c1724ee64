"""The chunker on real files: structure, budgets, overlap and exact line ranges."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from memory.chunker import chunk_lines, estimate_tokens
from memory.documents import Chunk, Line
from plugins.loaders import load_docx, load_html, load_pdf, load_text
from tests.test_loaders import HTML_PAGE, make_docx, make_pdf

MARKDOWN = """\
Intro before any heading.

# Budget

## 2025

Rent is the largest cost.
Food comes second.

```python
def total(costs):

    return sum(costs)
```

## 2026
Plans for the next year.

Travel
======
Trains mostly.
"""

RST = """\
=====
Guide
=====

Intro paragraph.

Install
-------

Run the installer.

Usage
-----

Call it.
"""

PYTHON = '''\
"""A module."""

import os


@decorator
def first(x):
    a = 1

    b = 2
    return a + b


class Second:
    def method(self):
        return 1

    def other(self):
        return 2


def third():
    return os.sep
'''


def write(tmp_path: Path, name: str, text: str) -> tuple[Path, list[str]]:
    path = tmp_path / name
    path.write_text(text)
    return path, text.splitlines()


def assert_ranges_match(chunks: list[Chunk], file_lines: list[str]) -> None:
    """Each chunk's text is exactly the file's lines start_line..end_line."""
    for chunk in chunks:
        expected = "\n".join(line.rstrip() for line in file_lines[chunk.start_line - 1 : chunk.end_line])
        assert chunk.text == expected, chunk


def tokens_of(chunk: Chunk) -> int:
    return sum(estimate_tokens(line) for line in chunk.text.split("\n"))


def test_estimate_tokens() -> None:
    assert estimate_tokens("") == 0 and estimate_tokens("   ") == 0
    assert estimate_tokens("word") == 1
    assert estimate_tokens("three small words") == 4
    assert estimate_tokens("x" * 600) == 100  # an unbroken string is not one cheap word


def test_empty_input() -> None:
    assert chunk_lines([], "text") == []
    assert chunk_lines([Line("", 1), Line("   ", 2)], "markdown") == []


def test_markdown_sections_headings_and_fences(tmp_path: Path) -> None:
    path, file_lines = write(tmp_path, "budget.md", MARKDOWN)
    chunks = chunk_lines(load_text(path), "markdown")
    assert [(c.heading, c.start_line, c.end_line) for c in chunks] == [
        (None, 1, 1),
        ("Budget > 2025", 3, 14),  # the lone "# Budget" stays with its first subsection
        ("Budget > 2026", 16, 17),
        ("Travel", 19, 21),  # a setext heading
    ]
    assert_ranges_match(chunks, file_lines)


def test_markdown_fence_kept_whole_and_headings_never_overlap(tmp_path: Path) -> None:
    path, file_lines = write(tmp_path, "budget.md", MARKDOWN)
    chunks = chunk_lines(load_text(path), "markdown", budget_tokens=12, overlap_tokens=4)
    assert_ranges_match(chunks, file_lines)
    fence = [c for c in chunks if "```python" in c.text]
    assert len(fence) == 1 and fence[0].text.endswith("return sum(costs)\n```")
    assert all(tokens_of(c) <= 12 for c in chunks)
    for before, after in zip(chunks, chunks[1:], strict=False):
        if before.heading != after.heading:
            assert after.start_line > before.end_line  # no overlap across a heading


def test_rst_titles(tmp_path: Path) -> None:
    path, file_lines = write(tmp_path, "guide.rst", RST)
    chunks = chunk_lines(load_text(path), "rst")
    assert [(c.heading, c.start_line, c.end_line) for c in chunks] == [
        ("Guide", 1, 5), ("Guide > Install", 7, 10), ("Guide > Usage", 12, 15),
    ]
    assert_ranges_match(chunks, file_lines)


def test_code_splits_before_top_level_definitions(tmp_path: Path) -> None:
    path, file_lines = write(tmp_path, "module.py", PYTHON)
    chunks = chunk_lines(load_text(path), "code", budget_tokens=20, overlap_tokens=0)
    assert_ranges_match(chunks, file_lines)
    firsts = [c.text.split("\n")[0] for c in chunks]
    assert firsts == ['"""A module."""', "@decorator", "class Second:", "def third():"]
    whole = chunk_lines(load_text(path), "code")
    assert len(whole) == 1 and (whole[0].start_line, whole[0].end_line) == (1, len(file_lines))


def test_big_code_definition_splits_at_blank_lines_never_mid_line(tmp_path: Path) -> None:
    body = "\n\n".join(f"    step_{i} = compute({i}, more, args)\n    check(step_{i})" for i in range(30))
    path, file_lines = write(tmp_path, "big.py", f"def big():\n{body}\n")
    chunks = chunk_lines(load_text(path), "code", budget_tokens=30, overlap_tokens=8)
    assert len(chunks) > 5
    assert_ranges_match(chunks, file_lines)
    assert all(tokens_of(c) <= 30 for c in chunks)
    for chunk in chunks[1:]:
        assert chunk.text.startswith("    check(") or chunk.text.startswith("    step_")


def test_paragraphs_pack_and_overlap(tmp_path: Path) -> None:
    paragraphs = [" ".join(f"p{p}w{w}" for w in range(12)) for p in range(20)]
    text = "\n\n".join("\n".join(para[i : i + 40] for i in range(0, len(para), 40)) for para in paragraphs)
    path, file_lines = write(tmp_path, "prose.txt", text + "\n")
    chunks = chunk_lines(load_text(path), "text", budget_tokens=60, overlap_tokens=10)
    assert len(chunks) > 3
    assert_ranges_match(chunks, file_lines)
    assert all(tokens_of(c) <= 60 for c in chunks)
    for before, after in zip(chunks, chunks[1:], strict=False):
        assert before.start_line < after.start_line <= before.end_line  # overlapping, moving forward
    no_overlap = chunk_lines(load_text(path), "text", budget_tokens=60, overlap_tokens=0)
    for before, after in zip(no_overlap, no_overlap[1:], strict=False):
        assert after.start_line > before.end_line


def test_long_paragraph_by_lines_long_line_by_words_long_word_by_characters(tmp_path: Path) -> None:
    long_line = " ".join(f"word{i}" for i in range(300))
    blob = "A" * 3000
    path, _ = write(tmp_path, "long.txt", f"short one\nshort two\n{long_line}\n{blob}\nend\n")
    chunks = chunk_lines(load_text(path), "text", budget_tokens=50, overlap_tokens=5)
    assert all(tokens_of(c) <= 50 for c in chunks)
    words = [c for c in chunks if c.start_line == c.end_line == 3]
    assert len(words) > 3
    assert " ".join(c.text for c in words).split() == long_line.split()
    blob_chunks = [c for c in chunks if "AAAA" in c.text]
    assert "".join(c.text.replace("\nend", "") for c in blob_chunks) == blob
    assert chunks[0].text.startswith("short one\nshort two")


def test_pdf_pages_are_chunked_apart(tmp_path: Path) -> None:
    lines = load_pdf(make_pdf(tmp_path / "two.pdf"))
    chunks = chunk_lines(lines, "pdf")
    assert [(c.page, c.start_line, c.end_line, c.text) for c in chunks] == [
        (1, 1, 2, "Alpha first line\nAlpha second line"), (2, 1, 2, "Beta only line\nBeta last line"),
    ]


def test_html_and_docx_blocks(tmp_path: Path) -> None:
    page = tmp_path / "page.html"
    page.write_text(HTML_PAGE)
    chunks = chunk_lines(load_html(page), "html", budget_tokens=8, overlap_tokens=0)
    assert [c.text for c in chunks] == ["Garden notes\nTomatoes", "Water them every morning.\nBasil\nMint",
                                        "line one\nline two"]
    assert [(c.start_line, c.end_line) for c in chunks] == [(4, 9), (10, 19), (21, 22)]
    chunks = chunk_lines(load_docx(make_docx(tmp_path / "r.docx")), "docx")
    assert len(chunks) == 1 and (chunks[0].start_line, chunks[0].end_line) == (1, 6)
    assert chunks[0].text.startswith("Quarterly report\nSales grew")


def test_custom_token_counter() -> None:
    lines = [Line(f"line {i}", i) for i in range(1, 11)]
    chunks = chunk_lines(lines, "text", budget_tokens=20, overlap_tokens=0, count_tokens=len)
    assert [c.text.count("\n") + 1 for c in chunks] == [3, 3, 3, 1]  # "line N" is 6 characters


def test_bad_budget() -> None:
    with pytest.raises(ValueError, match="budget_tokens"):
        chunk_lines([Line("x", 1)], "text", budget_tokens=0)


def test_unknown_kind_is_text_and_trailing_spaces_are_dropped() -> None:
    chunks = chunk_lines([Line("a  ", 1), Line("b\t", 2)], "something-new")
    assert chunks == [Chunk("a\nb", 1, 2, None, None)]


def test_two_thousand_small_files_chunk_fast() -> None:
    documents = []
    for n in range(2000):
        kind = ("markdown", "code", "text", "rst")[n % 4]
        text = (MARKDOWN, PYTHON, MARKDOWN.replace("#", ""), RST)[n % 4]
        documents.append(([Line(t, i) for i, t in enumerate(text.splitlines(), 1)], kind))
    started = time.perf_counter()
    total = sum(len(chunk_lines(lines, kind)) for lines, kind in documents)
    elapsed = time.perf_counter() - started
    assert total >= 2000
    assert elapsed < 1.0, f"{elapsed:.2f} s for 2,000 files"


def test_code_heavy_text_is_cut_by_the_embedders_word_pieces_not_the_estimate() -> None:
    from memory.embedder import Embedder

    embedder = Embedder()
    # One "word" per line to the estimate, a dozen word pieces or more to the model.
    code = [f"self.query_one('#panel-{n}', Button).styles.background='rgba(0,0,{n},0.5)'" for n in range(60)]
    lines = [Line(text, number) for number, text in enumerate(["```python", *code, "```"], 1)]
    budget = embedder.max_tokens
    by_estimate = chunk_lines(lines, "markdown", budget, 40)
    by_pieces = chunk_lines(lines, "markdown", budget, 40, embedder.count_tokens)
    assert max(embedder.count_tokens(c.text) for c in by_estimate) > budget  # the end would go unseen
    assert max(embedder.count_tokens(c.text) for c in by_pieces) <= budget
    assert len(by_pieces) > len(by_estimate)
    assert by_pieces[0].start_line == 1 and by_pieces[-1].end_line == len(lines)
