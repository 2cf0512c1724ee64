"""Find the files to index under a folder, and say why each other file is skipped.

`scan` walks the folder iteratively (no recursion limit) in a fixed order: entries sorted by name,
depth first. It never raises for anything it finds on disk; a file it cannot use is reported
with a `skip_reason` for the user to see, not an exception:

    unsupported type .xyz                no loader for the suffix
    too large: 25.3 MB > 20 MB limit
    binary file                          a NUL byte in the first 8 KiB (not checked for pdf/docx)
    unreadable: permission denied        open or read failed
    not a regular file                   FIFO, socket, device: never opened (a FIFO would block)
    broken symlink
    symlink loop                         a link to a folder being or already scanned
    already scanned through a symlink    a folder reached earlier through a link to it
    duplicate of docs/a.md               the same file reached again (symlink or hard link)
    unreadable folder: permission denied the folder could not be listed
    links outside the folder (to /x/y)  a symlink whose target is not inside the scanned folder

Silently left out (not reported): names starting with "." (files, and folders which are not
entered), `.git`, and paths matched by `.gitignore` or `.assistantignore` files in the folder or
any folder below it, with git's rules (negation, "dir/" patterns, the deepest file wins, and a
file in an ignored folder cannot be re-included). Symlinks are followed within the folder; one
that leads out of it is skipped (unless `follow_outside`): a folder from elsewhere (a cloned
repository, an unpacked archive) must not pull ~/.ssh or /etc into the index, its answers and
their citations. Each folder and each file is visited once.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from pathspec import GitIgnoreSpec

IGNORE_FILES = (".gitignore", ".assistantignore")  # later files win over earlier ones
BINARY_KINDS = frozenset({"pdf", "docx"})  # binary by nature: no NUL-byte check
SNIFF_BYTES = 8192
_TEXT_BOMS = (b"\xff\xfe", b"\xfe\xff", b"\x00\x00\xfe\xff")  # UTF-16/32 text is full of NULs
# Never block on a FIFO that appears between stat and open; O_BINARY matters on Windows only.
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)

# Which chunking kind a loader gives a file (LoaderRegistry.kind_of), None if unsupported. A callable
# that only answers True/False also works; the binary container formats are then told by suffix.
KindOf = Callable[[Path], str | bool | None]
_BINARY_SUFFIXES = {".pdf": "pdf", ".docx": "docx"}
_Rules = tuple[tuple[str, GitIgnoreSpec], ...]  # (folder prefix "a/b/", its patterns), shallow first


@dataclass(frozen=True)
class ScanResult:
    path: Path  # absolute, through the links that led to it
    relative: str  # posix path relative to the scanned folder ("." for the folder itself)
    size: int
    mtime_ns: int
    skip_reason: str | None = None  # None: index it


@dataclass
class _Folder:
    path: Path
    relative: str
    rules: _Rules
    entries: Iterator[os.DirEntry[str]]


def scan(root: Path, kind_of: KindOf, max_file_bytes: int = 20_000_000,
         follow_outside: bool = False) -> Iterator[ScanResult]:
    """Every file under `root` to index (skip_reason None) or skipped (with the reason)."""
    root = Path(os.path.abspath(root))
    real_root = os.path.realpath(root)
    try:
        root_stat = os.stat(root)
    except OSError as exc:
        yield ScanResult(root, ".", 0, 0, f"unreadable folder: {_why(exc)}")
        return
    if not stat.S_ISDIR(root_stat.st_mode):
        yield ScanResult(root, ".", root_stat.st_size, root_stat.st_mtime_ns, "not a folder")
        return
    listed = _list(root, "", ())
    if isinstance(listed, str):
        yield ScanResult(root, ".", 0, root_stat.st_mtime_ns, listed)
        return

    visited_folders = {(root_stat.st_dev, root_stat.st_ino)}
    seen_files: dict[tuple[int, int], str] = {}
    stack = [listed]
    while stack:
        folder = stack[-1]
        entry = next(folder.entries, None)
        if entry is None:
            stack.pop()
            continue
        if entry.name.startswith("."):
            continue  # hidden, and .git
        relative = f"{folder.relative}/{entry.name}" if folder.relative else entry.name
        path = folder.path / entry.name
        try:
            info = os.stat(path)  # follows symlinks
        except OSError as exc:
            if not _ignored(folder.rules, relative, is_dir=False):
                yield _failed_stat(entry, path, relative, exc)
            continue
        is_dir = stat.S_ISDIR(info.st_mode)
        if _ignored(folder.rules, relative, is_dir):
            continue
        if not follow_outside and entry.is_symlink():
            target = os.path.realpath(path)
            if os.path.commonpath([real_root, target]) != real_root:
                reason = f"links outside the folder (to {target})"
                yield ScanResult(path, relative, 0, info.st_mtime_ns, reason)
                continue
        if is_dir:
            key = (info.st_dev, info.st_ino)
            if key in visited_folders:
                reason = "symlink loop" if entry.is_symlink() else "already scanned through a symlink"
                yield ScanResult(path, relative, 0, info.st_mtime_ns, reason)
                continue
            visited_folders.add(key)
            listed = _list(path, relative, folder.rules)
            if isinstance(listed, str):
                yield ScanResult(path, relative, 0, info.st_mtime_ns, listed)
            else:
                stack.append(listed)
            continue
        yield _check_file(path, relative, info, kind_of, max_file_bytes, seen_files)


def skip_reason(root: Path, path: Path, kind_of: KindOf, max_file_bytes: int = 20_000_000) -> str | None:
    """Why `scan(root, ...)` leaves out the file at `path` (a path inside `root`), or None when it
    would index it: the same rules, for one file, without walking the folder. For what reads
    single files on the model's behalf (the read_file tool), which must not reach what the index
    leaves out on purpose (.env, .git/config, git-ignored files)."""
    root = Path(os.path.abspath(root))
    parts = Path(os.path.abspath(path)).relative_to(root).parts
    if not parts:
        return "not a file"
    hidden = next((p for p in parts if p.startswith(".")), None)
    if hidden is not None:
        return f"hidden ({hidden} starts with '.'), never indexed"
    rules: _Rules = ()
    folder = root
    for depth, name in enumerate(parts):
        relative = "/".join(parts[:depth])
        try:
            names = set(os.listdir(folder))
        except OSError as exc:
            return f"unreadable folder: {_why(exc)}"
        rules = _with_ignore_files(folder, relative, rules, names)
        is_dir = depth < len(parts) - 1
        if _ignored(rules, "/".join(parts[: depth + 1]), is_dir):
            return f"ignored by {' or '.join(n for n in IGNORE_FILES)} ({'/'.join(parts[: depth + 1])})"
        folder = folder / name
    try:
        info = os.stat(path)
    except OSError as exc:
        return f"unreadable: {_why(exc)}"
    return _check_file(Path(path), "/".join(parts), info, kind_of, max_file_bytes, {}).skip_reason


def _check_file(
    path: Path,
    relative: str,
    info: os.stat_result,
    kind_of: KindOf,
    max_file_bytes: int,
    seen_files: dict[tuple[int, int], str],
) -> ScanResult:
    def result(reason: str | None) -> ScanResult:
        return ScanResult(path, relative, info.st_size, info.st_mtime_ns, reason)

    if not stat.S_ISREG(info.st_mode):
        return result("not a regular file")
    supported = kind_of(path)
    suffix = path.suffix.lower()
    if not supported:
        return result(f"unsupported type {suffix}" if suffix else "unsupported type (no extension)")
    kind = supported if isinstance(supported, str) else _BINARY_SUFFIXES.get(suffix)
    if info.st_size > max_file_bytes:
        size, limit = _size(info.st_size), _size(max_file_bytes, exact=True)
        if size.split()[0].rstrip("0").rstrip(".") == limit.split()[0]:  # "100.0 kB > 100 kB"
            size, limit = f"{info.st_size:,} bytes", f"{max_file_bytes:,} bytes"
        return result(f"too large: {size} > {limit} limit")
    key = (info.st_dev, info.st_ino)
    if key in seen_files:
        return result(f"duplicate of {seen_files[key]}")
    seen_files[key] = relative
    try:
        fd = os.open(path, _OPEN_FLAGS)
        try:
            head = os.read(fd, SNIFF_BYTES)
        finally:
            os.close(fd)
    except OSError as exc:
        return result(f"unreadable: {_why(exc)}")
    if kind not in BINARY_KINDS and b"\x00" in head and not head.startswith(_TEXT_BOMS):
        return result("binary file")
    return result(None)


def _failed_stat(entry: os.DirEntry[str], path: Path, relative: str, exc: OSError) -> ScanResult:
    try:
        own = entry.stat(follow_symlinks=False)
        size, mtime_ns = own.st_size, own.st_mtime_ns
    except OSError:
        size, mtime_ns = 0, 0
    if exc.errno == errno.ELOOP:
        reason = "symlink loop"
    elif entry.is_symlink() and exc.errno in (errno.ENOENT, errno.ENOTDIR):
        reason = "broken symlink"
    else:
        reason = f"unreadable: {_why(exc)}"
    return ScanResult(path, relative, size, mtime_ns, reason)


def _list(path: Path, relative: str, rules: _Rules) -> _Folder | str:
    """The folder's entries sorted by name, with its ignore files added to `rules`; or why not."""
    try:
        with os.scandir(path) as listing:
            entries = sorted(listing, key=lambda entry: entry.name)
    except OSError as exc:
        return f"unreadable folder: {_why(exc)}"
    rules = _with_ignore_files(path, relative, rules, {entry.name for entry in entries})
    return _Folder(path, relative, rules, iter(entries))


