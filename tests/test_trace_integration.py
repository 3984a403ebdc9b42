"""`lagdeck trace` against the real broker, with kafka-python playing the other teams' services.

One small world per module: order A's events written with the conventions
of different teams (correlation header variants, a `traceparent`-only
event, the order id only in a payload, a Spring dead letter whose body
carries no id at all), order B's events and junk around them, and consumer
groups committed at different offsets. Records are produced one per batch
and with explicit timestamps, in an order that is not time order.
"""

from __future__ import annotations

import json
import secrets
import struct
import time
import uuid
from dataclasses import dataclass

import pytest

from collectors.config import ClusterConfig
from collectors.errors import BrokerUnavailable, NotFoundError
from console.cli import main
from tests.conftest import create_topics, kp_commit, kp_producer, wait_until
from tracing.search import Tracer, find_timeline
from tracing.settings import TraceSettings
from tracing.timeline import DEAD_LETTERED, PENDING, PROCESSED

integration = pytest.mark.integration
MIN = 60_000


def traceparent(trace_id: str) -> bytes:
    return f"00-{trace_id}-{secrets.token_hex(8)}-01".encode()


@dataclass
class World:
    prefix: str
    regex: str
    order_a: str
    order_b: str
    trace_a: str
    trace_b: str
    t0: int
    #: name -> (topic, partition, offset) of order A's events
    a: dict[str, tuple[str, int, int]]
    b: list[tuple[str, int, int]]
    groups: dict[str, str]


