"""The `[trace]` section of the config file: which headers and payload paths carry ids.

Teams name their correlation header differently and put the order id in
different places of the payload, so both lists are configurable. A wrong type
is a `ConfigError` naming the file and the key, never a crash deep inside a scan.

```toml
[trace]
correlation_headers = ["correlation-id", "x-request-id"]
order_id_paths = ["orderId", "data.orderId"]
event_type_headers = ["event-type", "ce_type"]
event_type_paths = ["event", "type", "eventType"]
trace_url = "http://jaeger:16686/trace/{trace_id}"
jaeger_url = "http://jaeger:16686"
scan_processes = 2          # default: one per CPU (up to 4) for scans above 300k records
event_id_headers = ["ce_id", "message-id"]   # duplicates in `lagdeck flows`
```
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from collectors.config import Settings
from collectors.errors import ConfigError

#: Correlation headers of widespread frameworks (README "Where ids are found" has the sources).
#: Ids that name one message (CloudEvents `ce_id`, `MessageId`) are left out on purpose: an
#: event whose correlation id is another order's does not join an order by its trace.
DEFAULT_CORRELATION_HEADERS = (
    "correlation-id", "correlationId", "x-correlation-id", "X-Correlation-ID",
    "correlation_id",                  # FastStream
    "kafka_correlationId",             # Spring for Apache Kafka (KafkaHeaders.CORRELATION_ID)
    "axon-metadata-correlationId",     # Axon Framework Kafka extension (metadata correlationId)
    "NServiceBus.CorrelationId", "NServiceBus.ConversationId",
    "ConversationId",                  # MassTransit
    "rbs2-corr-id",                    # Rebus
    "x-request-id",
)
DEFAULT_ORDER_ID_PATHS = ("orderId", "order_id", "data.orderId", "data.order_id",
                          "after.orderId", "after.order_id")  # CloudEvents data, Debezium
DEFAULT_EVENT_TYPE_HEADERS = ("event-type", "ce_type", "eventType",
                              "__TypeId__",        # Spring JSON serializer
                              "axon-message-type", "NServiceBus.EnclosedMessageTypes")
DEFAULT_EVENT_TYPE_PATHS = ("event", "type", "eventType")
#: Headers that name one event, so a re-sent copy is recognised (`lagdeck flows`).
DEFAULT_EVENT_ID_HEADERS = ("ce_id", "ce-id", "message-id", "message_id", "messageId",
                            "event-id", "event_id", "eventId")

#: Placeholders a `trace_url` template may use.
URL_FIELDS = ("trace_id", "span_id")


@dataclass(frozen=True)
class TraceSettings:
    """Where ids live in records, and where the trace viewer is.

    Header names match case-insensitively; payload paths are dotted
    (`data.orderId`, `items.0.orderId`).
    """

    correlation_headers: tuple[str, ...] = DEFAULT_CORRELATION_HEADERS
    order_id_paths: tuple[str, ...] = DEFAULT_ORDER_ID_PATHS
    event_type_headers: tuple[str, ...] = DEFAULT_EVENT_TYPE_HEADERS
    event_type_paths: tuple[str, ...] = DEFAULT_EVENT_TYPE_PATHS
    #: e.g. "http://jaeger:16686/trace/{trace_id}"; None: no links
    trace_url: str | None = None
    #: base URL of a Jaeger query service; None: spans are not fetched
    jaeger_url: str | None = None
    #: seconds for one Jaeger request
    jaeger_timeout: float = 3.0
    #: processes for a big cold scan; None: one per CPU (up to 4) above 300k records
    scan_processes: int | None = None
    #: headers carrying an event id (duplicates in `lagdeck flows`); matched ignoring case
    event_id_headers: tuple[str, ...] = DEFAULT_EVENT_ID_HEADERS

    def fingerprint(self) -> str:
        """Changes whenever what the index stores for a record would change (ids, shown fields)."""
        text = "|".join([
            ",".join(h.lower() for h in self.correlation_headers),
            ",".join(self.order_id_paths),
            ",".join(h.lower() for h in self.event_type_headers),
            ",".join(self.event_type_paths),
            ",".join(h.lower() for h in self.event_id_headers),
        ])
        return hashlib.sha1(text.encode()).hexdigest()[:16]

    def url_for(self, trace_id: str | None, span_id: str | None = None) -> str | None:
        if not self.trace_url or not trace_id:
            return None
        return self.trace_url.format(trace_id=trace_id, span_id=span_id or "")


def _names(section: Mapping[str, Any], key: str, default: tuple[str, ...],
           where: str) -> tuple[str, ...]:
    if key not in section:
        return default
    value = section[key]
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ConfigError(f"{where}: [trace] {key} must be a list of non-empty strings")
    return tuple(v.strip() for v in value)


def _url(section: Mapping[str, Any], key: str, where: str) -> str | None:
    value = section.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not value.startswith(("http://", "https://")):
        raise ConfigError(f"{where}: [trace] {key} must be an http(s) URL")
    return value


def from_settings(settings: Settings | None) -> TraceSettings:
    """Read `[trace]`; absent keys keep the defaults."""
    if settings is None:
        return TraceSettings()
    section = settings.section("trace")
    where = str(settings.path or "config")
    trace_url = _url(section, "trace_url", where)
    if trace_url is not None:
        try:
            trace_url.format(**{f: "x" for f in URL_FIELDS})
        except (KeyError, IndexError, ValueError):
            raise ConfigError(
                f"{where}: [trace] trace_url may only use the placeholders "
                + ", ".join("{" + f + "}" for f in URL_FIELDS)
            ) from None
    timeout = section.get("jaeger_timeout", 3.0)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
        raise ConfigError(f"{where}: [trace] jaeger_timeout must be a positive number of seconds")
    processes = section.get("scan_processes")
    if processes is not None and (isinstance(processes, bool) or not isinstance(processes, int)
                                  or processes < 1):
        raise ConfigError(f"{where}: [trace] scan_processes must be a whole number >= 1")
    return TraceSettings(
        correlation_headers=_names(section, "correlation_headers",
                                   DEFAULT_CORRELATION_HEADERS, where),
        order_id_paths=_names(section, "order_id_paths", DEFAULT_ORDER_ID_PATHS, where),
        event_type_headers=_names(section, "event_type_headers",
                                  DEFAULT_EVENT_TYPE_HEADERS, where),
        event_type_paths=_names(section, "event_type_paths", DEFAULT_EVENT_TYPE_PATHS, where),
        trace_url=trace_url,
        jaeger_url=_url(section, "jaeger_url", where),
        jaeger_timeout=float(timeout),
        scan_processes=processes,
        event_id_headers=_names(section, "event_id_headers", DEFAULT_EVENT_ID_HEADERS, where),
    )
