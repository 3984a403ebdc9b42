"""Where alert notices and lag metrics go: webhooks, OpenTelemetry (OTLP/HTTP), Prometheus.

Every sink has the same four calls and none of them blocks the caller on the
network: `observe(snapshot)` (latest lag figures, for metrics),
`notify(events)` (firing/resolved notices), `observe_alerts(states)` (the
book after the round, for alert labels) and `close(timeout)` (deliver what is
queued, within the timeout). `collectors.alerts.loop.AlertLoop` makes the
calls. Delivery failures go to `report`, one line each, and are never
raised: a dead webhook must not stop `watch` or the TUI.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

from collectors.alerts.rules import SinkConfig, SinkType
from collectors.alerts.state import AlertEvent, AlertState
from collectors.errors import LagdeckError
from collectors.logs import get_logger
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

    def observe_alerts(self, states: Iterable[AlertState]) -> None: ...

    def close(self, timeout: float = 10.0) -> None: ...


def build_sinks(configs: Iterable[SinkConfig], report: Report = log_report, *,
                interval: float = 10.0) -> list[Sink]:
    """Start one sink per config. `interval` paces the OTLP metric export."""
    sinks: list[Sink] = []
    for config in configs:
        if config.type is SinkType.WEBHOOK:
            from collectors.alerts.sinks.webhook import WebhookSink

            assert config.url is not None
            sinks.append(WebhookSink(config.url, timeout=config.timeout,
                                     retries=config.retries, headers=config.headers,
                                     report=report, expire_after=config.expire,
                                     retry_every=interval))
        else:
            from collectors.alerts.sinks.otlp import OtlpSink

            sinks.append(OtlpSink(config.endpoint, timeout=config.timeout,
                                  headers=config.headers, interval=interval, report=report))
    return sinks


def start_sinks(configs: Iterable[SinkConfig], report: Report = log_report, *,
                interval: float = 10.0, metrics: str | None = None,
                close_timeout: float = 10.0) -> list[Sink]:
    """Everything `watch` delivers to: first the notices left expired in any outbox are
    swept (and reported), then one sink per config, then the Prometheus endpoint when
    `metrics` (`[HOST:]PORT`) is given. If the endpoint cannot start, the sinks already
    started are closed (within `close_timeout`) before the error is raised."""
    from collectors.alerts.sinks.outbox import sweep_expired

    expired = sweep_expired()
    if expired:
        report(f"{expired} expired notice(s) removed from the outbox undelivered "
               "(details in the log)")
    sinks = build_sinks(configs, report, interval=interval)
    if metrics is not None:
        from collectors.alerts.sinks.prometheus import PrometheusSink, parse_listen

        host, port = parse_listen(metrics)
        try:
            prometheus = PrometheusSink(port, host)
        except LagdeckError:
            close_all(sinks, close_timeout, report)
            raise
        sinks.append(prometheus)
        _log.info("watch: serving %s", prometheus.label)
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
