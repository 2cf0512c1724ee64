"""The model registry: the GGUF files the user added or pulled, by name, and the default one.

One JSON file in the data folder (`models.json`), rewritten atomically under a file lock, so two
`assistant models` commands at once cannot lose an entry. Pulled (and copied) files live in the
`models/` folder next to it and are deleted with their entry; added files stay where they are.
Every file is validated as GGUF before it is registered.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from engine.errors import ModelError, ModelNotFoundError
from engine.gguf import GGUFInfo, read_gguf
from engine.paths import data_dir, ensure_private_dir

FORMAT_VERSION = 1
_NAME = re.compile(r"^[\w.+-][\w.+ -]*$")
Progress = Callable[[int, int], None]  # (bytes done, bytes in all)


def registry_file() -> Path:
    return data_dir() / "models.json"


def models_folder() -> Path:
    """Where pulled and copied model files are kept."""
    return data_dir() / "models"


@dataclass(frozen=True)
class ModelEntry:
    name: str
    path: str
    size: int
    sha256: str | None
    source: str | None  # the URL it was pulled from; None: added from a local file
    managed: bool  # the file lives in models_folder() and goes with its entry
    added_at: str
    mtime_ns: int = 0  # the file as hashed; a later change means the hash is stale

    @property
    def file(self) -> Path:
        return Path(self.path)


def sha256_file(path: Path, progress: Progress | None = None, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    hash_into(digest, path, progress, chunk)
    return digest.hexdigest()


def hash_into(digest: Any, path: Path, progress: Progress | None = None, chunk: int = 1 << 20) -> int:
    """Feed the file to `digest` (a hashlib object), a block at a time; the bytes read. The one
    file-hashing loop: model files (the registry, the response rows) and resumed downloads."""
    total, done = path.stat().st_size, 0
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
            done += len(block)
            if progress is not None:
                progress(done, total)
    return done


def check_name(name: str) -> str:
    name = name.strip()
    if not _NAME.match(name) or name.endswith(".gguf"):
        raise ModelError(
            f"{name!r} cannot name a model.",
            hint="Use letters, digits, '.', '_', '+', '-' (no '/' and no .gguf ending), "
            "e.g. --name qwen2.5-3b.",
        )
    return name


class Registry:
    def __init__(self, path: Path | None = None) -> None:
        self.path = path or registry_file()
        import filelock  # here: most commands never touch the registry, and it costs 20 ms to import

        self._lock = filelock.FileLock(str(self.path) + ".lock", timeout=30)

    # reading ------------------------------------------------------------------------------------

    def _read(self) -> dict[str, Any]:
        try:
            raw = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {"version": FORMAT_VERSION, "default": None, "models": {}}
        except OSError as exc:
            raise ModelError(f"The model registry {self.path} cannot be read: {exc.strerror}.") from exc
        try:
            data = json.loads(raw)
            models = {name: ModelEntry(**entry) for name, entry in data["models"].items()}
            default = data.get("default")
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ModelError(
                f"The model registry {self.path} is damaged ({exc}).",
                hint="Fix it, or move it away and `assistant models add` the files again "
                "(pulled ones are in the models/ folder next to it).",
            ) from exc
        return {"version": FORMAT_VERSION, "default": default, "models": models}

    def entries(self) -> list[ModelEntry]:
        return sorted(self._read()["models"].values(), key=lambda e: e.name.lower())

    @property
    def default(self) -> str | None:
        return self._read()["default"]

    def get(self, name: str) -> ModelEntry | None:
        return self._read()["models"].get(name)

    def find(self, name: str) -> ModelEntry:
        entry = self.get(name)
        if entry is None:
            known = ", ".join(e.name for e in self.entries()) or "none yet"
            raise ModelNotFoundError(
                f"No model named {name!r} is registered.",
                hint=f"Registered: {known}. `assistant models list` shows every model; "
                "`assistant models add PATH` or `pull URL` registers one.",
            )
        return entry

    def by_path(self, path: Path) -> ModelEntry | None:
        resolved = path.expanduser().resolve()
        return next((e for e in self.entries() if Path(e.path).resolve() == resolved), None)

    # changing -----------------------------------------------------------------------------------

    def _write(self, data: dict[str, Any]) -> None:
        ensure_private_dir(self.path.parent)
        payload = {
            "version": FORMAT_VERSION,
            "default": data["default"],
            "models": {name: asdict(entry) for name, entry in sorted(data["models"].items())},
        }
        tmp = self.path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, self.path)

    def add(
        self,
        path: Path,
        *,
        name: str | None = None,
        sha256: str | None = None,
        source: str | None = None,
        managed: bool = False,
        progress: Progress | None = None,
    ) -> tuple[ModelEntry, GGUFInfo]:
        """Validate `path` and register it; the SHA-256 is computed when not given."""
        path = path.expanduser().absolute()  # a symlink stays one: it may point to the next version
        info = read_gguf(path)  # refuses anything llama.cpp should not see
        name = check_name(name or path.stem)
        with self._lock:
            self._check_free(self._read(), name, path)
        digest = sha256 or sha256_file(path, progress)  # outside the lock: gigabytes take a while
        stat = path.stat()
        entry = ModelEntry(name, str(path), stat.st_size, digest, source, managed,
                           datetime.now(UTC).isoformat(timespec="seconds"), stat.st_mtime_ns)
        with self._lock:
            data = self._read()
            self._check_free(data, name, path)
            data["models"][name] = entry
            self._write(data)
        return entry, info

    def _check_free(self, data: dict[str, Any], name: str, path: Path) -> None:
        if name in data["models"]:
            other = data["models"][name]
            raise ModelError(
                f"A model named {name!r} is already registered ({other.path}).",
                hint="Choose another name with --name, or `assistant models remove` it first.",
            )
        for entry in data["models"].values():
            if Path(entry.path).resolve() == path.resolve():
                raise ModelError(f"{path} is already registered as {entry.name!r}.")

    def remove(self, name: str, delete_file: bool | None = None) -> tuple[ModelEntry, bool]:
        """Unregister `name`; its file is deleted when the registry manages it (or as asked).
        Returns the entry and whether the file was deleted."""
        with self._lock:
            data = self._read()
            entry = data["models"].pop(name, None)
            if entry is None:
                self.find(name)  # raises with the list of names
            assert entry is not None
            if data["default"] == name:
                data["default"] = None
            self._write(data)
        delete = entry.managed if delete_file is None else delete_file
        deleted = False
        if delete:
            try:
                entry.file.unlink()
                deleted = True
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise ModelError(
                    f"{name!r} is unregistered, but its file {entry.path} cannot be deleted: {exc.strerror}.",
                    hint="Delete it by hand.",
                ) from exc
        return entry, deleted

    def use(self, name: str | None) -> ModelEntry | None:
        """Make `name` the default model (None: back to the embedded one)."""
        with self._lock:
            data = self._read()
            entry = None
            if name is not None:
                entry = data["models"].get(name)
                if entry is None:
                    self.find(name)
            data["default"] = name
            self._write(data)
        return entry

    def copy_in(self, path: Path, progress: Progress | None = None) -> Path:
        """Copy `path` into the models folder (for `add --copy`); refuses to overwrite."""
        target = ensure_private_dir(models_folder()) / path.name
        if target.exists():
            raise ModelError(f"{target} already exists.", hint="Remove it or add the file in place.")
        total, done = path.stat().st_size, 0
        tmp = target.with_name(target.name + ".copying")
        try:
            with path.open("rb") as src, tmp.open("wb") as dst:
                while block := src.read(8 << 20):
                    dst.write(block)
                    done += len(block)
                    if progress is not None:
                        progress(done, total)
            shutil.copystat(path, tmp)
            os.replace(tmp, target)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise ModelError(f"Cannot copy {path} to {target}: {exc.strerror}.") from exc
        return target


def describe(info: GGUFInfo) -> dict[str, Any]:
    """The metadata `assistant models info|list` show."""
    return {
        "name": info.name,
        "architecture": info.architecture,
        "parameters": info.parameter_count,
        "quantization": info.quantization,
        "context_length": info.context_length,
        "layers": info.block_count,
        "embedding_length": info.embedding_length,
        "heads": info.head_count,
        "kv_heads": info.head_count_kv,
        "vocab_size": info.vocab_size,
        "chat_template": info.has_chat_template,
        "gguf_version": info.version,
        "tensors": info.tensor_count,
        "file_size": info.file_size,
    }

