"""`console/signals.py`: the stop-on-signal helper `watch` and `dlq redrive` share. In
process: the signals are raised at this test's own main thread."""

from __future__ import annotations

import gc
import queue
import signal
import threading

import pytest

from console.signals import Watchdog, stop_on_signals


def test_first_ctrl_c_asks_to_stop_and_second_calls_again(
        capsys: pytest.CaptureFixture[str]) -> None:
    stop, again = threading.Event(), []
    before = signal.getsignal(signal.SIGINT)
    with stop_on_signals(stop, notice=lambda signum: f"stopping on {signum}\n",
                         again=lambda: again.append("again")):
        signal.raise_signal(signal.SIGINT)
        assert stop.is_set() and again == []
        signal.raise_signal(signal.SIGINT)
        assert again == ["again"]
    assert capsys.readouterr().err == f"stopping on {int(signal.SIGINT)}\n"  # once
    assert signal.getsignal(signal.SIGINT) is before


def test_default_second_ctrl_c_interrupts() -> None:
    stop = threading.Event()
    gc.disable()  # the KeyboardInterrupt must land here, not in another library's gc callback
    try:
        with pytest.raises(KeyboardInterrupt), stop_on_signals(stop, notice=lambda s: ""):
            signal.raise_signal(signal.SIGINT)
            signal.raise_signal(signal.SIGINT)
    finally:
        gc.enable()


def test_sigterm_starts_the_watchdog_with_128_plus_the_signal() -> None:
    stop, expired = threading.Event(), queue.Queue[int]()
    with stop_on_signals(stop, notice=lambda s: "", signals=(signal.SIGTERM,),
                         watchdog=Watchdog(0.01, expired.put)):
        signal.raise_signal(signal.SIGTERM)
        signal.raise_signal(signal.SIGTERM)  # a repeated SIGTERM is ignored
        assert expired.get(timeout=10) == 128 + signal.SIGTERM
    assert stop.is_set() and expired.empty()


def test_outside_the_main_thread_nothing_is_installed() -> None:
    stop, installed = threading.Event(), []

    def body() -> None:
        with stop_on_signals(stop, notice=lambda s: ""):
            installed.append(signal.getsignal(signal.SIGINT))

    before = signal.getsignal(signal.SIGINT)
    worker = threading.Thread(target=body)
    worker.start()
    worker.join()
    assert installed == [before]
