"""The guardrail pipeline, from plugins: detectors that hide secrets and personal data before a
cloud backend (`register_guardrails`), and validators of every new answer (`register_validators`)."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable

from plugins.hookspecs import PluginHost

Find = Callable[[str], list[tuple[int, int]]]
Check = Callable[[str, dict | None], str | None]


class Guardrails:
    def __init__(self, detectors: list[tuple[str, Find]], validators: list[tuple[str, Check, bool]]) -> None:
        self.detectors = detectors
        self.validators = validators

    @classmethod
    def from_plugins(cls, manager: PluginHost) -> Guardrails:
        detectors: list[tuple[str, Find]] = []
        validators: list[tuple[str, Check, bool]] = []
        manager.hook.register_guardrails(register=lambda name, find: detectors.append((name, find)))
        manager.hook.register_validators(
            register=lambda name, check, rejects: validators.append((name, check, rejects)))
        return cls(detectors, validators)

    def validate(self, answer: str, schema: dict | None) -> list[tuple[str, str, bool]]:
        """(validator, problem, rejects) for each validator that objects to the answer."""
        found = []
        for name, check, rejects in self.validators:
            why = check(answer, schema)
            if why:
                found.append((name, why, rejects))
        return found

    def redact(self, text: str) -> tuple[str, Counter[str]]:
        """The text with every detected span replaced by `[redacted NAME]`, and the counts."""
        spans: list[tuple[int, int, str]] = []
        for name, find in self.detectors:
            spans += [(start, end, name) for start, end in find(text)]
        found: Counter[str] = Counter()
        out, position = [], 0
        for start, end, name in sorted(spans):
            if start < position:
                continue  # inside a span already hidden
            out += [text[position:start], f"[redacted {name}]"]
            found[name] += 1
            position = end
        out.append(text[position:])
        return "".join(out), found

    def redact_messages(self, messages: list[dict[str, str]]) -> tuple[list[dict[str, str]], Counter[str]]:
        total: Counter[str] = Counter()
        cleaned = []
        for message in messages:
            content, found = self.redact(message["content"])
            total += found
            cleaned.append({**message, "content": content})
        return cleaned, total


def describe(found: Counter[str]) -> str:
    return ", ".join(f"{n} {name}{'s' if n > 1 else ''}" for name, n in sorted(found.items()))


class PluginGuardrails:
    """The plugins' guardrails, read from the one plugin manager on first use (in a worker
    thread: installed plugins are imported then). Handed to the router (redaction) and to the
    answer pipeline (validation)."""

    def __init__(self, plugins: Callable[[], PluginHost]) -> None:
        self._plugins = plugins
        self._guardrails: Guardrails | None = None

    def get(self) -> Guardrails:
        """Blocking on first use: call from a worker thread."""
        if self._guardrails is None:
            self._guardrails = Guardrails.from_plugins(self._plugins())
        return self._guardrails

    async def redact_messages(
        self, messages: list[dict[str, str]]
    ) -> tuple[list[dict[str, str]], Counter[str]]:
        return (await asyncio.to_thread(self.get)).redact_messages(messages)
