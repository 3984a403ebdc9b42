"""Lag metrics and alert notices over OTLP/HTTP, through the OpenTelemetry SDK.

Metrics (observable gauges, one point per partition of the latest snapshot,
attributes `group`, `topic`, `partition`):
- `lagdeck.consumer.lag` (unit `{message}`): committed offset to end offset;
- `lagdeck.consumer.lag_seconds` (unit `s`): how old the oldest unconsumed
  record is (partitions with unknown time lag are left out).

Alert notices are log records (events named `lagdeck.alert.firing` /
`lagdeck.alert.resolved`, body = the message, attributes rule, group, topic,
severity, value, threshold, state).

The endpoint is the sink's `endpoint` (a base URL such as
`http://collector:4318`; `/v1/metrics` and `/v1/logs` are appended as for
`OTEL_EXPORTER_OTLP_ENDPOINT`), else the standard OTEL_EXPORTER_OTLP_*
variables. Export runs on the SDK's own threads (a periodic metric reader and
a batch log processor), so `observe` and `notify` never wait on the network;
export failures are reported once when they start and once when they recover.
The providers are private to the sink: nothing global is installed.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, LogRecordExportResult
from opentelemetry.sdk.metrics import MeterProvider, ObservableGauge
from opentelemetry.sdk.metrics.export import MetricExportResult, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource

from collectors.alerts.rules import Severity, safe_url
from collectors.alerts.sinks import Report, log_report
from collectors.alerts.state import AlertEvent, AlertState, EventKind
from collectors.logs import get_logger
from collectors.snapshots import LagSnapshot

LAG_METRIC = "lagdeck.consumer.lag"
LAG_SECONDS_METRIC = "lagdeck.consumer.lag_seconds"
EVENT_PREFIX = "lagdeck.alert."

_routed = threading.Lock()
_routed_done = False


class _ToLagdeckLog(logging.Handler):
    """Hands SDK log records to the lagdeck file log (whichever state dir is current)."""

    def emit(self, record: logging.LogRecord) -> None:
        get_logger("otel").handle(record)


def _route_sdk_logs() -> None:
    """Keep the SDK's own export warnings off the terminal: they go to the lagdeck log."""
    global _routed_done
    with _routed:
        if _routed_done:
            return
        sdk = logging.getLogger("opentelemetry")
        sdk.addHandler(_ToLagdeckLog())
        sdk.propagate = False
        _routed_done = True


def signal_url(endpoint: str | None, signal: str) -> str | None:
    """`endpoint` + `/v1/<signal>`, or None to let the exporter read OTEL_EXPORTER_OTLP_*."""
    if not endpoint:
        return None
    base = endpoint.rstrip("/")
    suffix = f"/v1/{signal}"
    return base if base.endswith(suffix) else base + suffix


class _Health:
    """Reports the first failure of a run of failures and the recovery after it."""

    def __init__(self, label: str, report: Report) -> None:
        self.label, self._report = label, report
        self._failing = False
        self._lock = threading.Lock()
        self.failures = 0
        self.successes = 0

    def record(self, ok: bool) -> None:
        with self._lock:
            if ok:
                self.successes += 1
                changed, self._failing = self._failing, False
                message = f"{self.label}: export recovered"
            else:
                self.failures += 1
                changed, self._failing = not self._failing, True
                message = (f"{self.label}: export failed (endpoint unreachable or refused the "
                           "data; details in the lagdeck log); will keep trying")
        if changed:
            self._report(message)


