"""LLM-as-judge: a judge model grades each answer with a rubric.

The rubric is a prompt template (`judge`, shipped in engine/data/prompts/judge.md, overridable in
the user's prompts folder, or any file given with `--rubric`), so it is versioned by its text like
every other template, and each run records the version it was graded with. The judge answers
JSON constrained by a schema (a grammar on the local model), asked directly, not through a
conversation: no retrieval, no history, no log row of its own. Its requests go through the
router's gate like every other (cloud allowed, budget, breaker, redaction), to the judge's own
backend only: a grade from another model would not compare.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine import prompts
from engine.backends.base import Backend, SamplingParams
from engine.config import Settings
from engine.context import FittedPrompt
from engine.errors import AssistantError, ConfigError
from engine.router import Candidate, Router, is_remote, is_trusted

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "score": {"type": "integer", "enum": [1, 2, 3, 4, 5]},
        "reason": {"type": "string", "maxLength": 300},
    },
    "required": ["score", "reason"],
}
MAX_TOKENS = 200


def load_template(spec: str | None, default: str, settings: Settings) -> prompts.Template:
    """A template by name (shipped or in the prompts folder), or a file given by its path."""
    if spec is None:
        return prompts.load(default, settings)
    path = Path(spec).expanduser()
    if path.suffix == ".md" or path.is_file() or "/" in spec:
        try:
            return prompts.Template(path.stem, path.read_text("utf-8").strip(), str(path))
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(
                f"The template file {path} cannot be read: {exc}.",
                hint="Give a template name (`assistant prompts` lists them) or a .md file.",
            ) from exc
    return prompts.load(spec, settings)


@dataclass(frozen=True)
class Grade:
    score: float | None  # 0..1 (the rubric's 1-5 scaled); None when the judge failed
    raw: int | None
    reason: str
    ms: float
    tokens: int


class Judge:
    """Grades answers with `backend` (a configured backend's name, or a local GGUF file/name)."""

    def __init__(self, spec: str, router: Router, settings: Settings, rubric: prompts.Template) -> None:
        self.rubric = rubric
        self._gate = router
        self._owned = False
        if spec in router.backends:
            self.backend: Backend = router.backends[spec]  # looked at and loaded here, asked through the gate
        else:
            from engine.engine import local_backend

            self.backend = local_backend(settings.replace(model=spec))
            self._owned = True
        if is_remote(self.backend) and not settings.allow_cloud:  # the gate refuses it: say so first
            where = "a server on your network" if is_trusted(self.backend) else "a cloud backend"
            raise ConfigError(f"The judge {spec!r} is {where}, and allow_cloud is off.",
                              hint="Set allow_cloud = true, or judge with a local model.")
        self.name = spec
        self.model = self.backend.model_name

    async def load(self) -> None:
        await self.backend.load()

    async def grade(self, question: str, reference: str | None, answer: str) -> Grade:
        started = time.perf_counter()
        parts = [f"Question:\n{question}"]
        if reference:
            parts.append(f"Reference answer:\n{reference}")
        parts.append(f"Assistant's answer:\n{answer or '(empty)'}")

        async def prepare(candidate: Candidate) -> FittedPrompt:
            return await candidate.fit(self.rubric.text, [], "\n\n".join(parts), MAX_TOKENS)

        try:
            done = await self._gate.complete(prepare, SamplingParams(MAX_TOKENS, 0.0, 1.0, 0, SCHEMA),
                                             only=self.backend)
        except AssistantError as exc:
            return Grade(None, None, f"the judge failed: {exc}", _ms(started), 0)
        text, result = done.text.strip(), done.result
        try:
            verdict = json.loads(text)
            raw = int(verdict["score"])
            if not 1 <= raw <= 5:
                raise ValueError(raw)
        except (ValueError, KeyError, TypeError):
            return Grade(None, None, f"the judge's reply is not a grade: {text[:200]!r}", _ms(started),
                         result.completion_tokens)
        return Grade((raw - 1) / 4, raw, str(verdict.get("reason", "")), _ms(started),
                     result.completion_tokens)

    async def close(self) -> None:
        if self._owned:  # the judge's own model file: its model and thread
            await self.backend.aclose()


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000
