"""The built-in loaders plugin: text, Markdown, reStructuredText, source code, HTML, PDF and DOCX.

Each loader turns one file into `Line`s that keep where the text came from, so an answer can cite
"report.pdf, page 3" or "notes.md:42". Bad input never escapes as a library exception: every
loader raises `LoaderError` with a short reason, which the indexer records as the file's skip.
"""

from __future__ import annotations

import codecs
import re
import zipfile
from pathlib import Path

from memory.documents import Line, LoaderError
from plugins.hookspecs import Register, hookimpl

TEXT_SUFFIXES = [".txt", ".text", ".log", ".csv", ".tsv", ".json", ".jsonl", ".yaml", ".yml", ".toml",
                 ".ini", ".cfg", ".conf", ".properties", ".xml", ".tex", ".bib",
                 ".srt", ".vtt", ".org", ".adoc", ".asciidoc"]
MARKDOWN_SUFFIXES = [".md", ".markdown", ".mdown", ".mkd", ".mdx"]
RST_SUFFIXES = [".rst"]
CODE_SUFFIXES = [
    ".py", ".pyi", ".pyx", ".js", ".mjs", ".cjs", ".ts", ".mts", ".cts", ".tsx", ".jsx",
    ".java", ".c", ".h", ".cpp", ".hpp", ".cc", ".hh", ".cxx", ".hxx", ".m", ".mm", ".go", ".rs",
    ".rb", ".php", ".sh", ".bash", ".zsh", ".fish", ".ps1", ".bat", ".cmd", ".sql", ".swift", ".kt",
    ".kts", ".scala", ".sc", ".cs", ".fs", ".fsx", ".vb", ".lua", ".r", ".pl", ".pm", ".el", ".lisp",
    ".scm", ".clj", ".cljs", ".edn", ".hs", ".ml", ".mli", ".ex", ".exs", ".erl", ".hrl", ".dart",
    ".jl", ".nim", ".zig", ".v", ".sv", ".vhd", ".vhdl", ".groovy", ".gradle", ".tf", ".hcl",
    ".nix", ".proto", ".graphql", ".gql", ".css", ".scss", ".sass", ".less", ".vue", ".svelte",
    ".astro", ".cmake", ".mk", ".dockerfile", ".make",
]
# Files without a suffix, matched by their whole lower-cased name.
CODE_NAMES = ["makefile", "gnumakefile", "dockerfile", "containerfile", "jenkinsfile", "vagrantfile",
              "rakefile", "gemfile", "podfile", "brewfile", "procfile", "justfile", "snakefile",
              "cmakelists.txt", "build", "workspace"]
TEXT_NAMES = ["readme", "license", "licence", "copying", "authors", "contributors", "changelog",
              "changes", "history", "news", "notice", "install", "todo", "thanks", "contributing",
              "codeowners", "manifest.in"]

_BOMS = [  # longest first: the UTF-32-LE BOM starts with the UTF-16-LE one
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
]
_REASON_CHARS = 160


@hookimpl
def register_loaders(register: Register) -> None:
    register(TEXT_SUFFIXES + TEXT_NAMES, load_text, "text")
    register(MARKDOWN_SUFFIXES, load_text, "markdown")
    register(RST_SUFFIXES, load_text, "rst")
    register(CODE_SUFFIXES + CODE_NAMES, load_text, "code")
    register([".html", ".htm", ".xhtml"], load_html, "html")
    register([".pdf"], load_pdf, "pdf")
    register([".docx"], load_docx, "docx")


