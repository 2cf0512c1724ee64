"""The scanner on a real mixed folder: what is indexed, what is skipped and why, and what is ignored."""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
from pathlib import Path

import pytest

from memory.chunker import chunk_lines
from memory.documents import LoaderError
from memory.scanner import scan
from plugins.manager import LoaderRegistry, get_plugin_manager, loader_registry
from tests.test_chunker import MARKDOWN, PYTHON, RST
from tests.test_loaders import HTML_PAGE, make_docx, make_pdf

LIMIT = 100_000


@pytest.fixture(scope="module")
def registry() -> LoaderRegistry:
    return loader_registry(get_plugin_manager(load_entry_points=False))


def write(path: Path, data: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data)
    return path


@pytest.fixture
def folder(tmp_path: Path):
    root = tmp_path / "docs"
    write(root / ".gitignore", "*.log\n!keep.log\nbuild/\n/secret.txt\n# a comment\n")
    write(root / ".assistantignore", "drafts/\n")
    write(root / ".hidden" / "inside.md", "# never seen\n")
    write(root / ".env", "TOKEN=never seen\n")
    write(root / "a_notes.md", MARKDOWN)
    write(root / "guide.rst", RST)
    write(root / "module.py", PYTHON)
    write(root / "page.html", HTML_PAGE)
    make_pdf(root / "report.pdf")
    make_docx(root / "report.docx")
    write(root / "legacy.txt", "café crème – naïve\n".encode("cp1252"))
    write(root / "utf16.txt", "wide text\n".encode("utf-16"))  # NUL bytes, but text
    write(root / "data.txt", b"header\x00\x01\x02binary")
    write(root / "photo.xyz", b"whatever")
    write(root / "notes", "no extension\n")
    write(root / "Makefile", "all:\n\techo hi\n")
    write(root / "empty.txt", "")
    write(root / "big.txt", "x" * 250_000)
    write(root / "debug.log", "ignored by *.log\n")
    write(root / "keep.log", "re-included by !keep.log\n")
    write(root / "build" / "out.txt", "ignored folder\n")
    write(root / "drafts" / "draft.md", "ignored by .assistantignore\n")
    write(root / "secret.txt", "ignored by /secret.txt\n")
    write(root / "sub" / "secret.txt", "not ignored: the pattern is anchored to the root\n")
    write(root / "sub" / ".gitignore", "!debug.log\n*.tmp.md\n")
    write(root / "sub" / "debug.log", "re-included by the deeper .gitignore\n")
    write(root / "sub" / "scratch.tmp.md", "ignored by sub/.gitignore\n")
    write(root / "sub" / "deeper" / "leaf.md", "# Leaf\n")
    (root / "sub" / "loop").symlink_to("..")  # a folder link to its parent
    (root / "broken.md").symlink_to("does-not-exist.md")
    (root / "self.md").symlink_to("self.md")
    (root / "link_to_notes.md").symlink_to("a_notes.md")
    write(tmp_path / "outside" / "external.md", "# Linked in from elsewhere\n")
    (root / "linked").symlink_to(tmp_path / "outside")
    os.mkfifo(root / "fifo.txt")
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(root / "sock.md"))
    yield root
    server.close()


EXPECTED = [
    ("Makefile", None),
    ("a_notes.md", None),
    ("big.txt", "too large: 250.0 kB > 100 kB limit"),
    ("broken.md", "broken symlink"),
    ("data.txt", "binary file"),
    ("empty.txt", None),
    ("fifo.txt", "not a regular file"),
    ("guide.rst", None),
    ("keep.log", None),
    ("legacy.txt", None),
    ("link_to_notes.md", "duplicate of a_notes.md"),
    ("linked", "links outside the folder (to {outside})"),
    ("module.py", None),
    ("notes", "unsupported type (no extension)"),
    ("page.html", None),
    ("photo.xyz", "unsupported type .xyz"),
    ("report.docx", None),
    ("report.pdf", None),
    ("self.md", "symlink loop"),
    ("sock.md", "not a regular file"),
    ("sub/debug.log", None),
    ("sub/deeper/leaf.md", None),
    ("sub/loop", "symlink loop"),
    ("sub/secret.txt", None),
    ("utf16.txt", None),
]


def expected(folder: Path) -> list[tuple[str, str | None]]:
    outside = os.path.realpath(folder.parent / "outside")
    return [(path, reason and reason.format(outside=outside)) for path, reason in EXPECTED]


def test_every_file_is_indexed_skipped_with_a_reason_or_ignored(folder: Path, registry) -> None:
    results = list(scan(folder, registry.kind_of, max_file_bytes=LIMIT))
    assert [(r.relative, r.skip_reason) for r in results] == expected(folder)
    assert results == list(scan(folder, registry.kind_of, max_file_bytes=LIMIT))  # deterministic
    for result in results:
        assert result.path.is_absolute() and result.path == folder / result.relative
    notes = next(r for r in results if r.relative == "a_notes.md")
    assert notes.size == len(MARKDOWN) and notes.mtime_ns == (folder / "a_notes.md").stat().st_mtime_ns


