"""Ctrl-C (and SIGTERM) as a request to stop, for commands that must finish cleanly.

`lagdeck watch` and `lagdeck dlq redrive` both turn the first signal into a
flag their loop checks (a round or a batch ends, results are printed, sinks
close) instead of a `KeyboardInterrupt` raised wherever the main thread is.
What differs is passed in: which signals, the line printed, what a second
Ctrl-C does (abort the wait, or leave at once), and an optional watchdog that
leaves the process after a bounded time whatever the loop is doing.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass


def interrupt() -> None:
    """The default second Ctrl-C: give up waiting (a `KeyboardInterrupt` in the main
    thread, which the command turns into its exit code)."""
    raise KeyboardInterrupt


def hard_exit(code: int, why: str, *, log: Callable[[str], None] | None = None,
              lock: AbstractContextManager[object] | None = None) -> None:
    """Leave now with `code`, after one line on stderr. Callers write their state and
    outbox files atomically, so nothing is torn."""
    if log is not None:
        log(why)
    with lock if lock is not None else nullcontext():
        sys.stderr.write(f"lagdeck: {why}\n")
        sys.stderr.flush()
    os._exit(code)


@dataclass(frozen=True)
class Watchdog:
    """After the first signal, `expire(128 + signal number)` is called `budget` seconds
    later from a daemon thread, unless the process is gone by then."""

    budget: float
    expire: Callable[[int], None]


@contextmanager
def stop_on_signals(stop: threading.Event, *, notice: Callable[[int], str],
                    signals: Sequence[signal.Signals] = (signal.SIGINT,),
                    again: Callable[[], None] = interrupt,
                    watchdog: Watchdog | None = None,
                    lock: AbstractContextManager[object] | None = None) -> Iterator[None]:
    """While inside, the first of `signals` sets `stop` and writes `notice(signum)` on
    stderr (under `lock`, the caller's stderr lock, if any) and starts the `watchdog`;
    a second SIGINT calls `again`; any other repeated signal is ignored. The previous
    handlers come back on exit. Outside the main thread (signals cannot be handled
    there) this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        if stop.is_set():
            if signum == signal.SIGINT:
                again()
            return
        stop.set()
        with lock if lock is not None else nullcontext():
            sys.stderr.write(notice(signum))
            sys.stderr.flush()
        if watchdog is not None:
            timer = threading.Timer(watchdog.budget, watchdog.expire, args=(128 + signum,))
            timer.daemon = True
            timer.start()

    previous = {sig: signal.signal(sig, handler) for sig in signals}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
