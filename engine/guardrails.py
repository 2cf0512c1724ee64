"""Redaction before a cloud backend, and flagging of answers, with the guardrail plugins'
detectors (see `register_guardrails` in plugins/hookspecs.py)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

Find = Callable[[str], list[tuple[int, int]]]


class Guardrails:
    def __init__(self, detectors: list[tuple[str, Find]]) -> None:
        self.detectors = detectors

    @classmethod
    def from_plugins(cls, manager) -> Guardrails:
        detectors: list[tuple[str, Find]] = []
        manager.hook.register_guardrails(register=lambda name, find: detectors.append((name, find)))
        return cls(detectors)

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
