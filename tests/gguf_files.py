"""Write small GGUF files byte by byte: valid ones to download, and hostile ones to refuse."""

from __future__ import annotations

import struct
from typing import Any

U32, I32, F32, BOOL, STRING, ARRAY, U64 = 4, 5, 6, 7, 8, 9, 10


def string(text: str | bytes) -> bytes:
    raw = text.encode() if isinstance(text, str) else text
    return struct.pack("<Q", len(raw)) + raw


def value(kind: int, v: Any) -> bytes:
    if kind == STRING:
        return string(v)
    if kind == ARRAY:
        item_kind, items = v
        return struct.pack("<IQ", item_kind, len(items)) + b"".join(value(item_kind, i) for i in items)
    return struct.pack({U32: "<I", I32: "<i", F32: "<f", BOOL: "<?", U64: "<Q"}[kind], v)


def gguf(
    metadata: list[tuple[str, int, Any]] | None = None,
    tensors: list[tuple[str, tuple[int, ...], int]] | None = None,
    *,
    version: int = 3,
    alignment: int = 32,
    data: bool = True,
) -> bytes:
    """A GGUF file; tensors are (name, shape, ggml type), F32 (0) by default, data zero-filled
    (or left out: a header alone)."""
    metadata = metadata if metadata is not None else llama_metadata()
    tensors = tensors if tensors is not None else [("blk.0.attn_q.weight", (64, 64), 0),
                                                   ("token_embd.weight", (64, 32), 0)]
    out = b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(metadata))
    for key, kind, v in metadata:
        out += string(key) + struct.pack("<I", kind) + value(kind, v)
    offset, infos = 0, b""
    for name, shape, ggml_type in tensors:
        infos += string(name) + struct.pack("<I", len(shape)) + b"".join(struct.pack("<Q", d) for d in shape)
        infos += struct.pack("<IQ", ggml_type, offset)
        size = 4
        for d in shape:
            size *= d
        offset += -(-size // alignment) * alignment
    out += infos
    out += b"\0" * (-len(out) % alignment)
    return out + b"\0" * offset if data else out


def llama_metadata(layers: int = 1, context: int = 2048) -> list[tuple[str, int, Any]]:
    return [
        ("general.architecture", STRING, "llama"),
        ("general.name", STRING, "tiny test model"),
        ("general.file_type", U32, 0),
        ("llama.block_count", U32, layers),
        ("llama.context_length", U32, context),
        ("llama.embedding_length", U32, 64),
        ("llama.attention.head_count", U32, 4),
        ("llama.attention.head_count_kv", U32, 2),
        ("tokenizer.ggml.tokens", ARRAY, (STRING, ["a", "b", "c"])),
        ("tokenizer.chat_template", STRING, "{{ messages }}"),
    ]


def big_model(megabytes: int = 2) -> bytes:
    """A valid GGUF of about `megabytes` (one F32 tensor), big enough to be cut mid-download."""
    return gguf(tensors=[("blk.0.ffn.weight", (1024, 256 * megabytes), 0)])
