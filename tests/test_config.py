from pathlib import Path

import pytest

from engine.config import DEFAULT_SYSTEM_PROMPT, load_settings
from engine.errors import ConfigError
from engine.paths import config_file, data_dir


def test_defaults_without_a_config_file(home: Path) -> None:
    settings = load_settings()
    assert settings.model is None
    assert settings.n_ctx == 4096
    assert settings.system_prompt == DEFAULT_SYSTEM_PROMPT
    assert data_dir() == home
    assert config_file() == home / "config.toml"


def test_file_then_environment(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home.mkdir()
    (home / "config.toml").write_text('n_ctx = 2048\ntemperature = 0\nmodels_dir = "/models"\n')
    monkeypatch.setenv("ASSISTANT_N_CTX", "1024")
    monkeypatch.setenv("ASSISTANT_SEED", "7")
    settings = load_settings()
    assert (settings.n_ctx, settings.temperature, settings.seed) == (1024, 0, 7)
    assert settings.models_dir == "/models"


def test_explicit_config_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "elsewhere.toml"
    path.write_text("max_tokens = 100\n")
    monkeypatch.setenv("ASSISTANT_CONFIG", str(path))
    assert load_settings().max_tokens == 100


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("n_ctxx = 5", "Unknown setting 'n_ctxx'"),
        ('n_ctx = "big"', "must be a whole number"),
        ("n_ctx = [", "not valid TOML"),
        ("max_tokens = 9000", "max_tokens=9000"),
        ("n_ctx = 16", "too small"),
        ("temperature = -1", "must be 0 or more"),
        ("system_prompt = 3", "must be text"),
        ("flash_attn = 1", "must be true or false"),
    ],
)
def test_bad_config_file_is_named(home: Path, text: str, message: str) -> None:
    home.mkdir()
    (home / "config.toml").write_text(text)
    with pytest.raises(ConfigError, match=message) as err:
        load_settings()
    assert "config.toml" in str(err.value) or "n_ctx" in text


def test_bad_environment_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASSISTANT_MAX_TOKENS", "lots")
    with pytest.raises(ConfigError, match="ASSISTANT_MAX_TOKENS='lots' is not a number"):
        load_settings()


def test_boolean_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings().flash_attn is True
    monkeypatch.setenv("ASSISTANT_FLASH_ATTN", "off")
    assert load_settings().flash_attn is False
    monkeypatch.setenv("ASSISTANT_FLASH_ATTN", "maybe")
    with pytest.raises(ConfigError, match="not true or false"):
        load_settings()


def test_replace_ignores_unset_options() -> None:
    settings = load_settings().replace(temperature=None, max_tokens=64)
    assert settings.max_tokens == 64 and settings.temperature == 0.2
