"""One question on its way through the answer pipeline: its turn, the templates its prompt is
built from, and the fitting of that prompt into a backend's context window."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from engine import prompts
from engine.backends.base import Backend
from engine.citations import sources_message
from engine.config import Settings
from engine.context import FittedPrompt, Message
from engine.errors import ContextOverflowError
from engine.request import AskOptions
from engine.router import Router
from memory.longterm import Recalled
from memory.retriever import Passage
from memory.store import Store

UNLOGGED = "(content not logged)"  # a conversation's title when content is not logged


@dataclass(frozen=True)
class Templates:
    """The prompt templates of one answer, read afresh (an edit applies at once)."""

    system: prompts.Template  # the conversation's system prompt (an A/B alternative, maybe)
    sources: prompts.Template  # how the passages are introduced
    memories: prompts.Template  # the heading of the recalled memories
    summary: prompts.Template  # the heading of the summary of older turns

    @classmethod
    def load(cls, system_name: str, settings: Settings) -> Templates:
        """Reads files: call from a worker thread."""
        names = (system_name, "sources", "memories", "summary")
        return cls(*(prompts.load(name, settings) for name in names))

    def versions(self) -> list[str]:
        """In a fixed order (the cache key holds it)."""
        return [self.system.version, self.sources.version, self.memories.version, self.summary.version]

    def name(self, with_sources: bool) -> str:
        """What the response row calls the prompt: the system template, with the sources' when used."""
        return f"{self.system.name}+{self.sources.name}" if with_sources else self.system.name

    def version(self, with_sources: bool) -> str:
        return f"{self.system.version}+{self.sources.version}" if with_sources else self.system.version


@dataclass
class Turn:
    """One question on its way: the conversation it continues and what its prompt is made of."""

    question: str  # as the model gets it: with the recalled memories, once known
    conversation_id: int = 0
    prompt_message_id: int = 0
    preferred: str | None = None  # the conversation's backend choice
    system_name: str = "system"
    incognito: bool = False
    history: list[dict[str, str]] = field(default_factory=list)  # the turns after the summary
    history_ids: list[int] = field(default_factory=list)  # their message ids (none when not logged)
    summary: str | None = None
    summarized: int = 0  # messages the summary stands for
    memories: list[Recalled] = field(default_factory=list)  # recalled for this question
    notices: list[str] = field(default_factory=list)
    options: AskOptions = field(default_factory=AskOptions)


def with_memories(question: str, recalled: list[Recalled], heading: prompts.Template) -> str:
    """The question with its memories before it, as their own section. In the last message, not
    the system prompt: the earlier turns' prefix stays the same, and llama.cpp reuses it."""
    if not recalled:
        return question
    lines = "\n".join(f"- {m.text}" for m in recalled)
    return f"[{heading.text.strip()}\n{lines}]\n\n{question}"


async def fit_prompt(
    backend: Backend, turn: Turn, passages: list[Passage], templates: Templates, settings: Settings,
) -> tuple[FittedPrompt, list[Passage]]:
    """Fit the prompt: older turns give way first, then the least relevant sources, and only
    then is the question shortened. A summary of older turns follows the system prompt; the
    sources go after it or right before the question (`sources_placement`)."""
    system = templates.system.text if turn.options.system is None else turn.options.system
    if turn.summary:
        system = f"{system}\n\n{templates.summary.text.strip()}\n{turn.summary}"
    while True:
        prompt, extra = system, {}
        if passages and settings.sources_placement == "system":
            prompt = f"{system}\n\n{sources_message(passages, templates.sources.text)}"
        elif passages:  # a keyword only when used: plugin backends may predate it
            extra = {"sources": sources_message(passages, templates.sources.text)}
        try:
            fitted = await backend.fit(prompt, turn.history, turn.question,
                                       turn.options.max_tokens or settings.max_tokens, **extra)
        except ContextOverflowError:
            if not passages:
                raise
        else:
            if not (fitted.question_truncated and passages):
                return fitted, passages
        passages = passages[:-1]


async def start_turn(
    store: Store, router: Router, settings: Settings, unlogged: dict[int, list[Message]], question: str,
    conversation_id: int | None, backend: str | None, incognito: bool | None,
) -> Turn:
    """Start or continue the conversation and save the question (its text only when
    `log_content` is on); the model starts loading meanwhile. The turn carries the
    conversation's system prompt template (with `ab_system_prompt` set, every other new
    conversation gets the alternative, and keeps it) and the latest summary of older turns,
    with only the turns after it. `unlogged`: the conversations kept in memory only (log_content off)."""
    logged = settings.log_content
    turn = Turn(question)
    if conversation_id is None:
        turn.preferred = backend
        router.primary(backend).start_loading()
        title = question if logged else UNLOGGED
        conversation_id = await asyncio.to_thread(store.create_conversation, title)
        if settings.ab_system_prompt and conversation_id % 2:
            turn.system_name = settings.ab_system_prompt
            await asyncio.to_thread(store.set_conversation_template, conversation_id, turn.system_name)
    else:
        # A NotFoundError names the conversation.
        conversation = await asyncio.to_thread(store.conversation, conversation_id)
        turn.preferred = backend or conversation.get("backend")
        turn.system_name = conversation.get("system_template") or "system"
        turn.incognito = bool(conversation.get("incognito"))
        router.primary(turn.preferred).start_loading()
        if logged:
            rows = [r for r in await asyncio.to_thread(store.messages, conversation_id)
                    if r["status"] == "complete" and r["role"] in ("user", "assistant")]
            summary = await asyncio.to_thread(store.summary, conversation_id)
            if summary:
                turn.summary = summary["text"]
                turn.summarized = sum(r["id"] <= summary["upto_message_id"] for r in rows)
                rows = [r for r in rows if r["id"] > summary["upto_message_id"]]
            turn.history = [{"role": r["role"], "content": r["content"]} for r in rows]
            turn.history_ids = [r["id"] for r in rows]
        else:
            turn.history = list(unlogged.get(conversation_id, []))
    if backend is not None:
        await asyncio.to_thread(store.set_conversation_backend, conversation_id, backend)
    if incognito is not None and incognito != turn.incognito:
        turn.incognito = incognito
        await asyncio.to_thread(store.set_incognito, conversation_id, incognito)
    turn.conversation_id = conversation_id
    turn.prompt_message_id = await asyncio.to_thread(store.add_message, conversation_id, "user",
                                                     question if logged else "")
    return turn
