"""Where `assistant` keeps its files: one data folder and one config file.

`ASSISTANT_HOME` overrides the data folder (and then the config file lives in it too, so one
variable isolates a whole installation); `ASSISTANT_CONFIG` overrides the config file.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP_NAME = "assistant"


def data_dir() -> Path:
    home = os.environ.get("ASSISTANT_HOME")
    return Path(home).expanduser() if home else Path(platformdirs.user_data_dir(APP_NAME))


def config_file() -> Path:
    explicit = os.environ.get("ASSISTANT_CONFIG")
    if explicit:
        return Path(explicit).expanduser()
    if os.environ.get("ASSISTANT_HOME"):
        return data_dir() / "config.toml"
    return Path(platformdirs.user_config_dir(APP_NAME)) / "config.toml"


def database_file() -> Path:
    return data_dir() / "assistant.db"


def ensure_private_dir(path: Path) -> Path:
    """Create `path` readable by the user only: conversations are private. Missing folders above
    it are made private too (`mkdir(parents=True)` would give them the umask's 0755: the logs
    folder, created first at start-up, left the data folder itself open to everyone)."""
    missing = []
    folder = path
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    for folder in reversed(missing):
        folder.mkdir(mode=0o700, exist_ok=True)
    return path
