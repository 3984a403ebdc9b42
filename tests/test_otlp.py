"""The OTLP sink against a real OTLP/HTTP receiver that decodes the protobuf requests."""

from __future__ import annotations

import gzip
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from collectors.alerts.sinks import build_sinks
from collectors.alerts.sinks.otlp import LAG_METRIC, LAG_SECONDS_METRIC, OtlpSink, signal_url
from collectors.alerts.state import EventKind
from collectors.snapshots import GroupLag, LagSnapshot, PartitionLag, Status
from tests.conftest import wait_until
from tests.test_webhook import Reports, closed_port_url, event


def _value(v: AnyValue) -> Any:
    kind = v.WhichOneof("value")
    return getattr(v, kind) if kind else None


def _attrs(kvs) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in kvs}


class OtlpReceiver:
    """An OTLP/HTTP collector stand-in: POST /v1/metrics and /v1/logs, protobuf bodies."""

    def __init__(self) -> None:
        self.metrics: list[ExportMetricsServiceRequest] = []
        self.logs: list[ExportLogsServiceRequest] = []
        self.paths: list[str] = []
        self.headers: list[dict[str, str]] = []
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                encoding = self.headers.get("Content-Encoding", "")
                if encoding == "gzip":
                    raw = gzip.decompress(raw)
                elif encoding == "deflate":
                    raw = zlib.decompress(raw)
                with outer._lock:
                    outer.paths.append(self.path)
                    outer.headers.append(dict(self.headers))
                    if self.path == "/v1/metrics":
                        outer.metrics.append(ExportMetricsServiceRequest.FromString(raw))
                    elif self.path == "/v1/logs":
                        outer.logs.append(ExportLogsServiceRequest.FromString(raw))
                status = 200 if self.path in ("/v1/metrics", "/v1/logs") else 404
                self.send_response(status)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_port}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> OtlpReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def gauge_points(self, name: str) -> list[tuple[dict[str, Any], float, dict[str, Any]]]:
        """Every data point of gauge `name`: (attributes, value, resource attributes)."""
        out = []
        with self._lock:
            requests = list(self.metrics)
        for request in requests:
            for rm in request.resource_metrics:
                resource = _attrs(rm.resource.attributes)
                for sm in rm.scope_metrics:
                    for metric in sm.metrics:
                        if metric.name != name:
                            continue
                        assert metric.WhichOneof("data") == "gauge", metric
                        for dp in metric.gauge.data_points:
                            value = dp.as_int if dp.WhichOneof("value") == "as_int" \
                                else dp.as_double
                            out.append((_attrs(dp.attributes), value, resource))
        return out

    def latest(self, name: str) -> dict[tuple[str, str, int], float]:
        """The last value seen per (group, topic, partition)."""
        values = {}
        for attrs, value, _ in self.gauge_points(name):
            values[(attrs["group"], attrs["topic"], attrs["partition"])] = value
        return values

    def log_records(self) -> list[tuple[Any, dict[str, Any], str, str]]:
        """(body, attributes, event_name, severity_text) of every log record received."""
        out = []
        with self._lock:
            requests = list(self.logs)
        for request in requests:
            for rl in request.resource_logs:
                for sl in rl.scope_logs:
                    for record in sl.log_records:
                        out.append((_value(record.body), _attrs(record.attributes),
                                    record.event_name, record.severity_text))
        return out


def snapshot(at: float = 1000.0) -> LagSnapshot:
    parts = (
        PartitionLag("payments.events", 0, 90, 100, 10, 4.5, "interpolated", Status.WARN),
        PartitionLag("payments.events", 1, 200, 207, 7, None, "unknown", Status.OK),
    )
    stopped = (PartitionLag("payments.events", 0, 0, 100, 100, 61.25, "exact", Status.STOP),)
    return LagSnapshot(at, (
        GroupLag("notification-service", "Stable", Status.WARN, 17, 4.5, parts),
        GroupLag("loyalty-service", "Empty", Status.STOP, 100, 61.25, stopped),
    ))


def test_signal_url() -> None:
    assert signal_url("http://c:4318", "metrics") == "http://c:4318/v1/metrics"
    assert signal_url("http://c:4318/", "logs") == "http://c:4318/v1/logs"
    assert signal_url("http://c:4318/v1/logs", "logs") == "http://c:4318/v1/logs"
    assert signal_url(None, "logs") is None


