"""The built-in guardrails plugin.

Detectors of secrets and personal data: the engine hides what they find before a prompt goes to
an untrusted remote backend. Validators of answers: JSON against a requested schema (rejects),
refusals and answers holding a secret or personal data (flagged for review).
"""

from __future__ import annotations

import re

from engine.review import looks_like_refusal
from engine.structured import problem
from plugins.hookspecs import RegisterGuardrail, RegisterValidator, hookimpl

_API_KEY = re.compile(
    r"\b(?:sk-(?:proj-|live-|test-)?[A-Za-z0-9_-]{16,}"  # OpenAI-style
    r"|gh[pousr]_[A-Za-z0-9]{30,}"  # GitHub
    r"|AKIA[0-9A-Z]{16}"  # AWS access key id
    r"|xox[abprs]-[A-Za-z0-9-]{10,}"  # Slack
    r"|AIza[0-9A-Za-z_-]{35}"  # Google
    r"|gsk_[A-Za-z0-9]{20,})"  # Groq
)
_TOKEN = re.compile(
    r"(?i)\bbearer\s+[A-Za-z0-9._~+/-]{20,}=*"
    r"|-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]+?-----END [A-Z ]*PRIVATE KEY-----"
    r"|\beyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}"  # JWT
)
_EMAIL = re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b")
_CARD = re.compile(r"\b(?:\d[ -]?){12,18}\d\b")


def _spans(pattern: re.Pattern[str]):
    return lambda text: [m.span() for m in pattern.finditer(text)]


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        n = int(ch) * (2 if i % 2 else 1)
        total += n - 9 if n > 9 else n
    return total % 10 == 0


def _cards(text: str) -> list[tuple[int, int]]:
    """Card numbers: 13 to 19 digits that pass the Luhn check (order numbers mostly do not)."""
    found = []
    for match in _CARD.finditer(text):
        digits = re.sub(r"\D", "", match.group())
        if 13 <= len(digits) <= 19 and _luhn(digits):
            found.append(match.span())
    return found


@hookimpl
def register_guardrails(register: RegisterGuardrail) -> None:
    for name, find in DETECTORS:
        register(name, find)


DETECTORS = [("API key", _spans(_API_KEY)), ("token", _spans(_TOKEN)), ("email address", _spans(_EMAIL)),
             ("card number", _cards)]


def _sensitive(answer: str, schema: dict | None) -> str | None:
    found = [name for name, find in DETECTORS if find(answer)]
    return f"holds {', '.join(found)}" if found else None


@hookimpl
def register_validators(register: RegisterValidator) -> None:
    register("json schema", lambda answer, schema: problem(answer, schema) if schema else None, True)
    register("refusal", lambda answer, schema: "looks like a refusal" if looks_like_refusal(answer) else None,
             False)
    register("sensitive output", _sensitive, False)
