"""Summaries of older turns: when a conversation outgrows the context window, the current model
summarizes the turns that fall out (with the previous summary), in the background, and the next
prompts carry that summary instead of losing them. The request goes through the router's gate
like the answer did (the turns may hold a private folder's words, or secrets to redact)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from engine import prompts
from engine.backends.base import SamplingParams
from engine.config import Settings
from engine.context import FittedPrompt, Message
from engine.errors import AssistantError
from engine.router import Candidate, Gateway
from memory.store import Store

log = logging.getLogger(__name__)


class Summaries:
    def __init__(self, settings: Settings, store: Callable[[], Awaitable[Store]], gate: Gateway) -> None:
        self.settings = settings
        self._store = store
        self._gate = gate
        self._writing: dict[int, asyncio.Task[None]] = {}  # conversation id -> summary being written

    def write_later(self, backend: str, conversation_id: int, history: list[Message], ids: list[int],
                    previous: str | None, dropped: int, private: bool = False) -> None:
        """`dropped` of the `history` turns (message `ids`) no longer fit. The cut leaves about half
        of the turns that fitted, so the prompt's start stays the same for the next few turns and
        llama.cpp can reuse its evaluation of it. `backend` (the one that answered) is asked
        first; `private`: the turns hold a private folder's words."""
        if not ids or conversation_id in self._writing:
            return
        kept = len(history) - dropped
        cut = len(history) - kept // 2
        while cut < len(history) and history[cut]["role"] != "user":
            cut += 1  # the kept part opens on a question
        if cut == 0:
            return
        writing = self._write(backend, conversation_id, history[:cut], ids[cut - 1], previous, private)
        task = asyncio.ensure_future(writing)
        self._writing[conversation_id] = task
        task.add_done_callback(lambda _: self._writing.pop(conversation_id, None))

    async def wait(self, conversation_id: int | None) -> None:
        """Until the summary being written for the conversation is saved (the model is busy with it
        anyway, and the next prompt wants it)."""
        if conversation_id in self._writing:
            await asyncio.gather(asyncio.shield(self._writing[conversation_id]), return_exceptions=True)

    async def close(self) -> None:
        if self._writing:
            await asyncio.gather(*self._writing.values(), return_exceptions=True)

    async def _write(self, backend: str, conversation_id: int, turns: list[Message], upto_id: int,
                     previous: str | None, private: bool) -> None:
        try:
            template = await asyncio.to_thread(prompts.load, "summarize", self.settings)
            transcript = "\n\n".join(f"{m['role'].title()}: {m['content']}" for m in turns)
            if previous:
                transcript = f"Earlier summary: {previous}\n\n{transcript}"
            limit = self.settings.summary_tokens

            async def prepare(candidate: Candidate) -> FittedPrompt:
                return await candidate.fit(template.text, [], transcript, limit)

            done = await self._gate.complete(prepare, SamplingParams(limit, 0.0, 1.0, self.settings.seed),
                                             private=private, preferred=backend)
            text = done.text
            if text.strip():
                store = await self._store()
                await asyncio.to_thread(store.save_summary, conversation_id, upto_id, text.strip(),
                                        done.model)
        except AssistantError as exc:  # tried again after the next answer
            log.warning("summarizing conversation %s failed: %s", conversation_id, exc)
