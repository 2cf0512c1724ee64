"""Model states kept after answers: llama-cpp-python's RAM cache, with two faults fixed.

- Each saved state carries a copy of up to `n_batch` rows of logits (100 MB with a 49k-token
  vocabulary), which only `logits_all` would ever read and which the capacity does not count: a
  20-turn conversation grew the process by 1.5 GB. One row is kept; restoring broadcasts it.
- A saved state's token array keeps stale tokens past its end, and llama-cpp-python compares the
  whole array with the next prompt: an older, shorter state could then replace the live one (and
  the next turn evaluated ahead with it). The stale tail is blanked with an id no token has.
"""

from __future__ import annotations

from collections.abc import Sequence

import llama_cpp


class StateCache(llama_cpp.LlamaRAMCache):
    def __setitem__(self, key: Sequence[int], value: llama_cpp.LlamaState) -> None:
        value.scores = value.scores[:1].copy()
        value.input_ids[value.n_tokens :] = -1
        super().__setitem__(key, value)