class _MetricExporter(OTLPMetricExporter):
    def __init__(self, *args: Any, health: _Health, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._health = health

    def export(self, metrics_data, timeout_millis: float | None = 10000, **kwargs):
        result = super().export(metrics_data, timeout_millis, **kwargs)
        self._health.record(result is MetricExportResult.SUCCESS)
        return result


class _LogExporter(OTLPLogExporter):
    def __init__(self, *args: Any, health: _Health, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._health = health

    def export(self, batch):
        result = super().export(batch)
        self._health.record(result is LogRecordExportResult.SUCCESS)
        return result


class OtlpSink:
    def __init__(
        self,
        endpoint: str | None = None,
        *,
        timeout: float = 5.0,
        headers: Mapping[str, str] | None = None,
        interval: float = 10.0,
        report: Report = log_report,
    ) -> None:
        _route_sdk_logs()
        target = endpoint or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") \
            or "http://localhost:4318"
        self.label = f"otlp {safe_url(target)}"
        self._latest: LagSnapshot | None = None
        self._lock = threading.Lock()
        self.metrics_health = _Health(f"{self.label} (metrics)", report)
        self.logs_health = _Health(f"{self.label} (alert events)", report)

        resource = Resource.create(
            {"service.name": os.environ.get("OTEL_SERVICE_NAME") or "lagdeck"})
        metric_exporter = _MetricExporter(
            endpoint=signal_url(endpoint, "metrics"), timeout=timeout,
            headers=dict(headers or {}), health=self.metrics_health)
        self._reader = PeriodicExportingMetricReader(
            metric_exporter,
            export_interval_millis=max(interval, 0.2) * 1000,
            export_timeout_millis=timeout * 1000,
            # every group is exported (kafka-lag-exporter style), not the SDK's 2,000 series
            cardinality_limits={ObservableGauge: 1_000_000},
        )
        self._meters = MeterProvider(resource=resource, metric_readers=[self._reader])
        meter = self._meters.get_meter("lagdeck")
        meter.create_observable_gauge(
            LAG_METRIC, callbacks=[self._observe_lag], unit="{message}",
            description="Consumer group lag in messages (end offset - committed offset)")
        meter.create_observable_gauge(
            LAG_SECONDS_METRIC, callbacks=[self._observe_lag_seconds], unit="s",
            description="Consumer group lag in seconds (age of the oldest unconsumed record)")

        self._logs = LoggerProvider(resource=resource)
        self._logs.add_log_record_processor(BatchLogRecordProcessor(
            _LogExporter(endpoint=signal_url(endpoint, "logs"), timeout=timeout,
                         headers=dict(headers or {}), health=self.logs_health),
            schedule_delay_millis=200,
            export_timeout_millis=timeout * 1000,
        ))
        self._logger = self._logs.get_logger("lagdeck.alerts")
        self._closed = False

    # -- the Sink protocol ------------------------------------------------------------

    def observe(self, snapshot: LagSnapshot) -> None:
        with self._lock:
            self._latest = snapshot

    def observe_alerts(self, states: Iterable[AlertState]) -> None:
        """Alert states are not exported over OTLP; notices are (`notify`)."""

    def notify(self, events: Sequence[AlertEvent]) -> None:
        for event in events:
            firing = event.kind is EventKind.FIRING
            if not firing:
                number, text = SeverityNumber.INFO, "INFO"
            elif event.severity is Severity.CRITICAL:
                number, text = SeverityNumber.ERROR, "ERROR"
            else:
                number, text = SeverityNumber.WARN, "WARN"
            attributes: dict[str, str | int | float] = {
                "rule": event.rule, "group": event.group, "severity": event.severity.value,
                "state": event.kind.value, "since": event.since,
            }
            if event.topic is not None:
                attributes["topic"] = event.topic
            if event.value is not None:
                attributes["value"] = event.value
            if event.threshold is not None:
                attributes["threshold"] = event.threshold
            self._logger.emit(
                timestamp=int(event.at * 1e9),
                severity_number=number,
                severity_text=text,
                body=event.message,
                attributes=attributes,
                event_name=EVENT_PREFIX + event.kind.value,
            )

    def close(self, timeout: float = 10.0) -> None:
        """A last metric export and a flush of queued events, then shut down."""
        if self._closed:
            return
        self._closed = True
        millis = max(timeout, 0.1) * 1000
        self._logs.force_flush(int(millis))
        self._logs.shutdown()
        self._meters.shutdown(timeout_millis=millis)

    # -- gauges ---------------------------------------------------------------------------

    def _points(self) -> Iterable[tuple[dict[str, str | int], int | None, float | None]]:
        with self._lock:
            snapshot = self._latest
        if snapshot is None:
            return
        for group in snapshot.groups:
            for p in group.partitions:
                attributes: dict[str, str | int] = {
                    "group": group.group, "topic": p.topic, "partition": p.partition}
                yield attributes, p.lag, p.lag_seconds

    def _observe_lag(self, options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(lag, attrs) for attrs, lag, _ in self._points() if lag is not None]

    def _observe_lag_seconds(self, options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(float(sec), attrs) for attrs, _, sec in self._points()
                if sec is not None]
