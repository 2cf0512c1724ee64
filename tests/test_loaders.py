"""The built-in loaders on real files, and the plugin manager that registers them."""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path

import docx
import pytest
from fpdf import FPDF

from memory.documents import Line, LoaderError
from plugins.hookspecs import hookimpl
from plugins.loaders import load_docx, load_html, load_pdf, load_text
from plugins.manager import LoaderRegistry, get_plugin_manager, loader_registry

# --- file builders, also used by test_scanner.py ------------------------------------------------

PDF_PAGES = [["Alpha first line", "Alpha second line"], ["Beta only line", "Beta last line"]]


def make_pdf(path: Path, pages: list[list[str]] = PDF_PAGES, user_password: str | None = None,
             owner_password: str | None = None) -> Path:
    pdf = FPDF()
    if owner_password:
        pdf.set_encryption(owner_password=owner_password, user_password=user_password)
    pdf.set_font("Helvetica", size=12)
    for lines in pages:
        pdf.add_page()
        for text in lines:
            pdf.cell(text=text, new_x="LMARGIN", new_y="NEXT")
    path.write_bytes(bytes(pdf.output()))
    return path


def make_docx(path: Path) -> Path:
    document = docx.Document()
    document.add_heading("Quarterly report", level=1)  # paragraph 1
    document.add_paragraph("Sales grew in the north.")  # 2
    document.add_paragraph("")  # 3: empty, counted but not a Line
    table = document.add_table(rows=2, cols=2)  # rows 4 and 5
    table.cell(0, 0).text, table.cell(0, 1).text = "Region", "Sales"
    table.cell(1, 0).text, table.cell(1, 1).text = "North", "120"
    document.add_paragraph("Closing words.")  # 6
    document.save(str(path))
    return path


HTML_PAGE = """<!DOCTYPE html>
<html>
<head>
<title>Garden notes</title>
<style>body { color: red; }</style>
<script>var secret = "script text";</script>
</head>
<body>
<h1>Tomatoes</h1>
<p>Water them <b>every</b> morning.</p>
<div hidden>hidden attribute text</div>
<div style="display: none">display none text</div>
<span aria-hidden="true">aria hidden text</span>
<noscript>noscript text</noscript>
<template><p>template text</p></template>
<!-- a comment -->
<ul>
  <li>Basil</li>
  <li>Mint</li>
</ul>
<pre>line one
line two</pre>
</body>
</html>
"""


# --- text ------------------------------------------------------------------------------------


def test_text_lines_are_numbered_like_an_editor(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(b"first\r\nsecond\rthird\n\nfifth \x0c still fifth\n")
    assert load_text(path) == [
        Line("first", 1), Line("second", 2), Line("third", 3), Line("", 4), Line("fifth \x0c still fifth", 5),
    ]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ("café naïve – “quoted”".encode("cp1252"), "café naïve – “quoted”"),
        ("\ufeffbom utf-8 é".encode(), "bom utf-8 é"),
        ("utf-16 é ✓".encode("utf-16"), "utf-16 é ✓"),
        ("utf-32 é ✓".encode("utf-32"), "utf-32 é ✓"),
        (b"latin-1 \x81 byte", "latin-1 \x81 byte"),  # 0x81 is undefined in cp1252
    ],
)
def test_text_in_other_encodings_is_read_not_skipped(tmp_path: Path, data: bytes, expected: str) -> None:
    path = tmp_path / "legacy.txt"
    path.write_bytes(data + b"\n" if not data.startswith((b"\xff\xfe", b"\xfe\xff")) else data)
    assert load_text(path)[0].text == expected


def test_unreadable_paths_raise_loader_error(tmp_path: Path) -> None:
    with pytest.raises(LoaderError, match="unreadable: no such file"):
        load_text(tmp_path / "missing.txt")
    with pytest.raises(LoaderError, match="unreadable: is a directory"):
        load_text(tmp_path)


# --- HTML ------------------------------------------------------------------------------------


