"""The one duration grammar shared by rules, `--since`/`--stuck-after` and `--by-duration`."""

from __future__ import annotations

import pytest

from collectors.durations import duration_seconds


@pytest.mark.parametrize(("text", "seconds"), [
    ("250ms", 0.25), ("90s", 90), ("15m", 900), ("1h30m", 5400), ("2d", 172800),
    ("1w", 604800), ("1H", 3600), (" 45 ", 45), ("1.5h", 5400),
])
def test_accepted(text: str, seconds: float) -> None:
    assert duration_seconds(text) == seconds


@pytest.mark.parametrize("text", ["", "h", "1x", "1h 30m", "-5s", "5s1", "m5"])
def test_rejected(text: str) -> None:
    with pytest.raises(ValueError):
        duration_seconds(text)


def test_callers_choose_units_and_bare_numbers() -> None:
    with pytest.raises(ValueError):
        duration_seconds("1w", units="ms s m h d")
    with pytest.raises(ValueError):
        duration_seconds("90", bare=False)
    assert duration_seconds("90s", bare=False) == 90


@pytest.mark.parametrize(("text", "seconds"), [
    ("PT1H", 3600), ("pt15m", 900), ("P1DT2H", 93600), ("P2W", 1209600), ("PT0.5S", 0.5),
])
def test_iso_8601_everywhere(text: str, seconds: float) -> None:
    assert duration_seconds(text) == seconds
    assert duration_seconds(text, bare=False, units="ms s m h d") == seconds


@pytest.mark.parametrize("text", ["P", "PT", "P1DT", "P1Y", "P1M2", "1e400s"])
def test_iso_and_huge_rejected(text: str) -> None:
    with pytest.raises(ValueError):
        duration_seconds(text)


def test_trace_since_takes_iso_and_quotes_input_as_typed() -> None:
    from collectors.errors import UsageError
    from tracing.search import parse_duration

    assert parse_duration("PT1H", "--since") == 3600
    with pytest.raises(UsageError, match=r"--since: 'Yesterday' is not a duration"):
        parse_duration("Yesterday", "--since")
