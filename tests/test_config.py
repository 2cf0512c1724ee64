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
        ("temperature = -1", "`temperature` = -1 .* is out of range. Use a number from 0 to 2"),
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


# numbers out of range, and where a value came from (issue 18) ----------------------------------------


@pytest.mark.parametrize(("text", "message"), [
    ("n_batch = 0", r"`n_batch` = 0 \(.*config.toml\) is out of range. Use a whole number of 1 or more."),
    ("temperature = nan", "`temperature` = nan .* Use a number from 0 to 2."),
    ("temperature = inf", "`temperature` = inf .* Use a number from 0 to 2."),
    ("top_p = 7", "`top_p` = 7 .* Use a number from 0 to 1."),
    ("rag_top_k = -1", "`rag_top_k` = -1 .* Use a whole number of 0 or more."),
    ("tool_max_steps = -1", "`tool_max_steps` = -1 .* Use a whole number of 0 or more."),
    ("budget_daily_usd = -5.0", "`budget_daily_usd` = -5.0 .* of 0 or more."),
    ("chunk_overlap = 300", "chunk_overlap=300 .* must be smaller than chunk_tokens=200"),
    ('[prices."m"]\ninput_per_mtok = -1.0', r'`input_per_mtok` = -1.0 \(\[prices.m\] of .*config.toml\) is out'),
    ('[providers.p]\nbase_url = "http://127.0.0.1:9/v1"\nmodel = "m"\ntotal_timeout_s = 0',
     "`total_timeout_s` = 0 .* Use a number above 0."),
    ("backends = []", r"`backends` \(.*config.toml\) is empty: no backend would answer"),
])
def test_numbers_out_of_range_are_refused_with_the_range(home: Path, text: str, message: str) -> None:
    home.mkdir()
    (home / "config.toml").write_text(text + "\n")
    with pytest.raises(ConfigError, match=message):
        load_settings()


@pytest.mark.parametrize(("variable", "value", "message"), [
    ("ASSISTANT_BACKENDS", "", r"`backends` \(ASSISTANT_BACKENDS\) is empty"),
    ("ASSISTANT_BACKENDS", "[]", r"`backends` \(ASSISTANT_BACKENDS\) is empty"),
    ("ASSISTANT_BACKENDS", "[local", r"ASSISTANT_BACKENDS='\[local' is not a list of names"),
    ("ASSISTANT_BACKENDS", "local,nope", r"`backends` \(ASSISTANT_BACKENDS\) names 'nope'"),
    ("ASSISTANT_TEMPERATURE", "nan", r"`temperature` = nan \(ASSISTANT_TEMPERATURE\) is out of range"),
    ("ASSISTANT_N_BATCH", "0", r"`n_batch` = 0 \(ASSISTANT_N_BATCH\)"),
])
def test_a_bad_environment_value_is_blamed_on_its_variable(home: Path, monkeypatch: pytest.MonkeyPatch,
                                                           variable: str, value: str, message: str) -> None:
    home.mkdir()
    (home / "config.toml").write_text("n_ctx = 2048\n")  # a config file that is not to blame
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError, match=message) as err:
        load_settings()
    assert "config.toml" not in str(err.value)


def test_backends_from_the_environment_as_a_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASSISTANT_BACKENDS", '["local"]')
    assert load_settings().backends == ("local",)
    monkeypatch.setenv("ASSISTANT_BACKENDS", " local , ")
    assert load_settings().backends == ("local",)


def test_a_route_of_unknown_backends_is_a_config_error_not_an_index_error(home: Path) -> None:
    from engine import Engine

    engine = Engine(load_settings(), backends={})
    with pytest.raises(ConfigError, match="No backend to answer"):
        engine.router.primary()


def test_the_cli_says_what_is_wrong_with_an_empty_route(home: Path) -> None:
    import os
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "app", "ask", "Hi"], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "ASSISTANT_BACKENDS": ""})
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "`backends` (ASSISTANT_BACKENDS) is empty" in done.stderr


def test_tools_listed_in_the_config_file(home: Path) -> None:
    """`tools = [...]` was refused as "must be a list of names": only two lists became tuples."""
    home.mkdir()
    (home / "config.toml").write_text('tools = ["calculator", "read_file"]\n')
    assert load_settings().tools == ("calculator", "read_file")
