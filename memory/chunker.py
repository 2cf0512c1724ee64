"""Split a document's lines into chunks small enough to embed and to quote in a prompt.

Splitting follows the document's structure, most preferred first:

1. Sections: Markdown `#` and setext headings, reStructuredText underlined titles. A chunk never
   spans two sections, its `heading` is the path of titles ("Budget > 2025"), and the overlap
   between chunks never crosses a heading. A heading with no text of its own before a deeper
   heading ("# Budget" right before "## 2025") stays with the deeper section.
   PDF pages are chunked one by one, so a chunk's lines are always on one page.
2. Blocks, packed greedily up to the budget: paragraphs (blank-line separated); Markdown fenced
   code blocks whole; in code, top-level definitions (def, class, function, fn, func, public ...)
   with the decorators and comments just above them; for HTML and DOCX each Line (a text block,
   a paragraph) is a block.
3. A block over the budget is split into its paragraphs (code), then into lines; a line over the
   budget into runs of words, and a word over the budget into runs of characters.

Consecutive chunks of a section overlap by up to `overlap_tokens` of whole lines taken from the
end of the previous chunk (none when its last line alone is longer than that).

A chunk's size is the sum of its lines' counts (blank lines count 0), so with a counter whose counts
add up over whitespace, as the embedding model's word-piece tokenizer does (the indexer hands in
`Embedder.count_tokens`), no chunk is longer than `budget_tokens` of it: the embedder reads every
chunk whole. `estimate_tokens` is the fallback when no counter is given; it undercounts code and
punctuation against word pieces (a 200-token budget gave chunks of up to 438).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from memory.documents import Chunk, Line

TokenCounter = Callable[[str], int]

# Bumped whenever the same file would be cut into other chunks: the indexer records it per folder
# and re-chunks a folder cut by another version on its next index.
CHUNKER_VERSION = 2


def estimate_tokens(text: str) -> int:
    """About 4/3 tokens per whitespace-separated word, at least 1 for a non-empty line.

    At least one token per 6 characters too, so unbroken strings (minified code, base64, long
    URLs), which a real tokenizer splits into many tokens, are not counted as one word.
    """
    words = len(text.split())
    if not words:
        return 0
    return max((words * 4 + 1) // 3, len(text) // 6)


@dataclass(slots=True)
class _Piece:
    """Lines start..end-1 of a section (or, with `text`, a run of words of line `start`)."""

    start: int
    end: int
    tokens: int
    text: str | None = None


@dataclass(slots=True)
class _Section:
    start: int
    end: int
    heading: str | None
    heading_lines: frozenset[int] = frozenset()


def chunk_lines(
    lines: list[Line],
    kind: str,
    budget_tokens: int = 200,
    overlap_tokens: int = 40,
    count_tokens: TokenCounter | None = None,
) -> list[Chunk]:
    """Chunks of at most `budget_tokens` (as counted by `count_tokens`, summed per line).

    `kind` is the loader's kind ("text", "markdown", "rst", "code", "html", "pdf", "docx");
    an unknown kind is chunked as text. Overlap is capped at half the budget.
    """
    if budget_tokens < 1:
        raise ValueError(f"budget_tokens must be at least 1, not {budget_tokens}")
    if overlap_tokens < 0:
        raise ValueError(f"overlap_tokens must not be negative, not {overlap_tokens}")
    overlap_tokens = min(overlap_tokens, budget_tokens // 2)
    count = count_tokens or estimate_tokens
    chunks: list[Chunk] = []
    for page in _pages(lines):
        tokens = [count(line.text) if line.text.strip() else 0 for line in page]
        if not any(tokens):
            continue
        if kind == "markdown":
            sections = _markdown_sections(page)
        elif kind == "rst":
            sections = _rst_sections(page)
        else:
            sections = [_Section(0, len(page), None)]
        for section in sections:
            blocks = _blocks_of(page, section, kind)
            pieces = _pieces(page, tokens, blocks, budget_tokens, count, split_paragraphs=kind == "code")
            chunks.extend(_pack(page, tokens, pieces, section.heading, budget_tokens, overlap_tokens))
    return chunks


def _pages(lines: list[Line]) -> Iterator[list[Line]]:
    """Runs of consecutive lines on the same page (all lines, for formats without pages)."""
    start = 0
    for index in range(1, len(lines) + 1):
        if index == len(lines) or lines[index].page != lines[start].page:
            yield lines[start:index]
            start = index


# --- sections ---------------------------------------------------------------------------------

_ATX = re.compile(r" {0,3}(#{1,6})(?=[ \t]|$)")
_SETEXT = re.compile(r" {0,3}(=+|-+)[ \t]*$")
_FENCE = re.compile(r" {0,3}(`{3,}|~{3,})")
_LIST_OR_QUOTE = re.compile(r" {0,3}(?:[-*+](?:[ \t]|$)|\d{1,9}[.)](?:[ \t]|$)|>)")


def _atx_title(rest: str) -> str:
    """"## Title ##" -> "Title" (by hand: a regex for the closing #s backtracks on long lines)."""
    title = rest.strip()
    without = title.rstrip("#")
    if without != title and (not without or without[-1] in " \t"):
        title = without.rstrip()
    return title


def _heading_path(stack: list[tuple[int, str]]) -> str | None:
    return " > ".join(title for _, title in stack if title) or None


def _sections_from(lines: list[Line], headings: list[tuple[int, int, int, str]]) -> list[_Section]:
    """Sections from (start, end, level, title) headings; heading-only sections join their child."""
    if not headings:
        return [_Section(0, len(lines), None)]
    sections: list[_Section] = []
    levels: list[int] = []
    if headings[0][0] > 0:
        sections.append(_Section(0, headings[0][0], None))
        levels.append(0)
    stack: list[tuple[int, str]] = []
    for index, (start, end, level, title) in enumerate(headings):
        while stack and stack[-1][0] >= level:
            stack.pop()
        stack.append((level, title))
        section_end = headings[index + 1][0] if index + 1 < len(headings) else len(lines)
        sections.append(_Section(start, section_end, _heading_path(stack), frozenset(range(start, end))))
        levels.append(level)

    merged: list[_Section] = []
    carry: _Section | None = None
    for section, level, next_level in zip(sections, levels, levels[1:] + [0], strict=True):
        if carry is not None:
            section = _Section(carry.start, section.end, section.heading,
                               carry.heading_lines | section.heading_lines)
            carry = None
        heading_only = all(
            i in section.heading_lines or not lines[i].text.strip() for i in range(section.start, section.end)
        )
        if heading_only and section.heading_lines and next_level > level:
            carry = section
        else:
            merged.append(section)
    return merged


def _markdown_sections(lines: list[Line]) -> list[_Section]:
    headings: list[tuple[int, int, int, str]] = []
    count = len(lines)
    index = 0
    paragraph_start: int | None = None
    if count and lines[0].text.strip() == "---":  # YAML front matter: not a setext heading
        for end in range(1, count):
            if lines[end].text.strip() in ("---", "..."):
                index = end + 1
                break
    while index < count:
        text = lines[index].text
        fence = _FENCE.match(text)
        if fence:
            marker = fence.group(1)
            index += 1
            while index < count:
                closing = lines[index].text.strip()
                index += 1
                if closing.startswith(marker[0] * len(marker)) and not closing.strip(marker[0]):
                    break
            paragraph_start = None
            continue
        atx = _ATX.match(text)
        if atx:
            headings.append((index, index + 1, len(atx.group(1)), _atx_title(text[atx.end() :])))
            paragraph_start = None
        elif not text.strip():
            paragraph_start = None
        elif (
            paragraph_start is not None
            and _SETEXT.match(text)
            and not _LIST_OR_QUOTE.match(lines[paragraph_start].text)
        ):
            title = " ".join(line.text.strip() for line in lines[paragraph_start:index])
            level = 1 if text.strip().startswith("=") else 2
            headings.append((paragraph_start, index + 1, level, title))
            paragraph_start = None
        elif paragraph_start is None:
            paragraph_start = index
        index += 1
    return _sections_from(lines, headings)


_RST_ADORNMENT = re.compile(r"([!-/:-@\[-`{-~])\1*[ \t]*$")


def _rst_sections(lines: list[Line]) -> list[_Section]:
    headings: list[tuple[int, int, int, str]] = []
    styles: list[tuple[str, bool]] = []  # levels in order of first use, as docutils does
    count = len(lines)
    index = 0
    while index + 1 < count:
        title = lines[index].text.rstrip()
        under = lines[index + 1].text.rstrip()
        overline = (
            index > 0
            and _RST_ADORNMENT.match(lines[index - 1].text)
            and lines[index - 1].text.rstrip() == under
        )
        is_title = (
            title.strip()
            and not _RST_ADORNMENT.match(title)
            and _RST_ADORNMENT.match(under)
            and len(under) >= min(len(title.strip()), 3)
            and (overline or not title[0].isspace())
            and (overline or index == 0 or not lines[index - 1].text.strip())
        )
        if not is_title:
            index += 1
            continue
        style = (under[0], bool(overline))
        if style not in styles:
            styles.append(style)
        start = index - 1 if overline else index
        headings.append((start, index + 2, styles.index(style) + 1, title.strip()))
        index += 2
    return _sections_from(lines, headings)


# --- blocks -----------------------------------------------------------------------------------

_DECORATION = re.compile(r"\s*(?:@|#|//|/\*|\*|--|;|\"\"\"|''')")
_DEFINITION = re.compile(
    r"(?:\(def|#define\b|"
    r"(?:(?:export|default|public|private|protected|internal|static|abstract|final|sealed|open|async|"
    r"unsafe|extern|inline|virtual|override|partial|data|local|pub(?:\([\w:]+\))?)\s+)*"
    r"(?:def|class|function|fn|func|fun|interface|struct|enum|union|impl|trait|object|module|namespace|"
    r"type|typedef|record|template|macro_rules!|sub|proc|create|alter|describe|test|it)\b|"
    r"[A-Za-z_][\w<>\[\],*&: ]*[\s*&]+[A-Za-z_][\w:~]*\s*\([^;]*$|"  # C-like: type name(args...
    r"[\w.-]+\s*\(\)\s*\{?\s*$)",  # shell: name() {
    re.IGNORECASE,
)


def _blocks_of(lines: list[Line], section: _Section, kind: str) -> list[tuple[int, int]]:
    start, end = section.start, section.end
    if kind in ("html", "docx"):
        return [(i, i + 1) for i in range(start, end) if lines[i].text.strip()]
    atomic = _markdown_fences(lines, start, end) if kind == "markdown" else {}
    blocks = _paragraphs(lines, start, end, atomic, section.heading_lines)
    if kind == "code":
        blocks = _definitions(lines, blocks)
    # A heading alone is glued to the block after it, so it is never a chunk on its own.
    glued: list[tuple[int, int]] = []
    pending: int | None = None
    for block_start, block_end in blocks:
        if pending is not None:
            block_start, pending = pending, None
        if all(i in section.heading_lines for i in range(block_start, block_end)):
            pending = block_start
        else:
            glued.append((block_start, block_end))
    if pending is not None:
        glued.append((pending, _trimmed_end(lines, pending, end)))
    return glued


def _trimmed_end(lines: list[Line], start: int, end: int) -> int:
    while end > start and not lines[end - 1].text.strip():
        end -= 1
    return end


def _markdown_fences(lines: list[Line], start: int, end: int) -> dict[int, int]:
    fences: dict[int, int] = {}
    index = start
    while index < end:
        fence = _FENCE.match(lines[index].text)
        if not fence:
            index += 1
            continue
        marker = fence.group(1)
        close = index + 1
        while close < end:
            text = lines[close].text.strip()
            close += 1
            if text.startswith(marker[0] * len(marker)) and not text.strip(marker[0]):
                break
        fences[index] = _trimmed_end(lines, index, close)
        index = close
    return fences


def _paragraphs(
    lines: list[Line], start: int, end: int, atomic: dict[int, int], heading_lines: frozenset[int]
) -> list[tuple[int, int]]:
    """Runs of non-blank lines; an atomic range (a fence) is one block; headings start a block."""
    blocks: list[tuple[int, int]] = []
    current: int | None = None
    index = start
    while index < end:
        if index in atomic:
            if current is not None:
                blocks.append((current, index))
                current = None
            blocks.append((index, atomic[index]))
            index = max(atomic[index], index + 1)
            continue
        if not lines[index].text.strip():
            if current is not None:
                blocks.append((current, index))
                current = None
        elif current is None:
            current = index
        elif (index in heading_lines) != (index - 1 in heading_lines):
            blocks.append((current, index))
            current = index
        index += 1
    if current is not None:
        blocks.append((current, end))
    return blocks


def _starts_definition(lines: list[Line], start: int, end: int) -> bool:
    for index in range(start, end):
        text = lines[index].text
        if _DECORATION.match(text):
            continue  # decorators, attributes and comments belong to the definition below them
        # Only the start of the line: a minified file is one huge line, and the pattern backtracks.
        return not text[:1].isspace() and bool(_DEFINITION.match(text[:200]))
    return False


def _definitions(lines: list[Line], paragraphs: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Paragraphs of code grouped so each group starts at a top-level definition."""
    groups: list[tuple[int, int]] = []
    for start, end in paragraphs:
        if groups and not _starts_definition(lines, start, end):
            groups[-1] = (groups[-1][0], end)
        else:
            groups.append((start, end))
    return groups


# --- pieces and packing -----------------------------------------------------------------------


def _pieces(
    lines: list[Line],
    tokens: list[int],
    blocks: list[tuple[int, int]],
    budget: int,
    count: TokenCounter,
    split_paragraphs: bool,
) -> list[_Piece]:
    pieces: list[_Piece] = []
    for start, end in blocks:
        size = sum(tokens[start:end])
        if size <= budget:
            pieces.append(_Piece(start, end, size))
            continue
        parts = _paragraphs(lines, start, end, {}, frozenset()) if split_paragraphs else [(start, end)]
        for part_start, part_end in parts:
            size = sum(tokens[part_start:part_end])
            if size <= budget:
                pieces.append(_Piece(part_start, part_end, size))
                continue
            for index in range(part_start, part_end):
                if tokens[index] == 0:
                    continue
                if tokens[index] <= budget:
                    pieces.append(_Piece(index, index + 1, tokens[index]))
                else:
                    pieces.extend(_fragments(lines[index].text, index, budget, count))
    return pieces


def _longest(fits: Callable[[int], bool], low: int, high: int) -> int:
    """The largest n in [low, high] with fits(n), given fits(low) (or low itself)."""
    while low < high:
        middle = (low + high + 1) // 2
        if fits(middle):
            low = middle
        else:
            high = middle - 1
    return low


def _fragments(text: str, index: int, budget: int, count: TokenCounter) -> list[_Piece]:
    """A line over the budget as runs of words (and an over-long word as runs of characters)."""
    pieces: list[_Piece] = []
    words = text.split()
    position = 0
    while position < len(words):
        word = words[position]
        if count(word) > budget:
            offset = 0
            while offset < len(word):
                rest = word[offset:]
                limit = min(len(rest), budget * 16)
                size = _longest(lambda n, rest=rest: count(rest[:n]) <= budget, 1, limit)
                piece = rest[:size]
                pieces.append(_Piece(index, index + 1, count(piece), piece))
                offset += size
            position += 1
            continue
        # Every word is at least one token, so a run within the budget has at most `budget` words.
        run = _longest(
            lambda n, p=position: count(" ".join(words[p : p + n])) <= budget,
            1,
            min(len(words) - position, budget),
        )
        piece = " ".join(words[position : position + run])
        pieces.append(_Piece(index, index + 1, count(piece), piece))
        position += run
    return pieces


def _pack(
    lines: list[Line],
    tokens: list[int],
    pieces: list[_Piece],
    heading: str | None,
    budget: int,
    overlap: int,
) -> list[Chunk]:
    chunks: list[Chunk] = []
    current: list[_Piece] = []
    used = 0
    for piece in pieces:
        if current and used + piece.tokens > budget:
            chunks.append(_chunk(lines, current, heading))
            current = _overlap(current, tokens, overlap)
            used = sum(p.tokens for p in current)
            while current and used + piece.tokens > budget:
                used -= current.pop(0).tokens
        current.append(piece)
        used += piece.tokens
    if current:
        chunks.append(_chunk(lines, current, heading))
    return chunks


def _overlap(pieces: list[_Piece], tokens: list[int], limit: int) -> list[_Piece]:
    """Whole lines from the end of a chunk, up to `limit` tokens, never the whole chunk."""
    lines_in_chunk = sum(1 for p in pieces if p.text is None for i in range(p.start, p.end) if tokens[i])
    carried: list[_Piece] = []
    used = 0
    for piece in reversed(pieces):
        if piece.text is not None:
            break
        for index in range(piece.end - 1, piece.start - 1, -1):
            if not tokens[index]:
                continue
            if used + tokens[index] > limit or len(carried) + 1 >= lines_in_chunk:
                carried.reverse()
                return carried
            carried.append(_Piece(index, index + 1, tokens[index]))
            used += tokens[index]
    carried.reverse()
    return carried


def _chunk(lines: list[Line], pieces: list[_Piece], heading: str | None) -> Chunk:
    texts: list[str] = []
    previous: _Piece | None = None
    for piece in pieces:
        if previous is not None:
            if piece.text is not None and previous.text is not None and piece.start == previous.start:
                texts[-1] += " " + piece.text  # two runs of one long line
                previous = piece
                continue
            texts.extend(line.text.rstrip() for line in lines[previous.end : piece.start])  # blank lines
        if piece.text is not None:
            texts.append(piece.text)
        else:
            texts.extend(line.text.rstrip() for line in lines[piece.start : piece.end])
        previous = piece
    first, last = lines[pieces[0].start], lines[pieces[-1].end - 1]
    return Chunk("\n".join(texts), first.line, last.line, first.page, heading)