@pytest.fixture(scope="module")
def world(broker) -> World:
    bootstrap = broker.bootstrap
    run = uuid.uuid4().hex[:6]
    prefix = f"tr-{run}"
    t = {name: f"{prefix}.{name}" for name in ("orders", "payments", "shipping", "notify",
                                                "payments-dlt")}
    create_topics(bootstrap, t["orders"], partitions=2)
    create_topics(bootstrap, t["payments"], t["shipping"], t["notify"], t["payments-dlt"])
    order_a, order_b = f"ord_{run}a", f"ord_{run}b"
    trace_a, trace_b = secrets.token_hex(16), secrets.token_hex(16)
    t0 = int(time.time() * 1000) - 10 * MIN  # ten minutes ago: older than --stuck-after 5m
    producer = kp_producer(bootstrap)

    def send(topic: str, *, key=None, value=b"", headers=(), partition=0, ts=t0):
        meta = producer.send(topic, key=key, value=value, headers=list(headers),
                             partition=partition, timestamp_ms=ts).get(timeout=10)
        return (topic, meta.partition, meta.offset)

    a, b = {}, []
    try:
        # Written out of time order on purpose; the timeline must sort by timestamp.
        a["notify"] = send(t["notify"], value=b'{"event": "EmailSent"}', ts=t0 + 40_000,
                           headers=[("traceparent", traceparent(trace_a))])  # no id at all
        b.append(send(t["orders"], partition=0, key=order_b.encode(), ts=t0 - 5_000,
                      value=json.dumps({"orderId": order_b}).encode(),
                      headers=[("correlationId", order_b.encode()),
                               ("traceparent", traceparent(trace_b))]))
        send(t["orders"], partition=1, key=b"\x00\xff\xfe", value=b"\x89PNG\r\n\x1a\n\x00",
             headers=[("correlation-id", b"\xff\xfe"), ("traceparent", b"00-nope"),
                      ("b3", b"zz-top")])  # junk every decoder must survive
        send(t["orders"], partition=1, key=b"other", value=b"not json {",
             headers=[("correlation-id", (order_a + "x").encode())])  # a longer id
        a["orders"] = send(t["orders"], partition=1, key=order_a.encode(), ts=t0,
                           value=json.dumps({"orderId": order_a, "total": 42}).encode(),
                           headers=[("correlation-id", order_a.encode()),
                                    ("traceparent", traceparent(trace_a)),
                                    ("event-type", b"OrderPlaced")])
        a["payments"] = send(t["payments"], ts=t0 + 20_000,
                             value=json.dumps({"amount": 42, "status": "FAILED"}).encode(),
                             headers=[("X-Correlation-ID", order_a.encode()),
                                      ("ce_type", b"shop.PaymentFailed"),
                                      ("traceparent", traceparent(trace_a))])
        b.append(send(t["payments"], ts=t0 + 21_000, key=order_b.encode(),
                      headers=[("x-correlation-id", order_b.encode())]))
        a["shipping"] = send(t["shipping"], ts=t0 + 30_000,  # the id only in the payload
                             value=json.dumps({"type": "ShipmentRequested",
                                               "data": {"orderId": order_a}}).encode())
        send(t["shipping"], ts=t0 + 31_000,  # the id where no configured path looks
             value=json.dumps({"note": order_a, "blob": "x" * 200_000}).encode())
        b.append(send(t["shipping"], ts=t0 + 32_000,
                      value=json.dumps({"order_id": order_b}).encode()))
        _, p_part, p_off = a["payments"]
        a["dlt"] = send(t["payments-dlt"], ts=t0 + 25_000, value=b"\x00\x01 raw bytes",
                        headers=[
                            ("kafka_dlt-original-topic", t["payments"].encode()),
                            ("kafka_dlt-original-partition", struct.pack(">i", p_part)),
                            ("kafka_dlt-original-offset", struct.pack(">q", p_off)),
                            ("kafka_dlt-original-timestamp", struct.pack(">q", t0 + 20_000)),
                            ("kafka_dlt-original-consumer-group", b"pay-svc"),
                            ("kafka_dlt-exception-fqcn",
                             b"com.shop.payment.GatewayTimeoutException"),
                            ("kafka_dlt-exception-message", b"PSP did not answer in 3000 ms"),
                        ])
        producer.flush(10)
    finally:
        producer.close(timeout=5)

    groups = {"inventory": f"inv-{run}", "audit": f"audit-{run}", "payment": "pay-svc",
              "shipping": f"ship-{run}"}
    _, o_part, o_off = a["orders"]
    kp_commit(bootstrap, groups["inventory"], {(t["orders"], o_part): o_off + 1,
                                            (t["orders"], 0): 1})
    kp_commit(bootstrap, groups["audit"], {(t["orders"], o_part): o_off})  # not past A's event
    kp_commit(bootstrap, groups["payment"], {(t["payments"], 0): a["payments"][2] + 2})
    kp_commit(bootstrap, groups["shipping"], {(t["shipping"], 0): a["shipping"][2]})
    return World(prefix, rf"^{prefix}\.", order_a, order_b, trace_a, trace_b, t0, a, b, groups)


def positions(timeline) -> list[tuple[str, int, int]]:
    return [e.position for e in timeline.events]


@integration
def test_trace_returns_exactly_the_orders_events_in_time_order(cluster: ClusterConfig,
                                                                world: World) -> None:
    tl = find_timeline(cluster, world.order_a, topics_regex=world.regex)
    a = world.a
    assert positions(tl) == [a["orders"], a["payments"], a["dlt"], a["shipping"], a["notify"]]
    by = {e.position: e for e in tl.events}
    g = world.groups

    orders = by[a["orders"]]
    assert orders.consumers == {g["audit"]: PENDING, g["inventory"]: PROCESSED}
    assert orders.event_type == "OrderPlaced" and orders.key == world.order_a
    assert orders.correlation_id == world.order_a and orders.trace_id == world.trace_a
    assert orders.stuck  # audit has left it pending for ten minutes

    payments = by[a["payments"]]
    assert payments.consumers == {g["payment"]: DEAD_LETTERED}
    assert payments.event_type == "shop.PaymentFailed" and not payments.stuck

    dlt = by[a["dlt"]]
    assert dlt.dead_letter is not None
    assert dlt.dead_letter.error_class == "com.shop.payment.GatewayTimeoutException"
    assert (dlt.dead_letter.original_topic, dlt.dead_letter.original_offset) == (
        a["payments"][0], a["payments"][2])
    assert dlt.consumers == {} and not dlt.stuck

    shipping = by[a["shipping"]]
    assert shipping.consumers == {g["shipping"]: PENDING} and shipping.stuck
    assert shipping.event_type == "ShipmentRequested" and shipping.key is None

    notify = by[a["notify"]]
    assert notify.trace_id == world.trace_a and notify.consumers == {} and not notify.stuck

    calm = find_timeline(cluster, world.order_a, topics_regex=world.regex,
                         stuck_after_seconds=3600)
    assert positions(calm) == positions(tl) and not calm.stuck


