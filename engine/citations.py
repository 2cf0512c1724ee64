"""Retrieved passages in the prompt, as untrusted data, and the citations in the answer."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

from engine.evidence import EvidenceLine, evidence
from memory.retriever import Passage

# Not right after a word character, so code such as `items[1]` is not taken for a citation.
_CITATION = re.compile(r"(?<!\w)\[(\s*\d+(?:\s*,\s*\d+)*\s*)\]")
_KEEP = {"\n", "\t"}


def clean(text: str) -> str:
    """Remove what a reader cannot see but a model reads: zero-width and other format
    characters, control characters; and defuse our own delimiters inside the text."""
    kept = "".join(
        ch for ch in text
        if ch in _KEEP or unicodedata.category(ch) not in ("Cf", "Cc", "Co", "Cn")
    )
    return kept.replace("<<<", "‹‹‹").replace(">>>", "›››")


# Documentation markup a reader never sees as such (MkDocs, pymdown-extensions): it costs a small
# model's attention and gets copied into answers. What the model reads of a passage drops it
# (`readable`); the index, the sources shown and attribution keep the text as it is in the file.
_FRONT_MATTER = re.compile(r"\A---[ \t]*\n(?:[\w-]+[ \t]*:.*\n|[ \t]+.*\n|-[ \t].*\n)+---[ \t]*(?:\n|\Z)")
_HTML_COMMENT = re.compile(r"<!--.*?(?:-->|\Z)", re.S)
_SNIPPET = re.compile(r"^[ \t]*-{1,2}8<-{1,2}.*$")  # `--8<-- "file"`: a file included at build time
_FENCE = re.compile(r"^([ \t]*)(`{3,}|~{3,})(.*)$")
_ADMONITION = re.compile(r"^([ \t]*)(?:!!!|\?\?\?\+?)[ \t]+([\w-]+)(?:[ \t]+\"([^\"]*)\")?[ \t]*$")
_TAB = re.compile(r"^([ \t]*)===\+?[ \t]+\"([^\"]*)\"[ \t]*$")
_REF_LINK = re.compile(r"\[([^\[\]\n]+)\]\[[^\[\]\n]*\]")  # [text][target]
_LINK = re.compile(r"(?<!!)\[([^\[\]\n]+)\]\([^()\s]*\)")  # [text](url)
_KEYS = re.compile(r"\+\+([\w+-]+?)\+\+")  # ++ctrl+c++


def readable(text: str) -> str:
    """A passage as the model is given it: without what documentation tools read and people do
    not see: front matter, HTML comments, snippet includes (`--8<--`) and the code blocks and tabs
    they leave empty, admonition and tab markers (`!!! tip "Title"` reads `Tip: Title`, its body
    no longer indented), link targets (`[text][target]` and `[text](url)` read `text`: no brackets
    to mistake for citations) and code fences' options (`title=`, `hl_lines=`)."""
    text = _HTML_COMMENT.sub("", _FRONT_MATTER.sub("", text))
    out: list[str | None] = []
    # The admonitions and tabs open around this line: where each heading is in `out`, and the
    # indentation its body has in the file (removed here).
    open_: list[tuple[int, int]] = []
    fence: int | None = None  # where the open code fence is in `out`
    fence_mark = ""
    bare: set[str] = set()  # the kinds of admonitions without a title

    def close(upto: int) -> None:  # headings whose bodies end here; one left empty goes too
        while len(open_) > upto:
            at, _ = open_.pop()
            if not any(s and s.strip() for s in out[at + 1:]):
                out[at] = None

    for line in text.split("\n"):
        if line.strip() and fence is None:
            width = len(line) - len(line.lstrip())
            close(sum(1 for _, body in open_ if width >= body))
        if open_ and line.strip():
            width = len(line) - len(line.lstrip())
            line = line[min(width, open_[-1][1]):]
        if _SNIPPET.match(line):
            continue
        match = _FENCE.match(line)
        if match:
            if fence is None:
                fence, fence_mark = len(out), match.group(2)[0] * 3
                info = match.group(3).strip().split()
                language = info[0] if info and "=" not in info[0] and not info[0].startswith("{") else ""
                out.append(f"{match.group(1)}{match.group(2)}{language}")
            elif match.group(2).startswith(fence_mark) and not match.group(3).strip():
                if not any(s and s.strip() for s in out[fence + 1:]):
                    del out[fence:]  # a block left empty: its content was an include
                else:
                    out.append(line)
                fence = None
            else:
                out.append(line)
            continue
        if fence is None:
            head = _ADMONITION.match(line) or _TAB.match(line)
            if head:
                body = len(head.group(1)) + 4 + (open_[-1][1] if open_ else 0)
                open_.append((len(out), body))
                if head.re is _ADMONITION:
                    kind, title = head.group(2).capitalize(), head.group(3)
                    if not title:
                        bare.add(kind)
                    out.append(f"{head.group(1)}{kind}: {title}" if title else f"{head.group(1)}{kind}:")
                else:
                    out.append(f"{head.group(1)}{head.group(2)}:")
                continue
            line = _KEYS.sub(r"\1", _LINK.sub(r"\1", _REF_LINK.sub(r"\1", line)))
        out.append(line)
    close(0)
    joined = "\n".join(s for s in out if s is not None)
    # An admonition with no title reads as a lead-in to its first line: "Tip: The decorator...".
    joined = re.sub(r"(?m)^([ \t]*(?:" + "|".join(map(re.escape, bare)) + r"):)\n(?:[ \t]*\n)*[ \t]*(?=\S)",
                    r"\1 ", joined) if bare else joined
    return re.sub(r"\n[ \t]*\n(?:[ \t]*\n)+", "\n\n", joined).strip("\n")


