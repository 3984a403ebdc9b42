"""The lag gauges in the Prometheus exposition format (`lagdeck watch --metrics-port PORT`).

The same gauges as the OTLP sink (`lagdeck.consumer.lag`, `...lag_seconds`),
through OpenTelemetry's Prometheus exporter (not hand-written text): one
series per group partition, labelled `group`, `topic`, `partition`, the
partition's `status` and the group's `alert_state` (`firing`, `pending` or
`ok`), as kafka-lag-exporter and KMinion label theirs. Prometheus names them
`lagdeck_consumer_lag` and `lagdeck_consumer_lag_seconds`.

The registry and the HTTP server are private to the sink (nothing global),
and the server binds 127.0.0.1 unless a host is given.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence

from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider, ObservableGauge
from opentelemetry.sdk.resources import Resource
from prometheus_client import CollectorRegistry, start_http_server

from collectors.alerts.sinks.otlp import lag_gauges
from collectors.alerts.state import AlertEvent, AlertState, Phase
from collectors.errors import InvalidValue
from collectors.snapshots import LagSnapshot

#: series per gauge before the SDK folds the rest into one overflow series
CARDINALITY = 1_000_000


def parse_listen(text: str) -> tuple[str, int]:
    """`PORT` or `HOST:PORT` (host defaults to 127.0.0.1)."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]") if sep else "127.0.0.1"
    try:
        number = int(port)
    except ValueError:
        raise InvalidValue("metrics_port", f"expects PORT or HOST:PORT, got {text!r}") from None
    if not 0 <= number <= 65535:
        raise InvalidValue("metrics_port", f": port must be 0-65535, got {number}")
    return host or "127.0.0.1", number


def alert_states_by_group(states: Iterable[AlertState]) -> dict[str, str]:
    """The worst alert phase per group: `firing` over `pending`."""
    out: dict[str, str] = {}
    for s in states:
        if s.phase is Phase.FIRING or out.get(s.key.group) != "firing":
            out[s.key.group] = s.phase.value
    return out


class PrometheusSink:
    """Serves `/metrics` on its own thread; `observe` only swaps the latest snapshot."""

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self._registry = CollectorRegistry()
        self._reader = PrometheusMetricReader(
            registry=self._registry, cardinality_limits={ObservableGauge: CARDINALITY})
        self._meters = MeterProvider(resource=Resource.create({"service.name": "lagdeck"}),
                                     metric_readers=[self._reader])
        meter = self._meters.get_meter("lagdeck")
        lag_gauges(meter, self._observe_lag, self._observe_lag_seconds)
        try:
            self._server, self._thread = start_http_server(port, addr=host,
                                                           registry=self._registry)
        except OSError as exc:
            self._meters.shutdown()
            raise InvalidValue("metrics_port", f": cannot listen on {host}:{port}: "
                             f"{exc.strerror or exc}") from None
        self.host = host
        self.port = int(self._server.server_address[1])
        #: port 0 asked the system for one: the operator must be told which
        self.port_chosen = port == 0
        self.label = f"prometheus http://{host}:{self.port}/metrics"
        self._lock = threading.Lock()
        self._latest: LagSnapshot | None = None
        self._alerts: Mapping[str, str] = {}
        self._closed = False

    # -- the Sink protocol ------------------------------------------------------------

    def observe(self, snapshot: LagSnapshot) -> None:
        with self._lock:
            self._latest = snapshot

    def observe_alerts(self, states: Iterable[AlertState]) -> None:
        """The alert book after the round: each group's worst phase becomes a label."""
        by_group = alert_states_by_group(states)
        with self._lock:
            self._alerts = by_group

    def notify(self, events: Sequence[AlertEvent]) -> None:
        """Notices are not metrics; the alert state reaches the labels via `observe_alerts`."""

    def close(self, timeout: float = 10.0) -> None:
        if self._closed:
            return
        self._closed = True
        self._server.shutdown()
        self._server.server_close()
        self._meters.shutdown(timeout_millis=max(timeout, 0.1) * 1000)

    # -- gauges ---------------------------------------------------------------------------

    def _points(self) -> list[tuple[dict[str, str | int], int | None, float | None]]:
        with self._lock:
            snapshot, alerts = self._latest, self._alerts
        if snapshot is None:
            return []
        return [({"group": g.group, "topic": p.topic, "partition": p.partition,
                  "status": p.status.value, "alert_state": alerts.get(g.group, "ok")},
                 p.lag, p.lag_seconds)
                for g in snapshot.groups for p in g.partitions]

    def _observe_lag(self, options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(lag, attrs) for attrs, lag, _ in self._points() if lag is not None]

    def _observe_lag_seconds(self, options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(float(sec), attrs) for attrs, _, sec in self._points()
                if sec is not None]
