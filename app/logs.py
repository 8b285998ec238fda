"""Log file set-up: a rotating file in the user's log folder.

In a windowed (frozen) build ``sys.stdout``/``sys.stderr`` are None; anything
printed there (a Keras progress bar, a warning) would raise, so they are
pointed at the log file instead.
"""

from __future__ import annotations

import logging
import logging.handlers
import sys
from pathlib import Path

from platformdirs import user_log_dir

from app import APP_NAME

__all__ = ["log_dir", "setup_logging"]

log = logging.getLogger("tilewatch")


def log_dir() -> Path:
    return Path(user_log_dir(APP_NAME))


class _StreamToLog:
    """A write-only text stream that forwards whole lines to a logger."""

    def __init__(self, logger: logging.Logger, level: int) -> None:
        self._logger, self._level, self._buf = logger, level, ""

    def write(self, text: str) -> int:
        self._buf += text
        while "\n" in self._buf:
            line, self._buf = self._buf.split("\n", 1)
            if line.strip():
                self._logger.log(self._level, line.rstrip())
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


def setup_logging(*, level: int = logging.INFO) -> Path | None:
    """Log to ``user_log_dir("tilewatch")/tilewatch.log`` (rotating, 5 x 2 MB).

    Returns the log file, or None when the folder cannot be created (the app
    still runs; logs then go to stderr only).
    """
    root = logging.getLogger()
    root.setLevel(level)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    path: Path | None = log_dir() / "tilewatch.log"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.handlers.RotatingFileHandler(
            path, maxBytes=2_000_000, backupCount=5, encoding="utf-8"
        )
        handler.setFormatter(fmt)
        root.addHandler(handler)
    except OSError:
        path = None
    if sys.stderr is not None:
        console = logging.StreamHandler(sys.stderr)
        console.setLevel(logging.WARNING)
        console.setFormatter(fmt)
        root.addHandler(console)
    if sys.stdout is None:
        sys.stdout = _StreamToLog(logging.getLogger("stdout"), logging.INFO)
    if sys.stderr is None:
        sys.stderr = _StreamToLog(logging.getLogger("stderr"), logging.WARNING)

    def _excepthook(kind, value, tb):  # keep uncaught exceptions in the log
        log.error("uncaught exception", exc_info=(kind, value, tb))

    sys.excepthook = _excepthook
    return path