@integration
def test_the_command_line_says_the_same(capsys, bootstrap: str, world: World) -> None:
    code = main(["-b", bootstrap, "trace", world.order_a, "--topics", world.regex, "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert code == 0
    a, g = world.a, world.groups
    got = [((e["topic"], e["partition"], e["offset"]), e["consumers"], e["stuck"])
           for e in doc["events"]]
    assert got == [
        (a["orders"], {g["audit"]: PENDING, g["inventory"]: PROCESSED}, True),
        (a["payments"], {g["payment"]: DEAD_LETTERED}, False),
        (a["dlt"], {}, False),
        (a["shipping"], {g["shipping"]: PENDING}, True),
        (a["notify"], {}, False),
    ]
    assert doc["events"][2]["dead_letter"]["original_group"] == "pay-svc"
    code = main(["-b", bootstrap, "trace", world.order_a, "--topics", world.regex,
                 "--stuck-after", "1h"])
    text = capsys.readouterr().out
    assert code == 0 and "STUCK" not in text and "✗ pay-svc (dead-lettered)" in text


@integration
def test_a_trace_id_finds_the_same_order_and_other_orders_stay_out(cluster: ClusterConfig,
                                                                     world: World) -> None:
    by_trace = find_timeline(cluster, world.trace_a.upper(), topics_regex=world.regex)
    assert set(positions(by_trace)) == set(world.a.values())
    pasted = find_timeline(cluster, f"00-{world.trace_a}-{'1' * 16}-01",
                           topics_regex=world.regex)
    assert set(positions(pasted)) == set(world.a.values())
    b = find_timeline(cluster, world.order_b, topics_regex=world.regex)
    assert positions(b) == sorted(world.b, key=lambda p: positions(b).index(p))
    assert set(positions(b)) == set(world.b)
    unknown = find_timeline(cluster, "ord_nobody", topics_regex=world.regex)
    assert unknown.events == () and unknown.stats.scanned_records == 0  # all from the index


@integration
def test_second_lookup_comes_from_the_index_and_reads_only_the_new_tail(
        cluster: ClusterConfig, bootstrap: str, names) -> None:
    topic = names("tail")
    create_topics(bootstrap, topic, partitions=2)
    producer = kp_producer(bootstrap)
    for i in range(20):
        producer.send(topic, key=f"ord_t{i % 4}".encode(), value=b"{}", partition=i % 2)
    producer.flush(10)
    with Tracer(cluster) as tracer:
        cold = tracer.find("ord_t1", topics_regex=f"^{topic}$")
        assert cold.stats.scanned_records == 20 and len(cold.events) == 5
        warm = tracer.find("ord_t1", topics_regex=f"^{topic}$")
        assert warm.stats.scanned_records == 0
        assert positions(warm) == positions(cold)
        other = tracer.find("ord_t2", topics_regex=f"^{topic}$")
        assert other.stats.scanned_records == 0 and len(other.events) == 5
        producer.send(topic, key=b"ord_t1", value=b'{"event": "Late"}', partition=1).get(10)
        producer.send(topic, key=b"noise", value=b"{}", partition=0).get(10)
        tail = tracer.find("ord_t1", topics_regex=f"^{topic}$")
        assert tail.stats.scanned_records == 2
        assert len(tail.events) == 6 and tail.events[-1].event_type == "Late"
    producer.close(timeout=5)
    # a new process (a new Tracer) answers from the same file
    again = find_timeline(cluster, "ord_t1", topics_regex=f"^{topic}$")
    assert again.stats.scanned_records == 0 and len(again.events) == 6


@integration
def test_parallel_cold_scan_builds_the_same_index(cluster: ClusterConfig, bootstrap: str,
                                                  names) -> None:
    topics = [names("par"), names("par")]
    create_topics(bootstrap, *topics, partitions=2)
    producer = kp_producer(bootstrap, linger_ms=5, batch_size=16384)
    for i in range(400):
        producer.send(topics[i % 2], key=f"ord_p{i % 50}".encode(),
                      value=json.dumps({"event": "E", "n": i}).encode(),
                      headers=[("correlation-id", f"ord_p{i % 50}".encode())])
    producer.flush(10)
    producer.send(topics[0], key=b"tail", value=b"{}", partition=0).get(10)  # end offsets
    producer.send(topics[0], key=b"tail", value=b"{}", partition=1).get(10)
    producer.send(topics[1], key=b"tail", value=b"{}", partition=0).get(10)
    producer.send(topics[1], key=b"tail", value=b"{}", partition=1).get(10)
    producer.close(timeout=5)
    regex = "^(" + "|".join(topics) + ")$"
    with Tracer(cluster, TraceSettings(scan_processes=2)) as tracer:
        cold = tracer.find("ord_p7", topics_regex=regex)
        assert cold.stats.scanned_records == 404 and len(cold.events) == 8
        for n in (7, 13, 49):
            warm = tracer.find(f"ord_p{n}", topics_regex=regex)
            assert warm.stats.scanned_records == 0 and len(warm.events) == 8
        assert tracer.index.stats()["covered_offsets"] == 404


@integration
@pytest.mark.parametrize(("processes", "keep"), [(1, True), (2, True), (1, False)])
def test_cold_answer_comes_before_the_index_and_a_warm_lookup_of_another_id_uses_it(
        cluster: ClusterConfig, bootstrap: str, names, monkeypatch, processes: int,
        keep: bool) -> None:
    """Two phases: the answer (with its traceparent-only hop) first, then the full index.

    Without `keep` (a share above MAX_KEPT records) the scan indexes as it reads
    and the index answers: the same timeline, the index complete before the answer.
    """
    if not keep:
        monkeypatch.setattr("tracing.scanner.MAX_KEPT", 0)
    topics = [names("two"), names("two")]
    create_topics(bootstrap, *topics, partitions=2)
    producer = kp_producer(bootstrap)
    traces = {}
    for n in range(12):
        order, trace_id = f"ord_w{n}", secrets.token_hex(16)
        traces[order] = trace_id
        producer.send(topics[0], key=order.encode(), partition=n % 2,
                      value=json.dumps({"event": "Placed", "orderId": order}).encode(),
                      headers=[("traceparent", traceparent(trace_id))])
        # no order id anywhere: only the trace id ties it to the order (the one hop)
        producer.send(topics[1], key=None, value=b"\x89binary", partition=(n + 1) % 2,
                      headers=[("traceparent", traceparent(trace_id)),
                               ("event-type", b"Shipped")])
    producer.flush(10)
    producer.close(timeout=5)
    regex = "^(" + "|".join(topics) + ")$"
    with Tracer(cluster, TraceSettings(scan_processes=processes)) as tracer:
        seen = []
        cold = tracer.find("ord_w3", topics_regex=regex, on_answer=lambda tl: seen.append(
            (tl, tracer.index.stats()["covered_offsets"])))
        assert len(seen) == 1
        early, covered_then = seen[0]
        if not keep:
            assert covered_then == 24
        else:  # answered before this process indexed its share (a worker may have begun)
            assert covered_then == 0 if processes == 1 else covered_then < 24
        assert early.to_json() == cold.to_json()
        assert sorted((e.topic, e.event_type, e.trace_id) for e in cold.events) == sorted([
            (topics[0], "Placed", traces["ord_w3"]), (topics[1], "Shipped", traces["ord_w3"])])
        assert cold.stats.scanned_records == 24
        assert tracer.index.stats()["covered_offsets"] == 24
        for order in ("ord_w0", "ord_w11"):
            warm = tracer.find(order, topics_regex=regex,
                               on_answer=lambda tl: seen.append((tl, None)))
            assert warm.stats.scanned_records == 0
            assert sorted((e.topic, e.trace_id) for e in warm.events) == sorted([
                (topics[0], traces[order]), (topics[1], traces[order])])
        by_trace = tracer.find(traces["ord_w5"].upper(), topics_regex=regex)
        assert by_trace.stats.scanned_records == 0
        assert sorted((e.topic, e.key or "") for e in by_trace.events) == sorted([
            (topics[0], "ord_w5"), (topics[1], "")])


@integration
def test_a_recreated_topic_is_noticed_and_reindexed(cluster: ClusterConfig, bootstrap: str,
                                                    names) -> None:
    from confluent_kafka.admin import AdminClient

    topic = names("recreated")
    create_topics(bootstrap, topic)
    producer = kp_producer(bootstrap)
    for i in range(6):
        producer.send(topic, key=b"ord_r", value=json.dumps({"event": f"Old{i}"}).encode())
    producer.flush(10)
    with Tracer(cluster) as tracer:
        assert len(tracer.find("ord_r", topics_regex=f"^{topic}$").events) == 6
        admin = AdminClient({"bootstrap.servers": bootstrap})
        admin.delete_topics([topic], operation_timeout=10)[topic].result(timeout=15)
        wait_until(lambda: topic not in admin.list_topics(timeout=5).topics, 15,
                   message="topic deletion")
        create_topics(bootstrap, topic)
        producer.send(topic, key=b"ord_r", value=b'{"event": "New"}').get(10)
        tl = tracer.find("ord_r", topics_regex=f"^{topic}$")
    producer.close(timeout=5)
    assert [(e.offset, e.event_type) for e in tl.events] == [(0, "New")]
    assert any("recreated" in note for note in tl.notes)


@integration
def test_since_bounds_the_timeline_by_record_time(cluster: ClusterConfig, bootstrap: str,
                                                  names) -> None:
    topic = names("since")
    create_topics(bootstrap, topic)
    now = int(time.time() * 1000)
    producer = kp_producer(bootstrap)
    producer.send(topic, key=b"ord_s", value=b'{"event": "Old"}', timestamp_ms=now - 3 * 86_400_000)
    producer.send(topic, key=b"ord_s", value=b'{"event": "New"}', timestamp_ms=now - 1000)
    producer.flush(10)
    producer.close(timeout=5)
    recent = find_timeline(cluster, "ord_s", topics_regex=f"^{topic}$")
    assert [e.event_type for e in recent.events] == ["New"]
    week = find_timeline(cluster, "ord_s", topics_regex=f"^{topic}$", since_seconds=7 * 86400)
    assert [e.event_type for e in week.events] == ["Old", "New"]


@integration
def test_missing_topics_and_a_dead_broker_are_one_clear_error(cluster: ClusterConfig) -> None:
    with pytest.raises(NotFoundError, match="no topic matches topics '") as missing:
        find_timeline(cluster, "ord_1", topics_regex="^does-not-exist-anywhere$")
    assert getattr(missing.value, "field", None) == "topics"  # the CLI says --topics
    dead = ClusterConfig({"bootstrap.servers": "127.0.0.1:1"})
    with pytest.raises(BrokerUnavailable) as err:
        find_timeline(dead, "ord_1", timeout=2)
    assert "\n" not in str(err.value)
