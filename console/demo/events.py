"""Pure pieces of the demo world: ids, decisions, payloads and headers.

Every decision (stock, payment outcome, error class) is a hash of the seed and
the order id, not of timing, so a seed gives the same orders and outcomes
however the threads interleave.
"""

from __future__ import annotations

import hashlib
import json
import random
import struct
from dataclasses import dataclass

from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

ORDERS = "orders.events"
INVENTORY = "inventory.events"
PAYMENTS = "payments.events"
PAYMENTS_DLT = "payments.events-dlt"
NOTIFICATIONS = "notifications.events"
LOYALTY = "loyalty.events"

#: topic -> partitions
TOPICS: dict[str, int] = {
    ORDERS: 3,
    INVENTORY: 3,
    PAYMENTS: 3,
    PAYMENTS_DLT: 1,
    NOTIFICATIONS: 3,
    LOYALTY: 1,
}

INVENTORY_GROUP = "inventory-service"
PAYMENT_GROUP = "payment-service"
NOTIFICATION_GROUP = "notification-service"
ANALYTICS_GROUP = "analytics-service"
LOYALTY_GROUP = "loyalty-service"
GROUPS = (INVENTORY_GROUP, PAYMENT_GROUP, NOTIFICATION_GROUP, ANALYTICS_GROUP, LOYALTY_GROUP)

#: (exception class, message, share of dead letters)
PAYMENT_ERRORS = (
    ("com.shop.payment.GatewayTimeoutException",
     "PSP did not answer within 3000 ms", 0.6),
    ("com.fasterxml.jackson.databind.exc.MismatchedInputException",
     "Cannot deserialize value of type `java.math.BigDecimal` from String \"N/A\"", 0.25),
    ("com.shop.payment.FraudCheckUnavailableException",
     "fraud-check service returned 503", 0.15),
)

_propagator = TraceContextTextMapPropagator()
_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"


def fraction(seed: int, *parts: str) -> float:
    """A deterministic number in [0, 1) from the seed and some labels."""
    digest = hashlib.blake2b("|".join((str(seed), *parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def ident(seed: int, bits: int, *parts: str) -> int:
    digest = hashlib.blake2b("|".join((str(seed), *parts)).encode(), digest_size=16).digest()
    return (int.from_bytes(digest, "big") >> (128 - bits)) or 1


def order_id(rng: random.Random) -> str:
    return "ord_" + "".join(rng.choice(_ALPHABET) for _ in range(5))


def traceparent(trace_id: int, span_id: int) -> str:
    """W3C traceparent written through OpenTelemetry's own propagator."""
    ctx = trace.set_span_in_context(NonRecordingSpan(SpanContext(
        trace_id=trace_id, span_id=span_id, is_remote=False, trace_flags=TraceFlags(1))))
    carrier: dict[str, str] = {}
    _propagator.inject(carrier, context=ctx)
    return carrier["traceparent"]


def trace_id_of(seed: int, order: str) -> int:
    return ident(seed, 128, order, "trace")


def span_headers(seed: int, order: str, service: str) -> list[tuple[str, bytes]]:
    tp = traceparent(trace_id_of(seed, order), ident(seed, 64, order, service))
    return [("traceparent", tp.encode())]


def dumps(payload: dict) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Outcome:
    """What the payment service does with one order."""

    kind: str  # "captured", "declined", "error"
    error_class: str | None = None
    error_message: str | None = None


def payment_outcome(seed: int, order: str) -> Outcome:
    roll = fraction(seed, order, "payment")
    if roll < 0.75:
        return Outcome("captured")
    if roll < 0.85:
        return Outcome("declined")
    pick = fraction(seed, order, "error-kind")
    acc = 0.0
    for cls, message, share in PAYMENT_ERRORS:
        acc += share
        if pick < acc:
            return Outcome("error", cls, message)
    cls, message, _ = PAYMENT_ERRORS[0]
    return Outcome("error", cls, message)


def payment_resent(seed: int, order: str) -> bool:
    """A captured payment whose event the payment service publishes twice (a producer
    retry after a timeout: same `ce_id`); the flows view counts the duplicates."""
    return payment_outcome(seed, order).kind == "captured" and \
        fraction(seed, order, "resent") < 0.04


def inventory_clock_skewed(seed: int, order: str) -> bool:
    """An order whose inventory event is stamped before the order was placed (a host
    with a slow clock): an out-of-order event in the flows view."""
    return payment_outcome(seed, order).kind == "captured" and \
        fraction(seed, order, "skew") < 0.03


#: How far behind the skewed inventory host's clock runs (ms).
CLOCK_SKEW_MS = 1500


def in_stock(seed: int, order: str) -> bool:
    return fraction(seed, order, "stock") >= 0.05


def spring_dlt_headers(
    *, topic: str, partition: int, offset: int, timestamp_ms: int, group: str,
    error_class: str, error_message: str,
) -> list[tuple[str, bytes]]:
    """Headers as Spring Kafka's DeadLetterPublishingRecoverer writes them.

    Partition is a 4-byte big-endian int, offset and timestamp 8-byte
    big-endian longs, the rest UTF-8.
    """
    trace_text = (
        f"org.springframework.kafka.listener.ListenerExecutionFailedException: "
        f"Listener method threw exception\n"
        f"Caused by: {error_class}: {error_message}\n"
        f"\tat com.shop.payment.PaymentListener.onInventoryEvent(PaymentListener.java:57)\n"
    )
    return [
        ("kafka_dlt-original-topic", topic.encode()),
        ("kafka_dlt-original-partition", struct.pack(">i", partition)),
        ("kafka_dlt-original-offset", struct.pack(">q", offset)),
        ("kafka_dlt-original-timestamp", struct.pack(">q", timestamp_ms)),
        ("kafka_dlt-original-timestamp-type", b"CreateTime"),
        ("kafka_dlt-original-consumer-group", group.encode()),
        ("kafka_dlt-exception-fqcn", error_class.encode()),
        ("kafka_dlt-exception-cause-fqcn", error_class.encode()),
        ("kafka_dlt-exception-message", error_message.encode()),
        ("kafka_dlt-exception-stacktrace", trace_text.encode()),
    ]
