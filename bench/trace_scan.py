"""Benchmark `lagdeck trace`: a cold scan against the poll() loop a user would write.

    .venv/bin/python bench/trace_scan.py                    # 200,000 events, JSON and Avro
    .venv/bin/python bench/trace_scan.py --events 1000000   # the issue's size
    .venv/bin/python bench/trace_scan.py --variants avro    # one variant only
    .venv/bin/python bench/trace_scan.py -b HOST:PORT       # reuse a broker with the data

Two variants over the same orders, printed side by side: JSON payloads, and
Avro payloads framed for a Confluent Schema Registry (written by
confluent-kafka's `AvroSerializer` against the test registry of
tests/registry_server.py, run in this process). For Avro, the baseline loop
deserializes every value with `AvroDeserializer` and the same kind of
registry client, and `lagdeck trace` decodes through the registry too.

Data: orders of five events each, one per topic, with the mixed conventions
of a real fleet (correlation header variants, traceparent everywhere, the
order id in the key, in the payload only, or under `data.orderId`, one topic
keyed by customer). Produced with confluent-kafka in bulk, then one record
alone per partition so the broker's end offsets are right (docs/broker-notes.md).

Measured in the same run, against the same data:

- baseline: the plain loop a user would write to find an order: assign every
  partition from the start, `poll()` one message at a time up to the end
  offsets, decode the headers, compare the correlation header, the
  traceparent's trace id, the key and the JSON payload's order id fields
  (the payload check is needed: one topic carries the id only there);
- baseline without JSON: the same loop comparing only headers and key (it
  misses the payload-only events; shown for reference);
- cold: `Tracer.find` with an empty correlation index. "Time to answer" is
  when its `on_answer` callback gets the timeline (one pass that decodes only
  the records the prefilter flags: what `lagdeck trace` prints then); "index
  complete" is when `find` returns, every record read having been decoded into
  the index. The ratio vs the loop uses the time to answer; both are printed,
  and the bench checks the early answer equals the final timeline and the
  baseline's events, and that the index covers every record scanned;
- warm: 100 lookups of other orders through the same `Tracer` (index +
  new tail only), end to end, and the index lookup alone.

Targets (issue 4): cold >= 2x the baseline's throughput; warm p95 <= 50 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

TOPICS = ("bench.orders", "bench.inventory", "bench.payments", "bench.shipping",
          "bench.notifications")
AVRO_TOPICS = tuple(t.replace("bench.", "bench.avro.") for t in TOPICS)
REGEX = {"json": r"^bench\.(orders|inventory|payments|shipping|notifications)$",
         "avro": r"^bench\.avro\."}


def avro_schema(name: str, id_field: str | None, nested: bool = False) -> str:
    """The Avro schema of one topic's events (the JSON variant's fields, typed)."""
    fields: list[dict] = [{"name": "event", "type": "string"}]
    if nested:
        fields.append({"name": "data", "type": {"type": "record", "name": f"{name}Data",
                                                "fields": [{"name": "orderId",
                                                            "type": "string"}]}})
    elif id_field:
        fields.append({"name": id_field, "type": "string"})
    fields += [{"name": "amount", "type": "double"}, {"name": "currency", "type": "string"},
               {"name": "customer", "type": "string"},
               {"name": "items", "type": {"type": "array", "items": {
                   "type": "record", "name": f"{name}Item",
                   "fields": [{"name": "sku", "type": "string"}, {"name": "qty", "type": "int"}]}}}]
    return json.dumps({"type": "record", "name": name, "namespace": "bench", "fields": fields})


AVRO_SCHEMAS = (avro_schema("OrderPlaced", "orderId"), avro_schema("StockReserved", "orderId"),
                avro_schema("PaymentCaptured", None, nested=True),
                avro_schema("Shipped", "orderId"), avro_schema("NotificationSent", "order_id"))


def as_avro_record(doc: dict) -> dict:
    """A JSON-variant event as the Avro schema's record (`type` becomes `event`)."""
    out = dict(doc)
    out["event"] = out.pop("event", None) or out.pop("type")
    return out
CORRELATION = ("correlation-id", "correlationid", "x-correlation-id")


def order_id(i: int) -> str:
    return f"ord_{i:07d}"


def trace_id(i: int) -> str:
    return f"{(i * 2654435761 + 0x9E3779B97F4A7C15) % (1 << 128):032x}"


