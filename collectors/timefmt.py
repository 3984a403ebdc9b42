"""Times as lagdeck writes them: one function per spelling, so every face agrees.

JSON documents, notices, snapshots and the audit log carry ISO 8601 in UTC;
the CLI's tables a short UTC form; the TUI the operator's local time. The
spellings are part of the output contracts (docs/contracts.md), so each one
is written here once and callers choose among them, never build their own.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime


def iso_utc(seconds: float, timespec: str = "milliseconds", *, zulu: bool = True) -> str:
    """ISO 8601 in UTC of an epoch in seconds: `2023-11-14T22:13:20.000Z`.

    `zulu=False` keeps Python's `+00:00` suffix (the audit log and the
    `lagdeck-redriven-at` header have always been written that way).
    """
    text = datetime.fromtimestamp(seconds, UTC).isoformat(timespec=timespec)
    return text.replace("+00:00", "Z") if zulu else text


def iso_utc_ms(ms: int | None) -> str | None:
    """A record timestamp (epoch milliseconds) as `iso_utc`, or None when the record
    has none or it is outside what a date can hold (a hostile producer's choice)."""
    if ms is None:
        return None
    try:
        return iso_utc(ms / 1000)
    except (OverflowError, OSError, ValueError):
        return None


def now_iso_utc() -> str:
    """Now, as `iso_utc` with the `+00:00` suffix (audit log lines, redrive headers)."""
    return iso_utc(time.time(), zulu=False)


def utc_seconds(ms: int) -> str:
    """Epoch milliseconds as a short UTC time for text tables: `2023-11-14 22:13:20Z`."""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def local_clock(seconds: float) -> str:
    """The local wall-clock time of an epoch in seconds, `HH:MM:SS` (refresh stamps)."""
    return time.strftime("%H:%M:%S", time.localtime(seconds))


def local_ms(ms: int) -> str:
    """Epoch milliseconds in local time with milliseconds: `2023-11-14 23:13:20.000`."""
    whole, frac = divmod(int(ms), 1000)
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(whole)) + f".{frac:03d}"
