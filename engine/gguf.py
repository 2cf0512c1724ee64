"""Check a GGUF file before llama.cpp sees it, and read its metadata without loading weights.

llama.cpp can abort the whole process on a damaged file; this reader cannot: every length and
count is checked against the file size before it is used, and any damage becomes an
`InvalidModelError` that names the file.
Format: https://github.com/ggml-org/ggml/blob/master/docs/gguf.md
"""

from __future__ import annotations

import functools
import mmap
import struct
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import InvalidModelError, ModelNotFoundError

MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)
DEFAULT_ALIGNMENT = 32
MAX_COUNT = 10_000_000  # far above any real model; stops a hostile count from looping for hours
MAX_LAYERS = 512  # llama.cpp's LLAMA_MAX_LAYERS: more, and it aborts the process instead of failing

# value type -> struct format of a scalar
_SCALARS = {
    0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d",
}
_STRING, _ARRAY = 8, 9
_U64 = struct.Struct("<Q")

# ggml tensor type -> (elements per block, bytes per block), for the truncation check
_TYPE_SIZES = {
    0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24), 8: (32, 34),
    9: (32, 36), 10: (256, 84), 11: (256, 110), 12: (256, 144), 13: (256, 176), 14: (256, 210),
    15: (256, 292), 16: (256, 66), 17: (256, 74), 18: (256, 98), 19: (256, 50), 20: (32, 18),
    21: (256, 110), 22: (256, 82), 23: (256, 136), 24: (1, 1), 25: (1, 2), 26: (1, 4),
    27: (1, 8), 28: (1, 8), 29: (256, 56), 30: (1, 2), 34: (256, 54), 35: (256, 66), 39: (32, 17),
}

_FILE_TYPES = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K",
    11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S",
    17: "Q5_K_M", 18: "Q6_K", 32: "BF16",
}


@dataclass(frozen=True)
class GGUFInfo:
    path: Path
    version: int
    file_size: int
    tensor_count: int
    metadata: dict[str, Any] = field(repr=False)
    parameter_count: int = 0
    # Bytes of tensor data: per repeating layer (`blk.N.*`), the output head, and the rest
    # (token embeddings, norms). The hardware fit places them on the GPU or in RAM.
    layer_bytes: dict[int, int] = field(default_factory=dict, repr=False)
    output_bytes: int = 0
    other_bytes: int = 0

    @property
    def architecture(self) -> str | None:
        return self.metadata.get("general.architecture")

    @property
    def name(self) -> str:
        return self.metadata.get("general.name") or self.path.stem

    @property
    def context_length(self) -> int | None:
        return self.metadata.get(f"{self.architecture}.context_length")

    @property
    def block_count(self) -> int | None:
        return self.metadata.get(f"{self.architecture}.block_count")

    def _int(self, key: str) -> int | None:
        """An integer hyperparameter; None when absent or per-layer (an array)."""
        value = self.metadata.get(f"{self.architecture}.{key}")
        return value if type(value) is int else None

    @property
    def embedding_length(self) -> int | None:
        return self._int("embedding_length")

    @property
    def head_count(self) -> int | None:
        return self._int("attention.head_count")

    @property
    def head_count_kv(self) -> int | None:
        return self._int("attention.head_count_kv") or self.head_count

    @property
    def key_length(self) -> int | None:
        """Dimension of one attention head's keys (values: `value_length`)."""
        explicit = self._int("attention.key_length")
        if explicit:
            return explicit
        if self.embedding_length and self.head_count:
            return self.embedding_length // self.head_count
        return None

    @property
    def value_length(self) -> int | None:
        return self._int("attention.value_length") or self.key_length

    @property
    def vocab_size(self) -> int | None:
        tokens = self.metadata.get("tokenizer.ggml.tokens")
        return self._int("vocab_size") or (int(tokens) if isinstance(tokens, int) else None)

    @property
    def tensor_bytes(self) -> int:
        return sum(self.layer_bytes.values()) + self.output_bytes + self.other_bytes

    @property
    def quantization(self) -> str | None:
        file_type = self.metadata.get("general.file_type")
        return _FILE_TYPES.get(file_type, str(file_type)) if file_type is not None else None

    @property
    def has_chat_template(self) -> bool:
        return bool(self.metadata.get("tokenizer.chat_template"))


