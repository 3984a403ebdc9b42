"""The simulated order pipeline (README, "The demo world"), running real clients on a real broker.

order-service -> orders.events -> inventory-service -> inventory.events ->
payment-service -> payments.events (+ payments.events-dlt) ->
notification-service (slow) -> notifications.events; analytics-service reads
orders and payments and keeps up; loyalty-service reads payments, awards
points on loyalty.events and stops after a while. For the flows view the
world also has, on purpose and reproducibly by seed: a compensation path
(inventory reads payments and releases the stock of a failed payment), a few
payment events published twice (same `ce_id`, which the consumers then
duplicate downstream) and a few inventory events stamped before their order
was placed (a skewed clock). Every service is a thread with its own consumer group and
producer, committing after each batch it handles, as a real service would.

Header conventions differ by service, as in real fleets: the order and
payment services send `correlation-id`, inventory sends `X-Correlation-ID`,
notification puts the order id only in its JSON payload. Every event carries
a W3C `traceparent` sharing the order's trace id.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from collectors.config import ClusterConfig
from collectors.kafka import Producer, consumer, producer
from collectors.logs import get_logger
from collectors.scan import to_record
from collectors.snapshots import Record
from collectors.topics import ensure_topics
from console.demo import events as ev

_log = get_logger("demo")

#: One record per produce batch: Tansu reports wrong end offsets otherwise (docs/broker-notes.md).
PRODUCER = {"batch.num.messages": 1, "linger.ms": 0, "acks": "all"}
CONSUMER = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 500,
            "auto.offset.reset": "earliest", "enable.auto.offset.store": True}

#: topic, key, value, headers, and optionally a timestamp (ms) to stamp the record with
Output = (tuple[str, bytes | None, bytes, list[tuple[str, bytes]]]
          | tuple[str, bytes | None, bytes, list[tuple[str, bytes]], int])


@dataclass
class _Service:
    name: str
    group: str | None
    topics: tuple[str, ...]
    handle: Callable[[Record], list[Output]]
    delay: float = 0.0  # seconds per record: the slow consumer
    stop_after: float | None = None  # seconds: the consumer that stops
    start_after: float = 0.0  # seconds before it joins (notification: after loyalty, always)
    processed: int = 0
    stopped: bool = False


@dataclass
class DemoWorld:
    """The order pipeline. `start()` creates topics and starts every service."""

    cluster: ClusterConfig
    seed: int = 7
    rate: float = 5.0
    loyalty_stops_after: float = 15.0
    notification_speed: float = 0.6  # share of the payment event rate it can handle
    orders: list[str] = field(default_factory=list)
    produced: Counter = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._rng = random.Random(self.seed)
        self._producer: Producer | None = None
        self._started_at = 0.0
        payment_rate = max(self.rate, 0.1)
        self.services = [
            _Service("inventory", ev.INVENTORY_GROUP, (ev.ORDERS, ev.PAYMENTS), self._inventory),
            _Service("payment", ev.PAYMENT_GROUP, (ev.INVENTORY,), self._payment),
            _Service("notification", ev.NOTIFICATION_GROUP, (ev.PAYMENTS,), self._notification,
                     delay=1.0 / (payment_rate * self.notification_speed), start_after=2.0),
            _Service("analytics", ev.ANALYTICS_GROUP, (ev.ORDERS, ev.PAYMENTS), lambda r: []),
            _Service("loyalty", ev.LOYALTY_GROUP, (ev.PAYMENTS,), self._loyalty,
                     stop_after=self.loyalty_stops_after),
        ]

    # -- lifecycle -------------------------------------------------------

    def start(self) -> DemoWorld:
        ensure_topics(self.cluster, ev.TOPICS)
        self._producer = producer(self.cluster, **PRODUCER)
        self._started_at = time.monotonic()
        for service in self.services:
            self._spawn(f"demo-{service.name}", self._run_service, service)
        self._spawn("demo-orders", self._run_orders)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout)
        if self._producer is not None:
            self._producer.flush(timeout)

    def __enter__(self) -> DemoWorld:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return not self._stop.is_set()

    def stats(self) -> dict[str, object]:
        with self._lock:
            return {
                "orders": len(self.orders),
                "produced": dict(self.produced),
                "processed": {s.group or s.name: s.processed for s in self.services},
                "stopped": [s.group for s in self.services if s.stopped],
                "errors": list(self.errors[-5:]),
            }

    def _spawn(self, name: str, target: Callable, *args: object) -> None:
        thread = threading.Thread(target=self._guard, args=(target, *args), name=name, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _guard(self, target: Callable, *args: object) -> None:
        try:
            target(*args)
        except Exception as exc:  # a demo service must not take the demo down silently
            _log.exception("demo service crashed")
            with self._lock:
                self.errors.append(f"{type(exc).__name__}: {exc}")

    # -- producing -------------------------------------------------------

    def _send(self, topic: str, key: bytes | None, value: bytes,
              headers: list[tuple[str, bytes]], timestamp_ms: int | None = None) -> None:
        assert self._producer is not None
        while True:
            try:  # timestamp 0: librdkafka stamps the record with the current time
                self._producer.produce(topic, key=key, value=value, headers=list(headers),
                                       timestamp=timestamp_ms or 0)
                break
            except BufferError:
                self._producer.poll(0.1)
        self._producer.poll(0)
        with self._lock:
            self.produced[topic] += 1

    def _run_orders(self) -> None:
        interval = 1.0 / max(self.rate, 0.01)
        next_at = time.monotonic()
        while not self._stop.is_set():
            order = ev.order_id(self._rng)
            customer = f"cus_{self._rng.randrange(10_000):04d}"
            lines = [(f"SKU-{self._rng.randrange(100):03d}", self._rng.randint(1, 3))
                     for _ in range(self._rng.randint(1, 3))]
            items = [{"sku": sku, "qty": qty} for sku, qty in lines]
            total = round(sum(qty for _, qty in lines) * self._rng.uniform(5, 60), 2)
            payload = {"event": "OrderPlaced", "orderId": order, "customerId": customer,
                       "items": items, "total": total, "currency": "EUR"}
            headers = [("correlation-id", order.encode()), ("event-type", b"OrderPlaced"),
                       *ev.span_headers(self.seed, order, "order-service")]
            self._send(ev.ORDERS, order.encode(), ev.dumps(payload), headers)
            with self._lock:
                self.orders.append(order)
            next_at += interval
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    # -- consuming -------------------------------------------------------

    def _run_service(self, service: _Service) -> None:
        if service.start_after and self._stop.wait(service.start_after):
            return
        c = consumer(self.cluster, service.group, **CONSUMER)
        c.subscribe(list(service.topics))
        try:
            while not self._stop.is_set():
                if service.stop_after is not None and (
                    time.monotonic() - self._started_at > service.stop_after
                ):
                    _log.info("%s stops consuming (demo: the stopped consumer)", service.group)
                    service.stopped = True
                    break
                try:
                    self._poll_once(c, service)
                except Exception as exc:  # a real service logs, backs off and carries on
                    _log.warning("%s: %s", service.group, exc)
                    with self._lock:
                        self.errors.append(f"{service.group}: {exc}")
                    self._stop.wait(1.0)
        finally:
            c.close()

    def _poll_once(self, c, service: _Service) -> None:
        msgs = c.consume(1 if service.delay else 200, timeout=0.5)
        handled = False
        for msg in msgs:
            if msg.error():
                _log.warning("%s: %s", service.group, msg.error())
                continue
            record = to_record(msg)
            for topic, key, value, headers, *stamp in service.handle(record):
                self._send(topic, key, value, headers, *stamp)
            service.processed += 1
            handled = True
            if service.delay:
                self._stop.wait(service.delay)
        if handled and self._producer is not None:
            self._producer.flush(5)
            c.commit(asynchronous=False)

    # -- service logic ---------------------------------------------------

    def _order_of(self, record: Record) -> str | None:
        for name in ("correlation-id", "x-correlation-id"):
            value = record.header(name)
            if value:
                return value.decode("utf-8", "replace")
        try:
            payload = json.loads(record.value or b"{}")
        except ValueError:
            return None
        data = payload.get("data") if isinstance(payload.get("data"), dict) else {}
        return payload.get("orderId") or payload.get("order_id") or data.get("orderId")

    def _inventory(self, record: Record) -> list[Output]:
        order = self._order_of(record)
        if not order:
            return []
        if record.topic == ev.PAYMENTS:  # compensation: a failed payment releases the stock
            if b"PaymentFailed" not in (record.header("ce_type") or b""):
                return []
            payload = {"type": "StockReleased", "order_id": order, "reason": "payment failed"}
            headers = [("X-Correlation-ID", order.encode()),
                       *ev.span_headers(self.seed, order, "inventory-service")]
            return [(ev.INVENTORY, order.encode(), ev.dumps(payload), headers)]
        ok = ev.in_stock(self.seed, order)
        payload = {"type": "InventoryReserved" if ok else "OutOfStock", "order_id": order,
                   "reservationId": f"res_{ev.ident(self.seed, 32, order, 'res'):08x}"}
        headers = [("X-Correlation-ID", order.encode()),
                   *ev.span_headers(self.seed, order, "inventory-service")]
        if ev.inventory_clock_skewed(self.seed, order) and record.timestamp_ms:
            stamp = record.timestamp_ms - ev.CLOCK_SKEW_MS
            return [(ev.INVENTORY, order.encode(), ev.dumps(payload), headers, stamp)]
        return [(ev.INVENTORY, order.encode(), ev.dumps(payload), headers)]

    def _payment(self, record: Record) -> list[Output]:
        order = self._order_of(record)
        if not order or b"OutOfStock" in (record.value or b"") \
                or b"StockReleased" in (record.value or b""):
            return []
        outcome = ev.payment_outcome(self.seed, order)
        redriven = any(h.key.startswith("lagdeck-redrive") for h in record.headers)
        if outcome.kind == "error" and not redriven:
            headers = [(h.key, h.value or b"") for h in record.headers]
            headers += ev.spring_dlt_headers(
                topic=record.topic, partition=record.partition, offset=record.offset,
                timestamp_ms=record.timestamp_ms or int(time.time() * 1000),
                group=ev.PAYMENT_GROUP, error_class=outcome.error_class or "",
                error_message=outcome.error_message or "",
            )
            return [(ev.PAYMENTS_DLT, record.key, record.value or b"", headers)]
        kind = "PaymentFailed" if outcome.kind == "declined" else "PaymentCaptured"
        amount = round(ev.fraction(self.seed, order, "amount") * 200 + 5, 2)
        data: dict[str, object] = {"orderId": order, "amount": amount, "currency": "EUR"}
        if kind == "PaymentFailed":
            data["reason"] = "card_declined"
        payload = {"eventType": kind, "data": data}
        headers = [("correlation-id", order.encode()), ("ce_type", f"shop.{kind}".encode()),
                   ("ce_id", f"pay-{order}".encode()),
                   *ev.span_headers(self.seed, order, "payment-service")]
        out: list[Output] = [(ev.PAYMENTS, order.encode(), ev.dumps(payload), headers)]
        if ev.payment_resent(self.seed, order):  # a producer retry: the same event again
            out.append(out[0])
        return out

    def _notification(self, record: Record) -> list[Output]:
        order = self._order_of(record)
        if not order:
            return []
        payload = {"event": "NotificationSent", "orderId": order, "channel": "email"}
        # This team only puts the order id in the payload (no correlation header).
        return [(ev.NOTIFICATIONS, None, ev.dumps(payload),
                 ev.span_headers(self.seed, order, "notification-service"))]

    def _loyalty(self, record: Record) -> list[Output]:
        order = self._order_of(record)
        if not order or b"PaymentCaptured" not in (record.header("ce_type") or b""):
            return []
        payload = {"type": "PointsAwarded", "orderId": order,
                   "points": int(ev.fraction(self.seed, order, "points") * 100)}
        return [(ev.LOYALTY, order.encode(), ev.dumps(payload),
                 [("correlation-id", order.encode()),
                  *ev.span_headers(self.seed, order, "loyalty-service")])]
