"""Model states on disk, so a conversation goes on after a restart without evaluating its history.

A state is llama.cpp's own serialized context (its KV cache) after a known list of tokens. It is
only valid for the same model file, the same llama.cpp build and the same context settings: all
of them make up the *fingerprint*, written in every file and compared whole on load. A state is
used for a prompt that starts with (some of) its tokens; llama.cpp then drops the cells past the
shared prefix and evaluates the rest.

One file per state, `<fingerprint id>-<token hash>.state`:

    MAGIC | header length (u32, little-endian) | header (JSON) | tokens (int32 LE) | state | SHA-256

The SHA-256 covers everything before it. Files are written to a temporary name and renamed, so a
reader sees a whole file or none; a file that fails any check (truncated, flipped bits, another
model, another format) is skipped and removed, and the history is evaluated as if it had none.
The folder is bounded: the least recently used files (by mtime, touched on every load) go first.

This module knows files and bytes only; taking a state from llama.cpp and giving it back is
engine/backends/state_cache.py's job.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import shutil
import struct
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # numpy loads with llama_cpp, in the loading thread: not on every command's start
    import numpy as np

log = logging.getLogger(__name__)

MAGIC = b"ASTSTAT1"  # the file format; a new layout gets a new magic (old files are then skipped)
SUFFIX = ".state"
_LEN = struct.Struct("<I")
_DIGEST = 32  # bytes of SHA-256
_STALE_TEMP_S = 3600  # a temporary file this old was left by a process that died while writing
DEFAULT_MAX_MB = 4096  # the automatic bound never exceeds this...
DEFAULT_DISK_SHARE = 0.05  # ...nor this share of the disk's free space


def default_capacity_mb(folder: Path) -> int:
    """The disk bound when `state_cache_disk_mb` is unset: 5% of the free space where the states
    live, at most 4 GB (a 2,000-token state of an 8B model is about 250 MB)."""
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        free = shutil.disk_usage(probe).free
    except OSError:
        return 0
    return int(min(DEFAULT_MAX_MB, free * DEFAULT_DISK_SHARE / (1 << 20)))


@dataclass(frozen=True)
class SavedState:
    """One model state: the tokens it has evaluated and llama.cpp's bytes for it."""

    tokens: np.ndarray  # int32
    data: Any  # a bytes-like object (bytes, memoryview, ctypes array) holding llama.cpp's state
    seed: int = 0
    tag: str | None = None  # the conversation it belongs to, so deleting one can delete its states


@dataclass(frozen=True)
class _Entry:
    key: tuple[int, int]  # (inode, size): files are never rewritten in place, only replaced
    tokens: np.ndarray
    tag: str | None
    used_ns: int = 0  # mtime: when it was last written or read


def common_prefix(a: np.ndarray, b: np.ndarray) -> int:
    """How many leading tokens `a` and `b` share."""
    import numpy as np

    n = min(len(a), len(b))
    differ = np.flatnonzero(a[:n] != b[:n])
    return int(differ[0]) if len(differ) else n