def _reason(exc: BaseException) -> str:
    """A short, one-line reason from a library exception (some carry whole tracebacks)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= _REASON_CHARS else text[: _REASON_CHARS - 1] + "…"


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise LoaderError(f"unreadable: {(exc.strerror or _reason(exc)).lower()}") from exc


def decode(data: bytes) -> str:
    """Bytes to text: a BOM wins, then UTF-8, then cp1252, then latin-1 (which never fails).

    A file in a legacy encoding is indexed with at worst a few wrong accents rather than skipped.
    """
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                return data.decode(encoding)
            except UnicodeDecodeError:
                break  # a BOM followed by garbage: fall through to the guesses below
    for encoding in ("utf-8", "cp1252"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            pass
    return data.decode("latin-1")


def split_lines(text: str) -> list[str]:
    """Lines as editors count them: \\n, \\r\\n and a lone \\r end a line, nothing else does.

    (`str.splitlines` also splits at form feeds and U+2028, which would shift every line number
    after them away from what the user's editor shows.)
    """
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the newline that ends the last line does not start another one
    return lines


def load_text(path: Path) -> list[Line]:
    """Any text file (also Markdown, reStructuredText and code): one Line per line of the file."""
    return [Line(text, number) for number, text in enumerate(split_lines(decode(_read_bytes(path))), 1)]


# --- HTML -------------------------------------------------------------------------------------

_INVISIBLE_TAGS = ["script", "style", "noscript", "template"]
_HIDDEN_STYLE = re.compile(r"display\s*:\s*none|visibility\s*:\s*hidden", re.IGNORECASE)
# Text inside one of these (nearest one wins) is one block; inline tags (a, b, span...) are not.
_BLOCK_TAGS = frozenset(
    "address article aside blockquote body caption center dd details dialog div dl dt fieldset "
    "figcaption figure footer form h1 h2 h3 h4 h5 h6 header hgroup hr html legend li main nav ol "
    "option p pre section summary table tbody td tfoot th thead title tr ul".split()
)


def _is_hidden(tag) -> bool:  # noqa: ANN001 - a bs4 Tag
    attrs = tag.attrs or {}
    if "hidden" in attrs or str(attrs.get("aria-hidden", "")).lower() == "true":
        return True
    if tag.name == "input" and str(attrs.get("type", "")).lower() == "hidden":
        return True
    return bool(_HIDDEN_STYLE.search(str(attrs.get("style", ""))))


def load_html(path: Path) -> list[Line]:
    """Visible text of a web page: one Line per text block, numbered by the block's source line.

    Scripts, styles, templates and elements hidden with `hidden`, `aria-hidden="true"` or an
    inline `display: none` / `visibility: hidden` are dropped. Text in <pre> keeps its lines.
    """
    from bs4 import BeautifulSoup, NavigableString
    from bs4.element import PreformattedString

    data = _read_bytes(path)
    try:
        # Bytes, not text: bs4 honours <meta charset> and falls back to windows-1252 on its own.
        soup = BeautifulSoup(data, "html.parser")
        for tag in soup.select(", ".join(_INVISIBLE_TAGS)):
            tag.extract()
        for tag in soup.find_all(_is_hidden):
            tag.extract()
        strings = [
            s for s in soup.descendants
            if isinstance(s, NavigableString) and not isinstance(s, PreformattedString)
        ]
    except Exception as exc:  # html.parser and bs4 raise assorted errors on pathological input
        raise LoaderError(f"damaged HTML: {_reason(exc)}") from exc

    lines: list[Line] = []
    block = None
    parts: list[str] = []

    def flush() -> None:
        text = " ".join(" ".join(parts).split())
        if text:
            lines.append(Line(text, getattr(block, "sourceline", None) or 1))
        parts.clear()

    for string in strings:
        owner = string.parent
        while owner is not None and owner.name not in _BLOCK_TAGS and owner.name != "[document]":
            owner = owner.parent
        if owner is block:
            if getattr(owner, "name", None) != "pre":
                parts.append(str(string))
            continue
        flush()
        block = owner
        if owner is not None and owner.name == "pre":
            # Preformatted text keeps its lines; the n-th line of the text is n lines below <pre>.
            first = owner.sourceline or 1
            for offset, text in enumerate(split_lines(owner.get_text())):
                if text.strip():
                    lines.append(Line(text.rstrip(), first + offset))
        else:
            parts.append(str(string))
    flush()
    return lines


# --- PDF --------------------------------------------------------------------------------------


def load_pdf(path: Path) -> list[Line]:
    """Text of each page: Line(text, line within the page, page number), both 1-based.

    An encrypted PDF is opened when its user password is empty (owner-only protection is common);
    otherwise, and for damaged files and pages, LoaderError. A PDF of images only has no text.
    """
    from pypdf import PdfReader

    try:
        reader = PdfReader(path)
        if reader.is_encrypted:
            try:
                decrypted = reader.decrypt("")
            except Exception as exc:  # e.g. AES without the `cryptography` package
                raise LoaderError("encrypted PDF") from exc
            if not decrypted:
                raise LoaderError("encrypted PDF")
        pages = list(reader.pages)
    except LoaderError:
        raise
    except OSError as exc:
        raise LoaderError(f"unreadable: {(exc.strerror or _reason(exc)).lower()}") from exc
    except Exception as exc:  # pypdf raises many types on malformed files
        raise LoaderError(f"damaged PDF: {_reason(exc)}") from exc

    lines: list[Line] = []
    for page_number, page in enumerate(pages, 1):
        try:
            text = page.extract_text() or ""
        except Exception as exc:
            raise LoaderError(f"damaged PDF: page {page_number}: {_reason(exc)}") from exc
        for number, line in enumerate(split_lines(text), 1):
            lines.append(Line(line.rstrip(), number, page_number))
    if not any(line.text.strip() for line in lines):
        raise LoaderError("no text (scanned PDF?)")
    return lines


# --- DOCX -------------------------------------------------------------------------------------


def load_docx(path: Path) -> list[Line]:
    """Paragraphs and table rows in document order: Line(text, paragraph number).

    The number counts every paragraph and table row from 1, empty ones too, so it is stable while
    text is edited within paragraphs; empty paragraphs give no Line. A table row is one Line with
    its cells joined by " | " (merged cells once).
    """
    import docx
    from docx.opc.exceptions import PackageNotFoundError
    from docx.table import Table

    try:
        document = docx.Document(str(path))
        lines: list[Line] = []
        number = 0
        for item in document.iter_inner_content():
            if isinstance(item, Table):
                for row in item.rows:
                    number += 1
                    cells, seen = [], set()
                    for cell in row.cells:
                        if id(cell._tc) not in seen:  # a merged cell appears once per grid column
                            seen.add(id(cell._tc))
                            cells.append(" ".join(cell.text.split()))
                    text = " | ".join(c for c in cells if c)
                    if text:
                        lines.append(Line(text, number))
            else:
                number += 1
                text = item.text.strip()
                if text:
                    lines.append(Line(text, number))
    except OSError as exc:
        raise LoaderError(f"unreadable: {(exc.strerror or _reason(exc)).lower()}") from exc
    except (PackageNotFoundError, zipfile.BadZipFile) as exc:
        raise LoaderError("damaged DOCX: not a Word document") from exc
    except Exception as exc:  # lxml, KeyError for missing parts, ValueError...
        raise LoaderError(f"damaged DOCX: {_reason(exc)}") from exc
    return lines
