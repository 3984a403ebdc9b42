"""Logging to a file under the state directory, never to the terminal.

librdkafka's own log lines are routed here through the `logger=` argument of
every client, so they cannot scribble over the TUI or the JSON output.
"""

from __future__ import annotations

import logging
import logging.handlers
import threading
from types import TracebackType

from collectors.paths import log_path
from collectors.redact import ScrubFilter
from collectors.untrusted import escape

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
            EscapingFormatter("%(asctime)s %(levelname)s %(name)s %(threadName)s: %(message)s")
        )
        root.addHandler(handler)
        root.setLevel(level)
        root.propagate = False
        _configured = path


class EscapingFormatter(logging.Formatter):
    """A log file is read in a terminal too (`tail -f`, `less -R`): the message, which
    carries group and topic names and record fields, is escaped onto one line (so a
    record cannot forge a log line either); tracebacks keep their line breaks."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        message = record.message
        record.message = escape(message)
        try:
            return super().formatMessage(record)
        finally:
            record.message = message

    def formatException(
        self, ei: tuple[type[BaseException], BaseException, TracebackType | None]
        | tuple[None, None, None],
    ) -> str:
        return escape(super().formatException(ei), newlines=True)

    def formatStack(self, stack_info: str) -> str:
        return escape(super().formatStack(stack_info), newlines=True)


def get_logger(name: str) -> logging.Logger:
    setup_logging()
    return logging.getLogger(f"lagdeck.{name}" if not name.startswith("lagdeck") else name)
