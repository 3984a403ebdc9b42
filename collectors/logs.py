"""Logging to a file under the state directory, never to the terminal.

librdkafka's own log lines are routed here through the `logger=` argument of
every client, so they cannot scribble over the TUI or the JSON output.
"""

from __future__ import annotations

import logging
import logging.handlers
import threading

from collectors.paths import log_path
from collectors.redact import ScrubFilter

_configured: str | None = None
_lock = threading.Lock()

#: librdkafka's clients log through this logger (see `collectors.kafka`).
KAFKA_LOGGER = "lagdeck.librdkafka"


def setup_logging(level: int = logging.INFO) -> None:
    """Attach a rotating, secret-scrubbing file handler to the `lagdeck` logger (idempotent)."""
    global _configured
    path = str(log_path())
    with _lock:
        if _configured == path:
            return
        root = logging.getLogger("lagdeck")
        for handler in list(root.handlers):
            if getattr(handler, "_lagdeck", False):
                root.removeHandler(handler)
                handler.close()
        handler = logging.handlers.RotatingFileHandler(
            path, maxBytes=5_000_000, backupCount=3, encoding="utf-8"
        )
        handler._lagdeck = True  # type: ignore[attr-defined]
        handler.addFilter(ScrubFilter())
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s %(threadName)s: %(message)s")
        )
        root.addHandler(handler)
        root.setLevel(level)
        root.propagate = False
        _configured = path


def get_logger(name: str) -> logging.Logger:
    setup_logging()
    return logging.getLogger(f"lagdeck.{name}" if not name.startswith("lagdeck") else name)
