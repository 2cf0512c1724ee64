"""Model states kept after answers: llama-cpp-python's RAM cache, with two faults fixed, and
states on disk (engine/backends/disk_states.py) behind it.

- Each saved state carries a copy of up to `n_batch` rows of logits (100 MB with a 49k-token
  vocabulary), which only `logits_all` would ever read and which the capacity does not count: a
  20-turn conversation grew the process by 1.5 GB. One row is kept; restoring broadcasts it.
- A saved state's token array keeps stale tokens past its end, and llama-cpp-python compares the
  whole array with the next prompt: an older, shorter state could then replace the live one (and
  the next turn evaluated ahead with it). The stale tail is blanked with an id no token has.

A state from disk is loaded straight into the model by the lookup, checked on the way: handed
back to llama-cpp-python instead, a state llama.cpp refuses half-way would leave the model
believing it holds tokens its KV cache does not (a wrong answer, not an error).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import llama_cpp
import numpy as np

from engine.backends.disk_states import DiskStates, SavedState, common_prefix

log = logging.getLogger(__name__)


class StateCache(llama_cpp.LlamaRAMCache):
    def __init__(self, capacity_bytes: int, llm: Any = None) -> None:
        super().__init__(capacity_bytes)
        self.llm = llm  # the model the states are restored into
        self.disk: DiskStates | None = None  # set once the model file's hash is known

    def __setitem__(self, key: Sequence[int], value: llama_cpp.LlamaState) -> None:
        value.scores = value.scores[:1].copy()
        value.input_ids[value.n_tokens :] = -1
        super().__setitem__(key, value)

    def __getitem__(self, key: Sequence[int]) -> llama_cpp.LlamaState:
        key = tuple(key)
        ram_key = self._find_longest_prefix_key(key)
        in_ram = llama_cpp.Llama.longest_token_prefix(ram_key, key) if ram_key is not None else 0
        self.restore_from_disk(key, longer_than=in_ram)
        return super().__getitem__(key)  # llama-cpp-python loads it only if longer than the live one

    def restore_from_disk(self, tokens: Sequence[int], longer_than: int = 0) -> int:
        """Load into the model the disk state sharing the most leading tokens with `tokens`, when
        that is more than `longer_than` and than the model holds now; returns the tokens it
        restored (0: none). Runs on the model's thread."""
        disk, llm = self.disk, self.llm
        if disk is None or llm is None:
            return 0
        wanted = np.asarray(tokens, dtype=np.int32)
        live = common_prefix(llm.input_ids[: llm.n_tokens], wanted)
        found = disk.longest(wanted, longer_than=max(longer_than, live))
        if found is None:
            return 0
        saved = disk.read(found[0])
        if saved is None or len(saved.tokens) > llm.n_ctx():
            return 0
        if not load(llm, saved):
            log.warning("llama.cpp refused the model state %s; evaluating the history instead",
                        found[0].name)
            disk._remove(found[0])
            return 0
        return found[1]


def snapshot(llm: Any, tag: str | None) -> SavedState:
    """The model's state now, as bytes of its own (one copy: an 8B model's is hundreds of MB).
    Call on the model's thread, while it is idle."""
    llama_cpp.llama_synchronize(llm.ctx)  # the turn evaluated ahead may still be computing
    size = llama_cpp.llama_state_get_size(llm.ctx)
    buffer = (ctypes.c_uint8 * size)()
    written = llama_cpp.llama_state_get_data(llm.ctx, buffer, size)
    if written > size:
        raise RuntimeError("llama.cpp wrote more state than it announced")
    data = memoryview(buffer).cast("B")[:written]
    return SavedState(llm.input_ids[: llm.n_tokens].astype(np.int32), data, int(llm._seed), tag)


def load(llm: Any, saved: SavedState) -> bool:
    """Put `saved` into the model; False (and the model emptied) when llama.cpp refuses it."""
    data = memoryview(saved.data).cast("B")
    buffer = (ctypes.c_uint8 * data.nbytes).from_buffer_copy(data)
    if llama_cpp.llama_state_set_data(llm.ctx, buffer, data.nbytes) != data.nbytes:
        llm.n_tokens = 0  # the KV cache may be half-restored: the next eval clears it all first
        return False
    n = len(saved.tokens)
    llm.input_ids[:n] = saved.tokens
    llm.input_ids[n:] = -1
    llm.n_tokens = n
    llm._requires_eval = True  # the logits are not from a live decode: replay the last token
    return True


def fingerprint(llm: Any, model_sha256: str) -> dict[str, Any]:
    """What a state is valid for: the model file, the llama.cpp build and every context setting
    that shapes the KV cache."""
    params = llm.context_params
    context = {name: getattr(params, name) for name in (
        "n_ctx", "n_batch", "n_ubatch", "n_seq_max", "type_k", "type_v", "flash_attn_type",
        "rope_scaling_type", "pooling_type", "attention_type", "rope_freq_base", "rope_freq_scale",
        "yarn_ext_factor", "yarn_attn_factor", "yarn_beta_fast", "yarn_beta_slow", "yarn_orig_ctx",
        "embeddings", "swa_full", "kv_unified")}
    context["n_ctx"] = llm.n_ctx()  # llama.cpp may round the one asked for
    return {"model_sha256": model_sha256, "llama_cpp": llama_build(), "context": context,
            "n_vocab": llm.n_vocab()}


@functools.cache
def llama_build() -> str:
    """llama-cpp-python's version and the identity of the llama.cpp libraries it ships (two wheels
    of one version may be different builds: CPU, CUDA, Metal). Their names, sizes and modification
    times: reading the libraries' bytes took ~30 ms of every model load, and a reinstall (another
    build) writes new files, so a state from the old build is still told apart."""
    digest = hashlib.sha256()
    lib = Path(llama_cpp.__file__).parent / "lib"
    for path in sorted(p for p in lib.iterdir() if p.is_file() and not p.is_symlink()):
        stat = path.stat()
        digest.update(f"{path.name}\0{stat.st_size}\0{stat.st_mtime_ns}\0".encode())
    return f"{llama_cpp.__version__}+{digest.hexdigest()[:16]}"