def test_links_out_of_the_folder_are_followed_only_when_asked(folder: Path, registry) -> None:
    results = {r.relative: r.skip_reason for r in scan(folder, registry.kind_of, LIMIT, follow_outside=True)}
    assert results["linked/external.md"] is None
    (folder / "sub" / "passwd.md").symlink_to("/etc/passwd")  # a file link, and a chain of links
    (folder / "chain.md").symlink_to(folder / "sub" / "passwd.md")
    results = {r.relative: r.skip_reason for r in scan(folder, registry.kind_of, LIMIT)}
    assert results["sub/passwd.md"] == results["chain.md"] == "links outside the folder (to /etc/passwd)"
    assert "linked/external.md" not in results


def test_a_yes_no_callable_is_enough(folder: Path, registry) -> None:
    results = scan(folder, lambda path: registry.for_path(path) is not None, max_file_bytes=LIMIT)
    assert [(r.relative, r.skip_reason) for r in results] == expected(folder)  # pdf/docx not "binary file"


def test_the_mixed_folder_loads_and_chunks_without_raising(folder: Path, registry) -> None:
    chunks = {}
    for result in scan(folder, registry.kind_of, max_file_bytes=LIMIT):
        if result.skip_reason is None:
            loader, kind = registry.for_path(result.path)
            try:
                chunks[result.relative] = chunk_lines(loader(result.path), kind)
            except LoaderError as exc:
                chunks[result.relative] = str(exc)
    assert "Rent is the largest cost." in chunks["a_notes.md"][1].text
    assert [c.page for c in chunks["report.pdf"]] == [1, 2]
    assert chunks["legacy.txt"][0].text == "café crème – naïve"
    assert chunks["utf16.txt"][0].text == "wide text"
    assert chunks["empty.txt"] == []
    assert "script text" not in " ".join(c.text for c in chunks["page.html"])


def test_huge_file_message_in_megabytes(tmp_path: Path, registry) -> None:
    with open(tmp_path / "huge.txt", "wb") as sparse:  # 25.3 MB on paper, nothing on disk
        sparse.truncate(25_300_000)
    write(tmp_path / "just_over.txt", "x" * 1001)
    results = {r.relative: r.skip_reason for r in scan(tmp_path, registry.kind_of)}
    assert results["huge.txt"] == "too large: 25.3 MB > 20 MB limit"
    results = {r.relative: r.skip_reason for r in scan(tmp_path, registry.kind_of, max_file_bytes=1000)}
    assert results["just_over.txt"] == "too large: 1,001 bytes > 1,000 bytes limit"


def test_missing_or_non_folder_root(tmp_path: Path, registry) -> None:
    [missing] = scan(tmp_path / "nope", registry.kind_of)
    assert (missing.relative, missing.skip_reason) == (".", "unreadable folder: no such file or directory")
    write(tmp_path / "file.md", "x")
    [not_folder] = scan(tmp_path / "file.md", registry.kind_of)
    assert not_folder.skip_reason == "not a folder"


def test_deep_folders_do_not_hit_the_recursion_limit(tmp_path: Path, registry) -> None:
    deep = tmp_path / "deep"
    path = deep
    for _ in range(300):
        path = path / "d"
    write(path / "bottom.md", "# Bottom\n")
    [result] = scan(deep, registry.kind_of)
    assert result.relative == "d/" * 300 + "bottom.md" and result.skip_reason is None


def test_a_whole_folder_ignored_cannot_be_re_included(tmp_path: Path, registry) -> None:
    write(tmp_path / ".gitignore", "vendor/\n!vendor/keep.md\n")
    write(tmp_path / "vendor" / "keep.md", "x")
    write(tmp_path / "vendor" / ".gitignore", "!keep.md\n")
    write(tmp_path / "kept.md", "x")
    assert [r.relative for r in scan(tmp_path, registry.kind_of)] == ["kept.md"]


def _scan_as(uid: int, root: Path, registry) -> list[tuple[str, str | None]]:
    """Scan in a forked child that dropped root's privileges, so permissions apply."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        status = 1
        try:
            os.close(read_end)
            os.setgid(uid)
            os.setuid(uid)
            found = [(r.relative, r.skip_reason) for r in scan(root, registry.kind_of)]
            os.write(write_end, json.dumps(found).encode())
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        data = pipe.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    return [tuple(item) for item in json.loads(data)]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_unreadable_files_and_folders(registry) -> None:
    # /tmp, not tmp_path: the unprivileged child must be able to reach the folder.
    root = Path(tempfile.mkdtemp(prefix="assistant-scan-"))
    try:
        root.chmod(0o755)
        write(root / "locked.md", "secret")
        write(root / "locked_folder" / "inside.md", "secret")
        write(root / "open.md", "fine")
        (root / "locked.md").chmod(0)
        (root / "locked_folder").chmod(0)
        if os.geteuid() == 0:
            results = _scan_as(65534, root, registry)
        else:
            results = [(r.relative, r.skip_reason) for r in scan(root, registry.kind_of)]
        assert results == [
            ("locked.md", "unreadable: permission denied"),
            ("locked_folder", "unreadable folder: permission denied"),
            ("open.md", None),
        ]
    finally:
        (root / "locked_folder").chmod(0o700)
        shutil.rmtree(root)