def make_event(topic_no: int, i: int, rng: random.Random) -> tuple[bytes | None, bytes, list]:
    """key, value, headers of event `topic_no` of order `i`."""
    oid = order_id(i)
    tp = f"00-{trace_id(i)}-{rng.getrandbits(64) | 1:016x}-01".encode()
    extra = {"amount": round(rng.random() * 300, 2), "currency": "EUR",
             "customer": f"cust_{i % 9973:05d}", "items": [{"sku": f"sku-{i % 997}", "qty": 1}]}
    if topic_no == 0:
        return (oid.encode(), json.dumps({"event": "OrderPlaced", "orderId": oid, **extra})
                .encode(), [("correlation-id", oid.encode()), ("traceparent", tp),
                            ("event-type", b"OrderPlaced")])
    if topic_no == 1:
        return (oid.encode(), json.dumps({"event": "StockReserved", "orderId": oid, **extra})
                .encode(), [("X-Correlation-ID", oid.encode()), ("traceparent", tp)])
    if topic_no == 2:
        return (oid.encode(), json.dumps({"type": "PaymentCaptured", "data": {"orderId": oid},
                                          **extra}).encode(),
                [("correlationId", oid.encode()), ("traceparent", tp),
                 ("ce_type", b"shop.PaymentCaptured")])
    if topic_no == 3:  # order id only in the payload
        return (None, json.dumps({"event": "Shipped", "orderId": oid, **extra}).encode(),
                [("traceparent", tp)])
    return (f"cust_{i % 9973:05d}".encode(),  # keyed by customer
            json.dumps({"type": "NotificationSent", "order_id": oid, **extra}).encode(),
            [("x-correlation-id", oid.encode()), ("traceparent", tp)])


def produce(bootstrap: str, events: int, partitions: int, registry_url: str | None = None
            ) -> int:
    """The orders as JSON, or (with `registry_url`) as registry-framed Avro."""
    topics = AVRO_TOPICS if registry_url else TOPICS
    serializers = None
    if registry_url:
        from confluent_kafka.schema_registry import SchemaRegistryClient
        from confluent_kafka.schema_registry.avro import AvroSerializer
        from confluent_kafka.serialization import MessageField, SerializationContext

        sr = SchemaRegistryClient({"url": registry_url})
        serializers = [(AvroSerializer(sr, schema), SerializationContext(t, MessageField.VALUE))
                       for schema, t in zip(AVRO_SCHEMAS, topics, strict=True)]
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for f in admin.create_topics([NewTopic(t, partitions, 1) for t in topics],
                                 operation_timeout=30).values():
        f.result(timeout=60)
    # 64 KB batches: bigger than the Java client's 16 KB default, far from librdkafka's 1 MB.
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "batch.size": 65536,
                         "batch.num.messages": 10000, "queue.buffering.max.messages": 2_000_000,
                         "queue.buffering.max.kbytes": 2_000_000, "compression.type": "none"})
    rng = random.Random(7)
    orders = events // len(TOPICS)
    started = time.perf_counter()
    n = 0
    chunk = 20_000  # orders serialized ahead, then produced in one burst: Avro serializing
    # is slow, and a producer fed slowly sends small batches (the data would differ in
    # shape from the JSON variant's, and the broker answers ListOffsets slower over them)
    for first in range(0, orders, chunk):
        ready = []
        for i in range(first, min(first + chunk, orders)):
            for t, topic in enumerate(topics):
                key, value, headers = make_event(t, i, rng)
                if serializers is not None:
                    serialize, ctx = serializers[t]
                    value = serialize(as_avro_record(json.loads(value)), ctx)
                ready.append((topic, key, value, headers, (i * 7 + t) % partitions))
        for j, (topic, key, value, headers, partition) in enumerate(ready):
            while True:
                try:
                    producer.produce(topic, key=key, value=value, headers=headers,
                                     partition=partition)
                    break
                except BufferError:
                    producer.poll(0.05)
            n += 1
            if j % 10_000 == 0:
                producer.poll(0)
    producer.flush(120)
    for topic in topics:  # the tail trick: one record alone per partition
        for p in range(partitions):
            producer.produce(topic, key=b"tail", value=b"{}", partition=p)
            producer.flush(30)
            n += 1
    print(f"produced {n:,} records in {time.perf_counter() - started:.1f}s")
    return n