def _with_ignore_files(path: Path, relative: str, rules: _Rules, names: set[str]) -> _Rules:
    """`rules` plus the patterns of the ignore files among `names` (the folder's entries)."""
    patterns: list[str] = []
    for name in IGNORE_FILES:
        if name in names:
            try:
                patterns += (path / name).read_text(encoding="utf-8", errors="replace").splitlines()
            except OSError:
                pass  # an unreadable ignore file ignores nothing; the files it names get indexed
    spec = _spec(patterns)
    if spec is not None:
        rules = (*rules, (f"{relative}/" if relative else "", spec))
    return rules


def _spec(patterns: list[str]) -> GitIgnoreSpec | None:
    patterns = [p for p in patterns if p.strip() and not p.lstrip().startswith("#")]
    if not patterns:
        return None
    try:
        return GitIgnoreSpec.from_lines(patterns)
    except Exception:  # pathspec rejects some malformed patterns: drop those lines, as git does
        good = []
        for pattern in patterns:
            try:
                GitIgnoreSpec.from_lines([pattern])
            except Exception:
                continue
            good.append(pattern)
        return GitIgnoreSpec.from_lines(good) if good else None


def _ignored(rules: _Rules, relative: str, is_dir: bool) -> bool:
    # The deepest ignore file with a matching pattern decides, like git.
    for prefix, spec in reversed(rules):
        if not relative.startswith(prefix):
            continue
        decision = spec.check_file(relative[len(prefix) :] + ("/" if is_dir else "")).include
        if decision is not None:
            return decision
    return False


def _why(exc: OSError) -> str:
    return (exc.strerror or str(exc) or type(exc).__name__).lower()


def _size(n: int, exact: bool = False) -> str:
    """25.3 MB (or, for a limit, 20 MB without a needless ".0")."""
    for unit, scale in (("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if n >= scale:
            value = n / scale
            return f"{value:g} {unit}" if exact and value == round(value, 1) else f"{value:.1f} {unit}"
    return f"{n} bytes"