class _Reader:
    def __init__(self, buf: mmap.mmap, path: Path) -> None:
        self.buf, self.path, self.pos, self.size = buf, path, 0, len(buf)

    def fail(self, what: str) -> InvalidModelError:
        return InvalidModelError(
            f"The model file {self.path} is damaged or truncated: {what} (at byte {self.pos}).",
            hint="Download it again, or choose another model with --model PATH.",
        )

    def need(self, n: int, what: str) -> None:
        if n < 0 or self.pos + n > self.size:
            raise self.fail(f"{what} runs past the end of the file")

    def scalar(self, fmt: str, what: str) -> Any:
        n = struct.calcsize(fmt)
        self.need(n, what)
        (value,) = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += n
        return value

    def u32(self, what: str) -> int:
        return self.scalar("<I", what)

    def u64(self, what: str) -> int:
        return self.scalar("<Q", what)

    def count(self, what: str) -> int:
        n = self.u64(what)
        if n > MAX_COUNT:
            raise self.fail(f"{what} is {n}, which is not plausible")
        return n

    def string(self, what: str) -> str:
        n = self.u64(f"length of {what}")
        self.need(n, what)
        raw = self.buf[self.pos : self.pos + n]
        self.pos += n
        return raw.decode("utf-8", errors="replace")

    def skip_strings(self, n: int, key: str) -> None:
        """Skip `n` strings (a vocabulary has ~100k): a tight loop, as this runs at every load."""
        buf, pos, size, unpack = self.buf, self.pos, self.size, _U64.unpack_from
        for _ in range(n):
            if pos + 8 > size:
                self.pos = pos
                raise self.fail(f"items of {key} run past the end of the file")
            pos += 8 + unpack(buf, pos)[0]
        if pos > size:
            raise self.fail(f"items of {key} run past the end of the file")
        self.pos = pos

    def unique_strings(self, n: int, key: str) -> None:
        """Skip `n` strings that must all differ: llama.cpp aborts the whole process (a failed
        GGML_ASSERT, not an error) on a vocabulary that lists a token twice."""
        buf, pos, size, unpack = self.buf, self.pos, self.size, _U64.unpack_from
        seen: set[bytes] = set()
        for _ in range(n):
            if pos + 8 > size:
                self.pos = pos
                raise self.fail(f"items of {key} run past the end of the file")
            end = pos + 8 + unpack(buf, pos)[0]
            # llama.cpp reads a token as a C string: a NUL byte ends it there.
            token = buf[pos + 8 : end].split(b"\0", 1)[0]
            if token in seen:
                self.pos = pos
                raise self.fail(f"{key} lists the token {token.decode('utf-8', 'replace')!r} twice")
            seen.add(token)
            pos = end
        if pos > size:
            raise self.fail(f"items of {key} run past the end of the file")
        self.pos = pos

    def value(self, kind: int, key: str) -> Any:
        if kind in _SCALARS:
            return self.scalar(_SCALARS[kind], f"value of {key}")
        if kind == _STRING:
            return self.string(f"value of {key}")
        if kind == _ARRAY:
            item_kind = self.u32(f"item type of {key}")
            n = self.count(f"length of {key}")
            if item_kind in _SCALARS:  # skip fixed-size items without reading them
                size = struct.calcsize(_SCALARS[item_kind])
                self.need(n * size, f"items of {key}")
                self.pos += n * size
            elif item_kind == _STRING and key == "tokenizer.ggml.tokens":
                self.unique_strings(n, key)
            elif item_kind == _STRING:
                self.skip_strings(n, key)
            else:
                raise self.fail(f"{key} has an array of unsupported type {item_kind}")
            return _ArrayLength(n)
        raise self.fail(f"{key} has unknown value type {kind}")


class _ArrayLength(int):
    """Arrays (vocabularies, merges) are summarised by their length, not kept in memory."""


_reading = threading.Lock()


def read_gguf(path: str | Path) -> GGUFInfo:
    """Validate `path` as a GGUF model and return its metadata; raise a clear error if it is not.
    Read once per file version in a process: the model load and the tool check both ask, at the
    same time, when a question comes (the vocabulary's check takes ~60 ms of CPU each time)."""
    path = Path(path).expanduser()
    try:
        stat = path.stat()
    except OSError:
        return _read(path)  # says what is wrong with it
    with _reading:  # a second reader waits for the first one's result instead of reading again
        return _read_version(str(path), stat.st_size, stat.st_mtime_ns, stat.st_ino)


@functools.lru_cache(maxsize=8)
def _read_version(path: str, size: int, mtime_ns: int, inode: int) -> GGUFInfo:
    return _read(Path(path))