def test_html_keeps_visible_text_with_source_lines(tmp_path: Path) -> None:
    path = tmp_path / "page.html"
    path.write_text(HTML_PAGE)
    lines = load_html(path)
    texts = [line.text for line in lines]
    assert texts == ["Garden notes", "Tomatoes", "Water them every morning.", "Basil", "Mint",
                     "line one", "line two"]
    source = HTML_PAGE.splitlines()
    for line in lines:
        assert line.text.split()[0] in source[line.line - 1], line


def test_html_with_declared_legacy_charset(tmp_path: Path) -> None:
    path = tmp_path / "old.htm"
    path.write_bytes('<meta charset="windows-1252"><p>café</p>'.encode("cp1252"))
    assert [line.text for line in load_html(path)] == ["café"]


# --- PDF -------------------------------------------------------------------------------------


def test_pdf_lines_carry_their_page(tmp_path: Path) -> None:
    lines = load_pdf(make_pdf(tmp_path / "two.pdf"))
    assert lines == [
        Line("Alpha first line", 1, 1), Line("Alpha second line", 2, 1),
        Line("Beta only line", 1, 2), Line("Beta last line", 2, 2),
    ]


def test_pdf_with_a_user_password_is_encrypted(tmp_path: Path) -> None:
    path = make_pdf(tmp_path / "locked.pdf", owner_password="owner", user_password="secret")
    with pytest.raises(LoaderError, match="^encrypted PDF$"):
        load_pdf(path)


def test_pdf_protected_by_owner_password_only_is_read(tmp_path: Path) -> None:
    path = make_pdf(tmp_path / "owner.pdf", [["Readable anyway"]], owner_password="owner")
    assert load_pdf(path) == [Line("Readable anyway", 1, 1)]


def test_pdf_without_text(tmp_path: Path) -> None:
    pdf = FPDF()
    pdf.add_page()
    pdf.rect(10, 10, 50, 50, style="F")  # a page of graphics only, like a scan
    path = tmp_path / "scan.pdf"
    path.write_bytes(bytes(pdf.output()))
    with pytest.raises(LoaderError, match=r"no text \(scanned PDF\?\)"):
        load_pdf(path)


