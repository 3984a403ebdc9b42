"""One grammar for the durations operators type: `250ms`, `90s`, `15m`, `1h30m`, `2d`, `1w`.

Callers differ only in what they admit (weeks, a bare number of seconds) and
in how they word the error, so they pass those and keep their own messages.
"""

from __future__ import annotations

import re

UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")


def duration_seconds(text: str, *, units: str = "ms s m h d w", bare: bool = True) -> float:
    """Seconds from `text` (case-insensitive, no inner spaces); ValueError if it is not one.

    `units` lists the admitted suffixes; `bare` admits a plain number of seconds.
    """
    compact = text.strip().lower()
    if bare and _NUMBER.fullmatch(compact):
        return float(compact)
    admitted = units.split()
    pos, total = 0, 0.0
    for match in _PART.finditer(compact):
        if match.start() != pos or match.group(2) not in admitted:
            break
        total += float(match.group(1)) * UNIT_SECONDS[match.group(2)]
        pos = match.end()
    if not compact or pos != len(compact):
        raise ValueError(f"not a duration: {text!r}")
    return total
