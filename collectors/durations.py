"""One grammar for the durations operators type: `250ms`, `90s`, `15m`, `1h30m`, `2d`, `1w`,
and ISO-8601 durations (`PT1H30M`, `P1DT2H`, `P2W`) as `kafka-consumer-groups` takes them.

Callers differ only in what they admit (weeks, a bare number of seconds) and
in how they word the error, so they pass those and keep their own messages.
Messages quote the input as typed (never lower-cased).
"""

from __future__ import annotations

import math
import re

UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_NUM = r"\d+(?:[.,]\d+)?"
_ISO = re.compile(
    rf"P(?:(?P<w>{_NUM})W)?(?:(?P<d>{_NUM})D)?"
    rf"(?:T(?:(?P<h>{_NUM})H)?(?:(?P<m>{_NUM})M)?(?:(?P<s>{_NUM})S)?)?")
_ISO_SECONDS = {"w": 604800.0, "d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}


def iso_duration_seconds(text: str) -> float | None:
    """Seconds of an ISO-8601 duration (`PT15M`, `P1DT2H`, `P2W`; no years or months,
    whose length varies), or None when `text` is not one."""
    compact = text.strip().upper()
    match = _ISO.fullmatch(compact)
    if not match or compact in ("P", "PT") or compact.endswith("T"):
        return None
    parts = {k: float(v.replace(",", ".")) for k, v in match.groupdict().items() if v}
    if not parts:
        return None
    return sum(_ISO_SECONDS[k] * v for k, v in parts.items())


def duration_seconds(text: str, *, units: str = "ms s m h d w", bare: bool = True) -> float:
    """Seconds from `text` (case-insensitive, no inner spaces); ValueError if it is not one.

    `units` lists the admitted suffixes; `bare` admits a plain number of seconds.
    ISO-8601 durations are always admitted. The result is finite.
    """
    compact = text.strip().lower()
    if bare and _NUMBER.fullmatch(compact):
        return _finite(float(compact), text)
    if compact.startswith("p"):
        iso = iso_duration_seconds(compact)
        if iso is None:
            raise ValueError(f"not a duration: {text!r}")
        return _finite(iso, text)
    admitted = units.split()
    pos, total = 0, 0.0
    for match in _PART.finditer(compact):
        if match.start() != pos or match.group(2) not in admitted:
            break
        total += float(match.group(1)) * UNIT_SECONDS[match.group(2)]
        pos = match.end()
    if not compact or pos != len(compact):
        raise ValueError(f"not a duration: {text!r}")
    return _finite(total, text)


def _finite(seconds: float, text: str) -> float:
    if not math.isfinite(seconds):
        raise ValueError(f"not a duration: {text!r} (too large)")
    return seconds


def parse_duration(value: object) -> float:
    """A duration written in TOML (alert rules, `[lag]`): seconds from `"30s"`, `"5m"`,
    `"1h30m"`, `"250ms"` or a plain number of seconds, zero or more.

    Raises ValueError with the reason; callers add file, line and key.
    """
    if isinstance(value, bool):
        raise ValueError(f"expected a duration like \"30s\", got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        try:
            seconds = duration_seconds(value.replace(" ", ""), units="ms s m h d")
        except ValueError:
            raise ValueError(
                f"bad duration {value!r} (use a number with ms, s, m, h or d, "
                "e.g. \"30s\", \"5m\", \"1h30m\")"
            ) from None
    else:
        raise ValueError(f"expected a duration like \"30s\", got {type(value).__name__}")
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"duration must be zero or positive, got {value!r}")
    return seconds