def test_gauges_reach_the_receiver_with_attributes_and_values() -> None:
    reports = Reports()
    with OtlpReceiver() as rx:
        sink = OtlpSink(rx.endpoint, interval=60, report=reports)
        sink.observe(snapshot())
        sink.close(10)  # the last export happens at close, as for `watch --once`
        lag = rx.latest(LAG_METRIC)
        seconds = rx.latest(LAG_SECONDS_METRIC)
        assert "/v1/metrics" in rx.paths
    assert lag == {
        ("notification-service", "payments.events", 0): 10,
        ("notification-service", "payments.events", 1): 7,
        ("loyalty-service", "payments.events", 0): 100,
    }
    # unknown time lag is left out rather than reported as zero
    assert seconds == {
        ("notification-service", "payments.events", 0): 4.5,
        ("loyalty-service", "payments.events", 0): 61.25,
    }
    attrs, _, resource = rx.gauge_points(LAG_METRIC)[0]
    assert set(attrs) == {"group", "topic", "partition"}
    assert isinstance(attrs["partition"], int)
    assert resource["service.name"] == "lagdeck"
    assert reports.snapshot() == []


def test_periodic_export_follows_the_latest_snapshot() -> None:
    with OtlpReceiver() as rx:
        sink = OtlpSink(rx.endpoint, interval=0.2)
        sink.observe(snapshot())
        key = ("notification-service", "payments.events", 0)
        wait_until(lambda: rx.latest(LAG_METRIC).get(key) == 10, 15, message="first export")
        later = snapshot(1010.0)
        moved = PartitionLag("payments.events", 0, 95, 100, 5, 1.0, "interpolated", Status.OK)
        groups = (GroupLag("notification-service", "Stable", Status.OK, 5, 1.0, (moved,)),)
        sink.observe(LagSnapshot(later.taken_at, groups))
        wait_until(lambda: rx.latest(LAG_METRIC).get(key) == 5, 15, message="second export")
        sink.close(10)


def test_alert_notices_become_log_events() -> None:
    with OtlpReceiver() as rx:
        sink = OtlpSink(rx.endpoint, interval=60)
        sink.notify([event(), event(EventKind.RESOLVED, value=12, topic=None)])
        wait_until(lambda: len(rx.log_records()) == 2, 15, message="two log records")
        sink.close(10)
        (fired, resolved) = rx.log_records()
    body, attrs, name, severity = fired
    assert name == "lagdeck.alert.firing" and severity == "ERROR"
    assert "lag 1523 messages" in body
    assert attrs["rule"] == "notifications-behind"
    assert attrs["group"] == "notification-service"
    assert attrs["topic"] == "payments.events"
    assert attrs["severity"] == "critical" and attrs["state"] == "firing"
    assert attrs["value"] == 1523 and attrs["threshold"] == 1000
    body, attrs, name, severity = resolved
    assert name == "lagdeck.alert.resolved" and severity == "INFO"
    assert "topic" not in attrs and attrs["value"] == 12


def test_endpoint_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    with OtlpReceiver() as rx:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", rx.endpoint)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-tenant=ops")
        from collectors.alerts.rules import parse_rules_text

        text = '[[rule]]\nname="r"\ngroup="g"\nmax_lag=1\n[[sink]]\ntype="otlp"\n'
        (sink,) = build_sinks(parse_rules_text(text).sinks, interval=60)
        assert sink.label == f"otlp {rx.endpoint}"
        sink.observe(snapshot())
        sink.close(10)
        assert rx.latest(LAG_METRIC)[("loyalty-service", "payments.events", 0)] == 100
        assert rx.headers[0].get("x-tenant") == "ops"


def test_unreachable_collector_is_reported_once(capfd: pytest.CaptureFixture[str]) -> None:
    reports = Reports()
    sink = OtlpSink(closed_port_url().rsplit("/hooks", 1)[0], timeout=0.5, interval=0.2,
                    report=reports)
    sink.observe(snapshot())
    wait_until(lambda: sink.metrics_health.failures >= 2, 20, message="two failed exports")
    sink.close(1)
    lines = [line for line in reports.snapshot() if "(metrics)" in line]
    assert len(lines) == 1  # one report for the run of failures, not one per export
    assert "export failed" in lines[0] and lines[0].startswith("otlp http://127.0.0.1:")
    # the SDK's own warnings go to the lagdeck log, not the terminal
    captured = capfd.readouterr()
    assert "Failed to export" not in captured.err