@pytest.mark.parametrize("data", [b"", b"%PDF-1.4\nnot really a pdf", b"\x00\xff" * 100, b"<html></html>"])
def test_damaged_pdf(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "bad.pdf"
    path.write_bytes(data)
    with pytest.raises(LoaderError, match="damaged PDF"):
        load_pdf(path)


def test_truncated_pdf_is_damaged_or_partial(tmp_path: Path) -> None:
    data = make_pdf(tmp_path / "whole.pdf").read_bytes()
    path = tmp_path / "cut.pdf"
    path.write_bytes(data[: len(data) // 2])
    try:
        load_pdf(path)
    except LoaderError as exc:
        assert str(exc).startswith(("damaged PDF", "no text"))


# --- DOCX ------------------------------------------------------------------------------------


def test_docx_paragraphs_and_table_rows_in_order(tmp_path: Path) -> None:
    assert load_docx(make_docx(tmp_path / "report.docx")) == [
        Line("Quarterly report", 1), Line("Sales grew in the north.", 2), Line("Region | Sales", 4),
        Line("North | 120", 5), Line("Closing words.", 6),
    ]


def test_damaged_docx(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.docx"
    garbage.write_bytes(b"this is not a zip file")
    with pytest.raises(LoaderError, match="damaged DOCX"):
        load_docx(garbage)
    other_zip = tmp_path / "other.docx"
    with zipfile.ZipFile(other_zip, "w") as archive:
        archive.writestr("hello.txt", "not a word document")
    with pytest.raises(LoaderError, match="damaged DOCX"):
        load_docx(other_zip)
    cut = tmp_path / "cut.docx"
    cut.write_bytes(make_docx(tmp_path / "whole.docx").read_bytes()[:2000])
    with pytest.raises(LoaderError, match="damaged DOCX"):
        load_docx(cut)


@pytest.mark.parametrize("loader", [load_text, load_html, load_pdf, load_docx])
@pytest.mark.parametrize("data", [b"", b"\x00" * 64, bytes(range(256)) * 8, b"<" * 5000, b"PK\x03\x04junk"])
def test_no_loader_raises_anything_but_loader_error(tmp_path: Path, loader, data: bytes) -> None:
    path = tmp_path / "input.bin"
    path.write_bytes(data)
    try:
        lines = loader(path)
    except LoaderError as exc:
        assert str(exc)
    else:
        assert all(isinstance(line, Line) for line in lines)


# --- registry and plugins --------------------------------------------------------------------


@pytest.fixture(scope="module")
def registry() -> LoaderRegistry:
    return loader_registry(get_plugin_manager(load_entry_points=False))


@pytest.mark.parametrize(
    ("name", "kind"),
    [("a.md", "markdown"), ("B.MARKDOWN", "markdown"), ("doc.rst", "rst"), ("x.py", "code"),
     ("x.tsx", "code"), ("x.html", "html"), ("x.pdf", "pdf"), ("x.docx", "docx"), ("x.csv", "text"),
     ("Makefile", "code"), ("Dockerfile", "code"), ("Dockerfile.dev", "code"), ("README", "text"),
     ("LICENSE", "text"), ("x.xyz", None), ("noextension", None), ("archive.tar.gz", None)],
)
def test_registry_kinds(registry: LoaderRegistry, name: str, kind: str | None) -> None:
    assert registry.kind_of(Path("some/folder") / name) == kind
    assert (registry.for_path(name) is None) == (kind is None)


def test_registry_lists_suffixes(registry: LoaderRegistry) -> None:
    assert {".md", ".rst", ".py", ".pdf", ".docx", ".html", ".txt", "makefile"} <= registry.suffixes
    assert registry.errors == []


class BrokenPlugin:
    @hookimpl
    def register_loaders(self, register) -> None:
        register([".half"], load_text, "text")  # registered before the failure: must not stay
        raise RuntimeError("boom")


class BadKindPlugin:
    @hookimpl
    def register_loaders(self, register) -> None:
        register([".odd"], load_text, "spreadsheet")


class OverridePlugin:
    @staticmethod
    def shout(path: Path) -> list[Line]:
        return [Line(line.text.upper(), line.line) for line in load_text(path)]

    @hookimpl
    def register_loaders(self, register) -> None:
        register([".txt", ".NEW"], self.shout, "text")


def test_a_broken_plugin_is_reported_and_disabled(tmp_path: Path) -> None:
    pm = get_plugin_manager(load_entry_points=False)
    pm.register(BrokenPlugin(), name="broken")
    pm.register(BadKindPlugin(), name="badkind")
    registry = loader_registry(pm)
    assert registry.errors == [
        "plugin broken: register_loaders failed: RuntimeError: boom",
        "plugin badkind: register_loaders failed: ValueError: unknown kind 'spreadsheet' "
        "(use one of code, docx, html, markdown, pdf, rst, text)",
    ]
    assert registry.kind_of("a.md") == "markdown" and registry.kind_of("a.pdf") == "pdf"
    assert registry.for_path("x.half") is None and registry.for_path("x.odd") is None
    assert pm.get_plugin("broken") is None and pm.is_blocked("broken")
    assert loader_registry(pm).errors == registry.errors  # still reported, not called again


def test_a_later_plugin_overrides_a_builtin_suffix(tmp_path: Path) -> None:
    pm = get_plugin_manager(load_entry_points=False)
    pm.register(OverridePlugin(), name="override")
    registry = loader_registry(pm)
    path = tmp_path / "a.txt"
    path.write_text("quiet\n")
    loader, kind = registry.for_path(path)
    assert (loader(path), kind) == ([Line("QUIET", 1)], "text")
    assert registry.kind_of("b.new") == "text" and registry.kind_of("c.md") == "markdown"


def test_entry_point_plugins_load_and_a_broken_one_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.test_plugins import write_plugin_dist

    write_plugin_dist(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        registry = loader_registry(get_plugin_manager())
    finally:
        sys.modules.pop("good_assistant_plugin", None)
    assert registry.kind_of("x.good") == "text"
    assert len(registry.errors) == 1
    assert registry.errors[0].startswith(
        "plugin missing: could not be loaded: ModuleNotFoundError: No module named 'no_such_module"
    )
    assert registry.kind_of("x.md") == "markdown"
