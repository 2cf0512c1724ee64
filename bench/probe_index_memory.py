"""Where does memory go while indexing? RSS after every batch, in one process.

    python bench/probe_index_memory.py [--files 2000] [--part index|embed|chroma]

index:  the real indexer (`Knowledge.index`) on a generated folder, RSS after each flush.
embed:  only the embedder, over the same chunk texts in the indexer's batches.
chroma: only Chroma, random unit vectors added in the indexer's batches.
Prints one line per batch: batch, chunks so far, RSS MiB, and glibc's arena figures (mallinfo2).
"""

from __future__ import annotations

import argparse
import ctypes
import os
import sys
import tempfile
import time
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from bench_foundation import env  # noqa: E402
from make_corpus import make_corpus  # noqa: E402


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
                 "fordblks", "keepcost")]


_libc = ctypes.CDLL("libc.so.6")
_libc.mallinfo2.restype = _MallInfo2


def line(batch: int, chunks: int, started: float) -> str:
    info = _libc.mallinfo2()
    rss = psutil.Process().memory_info().rss
    return (f"{batch:4d} {chunks:6d} {time.perf_counter() - started:7.1f}s  rss {rss / 2**20:7.0f} MiB"
            f"  heap in use {info.uordblks / 2**20:6.0f}  heap free {info.fordblks / 2**20:6.0f}"
            f"  mmapped {info.hblkhd / 2**20:6.0f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--part", choices=("index", "embed", "chroma"), default="index")
    parser.add_argument("--every", type=int, default=1, help="Print every Nth batch.")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="probe-mem-"))
    os.environ.update(env(ASSISTANT_HOME=str(work / "home")))
    folder = make_corpus(work / "corpus", args.files, 0)
    from engine import load_settings
    from engine.knowledge import open_knowledge
    from memory import indexer as indexer_module

    k = open_knowledge(load_settings())
    started = time.perf_counter()
    print(line(0, 0, started), flush=True)
    if args.part == "index":
        seen = {"batch": 0, "chunks": 0}

        def callback(progress: object) -> None:
            done = progress.chunks_done  # type: ignore[attr-defined]
            if done != seen["chunks"]:
                seen["chunks"], seen["batch"] = done, seen["batch"] + 1
                if seen["batch"] % args.every == 0:
                    print(line(seen["batch"], done, started), flush=True)

        summary = k.index(folder, callback)
        print(line(seen["batch"], summary.chunks_added, started), "(done)", flush=True)
        return
    from memory.chunker import chunk_lines

    texts: list[str] = []
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            loader, kind = k.loaders.for_path(path)
            texts += [c.text for c in chunk_lines(loader(path), kind, 200, 40)]
    size = indexer_module.BATCH_CHUNKS
    if args.part == "embed":
        for n, start in enumerate(range(0, len(texts), size), 1):
            k.embedder.embed(texts[start:start + size])
            if n % args.every == 0:
                print(line(n, start + size, started), flush=True)
    else:
        import numpy as np

        rng = np.random.default_rng(0)
        for n, start in enumerate(range(0, len(texts), size), 1):
            count = len(texts[start:start + size])
            vectors = rng.standard_normal((count, 384)).astype("float32")
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            k.vectors.add(list(range(start + 1, start + count + 1)), vectors.tolist(), [1] * count)
            if n % args.every == 0:
                print(line(n, start + count, started), flush=True)
    print(line(-1, len(texts), started), "(done)", flush=True)


if __name__ == "__main__":
    main()
