"""Leaving a one-shot command without tearing down what it built.

`lagdeck lag` at 10,000 groups ends holding about two million objects (the
snapshot, the history's cache, the broker's answers). Freeing them one by one
when the command returns, then the interpreter's own finalization, took
0.2-0.3 s after the output was written, on every run. A command with nothing
left to do at exit (its clients and its history closed, no producer buffering,
no exporter to flush) hands its big objects to `keep`, and the console script
leaves with `os._exit` once stdout, stderr and the log are flushed.

Only the console script enables this (`enable`): tests call `cli.main` in
their own process, which must go on, so there nothing is kept and nothing exits.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys

_enabled = False
_kept: list[object] = []


def enable() -> None:
    """Called by the console script before it runs the command."""
    global _enabled
    _enabled = True


def keep(*objects: object) -> None:
    """Hold `objects` until the process ends, and end it without finalization."""
    if _enabled:
        _kept.extend(objects)


def leave(code: int) -> None:
    """End the process now if a command asked to (`keep`); otherwise return."""
    if not _kept:
        return
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe: nothing to tell
            stream.flush()
    logging.shutdown()
    os._exit(code)
