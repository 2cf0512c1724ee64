"""Damaged models all the way into llama.cpp: the real model with a few header bytes changed, loaded
by the local backend (our validator first, then llama.cpp). Either it loads or an error of our
tree says why; llama.cpp must never abort the process. Run in a subprocess of its own, since an
abort in the C library would take the caller down with it:

    python -m tests.gguf_fuzz TRIALS SEED      prints one line per trial, then "done N"

tests/test_fuzz.py runs a few trials; `make soak` runs hundreds.
"""

from __future__ import annotations

import random
import shutil
import sys
import tempfile
from pathlib import Path

from engine.backends.local import LocalBackend
from engine.errors import AssistantError
from engine.gguf import _parse, _Reader
from engine.models import default_model_path


def header_length(path: Path) -> int:
    import mmap

    with path.open("rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        reader = _Reader(buf, path)
        _parse(reader)
        return reader.pos


def main(trials: int, seed: int) -> None:
    rng = random.Random(seed)
    source = default_model_path()
    length = header_length(source)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "damaged.gguf"
        shutil.copyfile(source, path)
        original = path.read_bytes()[:length]
        outcomes: dict[str, int] = {}
        for trial in range(1, trials + 1):
            # Mostly the first 4 kB (counts, types, lengths, the first keys), sometimes anywhere.
            patches = [(rng.randrange(4096) if rng.random() < 0.7 else rng.randrange(length), rng.randrange(256))
                       for _ in range(rng.randint(1, 6))]
            print(f"trial {trial}: {patches}", flush=True)  # the last line names the culprit of a crash
            with path.open("r+b") as fh:
                for offset, value in patches:
                    fh.seek(offset)
                    fh.write(bytes([value]))
            backend = LocalBackend(str(path), n_ctx=256, n_threads=1, prompt_cache_mb=0)
            try:
                backend._load_sync()
                outcome = "loaded"
            except AssistantError as exc:
                outcome = type(exc).__name__
            finally:
                backend.close()
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
            with path.open("r+b") as fh:
                fh.write(original)
        print(f"done {trials} {outcomes}", flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
