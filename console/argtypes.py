"""argparse types for numbers typed on the command line.

`float("nan")`, `float("inf")` and `1e308` are all valid floats, and each went
past the commands' own range checks (`nan < 0` is false) into `time.sleep`,
`Event.wait` or `int()`, which raised an unexpected error instead of a usage
line. These types refuse them while parsing, so argparse reports one line and
exit code 2.
"""

from __future__ import annotations

import argparse
import math

#: the longest wait or timeout a command accepts: a week (a longer one is a typo, and far
#: beyond it `Event.wait` overflows the platform's time_t)
MAX_SECONDS = 7 * 24 * 3600.0


def finite(text: str) -> float:
    """A float that is a number: not nan, not infinite."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def seconds(text: str) -> float:
    """A finite number of seconds of at most `MAX_SECONDS` (the sign is the command's check)."""
    value = finite(text)
    if value > MAX_SECONDS:
        raise argparse.ArgumentTypeError(
            f"at most {MAX_SECONDS:g} seconds (a week), got {text!r}")
    return value
