"""all-MiniLM-L6-v2 in numpy: a question's vector without torch.

A fresh process that needs one vector (`assistant ask` over folders, memory recall) paid for
torch and sentence-transformers first: 7 s on an idle 2-core machine, 12 s on a busy one, for a
few milliseconds of arithmetic. This computes the same thing from the same files, the model's
safetensors weights and its tokenizer.json (tokenizers and safetensors come with transformers):
BERT's encoder, mean pooling over the tokens, unit length, in float32. Loading takes a few hundred
milliseconds, numpy's import included. Vectors match sentence-transformers' to a cosine of ~1
(tests/test_embedder.py), so they search the same index.

Batches of long chunks (indexing) stay on torch, which is several times faster there.
"""

from __future__ import annotations

import contextlib
import json
import math
from pathlib import Path
from typing import Any

MAX_TOKENS = 256  # sentence-transformers' max_seq_length for this model (sentence_bert_config.json)


class LightEncoderError(Exception):
    """The model folder is not the BERT + mean pooling this encoder computes."""


class LightEncoder:
    def __init__(self, model_dir: Path) -> None:
        import numpy
        from safetensors import safe_open
        from tokenizers import Tokenizer

        config = json.loads((model_dir / "config.json").read_text())
        pooling = json.loads((model_dir / "1_Pooling" / "config.json").read_text())
        modules = [m["type"] for m in json.loads((model_dir / "modules.json").read_text())]
        expected = {"model_type": "bert", "hidden_act": "gelu", "position_embedding_type": "absolute"}
        bert = all(config.get(k) == v for k, v in expected.items())
        normalized = modules[-1:] == ["sentence_transformers.models.Normalize"]
        if not (bert and pooling.get("pooling_mode_mean_tokens") and normalized):
            raise LightEncoderError(f"{model_dir} is not a BERT model with mean pooling and normalization.")
        self.np = numpy
        self._threads: Any = None  # threadpoolctl's controller, loaded on first use; False: none
        self.heads = int(config["num_attention_heads"])
        self.eps = float(config["layer_norm_eps"])
        self.tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        # tokenizer.json pads every text to 128 and cuts there; sentence-transformers cuts at 256
        # and pads a batch to its longest text.
        self.tokenizer.enable_truncation(MAX_TOKENS)
        self.tokenizer.enable_padding(pad_id=int(config.get("pad_token_id", 0)))
        with safe_open(str(model_dir / "model.safetensors"), framework="np") as weights:
            w = {name: weights.get_tensor(name) for name in weights.keys()}
        self.word = w["embeddings.word_embeddings.weight"]
        self.position = w["embeddings.position_embeddings.weight"]
        self.token_type = w["embeddings.token_type_embeddings.weight"]
        self.norm = (w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
        self.layers = []
        for i in range(int(config["num_hidden_layers"])):
            p = f"encoder.layer.{i}."
            attention = p + "attention.self."
            # One matrix for query, key and value: one product instead of three.
            qkv = numpy.concatenate([w[f"{attention}{n}.weight"] for n in ("query", "key", "value")])
            qkv_bias = numpy.concatenate([w[f"{attention}{n}.bias"] for n in ("query", "key", "value")])
            self.layers.append((
                qkv.T.copy(), qkv_bias,
                w[p + "attention.output.dense.weight"].T.copy(), w[p + "attention.output.dense.bias"],
                (w[p + "attention.output.LayerNorm.weight"], w[p + "attention.output.LayerNorm.bias"]),
                w[p + "intermediate.dense.weight"].T.copy(), w[p + "intermediate.dense.bias"],
                w[p + "output.dense.weight"].T.copy(), w[p + "output.dense.bias"],
                (w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"]),
            ))

    def encode(self, texts: list[str]) -> Any:
        """Unit-length float32 vectors, one row per text. On one BLAS thread: for a few short
        texts numpy's OpenBLAS gains little from a second thread on an idle machine (14 against
        18 ms for two sentences), and on a busy one its threads wait on each other (p50 509 ms
        against 72 ms at load 9.6 on 2 cores; docs/benchmarks.md, "Attribution time")."""
        with self._one_thread():
            return self._encode(texts)

    def _one_thread(self) -> Any:
        if self._threads is None:
            try:
                from threadpoolctl import ThreadpoolController

                self._threads = ThreadpoolController()
            except Exception:  # noqa: BLE001 - not installed, or the libraries cannot be read
                self._threads = False
        if self._threads is False:
            return contextlib.nullcontext()
        return self._threads.limit(limits=1, user_api="blas")

    def _encode(self, texts: list[str]) -> Any:
        np = self.np
        encodings = self.tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        types = np.array([e.type_ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.float32)
        batch, length = ids.shape
        x = self.word[ids] + self.position[:length] + self.token_type[types]
        x = self._layer_norm(x, self.norm)
        # Padding gets no attention: a large negative score before the softmax.
        bias = ((1.0 - mask) * np.finfo(np.float32).min)[:, None, None, :]
        heads, size = self.heads, x.shape[-1] // self.heads
        scale = np.float32(1.0 / math.sqrt(size))
        for qkv, qkv_bias, out, out_bias, norm1, up, up_bias, down, down_bias, norm2 in self.layers:
            q, k, v = (x @ qkv + qkv_bias).reshape(batch, length, 3, heads, size).transpose(2, 0, 3, 1, 4)
            scores = (q @ k.transpose(0, 1, 3, 2)) * scale + bias
            scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
            scores /= scores.sum(axis=-1, keepdims=True)
            context = (scores @ v).transpose(0, 2, 1, 3).reshape(batch, length, heads * size)
            x = self._layer_norm(context @ out + out_bias + x, norm1)
            x = self._layer_norm(_gelu(np, x @ up + up_bias) @ down + down_bias + x, norm2)
        pooled = (x * mask[:, :, None]).sum(axis=1) / np.maximum(mask.sum(axis=1, keepdims=True), 1e-9)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.maximum(norms, 1e-12)).astype(np.float32)

    def _layer_norm(self, x: Any, weights: tuple[Any, Any]) -> Any:
        mean = x.mean(axis=-1, keepdims=True)
        variance = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
        return (x - mean) / self.np.sqrt(variance + self.eps) * weights[0] + weights[1]


def _gelu(np: Any, x: Any) -> Any:
    """BERT's exact GELU, 0.5 x (1 + erf(x / sqrt 2)); numpy has no erf, so Abramowitz and Stegun's
    7.1.26 (absolute error under 1.5e-7, below float32's own rounding at these magnitudes)."""
    z = np.abs(x) * np.float32(1.0 / math.sqrt(2.0))
    t = 1.0 / (1.0 + np.float32(0.3275911) * z)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    erf = 1.0 - poly.astype(np.float32) * np.exp(-z * z)
    return 0.5 * x * (1.0 + np.sign(x) * erf)
