"""Benchmark `lagdeck trace`: a cold scan against the poll() loop a user would write.

    .venv/bin/python bench/trace_scan.py                  # 1,000,000 events, 5 topics
    .venv/bin/python bench/trace_scan.py --events 200000  # smaller, for development
    .venv/bin/python bench/trace_scan.py -b HOST:PORT     # reuse a broker with the data

Data: orders of five events each, one per topic, with the mixed conventions
of a real fleet (correlation header variants, traceparent everywhere, the
order id in the key, in the payload only, or under `data.orderId`, one topic
keyed by customer). Produced with confluent-kafka in bulk, then one record
alone per partition so the broker's end offsets are right (BROKER-NOTES.md).

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


def produce(bootstrap: str, events: int, partitions: int) -> int:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for f in admin.create_topics([NewTopic(t, partitions, 1) for t in TOPICS],
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
    for i in range(orders):
        for t, topic in enumerate(TOPICS):
            key, value, headers = make_event(t, i, rng)
            while True:
                try:
                    producer.produce(topic, key=key, value=value, headers=headers,
                                     partition=(i * 7 + t) % partitions)
                    break
                except BufferError:
                    producer.poll(0.05)
            n += 1
        if i % 2000 == 0:
            producer.poll(0)
    producer.flush(120)
    for topic in TOPICS:  # the tail trick: one record alone per partition
        for p in range(partitions):
            producer.produce(topic, key=b"tail", value=b"{}", partition=p)
            producer.flush(30)
            n += 1
    print(f"produced {n:,} records in {time.perf_counter() - started:.1f}s")
    return n


def user_poll_loop(bootstrap: str, query: str, partitions: int, with_json: bool):
    """The loop an engineer writes at 3 AM: poll, decode headers, compare ids."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-{uuid.uuid4().hex[:8]}",
                  "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    tps = [TopicPartition(t, p) for t in TOPICS for p in range(partitions)]
    ends = {(tp.topic, tp.partition): c.get_watermark_offsets(tp, timeout=10)[1] for tp in tps}
    c.assign([TopicPartition(t, p, 0) for t in TOPICS for p in range(partitions)])
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
        if with_json and not hit and msg.value():
            try:
                doc = json.loads(msg.value())
            except ValueError:
                doc = None
            if isinstance(doc, dict):
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--partitions", type=int, default=3, help="per topic")
    ap.add_argument("--lookups", type=int, default=100)
    ap.add_argument("-b", "--bootstrap", help="reuse a broker that already holds the data")
    ap.add_argument("--no-produce", action="store_true", help="with -b: the data is there")
    ap.add_argument("--processes", type=int, help="scan processes (default: automatic)")
    args = ap.parse_args()

    state = tempfile.mkdtemp(prefix="lagdeck-bench-")
    os.environ["LAGDECK_STATE_DIR"] = state
    from collectors.config import ClusterConfig
    from console.embedded import EmbeddedBroker
    from tracing.search import Tracer
    from tracing.settings import TraceSettings

    broker = None
    if args.bootstrap:
        bootstrap = args.bootstrap
    else:
        broker = EmbeddedBroker(log_dir=Path(state)).start()
        bootstrap = broker.bootstrap
        print(f"embedded broker at {bootstrap} (reuse it: -b {bootstrap} --no-produce)")
    try:
        if not args.no_produce:
            total = produce(bootstrap, args.events, args.partitions)
        else:
            total = args.events
        orders = args.events // len(TOPICS)
        rng = random.Random(11)
        query = order_id(rng.randrange(orders))
        cluster = ClusterConfig({"bootstrap.servers": bootstrap})
        topics_regex = r"^bench\."

        base, base_count, base_s = user_poll_loop(bootstrap, query, args.partitions, True)
        print(f"baseline poll() loop (headers+key+JSON): {base_count:,} records in {base_s:.2f}s "
              f"= {base_count / base_s:,.0f} rec/s, {len(base)} events found")
        plain, plain_count, plain_s = user_poll_loop(bootstrap, query, args.partitions, False)
        print(f"baseline poll() loop (headers+key only): {plain_count:,} records in "
              f"{plain_s:.2f}s = {plain_count / plain_s:,.0f} rec/s, {len(plain)} events found")

        tracer = Tracer(cluster, TraceSettings(scan_processes=args.processes))
        answered: list[tuple[float, object]] = []
        started = time.perf_counter()
        timeline = tracer.find(query, topics_regex=topics_regex, on_answer=lambda tl: (
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
            return 1
        if early.to_json() != timeline.to_json():
            print("MISMATCH: the early answer differs from the timeline after indexing")
            return 1
        covered = tracer.index.stats()["covered_offsets"]
        if covered != scanned:
            print(f"INDEX INCOMPLETE: covers {covered:,} offsets of {scanned:,} scanned")
            return 1

        queries = [order_id(rng.randrange(orders)) for _ in range(args.lookups)]
        warm, index_only = [], []
        for q in queries:
            started = time.perf_counter()
            tl = tracer.find(q, topics_regex=topics_regex)
            warm.append((time.perf_counter() - started) * 1000)
            if len(tl.events) != len(TOPICS):
                print(f"warm lookup of {q} found {len(tl.events)} events, expected {len(TOPICS)}")
                return 1
            started = time.perf_counter()
            tracer.index.lookup([q.encode()])
            index_only.append((time.perf_counter() - started) * 1000)
        index_mb = Path(tracer.index.path).stat().st_size / 1e6
        tracer.close()

        ratio = (scanned / answer_s) / (base_count / base_s)
        ratio_plain = (scanned / answer_s) / (plain_count / plain_s)
        ratio_index = (scanned / cold_s) / (base_count / base_s)
        print()
        print(f"records in range:                     {total:,}")
        print(f"poll() loop (headers+key+JSON):       {base_count / base_s:,.0f} rec/s")
        print(f"cold trace, time to answer:           {answer_s:.2f}s = "
              f"{scanned / answer_s:,.0f} rec/s")
        print(f"cold trace vs poll() loop:            {ratio:.2f}x  (target >= 2x)")
        print(f"cold trace vs loop without JSON:      {ratio_plain:.2f}x  (finds "
              f"{len(plain)} of {len(base)} events)")
        print(f"index complete after:                 {cold_s:.2f}s "
              f"({ratio_index:.2f}x the loop's throughput, answer included)")
        print(f"warm trace, end to end (ms):          p50 {pct(warm, .5):.1f}  "
              f"p95 {pct(warm, .95):.1f}  (target p95 <= 50)")
        print(f"warm index lookup alone (ms):         p50 {pct(index_only, .5):.2f}  "
              f"p95 {pct(index_only, .95):.2f}")
        print(f"correlation index file:               {index_mb:.1f} MB")
        return 0
    finally:
        if broker is not None:
            broker.stop()


if __name__ == "__main__":
    sys.exit(main())
