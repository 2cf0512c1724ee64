"""API keys: read from an environment variable or the OS keyring, and kept out of every log line,
error message and database row.

A key is held in a `Secret`, whose repr and str never show it. Every key read is also remembered
for `redact()`, which the log handler and the remote backend's error messages pass text through:
servers like to echo the key back ("Incorrect API key provided: sk-...").
"""

from __future__ import annotations

import logging
import os
import threading

from engine.errors import ConfigError

MASK = "[redacted]"
_known: set[str] = set()
_known_lock = threading.Lock()


class Secret:
    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value
        if len(value) >= 6:  # shorter strings would redact ordinary words
            with _known_lock:
                _known.add(value)

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret({MASK!r})"

    __str__ = __repr__


def redact(text: str) -> str:
    with _known_lock:
        known = sorted(_known, key=len, reverse=True)
    for value in known:
        if value in text:
            text = text.replace(value, MASK)
    return text


class RedactingFilter(logging.Filter):
    """Installed on the log handler: a record that mentions a key is written with the key masked."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and record.exc_info[1] is not None:
            text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info, record.exc_text = None, text
        return True


def api_key(provider: str, env: str | None, keyring_service: str | None) -> Secret | None:
    """The provider's key: from the environment variable `env`, else from the OS keyring
    (service `keyring_service`, user name = the provider's name). None when neither is set up."""
    if env:
        value = os.environ.get(env, "").strip()
        if value:
            return Secret(value)
    if keyring_service:
        try:
            import keyring
            from keyring.errors import KeyringError
        except ImportError as exc:  # pragma: no cover - keyring is a dependency
            raise ConfigError("The `keyring` package is not installed.") from exc
        try:
            value = keyring.get_password(keyring_service, provider)
        except KeyringError as exc:
            raise ConfigError(
                f"The OS keyring could not be read for provider {provider!r}: {type(exc).__name__}.",
                hint="Set the key in an environment variable instead (api_key_env), or unlock the keyring.",
            ) from exc
        if value:
            return Secret(value.strip())
    return None
