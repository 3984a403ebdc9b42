"""`lagdeck flows` against the real broker, with kafka-python playing the services.

The test writes a saga whose ground truth it knows: 80 orders through
orders -> stock -> pay -> ship (or pay failed -> stock released, or dead
lettered), with explicit timestamps, header conventions of different teams
(a correlation header, `X-Correlation-ID`, the order id only in the payload,
an event with nothing but a `traceparent`), a few re-sent events (same
`ce_id` with different bytes, or the same key and value bytes), a few
events stamped before the step that always precedes them, and look-alikes
that must not be flagged (same value on another topic, two different
reservations of one order). Expected counts, latency percentiles
(nearest rank over the timestamps written), stopped orders and flags are
computed here from what was written.
"""

from __future__ import annotations

import itertools
import json
import random
import secrets
import struct
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import pytest

from console.cli import main
from tests.conftest import create_topics, kp_producer
from tests.flow_reference import percentile, reference
from tracing.flowquery import flows_from_index
from tracing.flows import DUPLICATE, OUT_OF_ORDER, FlowRecord, Step
from tracing.search import Tracer

pytestmark = pytest.mark.integration
MIN = 60_000
ORDERS = 80


@dataclass
class Saga:
    regex: str
    t: dict[str, str]
    now_ms: int
    records: list[FlowRecord] = field(default_factory=list)
    dups: set = field(default_factory=set)  # positions of the re-sent copies
    late: set = field(default_factory=set)  # positions of the early-stamped events
    stopped: dict = field(default_factory=dict)  # order -> (step, timestamp)
    orders: set = field(default_factory=set)


def tp(trace: str) -> bytes:
    return f"00-{trace}-{secrets.token_hex(8)}-01".encode()


@pytest.fixture(scope="module")
def saga(broker) -> Saga:
    bootstrap = broker.bootstrap
    run = uuid.uuid4().hex[:6]
    prefix = f"fl-{run}"
    t = {n: f"{prefix}.{n}" for n in ("orders", "stock", "pay", "pay-dlt", "ship")}
    create_topics(bootstrap, t["orders"], partitions=2)
    create_topics(bootstrap, t["stock"], t["pay"], t["pay-dlt"], t["ship"])
    rng = random.Random(1414)
    now = int(time.time() * 1000)
    t0 = now - 40 * MIN
    s = Saga(rf"^{prefix}\.", t, now)
    producer = kp_producer(bootstrap)
    pending = []

    def send(order: str, topic: str, etype: str, ts: int, *, key=None, value: bytes,
             headers=(), partition=0, identity=None, kind=0, dup=False, late=False):
        future = producer.send(topic, key=key, value=value, headers=list(headers),
                               partition=partition, timestamp_ms=ts)
        pending.append((future, order, topic, etype, ts, identity, kind, dup, late))

    try:
        for i in range(ORDERS):
            order = f"ord_{run}_{i:03d}"
            trace = secrets.token_hex(16)
            s.orders.add(order)
            base = t0 + i * 20_000
            fresh = i >= ORDERS - 4  # the last four were placed seconds ago
            if fresh:
                base = now - 20_000 + i * 10
            fate = ("fresh" if fresh else "dead" if i % 10 == 3 else "declined" if i % 10 == 6
                    else "waiting" if i % 10 == 8 else "ok")
            placed = json.dumps({"orderId": order, "total": i}).encode()
            send(order, t["orders"], "OrderPlaced", base, key=order.encode(), value=placed,
                 partition=i % 2, headers=[("correlation-id", order.encode()),
                                           ("event-type", b"OrderPlaced"),
                                           ("traceparent", tp(trace))],
                 identity=("kv", order, placed))
            late = fate == "ok" and i in (12, 44)
            reserved_at = base - 40 if late else base + rng.randint(5, 400)
            reserved = json.dumps({"type": "StockReserved", "order_id": order,
                                   "reservation": f"res-{i}"}).encode()
            send(order, t["stock"], "StockReserved", reserved_at, key=order.encode(),
                 value=reserved, headers=[("X-Correlation-ID", order.encode())],
                 identity=("kv", order, reserved), late=late)
            if fate in ("waiting", "fresh"):
                s.stopped[order] = ((t["stock"], "StockReserved"), reserved_at)
                continue
            if fate == "dead":  # the pay service dead-letters the reservation
                send(order, t["pay-dlt"], "StockReserved", reserved_at + 900,
                     key=order.encode(), value=reserved, kind=1,
                     headers=[("X-Correlation-ID", order.encode()),
                              ("kafka_dlt-original-topic", t["stock"].encode()),
                              ("kafka_dlt-original-partition", struct.pack(">i", 0)),
                              ("kafka_dlt-original-offset", struct.pack(">q", 0)),
                              ("kafka_dlt-exception-fqcn", b"com.shop.GatewayTimeout")],
                     identity=("kv", order, reserved + b"dlt"))
                s.stopped[order] = ((t["pay-dlt"], "StockReserved"), reserved_at + 900)
                continue
            paid_at = max(reserved_at, base) + rng.randint(50, 3000)
            if i % 20 == 6:  # a second, different reservation: not a duplicate
                other = reserved.replace(b"res-", b"res2-")
                send(order, t["stock"], "StockReserved", paid_at - 10, key=order.encode(),
                     value=other, headers=[("X-Correlation-ID", order.encode())],
                     identity=("kv", order, other))
            kind = "PaymentFailed" if fate == "declined" else "PaymentCaptured"
            ce_id = f"ce-{order}".encode()
            payment = json.dumps({"eventType": kind, "data": {"orderId": order}}).encode()
            send(order, t["pay"], kind, paid_at, key=order.encode(), value=payment,
                 headers=[("correlation-id", order.encode()), ("ce_type", kind.encode()),
                          ("ce_id", ce_id)], identity=("id", ce_id))
            if i in (5, 21, 37):  # re-sent by a producer retry: same ce_id, new bytes
                send(order, t["pay"], kind, paid_at + 150, key=order.encode(),
                     value=payment[:-1] + b',"retry":1}',
                     headers=[("correlation-id", order.encode()), ("ce_type", kind.encode()),
                              ("ce_id", ce_id)], identity=("id", ce_id), dup=True)
            if fate == "declined":  # compensation: release the stock
                released = json.dumps({"type": "StockReleased", "order_id": order}).encode()
                send(order, t["stock"], "StockReleased", paid_at + rng.randint(10, 900),
                     key=order.encode(), value=released,
                     headers=[("X-Correlation-ID", order.encode())],
                     identity=("kv", order, released))
                continue
            shipped_at = paid_at + rng.randint(100, 60_000)
            if i % 4 == 1:  # only a traceparent: joins its order through the trace id
                ship = json.dumps({"event": "Shipped", "carrier": "dhl"}).encode()
                send(order, t["ship"], "Shipped", shipped_at, value=ship,
                     headers=[("traceparent", tp(trace))], identity=("kv", None, ship))
            else:  # the order id only in the payload, no key
                ship = json.dumps({"event": "Shipped", "orderId": order}).encode()
                send(order, t["ship"], "Shipped", shipped_at, value=ship,
                     identity=("kv", None, ship))
                if i in (10, 30):  # delivered twice: the same bytes again
                    send(order, t["ship"], "Shipped", shipped_at + 700, value=ship,
                         identity=("kv", None, ship), dup=True)
        producer.flush(15)
        for future, order, topic, etype, ts, identity, kind, dup, late in pending:
            meta = future.get(timeout=10)
            pos = (topic, meta.partition, meta.offset)
            s.records.append(FlowRecord(order, topic, etype, ts, meta.partition, meta.offset,
                                        identity, kind))
            if dup:
                s.dups.add(pos)
            if late:
                s.late.add(pos)
    finally:
        producer.close(timeout=5)
    return s


