"""Where alert notices and lag metrics go: webhooks and OpenTelemetry (OTLP/HTTP).

Every sink has the same three calls and none of them blocks the caller on the
network: `observe(snapshot)` (latest lag figures, for metrics), `notify(events)`
(firing/resolved notices) and `close(timeout)` (deliver what is queued, within
the timeout). Delivery failures go to `report`, one line each, and are never
raised: a dead webhook must not stop `watch` or the TUI.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

from collectors.alerts import AlertEvent
from collectors.logs import get_logger
from collectors.rules import SinkConfig, SinkType
from collectors.snapshots import LagSnapshot

#: Receives one line per delivery problem (watch prints it to stderr, the TUI notifies).
Report = Callable[[str], None]

_log = get_logger("sinks")


def log_report(message: str) -> None:
    """The default `report`: the lagdeck log file only."""
    _log.warning("%s", message)


class Sink(Protocol):
    label: str

    def observe(self, snapshot: LagSnapshot) -> None: ...

    def notify(self, events: Sequence[AlertEvent]) -> None: ...

    def close(self, timeout: float = 10.0) -> None: ...


def build_sinks(configs: Iterable[SinkConfig], report: Report = log_report, *,
                interval: float = 10.0) -> list[Sink]:
    """Start one sink per config. `interval` paces the OTLP metric export."""
    sinks: list[Sink] = []
    for config in configs:
        if config.type is SinkType.WEBHOOK:
            from tracing.sinks.webhook import WebhookSink

            assert config.url is not None
            sinks.append(WebhookSink(config.url, timeout=config.timeout,
                                     retries=config.retries, headers=config.headers,
                                     report=report, expire_after=config.expire,
                                     retry_every=interval))
        else:
            from tracing.sinks.otlp import OtlpSink

            sinks.append(OtlpSink(config.endpoint, timeout=config.timeout,
                                  headers=config.headers, interval=interval, report=report))
    return sinks


def close_all(sinks: Iterable[Sink], timeout: float = 10.0,
              report: Report = log_report) -> None:
    """Close every sink at once, all within `timeout` in total, whatever the sinks do.

    Each close runs on its own daemon thread: a sink whose receiver never
    answers (or an SDK that ignores its own timeout) cannot hold the caller
    past the deadline; one failing does not stop the others.
    """
    sinks = list(sinks)
    deadline = time.monotonic() + max(timeout, 0.0)

    def close(sink: Sink) -> None:
        try:
            sink.close(max(deadline - time.monotonic() - 0.05, 0.0))
        except Exception as exc:
            _log.exception("closing %s failed", sink.label)
            report(f"{sink.label}: close failed: {exc}")

    threads = [threading.Thread(target=close, args=(s,), name=f"lagdeck-close-{i}",
                                daemon=True) for i, s in enumerate(sinks)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(deadline - time.monotonic(), 0.0))
    for sink, t in zip(sinks, threads, strict=True):
        if t.is_alive():
            report(f"{sink.label}: did not close within {timeout:g}s; left behind")
