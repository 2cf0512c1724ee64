"""Keeping the local model's states, so that a conversation's next turn evaluates only its new
words: the next turn's opening evaluated ahead while the user reads (`prefill`), the state after
an answer written to disk (`keep_state`), and a reopened conversation's state read back while the
user types (`restore`). Part of `LocalBackend` (engine/backends/local.py); everything that touches
the model runs on its thread, the disk writes on another (engine/backends/disk_states.py).
"""

from __future__ import annotations

import concurrent.futures
import logging
from pathlib import Path
from typing import Any

from engine.context import Message
from engine.paths import ensure_private_dir

log = logging.getLogger("engine.backends.local")
PREFILL_MAX_TOKENS = 256  # the most evaluated ahead after an answer (a bound on wasted work)


class StateKeeping:
    """The states of `LocalBackend`: its attributes are set in `LocalBackend.__init__`."""

    model_path: Path | None
    n_ctx: int
    states_dir: Path | None
    state_cache_disk_mb: int | None
    _llm: Any
    _formatter: Any
    _cache: Any
    _writer: Any
    _context_fingerprint: dict[str, Any] | None
    _keep_tag: str | None
    _executor: concurrent.futures.ThreadPoolExecutor
    loaded: bool
    _tokenize: Any

    def _open_disk_states(self, compute_hash: bool = True) -> bool:
        """Find the states this model may use on disk; False if its file's hash is not known yet."""
        from engine.backends import disk_states  # numpy: imported once a model loads, not at start-up
        from engine.backends.state_cache import fingerprint

        assert self.states_dir is not None and self.model_path is not None
        try:
            capacity = self.state_cache_disk_mb
            if capacity is None:
                capacity = disk_states.default_capacity_mb(self.states_dir)
            if capacity <= 0:  # switched off: the states on disk go too (they hold conversations)
                disk_states.clear(self.states_dir)
                return True
            llm, cache = self._llm, self._cache
            if llm is None or cache is None:  # prompt_cache_mb = 0: no states kept at all
                return True
            if self._context_fingerprint is None:
                # Read from llama.cpp on the loading thread only: the hashing thread may still
                # run after close() has freed the model, and touching it then crashes the process.
                self._context_fingerprint = fingerprint(llm, "")
            ensure_private_dir(self.states_dir)
            digest = disk_states.file_sha256(self.model_path, self.states_dir / "model-hashes.json",
                                             compute=compute_hash)
            if digest is None:
                return False
            if self._llm is not llm:  # closed or switched while hashing
                return True
            disk = disk_states.DiskStates(self.states_dir, capacity << 20,
                                          {**self._context_fingerprint, "model_sha256": digest})
            self._writer = disk_states.StateWriter(disk.write)
            cache.disk = disk
        except Exception:  # states on disk are a head start: without them, history is evaluated
            log.warning("Model states on disk are off for this session", exc_info=True)
        return True

    def prefill(self, messages: list[Message]) -> None:
        """Evaluate in the background, while the user reads the answer, what the next question's
        prompt will start with: `messages` (the conversation as the next prompt will hold it) and
        the template's opening of the next user turn. The next question then evaluates little
        more than its own words, however long the conversation. A wrong guess costs nothing
        later: llama.cpp keeps only the prefix that matches the next prompt."""
        if self.loaded:
            self._executor.submit(self._prefill_sync, messages)

    def _prefill_sync(self, messages: list[Message]) -> None:
        try:
            opening = self._next_turn_opening(messages)
            if opening is not None:
                self._evaluate_ahead(opening)
        except Exception:  # only a head start lost: the next question evaluates it instead
            log.debug("prefill of the next turn failed", exc_info=True)

    def _next_turn_opening(self, messages: list[Message]) -> list[int] | None:
        """The tokens every next question's prompt after `messages` starts with."""
        if self._formatter is None or self._llm is None:
            return None
        from llama_cpp import Llama

        # Two next questions that differ from their first letter: what they share is the opening.
        formatted = (self._formatter(messages=[*messages, {"role": "user", "content": c}]) for c in "aZ")
        a, z = (self._tokenize(f.prompt, add_bos=not f.added_special) for f in formatted)
        return a[: Llama.longest_token_prefix(a, z)]

    def _evaluate_ahead(self, opening: list[int]) -> None:
        from llama_cpp import Llama

        llm = self._llm
        kept = Llama.longest_token_prefix(opening, llm.input_ids[: llm.n_tokens].tolist())
        ahead = opening[kept:]
        if not ahead or len(ahead) > PREFILL_MAX_TOKENS or len(opening) >= self.n_ctx:
            return
        llm.n_tokens = kept  # eval() drops the KV cells past this point first
        llm.eval(ahead)

    def keep_state(self, tag: str) -> None:
        """Write the model's state after this answer (and after the turn evaluated ahead, when
        `prefill` was called first) to disk, under the conversation `tag`, so the conversation
        goes on after a restart without evaluating its history. Taken on the model's thread
        once it is idle, written on another: the next question never waits for the disk."""
        if self.loaded and self.states_dir is not None:
            self._keep_tag = tag
            self._executor.submit(self._keep_sync)

    def _keep_sync(self) -> None:
        tag, self._keep_tag = self._keep_tag, None
        writer = self._writer
        if tag is None or writer is None or self._llm is None or self._llm.n_tokens == 0:
            return
        from engine.backends.state_cache import snapshot

        try:
            writer.submit(snapshot(self._llm, tag))
        except Exception:
            log.warning("Could not take the model state to keep it on disk", exc_info=True)

    def restore(self, tag: str) -> None:
        """Get ready to continue the conversation `tag` (just opened) while the user types: put
        its latest state from disk into the model. Always safe: the next prompt keeps only the
        tokens it shares with the state, and evaluates the rest."""
        if self.loaded:
            self._executor.submit(self._restore_sync, tag)

    def _restore_sync(self, tag: str) -> int:
        """Tokens now held for the conversation `tag` (0: no state of it on disk)."""
        from engine.backends.state_cache import load

        disk = self._cache.disk if self._cache is not None else None
        llm = self._llm
        try:
            found = disk.latest(tag) if disk is not None and llm is not None else None
            if found is None:
                return 0
            path, tokens = found
            live = llm.input_ids[: llm.n_tokens]
            if len(tokens) <= len(live) and (live[: len(tokens)] == tokens).all():
                return len(tokens)  # the model holds it already (the conversation was just answered)
            ram_key = self._cache._find_longest_prefix_key(tuple(tokens.tolist()))
            if ram_key is not None and tuple(tokens.tolist()) == ram_key[: len(tokens)]:
                return len(tokens)  # still in memory: the question loads it from there, no disk read
            saved = disk.read(path)
            if saved is None or len(saved.tokens) > llm.n_ctx():
                return 0
            if not load(llm, saved):
                log.warning("llama.cpp refused the model state %s; the history will be evaluated", path.name)
                disk._remove(path)
                return 0
            return len(saved.tokens)
        except Exception:  # only a head start lost
            log.debug("restoring the conversation's state failed", exc_info=True)
            return 0