@pytest.fixture(scope="module")
def flows(broker, saga: Saga):
    from collectors.config import ClusterConfig

    cluster = ClusterConfig({"bootstrap.servers": broker.bootstrap})
    with Tracer(cluster) as tracer:
        first = flows_from_index(tracer, since_seconds=3 * 3600, topics_regex=saga.regex,
                                 stuck_after_seconds=300, now_ms=saga.now_ms)
        warm = flows_from_index(tracer, since_seconds=3 * 3600, topics_regex=saga.regex,
                                stuck_after_seconds=300, now_ms=saga.now_ms)
    return first, warm


def step_key(step: Step) -> tuple[str, str | None]:
    return (step.topic, step.event_type)


def test_steps_and_transitions_are_exact(saga: Saga, flows) -> None:
    got, warm = flows
    ref = reference(saga.records, saga.now_ms, 300_000)
    assert got.orders == ORDERS == len(ref.orders)
    assert got.events == len(saga.records) - len(saga.dups)
    assert {step_key(s.step): s.orders for s in got.steps} == dict(ref.step_orders)
    t = saga.t
    by = {step_key(s.step): s for s in got.steps}
    assert by[(t["orders"], "OrderPlaced")].orders == ORDERS
    # independent of the reference: the latencies of orders -> stock, from what was written
    per_order = defaultdict(list)
    for r in saga.records:
        if (r.topic, r.partition, r.offset) not in saga.dups:
            per_order[r.order].append(r)
    lat = defaultdict(list)
    for events in per_order.values():
        events.sort(key=lambda r: (r.timestamp_ms, r.topic, r.partition, r.offset))
        for a, b in itertools.pairwise(events):
            lat[((a.topic, a.event_type), (b.topic, b.event_type))].append(
                b.timestamp_ms - a.timestamp_ms)
    trans = {(step_key(x.source), step_key(x.target)): x for x in got.transitions}
    assert set(trans) == set(lat)
    for key, values in lat.items():
        x = trans[key]
        assert (x.count, x.p50_ms, x.p95_ms, x.p99_ms, x.max_ms) == (
            len(values), percentile(values, 50), percentile(values, 95),
            percentile(values, 99), max(values)), key
    # the compensation path is an ordinary transition
    assert trans[((t["pay"], "PaymentFailed"), (t["stock"], "StockReleased"))].count == 7
    assert trans[((t["stock"], "StockReserved"), (t["pay-dlt"], "StockReserved"))].count == 8
    # the second run reads nothing from Kafka and says the same
    assert warm.stats.scanned_records == 0 and got.stats.scanned_records == len(saga.records)
    assert warm.to_json() | {"stats": None} == got.to_json() | {"stats": None}


