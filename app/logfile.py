"""The log file every `assistant` process writes library warnings to (click-free: the chat app's
fast start, app/launch.py, sets it up without the CLI)."""

from __future__ import annotations

import logging
import logging.handlers
import os


class _PrivateLogFile(logging.handlers.RotatingFileHandler):
    """Log files readable by the user only (0600), also the ones rotation starts anew."""

    def _open(self):  # noqa: ANN202 - a text stream, as in logging.FileHandler
        fd = os.open(self.baseFilename, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        if hasattr(os, "fchmod"):  # not on Windows, where the mode means little anyway
            os.fchmod(fd, 0o600)  # a file left by an older version, or created under another umask
        return open(fd, self.mode, encoding=self.encoding, errors=self.errors)  # noqa: SIM115


def log_to_file() -> None:
    """Library warnings (pypdf, chromadb, ...) go to a file in the data folder: on stderr they
    would scribble over the TUI and the progress bars."""
    from engine import RedactingFilter, data_dir, ensure_private_dir

    try:
        folder = ensure_private_dir(data_dir() / "logs")
        handler: logging.Handler = _PrivateLogFile(
            folder / "assistant.log", maxBytes=2_000_000, backupCount=2, encoding="utf-8"
        )
    except OSError:  # a read-only data folder must not stop the app; then logs are dropped
        handler = logging.NullHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter())  # an API key in any library's message is masked
    logging.basicConfig(level=logging.WARNING, handlers=[handler], force=True)