def _read(path: Path) -> GGUFInfo:
    if not path.exists():
        raise ModelNotFoundError(
            f"The model file {path} does not exist.",
            hint="Check the path given with --model or `model` in the config file.",
        )
    if not path.is_file():
        raise InvalidModelError(f"The model path {path} is not a file.", hint="Point to a .gguf file.")
    try:
        with path.open("rb") as fh:
            size = path.stat().st_size
            if size == 0:
                raise InvalidModelError(
                    f"The model file {path} is empty (0 bytes).",
                    hint="The download or copy probably failed; get the file again.",
                )
            head = fh.read(4)
            if head != MAGIC:
                raise InvalidModelError(
                    f"The file {path} is not a GGUF model (it starts with {head!r}, not b'GGUF').",
                    hint="llama.cpp needs a .gguf file; convert or download the model in GGUF format.",
                )
            if size < 24:
                raise InvalidModelError(f"The model file {path} is truncated ({size} bytes).")
            with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
                return _parse(_Reader(buf, path))
    except PermissionError as exc:
        raise InvalidModelError(
            f"The model file {path} cannot be read: permission denied.",
            hint="Fix its permissions (chmod u+r).",
        ) from exc
    except OSError as exc:
        raise InvalidModelError(f"The model file {path} cannot be read: {exc.strerror}.") from exc


def _parse(r: _Reader) -> GGUFInfo:
    r.pos = 4
    version = r.u32("version")
    if version not in SUPPORTED_VERSIONS:
        raise InvalidModelError(
            f"The model file {r.path} uses GGUF version {version}; supported: "
            f"{', '.join(map(str, SUPPORTED_VERSIONS))}.",
            hint="Convert it with a current llama.cpp.",
        )
    tensor_count = r.count("tensor count")
    kv_count = r.count("metadata count")
    metadata: dict[str, Any] = {}
    for _ in range(kv_count):
        key = r.string("metadata key")
        metadata[key] = r.value(r.u32(f"type of {key}"), key)

    alignment = metadata.get("general.alignment", DEFAULT_ALIGNMENT)
    if type(alignment) is not int or alignment <= 0:
        raise r.fail(f"general.alignment is {alignment!r}")
    architecture = metadata.get("general.architecture")
    layers = metadata.get(f"{architecture}.block_count")
    if isinstance(layers, int) and not 0 < layers <= MAX_LAYERS:
        raise r.fail(f"{architecture}.block_count is {layers}, not between 1 and {MAX_LAYERS}")

    tensors_end = parameters = output_bytes = other_bytes = 0
    layer_bytes: dict[int, int] = {}
    names: set[str] = set()
    for _ in range(tensor_count):
        name = r.string("tensor name")
        if name in names:  # llama.cpp refuses it too, after reading the whole header
            raise r.fail(f"tensor {name} appears twice")
        names.add(name)
        n_dims = r.u32(f"dimensions of {name}")
        if n_dims > 8:
            raise r.fail(f"tensor {name} claims {n_dims} dimensions")
        elements = 1
        for _ in range(n_dims):
            elements *= r.u64(f"shape of {name}")
        ggml_type = r.u32(f"type of {name}")
        offset = r.u64(f"offset of {name}")
        if offset % alignment:
            raise r.fail(f"tensor {name} starts at offset {offset}, not a multiple of {alignment}")
        block, block_bytes = _TYPE_SIZES.get(ggml_type, (1, 0))
        size = elements // block * block_bytes
        tensors_end = max(tensors_end, offset + size)
        parameters += elements
        layer = _layer_of(name)
        if layer is not None:
            layer_bytes[layer] = layer_bytes.get(layer, 0) + size
        elif name.startswith("output."):
            output_bytes += size
        else:
            other_bytes += size
    data_start = -(-r.pos // alignment) * alignment
    if data_start + tensors_end > r.size:
        missing = data_start + tensors_end - r.size
        raise InvalidModelError(
            f"The model file {r.path} is truncated: its tensors need {missing:,} more bytes "
            f"than the file has ({r.size:,} bytes).",
            hint="The download was probably interrupted; download it again.",
        )
    return GGUFInfo(r.path, version, r.size, tensor_count, metadata, parameters, layer_bytes,
                    output_bytes, other_bytes)


def _layer_of(tensor_name: str) -> int | None:
    """`blk.12.attn_q.weight` -> 12."""
    if not tensor_name.startswith("blk."):
        return None
    number = tensor_name[4:].partition(".")[0]
    return int(number) if number.isdigit() else None