def user_poll_loop(bootstrap: str, query: str, partitions: int, with_json: bool,
                   registry_url: str | None = None):
    """The loop an engineer writes at 3 AM: poll, decode headers, compare ids.

    With `registry_url` the topics hold Avro frames: every value is
    deserialized with `AvroDeserializer` (one registry client, schemas cached).
    """
    topics = AVRO_TOPICS if registry_url else TOPICS
    deserialize = None
    if registry_url:
        from confluent_kafka.schema_registry import SchemaRegistryClient
        from confluent_kafka.schema_registry.avro import AvroDeserializer
        from confluent_kafka.serialization import MessageField, SerializationContext

        avro = AvroDeserializer(SchemaRegistryClient({"url": registry_url}))
        contexts = {t: SerializationContext(t, MessageField.VALUE) for t in topics}

        def deserialize(msg):
            value = msg.value()
            if not value or value[0] != 0:
                return None
            return avro(value, contexts[msg.topic()])
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-{uuid.uuid4().hex[:8]}",
                  "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    tps = [TopicPartition(t, p) for t in topics for p in range(partitions)]
    ends = {(tp.topic, tp.partition): c.get_watermark_offsets(tp, timeout=10)[1] for tp in tps}
    c.assign([TopicPartition(t, p, 0) for t in topics for p in range(partitions)])
    remaining = {k for k, v in ends.items() if v > 0}
    found, count = [], 0
    started = time.perf_counter()
    while remaining:
        msg = c.poll(1.0)
        if msg is None or msg.error():
            continue
        count += 1
        tp = (msg.topic(), msg.partition())
        if msg.offset() >= ends[tp] - 1:
            remaining.discard(tp)
        hit = False
        headers = {}
        for k, v in msg.headers() or ():
            headers[k.lower()] = v.decode("utf-8", "replace") if v is not None else None
        if any(headers.get(h) == query for h in CORRELATION):
            hit = True
        tp_value = headers.get("traceparent")
        if tp_value and tp_value.split("-")[1:2] == [query]:
            hit = True
        key = msg.key()
        if key is not None and key.decode("utf-8", "replace") == query:
            hit = True
        if deserialize is not None and not hit:
            doc = deserialize(msg)
        elif with_json and not hit and msg.value():
            try:
                doc = json.loads(msg.value())
            except ValueError:
                doc = None
        else:
            doc = None
        if isinstance(doc, dict) and not hit:
            data = doc.get("data")
            if query in (doc.get("orderId"), doc.get("order_id"),
                         data.get("orderId") if isinstance(data, dict) else None):
                hit = True
        if hit:
            found.append((msg.topic(), msg.partition(), msg.offset()))
    elapsed = time.perf_counter() - started
    c.close()
    return sorted(found), count, elapsed


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def run_variant(kind: str, bootstrap: str, args, registry_url: str | None) -> dict | None:
    """One variant (json or avro): produce, the poll loop, cold trace, warm lookups."""
    from collectors.config import ClusterConfig
    from collectors.registry import RegistryConfig
    from tracing.search import Tracer
    from tracing.settings import TraceSettings

    avro_url = registry_url if kind == "avro" else None
    print(f"\n== {kind} ==")
    if not args.no_produce:
        total = produce(bootstrap, args.events, args.partitions, avro_url)
    else:
        total = args.events
    orders = args.events // len(TOPICS)
    rng = random.Random(11)
    query = order_id(rng.randrange(orders))
    cluster = ClusterConfig({"bootstrap.servers": bootstrap})
    regex = REGEX[kind]

    base, base_count, base_s = user_poll_loop(bootstrap, query, args.partitions, True, avro_url)
    print(f"baseline poll() loop (headers+key+{'Avro' if avro_url else 'JSON'}): "
          f"{base_count:,} records in {base_s:.2f}s = {base_count / base_s:,.0f} rec/s, "
          f"{len(base)} events found")

    registry = RegistryConfig(registry_url, timeout=5) if avro_url else None
    tracer = Tracer(cluster, TraceSettings(scan_processes=args.processes), registry=registry)
    answered: list[tuple[float, object]] = []
    started = time.perf_counter()
    timeline = tracer.find(query, topics_regex=regex, on_answer=lambda tl: (
        answered.append((time.perf_counter(), tl))))
    cold_s = time.perf_counter() - started  # until the index is complete
    answer_s = answered[0][0] - started if answered else cold_s
    early = answered[0][1] if answered else timeline
    scanned = timeline.stats.scanned_records
    found = sorted((e.topic, e.partition, e.offset) for e in early.events)
    print(f"cold trace, time to answer: {scanned:,} records scanned in {answer_s:.2f}s "
          f"= {scanned / answer_s:,.0f} rec/s, {len(found)} events found")
    print(f"cold trace, index complete: {cold_s:.2f}s after the start "
          f"= {scanned / cold_s:,.0f} rec/s indexed")
    if found != base:
        print(f"MISMATCH: trace found {found}, baseline found {base}")
        return None
    if early.to_json() != timeline.to_json():
        print("MISMATCH: the early answer differs from the timeline after indexing")
        return None
    covered = tracer.index.stats()["covered_offsets"]
    if covered != scanned:
        print(f"INDEX INCOMPLETE: covers {covered:,} offsets of {scanned:,} scanned")
        return None
    if avro_url and any(e.payload is None or e.payload.format != "avro" for e in early.events):
        print("NOT DECODED: the Avro events of the answer were not decoded")
        return None

    queries = [order_id(rng.randrange(orders)) for _ in range(args.lookups)]
    warm, index_only = [], []
    for q in queries:
        started = time.perf_counter()
        tl = tracer.find(q, topics_regex=regex)
        warm.append((time.perf_counter() - started) * 1000)
        if len(tl.events) != len(TOPICS):
            print(f"warm lookup of {q} found {len(tl.events)} events, expected {len(TOPICS)}")
            return None
        started = time.perf_counter()
        tracer.index.lookup([q.encode()])
        index_only.append((time.perf_counter() - started) * 1000)
    index_mb = Path(tracer.index.path).stat().st_size / 1e6
    tracer.close()
    return {"total": total, "loop": base_count / base_s, "answer_s": answer_s,
            "answer_rate": scanned / answer_s,
            "ratio": (scanned / answer_s) / (base_count / base_s),
            "cold_s": cold_s, "index_ratio": (scanned / cold_s) / (base_count / base_s),
            "warm_p50": pct(warm, .5), "warm_p95": pct(warm, .95),
            "index_p95": pct(index_only, .95), "index_mb": index_mb}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=200_000,
                    help="events per variant (the issue's target: 1000000)")
    ap.add_argument("--variants", default="json,avro", help="json, avro or json,avro")
    ap.add_argument("--partitions", type=int, default=3, help="per topic")
    ap.add_argument("--lookups", type=int, default=100)
    ap.add_argument("-b", "--bootstrap", help="reuse a broker that already holds the data")
    ap.add_argument("--no-produce", action="store_true", help="with -b: the data is there")
    ap.add_argument("--processes", type=int, help="scan processes (default: automatic)")
    args = ap.parse_args()
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    if not set(variants) <= {"json", "avro"}:
        ap.error("--variants takes json, avro or json,avro")
    if "avro" in variants and args.no_produce:
        ap.error("the Avro variant needs its registry: run it without --no-produce")

    state = tempfile.mkdtemp(prefix="lagdeck-bench-")
    os.environ["LAGDECK_STATE_DIR"] = state
    from console.embedded import EmbeddedBroker
    from tests.registry_server import RegistryServer

    broker = None
    registry = RegistryServer().start() if "avro" in variants else None
    if args.bootstrap:
        bootstrap = args.bootstrap
    else:
        broker = EmbeddedBroker(log_dir=Path(state)).start()
        bootstrap = broker.bootstrap
        print(f"embedded broker at {bootstrap} (reuse it: -b {bootstrap} --no-produce)")
    try:
        results = {}
        for kind in variants:
            got = run_variant(kind, bootstrap, args, registry.url if registry else None)
            if got is None:
                return 1
            results[kind] = got
        print()
        print(f"{'':38}" + "".join(f"{k:>16}" for k in results))
        rows = [
            ("records in range", lambda r: f"{r['total']:,}"),
            ("poll() loop, rec/s", lambda r: f"{r['loop']:,.0f}"),
            ("cold trace, time to answer (s)", lambda r: f"{r['answer_s']:.2f}"),
            ("cold trace, rec/s", lambda r: f"{r['answer_rate']:,.0f}"),
            ("cold trace vs poll() loop (>= 2x)", lambda r: f"{r['ratio']:.2f}x"),
            ("index complete after (s)", lambda r: f"{r['cold_s']:.2f}"),
            ("index complete vs loop", lambda r: f"{r['index_ratio']:.2f}x"),
            ("warm trace p50 (ms)", lambda r: f"{r['warm_p50']:.1f}"),
            ("warm trace p95 (ms, <= 50)", lambda r: f"{r['warm_p95']:.1f}"),
            ("warm index lookup p95 (ms)", lambda r: f"{r['index_p95']:.2f}"),
            ("correlation index (MB)", lambda r: f"{r['index_mb']:.1f}"),
        ]
        for label, cell in rows:
            print(f"{label:38}" + "".join(f"{cell(r):>16}" for r in results.values()))
        return 0
    finally:
        if broker is not None:
            broker.stop()
        if registry is not None:
            registry.stop()


if __name__ == "__main__":
    sys.exit(main())
