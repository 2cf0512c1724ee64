"""The parts of routing that need no server: backoff, Retry-After, the breaker, prices, secrets,
and the routing settings."""

from __future__ import annotations

import logging
import random
from datetime import UTC, date, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest

from engine.backends.openai_compat import estimate_tokens, origin
from engine.config import load_settings
from engine.errors import ConfigError
from engine.prices import price_of, table_version
from engine.resilience import CLOSED, HALF_OPEN, OPEN, CircuitBreaker, backoff_delay, retry_after_s
from engine.secrets import MASK, RedactingFilter, Secret, redact


def test_backoff_is_full_jitter_and_capped() -> None:
    rng = random.Random(1)
    for attempt in range(8):
        delays = [backoff_delay(attempt, 0.1, cap_s=2.0, rng=rng) for _ in range(200)]
        bound = min(2.0, 0.1 * 2**attempt)
        assert all(0 <= d <= bound for d in delays)
        assert max(delays) > bound * 0.8 and min(delays) < bound * 0.2  # spread over the whole range


def test_retry_after_seconds_and_http_dates() -> None:
    now = datetime(2026, 11, 21, 12, 0, 0, tzinfo=UTC)
    assert retry_after_s("7") == 7.0 and retry_after_s("0.5") == 0.5
    assert retry_after_s(format_datetime(now + timedelta(seconds=30), usegmt=True), now) == 30.0
    assert retry_after_s(format_datetime(now - timedelta(seconds=30), usegmt=True), now) == 0.0
    assert retry_after_s("soon") is None and retry_after_s(None) is None and retry_after_s("") is None


def test_breaker_opens_half_opens_and_closes() -> None:
    clock = [1000.0]
    breaker = CircuitBreaker("x", threshold=3, cooldown_s=10, clock=lambda: clock[0])
    for _ in range(2):
        assert breaker.allow()
        breaker.record_failure("boom")
    assert breaker.state == CLOSED and breaker.current.failures == 2
    breaker.record_success()
    assert breaker.current.failures == 0  # failures in a row only
    for _ in range(3):
        breaker.allow()
        breaker.record_failure("boom")
    assert breaker.state == OPEN and not breaker.allow() and breaker.retry_in_s() == 10
    clock[0] += 10
    assert breaker.state == HALF_OPEN
    assert breaker.allow() and not breaker.allow()  # one trial at a time
    breaker.record_failure("still down")
    assert breaker.state == OPEN and breaker.current.last_error == "still down"
    clock[0] += 10
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state == CLOSED and breaker.allow()


def test_prices_are_dated_and_overridable(home: Path) -> None:
    settings = load_settings()
    assert table_version()
    assert price_of("gpt-4o", settings, date(2024, 6, 1)).input_per_mtok == 5.0
    assert price_of("gpt-4o", settings, date(2025, 1, 1)).input_per_mtok == 2.5
    assert price_of("gpt-4o", settings, date(2024, 1, 1)) is None  # before any entry
    assert price_of("no-such-model", settings, date(2025, 1, 1)) is None
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text('[prices."gpt-4o"]\ninput_per_mtok = 9.0\noutput_per_mtok = 9.0\n')
    assert price_of("gpt-4o", load_settings(), date(2025, 1, 1)).input_per_mtok == 9.0


def test_secrets_are_masked_in_text_reprs_and_logs(caplog: pytest.LogCaptureFixture) -> None:
    key = Secret("sk-live-abcdef123456")
    assert "abcdef" not in repr(key) and "abcdef" not in str(key) and key.reveal().endswith("123456")
    assert redact("Incorrect API key provided: sk-live-abcdef123456.") == f"Incorrect API key provided: {MASK}."
    record = logging.LogRecord("httpx", logging.WARNING, __file__, 1, "auth %s failed", ("sk-live-abcdef123456",),
                               None)
    RedactingFilter().filter(record)
    assert "abcdef" not in record.getMessage() and MASK in record.getMessage()


def test_origin_drops_credentials_and_paths() -> None:
    assert origin("https://user:pw@api.example.com/v1?key=x") == "https://api.example.com"
    assert origin("http://127.0.0.1:8000/v1") == "http://127.0.0.1:8000"


def test_token_estimate_errs_high() -> None:
    text = "The quick brown fox jumps over the lazy dog. " * 20
    assert estimate_tokens([{"role": "user", "content": text}]) >= len(text.split()) * 1.3


@pytest.mark.parametrize("config, error", [
    ('backends = ["local", "nowhere"]\n', "neither `local` nor a provider"),
    ('fallback_on = ["sometimes"]\n', "unknown reason 'sometimes'"),
    ('[providers.x]\nmodel = "m"\nbase_url = "ftp://x"\n', "needs a `base_url`"),
    ('[providers.x]\nmodel = "m"\nbase_url = "http://x"\nretries = 3\n', "Unknown setting 'retries' in [providers.x]"),
    ('[providers.x]\nmodel = "m"\nbase_url = "http://x"\nread_timeout_s = "long"\n', "must be a number"),
    ('[providers.x]\nmodel = "m"\nbase_url = "http://x"\nheaders = { X-A = 1 }\n', "header names to text"),
    ('[providers.x]\nmodel = "m"\nbase_url = "http://x"\nopenai_key = "sk-123456789"\n', "API key written"),
])
def test_routing_settings_are_checked(home: Path, config: str, error: str) -> None:
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text(config)
    with pytest.raises(ConfigError, match=__import__("re").escape(error)) as caught:
        load_settings()
    assert "sk-123456789" not in str(caught.value)


def test_routing_settings_from_the_environment(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text('[providers.groq]\nbase_url = "https://api.groq.com/openai/v1"\n'
                                      'model = "llama-3.1-8b-instant"\napi_key_env = "GROQ_API_KEY"\n')
    monkeypatch.setenv("ASSISTANT_BACKENDS", "groq, local")
    monkeypatch.setenv("ASSISTANT_ALLOW_CLOUD", "1")
    monkeypatch.setenv("ASSISTANT_BUDGET_DAILY_USD", "0.5")
    settings = load_settings()
    assert settings.backends == ("groq", "local") and settings.allow_cloud and settings.budget_daily_usd == 0.5
    assert settings.providers["groq"].name == "groq" and settings.providers["groq"].api_key_env == "GROQ_API_KEY"