SOURCES_MARK = "{sources}"  # where the sources go in the `sources` template; without it, after it


def sources_message(passages: list[Passage], instructions: str, *, markup: bool = False,
                    best_last: bool = True, closing: str = "") -> str:
    """The `sources` prompt template with the numbered sources in it, each inside clear
    delimiters: after the system prompt, or a message of its own right before the question
    (`sources_placement`). The template's text before `{sources}` introduces them, the text
    after it (`closing`, when the template has no mark) follows them, nearest the question.
    Each source's text is `readable` (`markup`: as in the file); `best_last` lists them from the
    last to [1], the best."""
    before, mark, after = instructions.partition(SOURCES_MARK)
    if mark:
        instructions, closing = before.strip(), after.strip()
    blocks = []
    for n, p in enumerate(passages, 1):
        heading = f" ({clean(p.heading)})" if p.heading else ""
        body = p.text if markup else readable(p.text)
        blocks.append(f"[{n}] {p.location}{heading}\n<<<\n{clean(body)}\n>>>")
    if best_last:
        blocks.reverse()
    text = f"{instructions}\n\nSources:\n\n" + "\n\n".join(blocks)
    return f"{text}\n\n{closing}" if closing else text


def cited_numbers(text: str) -> list[int]:
    """Every citation number in `text`, in order, including ones that match no source."""
    return [int(n) for match in _CITATION.finditer(text) for n in re.findall(r"\d+", match.group(0))]


def without_citations(text: str) -> str:
    """`text` without its `[n]` citations (and the space before each)."""
    return re.sub(r"[ \t]*" + _CITATION.pattern, "", text)


WRITTEN, ATTRIBUTED, RETRIEVED = "written", "attributed", "retrieved"


@dataclass(frozen=True)
class Source:
    number: int
    passage: Passage
    cited: bool  # the answer cites it; uncited sources were retrieved but not used
    # written: the model cited it; attributed: engine.attribution found it supporting a sentence
    # the model did not cite (its [n] was added after generation); retrieved: neither.
    kind: str = ""
    # The line(s) of the passage that match the question and the answer, their words marked
    # (engine.evidence): what the screen shows under the source, so it can be checked at a glance.
    evidence: tuple[EvidenceLine, ...] = ()

    def __post_init__(self) -> None:
        if not self.kind:
            object.__setattr__(self, "kind", WRITTEN if self.cited else RETRIEVED)


def resolve_citations(text: str, passages: list[Passage], attributed: Iterable[int] = (), question: str = ""
                      ) -> tuple[str, list[Source]]:
    """Drop citations whose number matches no passage; return the cleaned text and the sources,
    cited ones first in order of first citation. `attributed`: the numbers whose citations were
    added by attribution (engine.attribution), not written by the model. Each source carries its
    evidence: the lines matching `question` and the answer."""
    if not passages:
        return text, []
    cited: list[int] = []

    def keep_valid(match: re.Match[str]) -> str:
        numbers = [int(n) for n in re.findall(r"\d+", match.group(0))]
        valid = [n for n in numbers if 1 <= n <= len(passages)]
        for n in valid:
            if n not in cited:
                cited.append(n)
        return f"[{', '.join(map(str, valid))}]" if valid else ""

    cleaned = _CITATION.sub(keep_valid, text)
    if cleaned != text:  # a dropped citation may leave "word ." or a double space behind
        cleaned = re.sub(r"[ \t]+([.,;:!?])", r"\1", cleaned)
        cleaned = re.sub(r"(?<=\S)[ \t]{2,}(?=\S)", " ", cleaned)
    added = set(attributed)
    answer = without_citations(cleaned)

    def lines(p: Passage) -> tuple[EvidenceLine, ...]:
        return evidence(p, question, answer)

    sources = [Source(n, passages[n - 1], True, ATTRIBUTED if n in added else WRITTEN, lines(passages[n - 1]))
               for n in cited]
    sources += [Source(n, p, False, evidence=lines(p)) for n, p in enumerate(passages, 1) if n not in cited]
    return cleaned, sources
