"""How each face words a domain error about a value the user gave (`ValueProblem`).

The domain says which value is wrong (`since`, `where`, `to_datetime`); the
command line calls it by its flag (`--since`), a screen by the field the
operator typed it in (`filter`). Every other error is shown as it is.
"""

from __future__ import annotations

from collections.abc import Mapping

from collectors.errors import ValueProblem


def flag(field: str) -> str:
    """The command-line flag that carries a domain value (`to_offset` -> `--to-offset`)."""
    return "--" + field.replace("_", "-")


def for_cli(exc: BaseException) -> str:
    """The error as the command line prints it: values named by their flags."""
    if isinstance(exc, ValueProblem):
        return exc.worded(flag(exc.field))
    return str(exc)


def for_tui(exc: BaseException, labels: Mapping[str, str] | None = None) -> str:
    """The error as a screen shows it: values named by the screen's `labels`
    (field -> label; "" when the form already names it), else in plain words."""
    if isinstance(exc, ValueProblem):
        names = labels or {}
        return exc.worded(names.get(exc.field, exc.field.replace("_", " ")))
    return str(exc)