def fingerprint_id(fingerprint: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()[:16]


def file_sha256(path: Path, cache_file: Path | None = None, *, compute: bool = True) -> str | None:
    """SHA-256 of a (model) file, remembered in `cache_file` by path, size and mtime: hashing
    gigabytes takes seconds. With `compute` false, only a remembered hash is returned."""
    stat = path.stat()
    key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    known: dict[str, str] = {}
    if cache_file is not None:
        with contextlib.suppress(OSError, ValueError):
            known = json.loads(cache_file.read_text())
        if isinstance(known, dict) and isinstance(known.get(key), str):
            return known[key]
    if not compute:
        return None
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    if cache_file is not None:
        known = {k: v for k, v in known.items() if not k.startswith(f"{path.resolve()}|")}
        known[key] = digest.hexdigest()
        with contextlib.suppress(OSError):
            _write_atomically(cache_file, json.dumps(known).encode())
    return digest.hexdigest()


def _write_atomically(path: Path, data: bytes) -> None:
    temp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with _private_file(temp) as fh:
        fh.write(data)
    os.replace(temp, path)


def _private_file(path: Path) -> Any:
    """A new file only the user can read: a state holds the conversation's text."""
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb")


def usage(folder: Path) -> tuple[int, int]:
    """(files, bytes) of the states in `folder`, for every model."""
    files = total = 0
    with contextlib.suppress(OSError):
        for item in os.scandir(folder):
            if item.name.endswith(SUFFIX) and not item.name.startswith("."):
                with contextlib.suppress(OSError):
                    total += item.stat().st_size
                    files += 1
    return files, total


def states_folder() -> Path:
    """Where the states live: the data folder's `states`."""
    from engine.paths import data_dir

    return data_dir() / "states"


def forget(folder: Path, tag: str) -> int:
    """Delete the states of the conversation `tag` (deleted, or made incognito), for every
    model; returns how many."""
    removed = 0
    with contextlib.suppress(OSError):
        for item in os.scandir(folder):
            if item.name.endswith(SUFFIX) and not item.name.startswith("."):
                try:
                    with open(item.path, "rb") as fh:
                        header, _ = _header(fh.read(1 << 16))
                except (OSError, ValueError):
                    continue
                if header.get("tag") == tag:
                    with contextlib.suppress(OSError):
                        os.unlink(item.path)
                        removed += 1
    return removed


def clear(folder: Path) -> tuple[int, int]:
    """Delete every state in `folder` (and leftover temporary files); returns (files, bytes)."""
    files = total = 0
    with contextlib.suppress(OSError):
        for item in os.scandir(folder):
            if item.name.endswith((SUFFIX, ".tmp")):
                with contextlib.suppress(OSError):
                    size = item.stat().st_size
                    os.unlink(item.path)
                    if item.name.endswith(SUFFIX) and not item.name.startswith("."):
                        files, total = files + 1, total + size
    return files, total


class DiskStates:
    """The states of one model, context and llama.cpp build in a folder shared with others.

    Thread-safe: the model's thread looks states up and reads them while the writer thread
    writes; several processes may share the folder (each rescans it)."""

    def __init__(self, folder: Path, capacity_bytes: int, fingerprint: dict[str, Any]) -> None:
        self.folder = folder
        self.capacity_bytes = capacity_bytes
        self.fingerprint = fingerprint
        self.id = fingerprint_id(fingerprint)
        self._index: dict[str, _Entry] = {}
        self._lock = threading.Lock()

    # Looking up and reading (the model's thread)

    def longest(self, tokens: Sequence[int], longer_than: int = 0) -> tuple[Path, int] | None:
        """The file whose tokens share the longest prefix with `tokens`, if over `longer_than`;
        with how many tokens it shares. A state covering all of `tokens` is as good as it gets."""
        import numpy as np

        wanted = np.asarray(tokens, dtype=np.int32)
        best: tuple[Path, int] | None = None
        for name, entry in self._scan().items():
            shared = common_prefix(entry.tokens, wanted)
            if shared > longer_than and (best is None or shared > best[1]):
                best = (self.folder / name, shared)
        return best

    def latest(self, tag: str) -> tuple[Path, np.ndarray] | None:
        """The most recently used state of the conversation `tag`, and its tokens."""
        mine = [(entry.used_ns, name, entry) for name, entry in self._scan().items() if entry.tag == tag]
        if not mine:
            return None
        _, name, entry = max(mine)
        return self.folder / name, entry.tokens

    def read(self, path: Path) -> SavedState | None:
        """The state in `path`, every check passed; None (and the file removed) otherwise."""
        try:
            blob = path.read_bytes()
        except OSError:  # gone meanwhile (evicted by another process), unreadable
            return None
        try:
            state = self._parse(blob)
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("Ignored the model state %s: %s", path.name, exc)
            self._remove(path)
            return None
        with contextlib.suppress(OSError):
            os.utime(path)  # most recently used: evicted last
        return state

    def _parse(self, blob: bytes) -> SavedState:
        if len(blob) < len(MAGIC) + _LEN.size + _DIGEST or not blob.startswith(MAGIC):
            raise ValueError("not a state file of this version")
        body = memoryview(blob)[:-_DIGEST]
        if hashlib.sha256(body).digest() != blob[-_DIGEST:]:
            raise ValueError("checksum mismatch (the file is damaged or was cut short)")
        header, offset = _header(blob)
        if header.get("fingerprint") != self.fingerprint:
            raise ValueError("made by another model, llama.cpp build or context setting")
        n_tokens, n_bytes = int(header["n_tokens"]), int(header["state_bytes"])
        if offset + 4 * n_tokens + n_bytes != len(body):
            raise ValueError("its sizes do not add up")
        import numpy as np

        tokens = np.frombuffer(blob, dtype="<i4", count=n_tokens, offset=offset).astype(np.int32)
        data = body[offset + 4 * n_tokens :]
        return SavedState(tokens, data, int(header.get("seed", 0)), header.get("tag"))

    # Writing (the writer thread)

    def write(self, state: SavedState) -> Path | None:
        """Write `state` atomically, drop the states it extends, and evict down to the bound.
        Returns the file, or None when it could not be written (too big, disk full)."""
        import numpy as np

        tokens = np.ascontiguousarray(state.tokens, dtype="<i4")
        data = memoryview(state.data).cast("B")
        header = json.dumps({"fingerprint": self.fingerprint, "n_tokens": len(tokens),
                             "state_bytes": data.nbytes, "seed": state.seed, "tag": state.tag,
                             "written": time.time()}).encode()
        size = len(MAGIC) + _LEN.size + len(header) + tokens.nbytes + data.nbytes + _DIGEST
        if size > self.capacity_bytes:
            log.debug("A model state of %d bytes exceeds the disk bound; not kept", size)
            return None
        name = f"{self.id}-{hashlib.sha256(tokens.tobytes()).hexdigest()[:24]}{SUFFIX}"
        path = self.folder / name
        temp = self.folder / f".{name}.{os.getpid()}.{threading.get_ident()}.tmp"
        try:
            self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            digest = hashlib.sha256()
            with _private_file(temp) as fh:
                for part in (MAGIC, _LEN.pack(len(header)), header, tokens.tobytes(), data):
                    digest.update(part)
                    fh.write(part)
                fh.write(digest.digest())
                fh.flush()
                os.fsync(fh.fileno())  # the rename must not land before the data
            os.replace(temp, path)
        except OSError as exc:  # a full disk, a read-only folder: only a head start is lost
            log.warning("Could not keep the model state on disk in %s: %s", self.folder, exc)
            self._remove(temp)
            return None
        self._drop_prefixes_of(tokens, keep=name)
        self.evict()
        return path if path.exists() else None

    def _drop_prefixes_of(self, tokens: np.ndarray, keep: str) -> None:
        """A state whose tokens all begin `tokens` is superseded: the longer one serves every
        prompt the shorter one could (llama.cpp drops what does not match)."""
        for name, entry in self._scan().items():
            if name != keep and len(entry.tokens) <= len(tokens) \
                    and common_prefix(entry.tokens, tokens) == len(entry.tokens):
                self._remove(self.folder / name)

    def evict(self) -> None:
        """Delete the least recently used states (of any model) until the folder fits the bound."""
        files = []
        now = time.time()
        with contextlib.suppress(OSError):
            for item in os.scandir(self.folder):
                with contextlib.suppress(OSError):
                    stat = item.stat()
                    if item.name.endswith(".tmp") and now - stat.st_mtime > _STALE_TEMP_S:
                        self._remove(Path(item.path))
                    elif item.name.endswith(SUFFIX) and not item.name.startswith("."):
                        files.append((stat.st_mtime_ns, stat.st_size, Path(item.path)))
        total = sum(size for _, size, _ in files)
        for _, size, path in sorted(files):
            if total <= self.capacity_bytes:
                break
            self._remove(path)
            total -= size

    def forget(self, tag: str) -> int:
        return forget(self.folder, tag)

    # The index: tokens of this fingerprint's files, read once per file

    def _scan(self) -> dict[str, _Entry]:
        prefix = f"{self.id}-"
        seen: dict[str, _Entry] = {}
        with self._lock:
            try:
                items = [item for item in os.scandir(self.folder)
                         if item.name.startswith(prefix) and item.name.endswith(SUFFIX)]
            except OSError:
                items = []
            for item in items:
                try:
                    stat = item.stat()
                except OSError:
                    continue
                key = (stat.st_ino, stat.st_size)
                entry = self._index.get(item.name)
                if entry is None or entry.key != key:
                    entry = self._read_entry(Path(item.path), key)
                if entry is not None:
                    seen[item.name] = dataclasses.replace(entry, used_ns=stat.st_mtime_ns)
            self._index = seen
        return dict(seen)

    def _read_entry(self, path: Path, key: tuple[int, int]) -> _Entry | None:
        """The tokens and tag from a file's header (the checksum is verified when it is read)."""
        try:
            with path.open("rb") as fh:
                head = fh.read(1 << 16)
                header, offset = _header(head)
                if header.get("fingerprint") != self.fingerprint:
                    return None  # a hash collision of fingerprints: never used
                n_tokens = int(header["n_tokens"])
                fh.seek(offset)
                raw = fh.read(4 * n_tokens)
            if len(raw) != 4 * n_tokens:
                raise ValueError("cut short")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            if not isinstance(exc, OSError):
                log.warning("Ignored the model state %s: %s", path.name, exc)
                self._remove(path)
            return None
        import numpy as np

        return _Entry(key, np.frombuffer(raw, dtype="<i4").astype(np.int32), header.get("tag"))

    @staticmethod
    def _remove(path: Path) -> None:
        with contextlib.suppress(OSError):
            path.unlink()


def _header(blob: bytes) -> tuple[dict[str, Any], int]:
    """The JSON header at the start of a state file, and where the tokens begin."""
    if not blob.startswith(MAGIC) or len(blob) < len(MAGIC) + _LEN.size:
        raise ValueError("not a state file of this version")
    (length,) = _LEN.unpack_from(blob, len(MAGIC))
    start = len(MAGIC) + _LEN.size
    if start + length > len(blob):
        raise ValueError("its header is cut short")
    try:
        header = json.loads(bytes(blob[start : start + length]))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError("its header is not readable") from exc
    if not isinstance(header, dict):
        raise ValueError("its header is not readable")
    return header, start + length


class StateWriter:
    """Writes states on its own thread, so neither the answer nor the event loop waits for the
    disk. Only the newest state of each conversation waits its turn: an older one is replaced
    (it would be superseded right after anyway), which also bounds the memory held."""

    def __init__(self, write: Callable[[SavedState], Any]) -> None:
        self._write = write
        self._pending: dict[str | None, SavedState] = {}
        self._busy = False
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def submit(self, state: SavedState) -> None:
        with self._cond:
            self._pending.pop(state.tag, None)
            self._pending[state.tag] = state
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="state-writer", daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def _run(self) -> None:
        while True:
            with self._cond:
                if not self._pending:
                    self._thread = None
                    self._cond.notify_all()
                    return
                tag = next(iter(self._pending))
                state = self._pending.pop(tag)
                self._busy = True
            try:
                self._write(state)
            except Exception:  # a bug here must not take the app down: the state is only a head start
                log.exception("Writing a model state failed")
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every submitted state is written; False if `timeout` ran out first."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._pending and not self._busy, timeout)
