"""Secret redaction for client properties, log lines, errors and the audit log.

A property is secret when its name says so (`*password*`, `*secret*`,
`sasl.oauthbearer.*`, private keys, JAAS config). Values of secret properties
are also remembered process-wide so that any text passing through `scrub()`
(log records, error messages, audit lines) has them replaced, even when a
library echoes a value back inside a message.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Mapping

REDACTED = "[redacted]"

_SECRET_NAME = re.compile(
    r"(password|secret|credential|token|sasl\.oauthbearer\.|sasl\.jaas\.config|"
    r"ssl\.key\.pem|ssl\.keystore\.|private[._-]?key|api[._-]?key)",
    re.IGNORECASE,
)

_lock = threading.Lock()
_known_secrets: set[str] = set()


def is_secret_key(name: str) -> bool:
    return bool(_SECRET_NAME.search(name))


def remember_secret(value: str) -> None:
    """Register a secret value so `scrub()` removes it from any text."""
    if value and len(value) >= 3:
        with _lock:
            _known_secrets.add(value)


def redact_mapping(props: Mapping[str, object]) -> dict[str, object]:
    """A copy of `props` with secret values replaced; safe to print or log."""
    return {k: (REDACTED if is_secret_key(k) else v) for k, v in props.items()}


def scrub(text: str) -> str:
    """Replace every remembered secret value inside `text`."""
    with _lock:
        secrets = sorted(_known_secrets, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


class ScrubFilter(logging.Filter):
    """Logging filter that scrubs secrets from the fully formatted message."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = scrub(message)
        if cleaned != message or record.args:
            record.msg, record.args = cleaned, None
        return True
