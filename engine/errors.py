"""The one error tree of `assistant`.

Every error meant for the user derives from `AssistantError`; its message names the thing that
went wrong and what to do. Library exceptions (llama_cpp, sqlite3, httpx, ...) are translated into
this tree in the one module that owns the library, with `raise ... from exc`. Anything else that
escapes is a bug.

    AssistantError                      (memory/errors.py: the bottom layer owns the root)
    +-- ConfigError                     a bad config file or environment variable
    |   +-- DatasetError                (engine/evals/dataset.py) a malformed eval dataset
    |   +-- MemoryOffError              (engine/longterm.py) memory off, or the conversation incognito
    +-- ModelError
    |   +-- ModelNotFoundError          no file at the configured path or name
    |   +-- InvalidModelError           not a GGUF file, truncated, or a damaged header
    |   +-- ModelLoadError              llama.cpp refused the file (unsupported, damaged)
    |   |   +-- ModelOutOfMemoryError   not enough memory for the weights and the context
    |   +-- DownloadError               `models pull` failed (HTTP error, checksum, disk full)
    +-- GenerationError                 a backend failed while answering
    |   +-- ContextOverflowError        the prompt cannot fit the model's context window
    |   +-- BackendError                a remote server failed (HTTP error, timeout, bad stream)
    |   +-- NoBackendError              every backend in the route failed or was refused
    |   +-- InvalidOutputError          (engine/structured.py) not JSON of the requested schema
    +-- StoreError                      (memory/errors.py)
    |   +-- DatabaseLockedError
    |   +-- StorageFullError
    |   +-- CorruptDatabaseError
    |   +-- NotFoundError
    |   +-- VectorStoreError            (memory/vectors.py) Chroma failed or cannot be reached
    +-- LoaderError                     (memory/documents.py) a file a loader could not read
    +-- IndexLockedError                (memory/indexer.py) another process is indexing
    +-- EmbeddingError                  (memory/embedder.py) the embedding model could not load
    +-- MemoryInputError                (memory/longterm.py) a memory text or kind not acceptable
    +-- ImportFormatError               (memory/transcripts.py) not an export's lines
    +-- ToolError                       (plugins/hookspecs.py) a tool could not do what was asked;
                                        its message goes back to the model, not to the user

Each is defined in the layer that raises it (memory may not import engine); tests/test_errors_tree.py
keeps this drawing and the classes in step.
"""

from __future__ import annotations

from memory.errors import (
    AssistantError,
    CorruptDatabaseError,
    DatabaseLockedError,
    NotFoundError,
    StorageFullError,
    StoreError,
)

__all__ = [
    "AssistantError",
    "BackendError",
    "ConfigError",
    "ContextOverflowError",
    "CorruptDatabaseError",
    "DatabaseLockedError",
    "DownloadError",
    "GenerationError",
    "InvalidModelError",
    "ModelError",
    "ModelLoadError",
    "ModelNotFoundError",
    "ModelOutOfMemoryError",
    "NoBackendError",
    "NotFoundError",
    "StorageFullError",
    "StoreError",
]


class ConfigError(AssistantError):
    """The config file or an ASSISTANT_* variable holds a value we cannot use."""


class ModelError(AssistantError):
    """A model file could not be used."""


class ModelNotFoundError(ModelError):
    """No model file at the configured path, or no model of that name."""


class InvalidModelError(ModelError):
    """The file is not a usable GGUF model (wrong magic, truncated, damaged header)."""


class ModelLoadError(ModelError):
    """llama.cpp could not load a file that looked valid."""


class DownloadError(ModelError):
    """A model download failed: the server, the connection, the checksum, or the disk."""

    def __init__(self, message: str, *, hint: str | None = None, status: int | None = None) -> None:
        super().__init__(message, hint=hint)
        self.status = status


class GenerationError(AssistantError):
    """A backend failed while producing an answer."""


class ContextOverflowError(GenerationError):
    """Even the system prompt and the newest message cannot fit the context window."""


class ModelOutOfMemoryError(ModelLoadError):
    """The model and its context do not fit in the memory available."""


class BackendError(GenerationError):
    """A remote backend failed: cannot connect, an HTTP error, a timeout, a broken stream."""

    def __init__(self, message: str, *, hint: str | None = None, status: int | None = None) -> None:
        super().__init__(message, hint=hint)
        self.status = status


class NoBackendError(GenerationError):
    """No backend of the route could answer; the message lists why, backend by backend."""

    def __init__(self, attempts: list[tuple[str, str]]) -> None:
        lines = "; ".join(f"{name}: {reason}" for name, reason in attempts)
        super().__init__(f"No backend could answer. {lines}")
        self.attempts = attempts
