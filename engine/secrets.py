"""API keys: read from an environment variable or the OS keyring, and kept out of every log line,
error message and database row.

A key is held in a `Secret`, whose repr and str never show it. Every key read, and every value of a
provider's `headers` that may carry a credential (`x-api-key`, ...), is also remembered for
`redact()`, which the log handler, the remote backend's error messages and everything the store
writes (messages, their full-text index, responses, drafts: so backups and exports too) pass text
through: servers like to echo the key back ("Incorrect API key provided: sk-..."), in errors and
in answers. Text cut before it is redacted keeps no key prefix either: a cut-off key at the end of
a text is masked too.
"""

from __future__ import annotations

import logging
import os
import threading

from engine.errors import ConfigError

MASK = "[redacted]"
MIN_SECRET_CHARS = 6  # shorter strings would redact ordinary words
MIN_CUT_CHARS = 3  # a text ending in this much of a key's start was cut inside the key ("Bearer sk-")
# Headers that carry no credential: their values (application/json, a user agent) are ordinary words.
PLAIN_HEADERS = frozenset({"accept", "accept-language", "content-type", "user-agent", "http-referer",
                           "x-title", "openai-beta", "anthropic-version"})
_known: set[str] = set()
_known_lock = threading.Lock()


class Secret:
    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value
        remember(value)

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret({MASK!r})"

    __str__ = __repr__


def remember(value: str) -> None:
    """Treat `value` as a secret from now on, in this process."""
    value = value.strip()
    if len(value) < MIN_SECRET_CHARS:
        return
    with _known_lock:
        first = not _known
        _known.add(value)
    if first:  # the store masks secrets in all it writes, once there are any (memory cannot import engine)
        from memory.store import add_redactor

        add_redactor(redact)


def remember_headers(headers: dict[str, str]) -> None:
    """A provider's configured headers: every value but those of PLAIN_HEADERS may be a credential
    (`x-api-key`, `api-key`, a gateway token), and the config file refuses only `api_key`."""
    for name, value in headers.items():
        if name.strip().lower() not in PLAIN_HEADERS:
            remember(value.removeprefix("Bearer ").removeprefix("bearer "))


def redact(text: str) -> str:
    with _known_lock:
        known = sorted(_known, key=len, reverse=True)
    for value in known:
        if value in text:
            text = text.replace(value, MASK)
    for value in known:  # cut inside a key: its start ends the text
        for length in range(min(len(value) - 1, len(text)), MIN_CUT_CHARS - 1, -1):
            if text.endswith(value[:length]):
                return text[: len(text) - length] + MASK
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