def test_stopped_orders_are_exact(saga: Saga, flows) -> None:
    got, _ = flows
    old = {o: v for o, v in saga.stopped.items() if saga.now_ms - v[1] > 300_000}
    assert len(old) == 15 and len(saga.stopped) == 19  # 8 dead-lettered, 7 waiting, 4 fresh
    assert {s.id: (step_key(s.step), saga.now_ms - s.timestamp_ms) for s in got.stopped} == {
        o: (step, saga.now_ms - ts) for o, (step, ts) in old.items()}
    by = {step_key(s.step): s for s in got.steps}
    t = saga.t
    dead = by[(t["pay-dlt"], "StockReserved")]
    assert dead.dead_letter and dead.stopped == 8
    assert by[(t["stock"], "StockReserved")].stopped == 7
    assert by[(t["ship"], "Shipped")].terminal and by[(t["ship"], "Shipped")].stopped == 0
    oldest = max(saga.now_ms - ts for step, ts in old.values()
                 if step == (t["stock"], "StockReserved"))
    assert by[(t["stock"], "StockReserved")].oldest_stopped_seconds == oldest / 1000


def test_duplicates_and_out_of_order_are_flagged_exactly(saga: Saga, flows) -> None:
    got, _ = flows
    assert len(saga.dups) == 5 and len(saga.late) == 2
    marks = {(m.topic, m.partition, m.offset): m.mark for m in got.marks}
    assert {p for p, m in marks.items() if m == DUPLICATE} == saga.dups
    assert {p for p, m in marks.items() if m == OUT_OF_ORDER} == saga.late
    t = saga.t
    by = {step_key(s.step): s for s in got.steps}
    expected_dups = Counter((p[0], r.event_type) for r in saga.records
                            for p in [(r.topic, r.partition, r.offset)] if p in saga.dups)
    assert {k: s.duplicates for k, s in by.items() if s.duplicates} == dict(expected_dups)
    assert {k: s.out_of_order for k, s in by.items() if s.out_of_order} == {
        (t["stock"], "StockReserved"): 2}


def test_the_command_line_prints_the_design_document(capsys, bootstrap: str,
                                                     saga: Saga, flows) -> None:
    got, _ = flows
    code = main(["-b", bootstrap, "flows", "--topics", saga.regex, "--since", "3h",
                 "--stuck-after", "5m", "--step", "StockReserved", "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert code == 0
    assert set(doc) >= {"since_seconds", "orders", "steps", "transitions", "stopped_orders"}
    assert doc["orders"] == ORDERS and doc["since_seconds"] == 3 * 3600
    step = doc["steps"][0]
    assert set(step) >= {"topic", "event_type", "orders", "stopped", "oldest_stopped_seconds",
                         "duplicates", "out_of_order"}
    assert (step["topic"], step["event_type"]) == (saga.t["orders"], "OrderPlaced")
    x = doc["transitions"][0]
    assert set(x) == {"from", "to", "count", "p50_ms", "p95_ms", "p99_ms", "max_ms"}
    # StockReserved names two steps (stock and its dead letters): both lists
    assert {s["id"] for s in doc["stopped_orders"]} == {s.id for s in got.stopped}
    assert all(set(s) == {"id", "age_seconds", "last_event"} for s in doc["stopped_orders"])
    code = main(["-b", bootstrap, "flows", "--topics", saga.regex, "--since", "3h",
                 "--step", f"{saga.t['pay-dlt']}:StockReserved"])
    text = capsys.readouterr().out
    assert code == 0 and "STOPPED AT" in text and "TRANSITIONS" in text
    listed = [line.split()[0] for line in text.split("STOPPED AT")[1].splitlines()[2:] if line]
    assert sorted(listed) == sorted(o for o, (st, _) in saga.stopped.items()
                                    if st[0] == saga.t["pay-dlt"])
    code = main(["-b", bootstrap, "flows", "--topics", saga.regex, "--step", "NoSuchStep"])
    err = capsys.readouterr().err
    assert code == 1 and "no such step" in err and "Traceback" not in err
    assert main(["-b", bootstrap, "flows", "--since", "soon"]) == 2
