"""Benchmark: lagdeck's redrive against a naive consume-and-produce copy loop, same run.

    .venv/bin/python bench/redrive.py [--records 100000] [--rate 2000] [--rate-records 10000]

1. Throughput. 100,000 Spring-style dead letters (binary headers) are
   redriven by `dlq.redrive.Redrive` (header decoding, selection, loop
   protection, lagdeck headers, one Kafka transaction per batch committing
   records and progress together) and copied by a naive loop (consume a
   batch, produce each record to a fixed topic with its headers, flush at the
   end: no transactions, no progress, no guarantees). Each runs twice,
   alternating, on its own embedded Tansu broker; the best of each counts.
   Target: redrive >= 0.5x the naive loop's records per second.
2. Rate limit. A redrive with `rate=2000` of `--rate-records` dead letters;
   the achieved rate is measured from the CreateTime stamps of the redriven
   records (first to last) and from wall-clock time of the whole call.
   Target: within 5% of 2000/s.
"""

from __future__ import annotations

import argparse
import struct
import sys
import tempfile
import time
from pathlib import Path

from confluent_kafka import TopicPartition

from collectors.kafka import consumer, producer
from collectors.scan import watermarks
from collectors.topics import ensure_topics
from console.embedded import EmbeddedBroker
from dlq.redrive import DEFAULT_BATCH, Redrive
from tracing.deadletter import REDRIVE_ID_HEADER

PARTITIONS = 2


def fill(cluster, dlq: str, target: str, n: int) -> None:
    """n Spring dead letters (~200 B values), bulk, then one record alone per partition."""
    p = producer(cluster, **{"linger.ms": 20})
    value = b"x" * 200
    for i in range(n):
        if i == n - PARTITIONS:
            p.flush(60)
        p.produce(dlq, key=f"order-{i}".encode(), value=value, partition=i % PARTITIONS,
                  headers=[("kafka_dlt-original-topic", target.encode()),
                           ("kafka_dlt-original-partition", struct.pack(">i", i % PARTITIONS)),
                           ("kafka_dlt-original-offset", struct.pack(">q", i)),
                           ("kafka_dlt-exception-fqcn", b"java.lang.IllegalStateException"),
                           ("kafka_dlt-exception-message", b"card declined")])
        if i >= n - PARTITIONS:
            p.flush(60)
    p.flush(60)
    marks = watermarks(cluster, [(dlq, q) for q in range(PARTITIONS)])
    assert sum(hi for _, hi in marks.values()) == n, marks


def naive_copy(cluster, dlq: str, target: str, n: int) -> float:
    """Consume everything and produce each record to `target`: the no-guarantees baseline."""
    started = time.perf_counter()
    c = consumer(cluster, **{"fetch.max.bytes": 52428800})
    p = producer(cluster, **{"linger.ms": 5})
    c.assign([TopicPartition(dlq, q, 0) for q in range(PARTITIONS)])
    copied = 0
    while copied < n:
        for msg in c.consume(1000, timeout=1.0):
            if msg.error():
                continue
            while True:
                try:
                    p.produce(target, key=msg.key(), value=msg.value(), headers=msg.headers())
                    break
                except BufferError:
                    p.poll(0.05)
            copied += 1
        p.poll(0)
    assert p.flush(60) == 0
    c.close()
    return n / (time.perf_counter() - started)


def transactional_copy(cluster, dlq: str, target: str, n: int, tag: str) -> float:
    """The floor any exactly-once redrive pays on this broker: consume a batch, produce it
    in a transaction with its offsets, commit; no decoding, no headers, no safety checks."""
    started = time.perf_counter()
    c = consumer(cluster, group=f"bench-floor-{tag}", **{"fetch.max.bytes": 52428800})
    p = producer(cluster, **{"linger.ms": 5, "transactional.id": f"bench-floor-{tag}"})
    p.init_transactions(10)
    c.assign([TopicPartition(dlq, q, 0) for q in range(PARTITIONS)])
    meta = c.consumer_group_metadata()
    copied = 0
    while copied < n:
        msgs = [m for m in c.consume(1000, timeout=1.0) if not m.error()]
        if not msgs:
            continue
        p.begin_transaction()
        offsets = {}
        for msg in msgs:
            p.produce(target, msg.value(), msg.key(), -1, headers=msg.headers())
            offsets[msg.partition()] = msg.offset() + 1
        p.send_offsets_to_transaction(
            [TopicPartition(dlq, q, o) for q, o in offsets.items()], meta, 10)
        p.commit_transaction(30)
        copied += len(msgs)
    c.close()
    return n / (time.perf_counter() - started)


def lagdeck_redrive(cluster, dlq: str, group: str, n: int, rate: float | None = None,
                    batch_size: int = DEFAULT_BATCH):
    started = time.perf_counter()
    # again=True: every round moves the same dead letters to the same target on purpose
    result = Redrive(cluster, dlq, group=group, rate=rate, batch_size=batch_size,
                     again=True).run()
    elapsed = time.perf_counter() - started
    assert (result.redriven, result.failed) == (n, 0), result
    return n / elapsed, result


def stamped_rate(cluster, topic: str, n: int) -> float:
    """Records per second between the first and last CreateTime of the redriven records."""
    c = consumer(cluster, **{"fetch.max.bytes": 52428800})
    c.assign([TopicPartition(topic, q, 0) for q in range(PARTITIONS)])
    stamps = []
    deadline = time.monotonic() + 60
    while len(stamps) < n and time.monotonic() < deadline:
        for msg in c.consume(10000, timeout=0.5):
            if not msg.error() and any(k == REDRIVE_ID_HEADER for k, _ in msg.headers() or ()):
                stamps.append(msg.timestamp()[1])
    c.close()
    assert len(stamps) == n, (len(stamps), n)
    return (n - 1) / ((max(stamps) - min(stamps)) / 1000)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=DEFAULT_BATCH,
                    help="records per redrive transaction")
    ap.add_argument("--rate", type=float, default=2000.0)
    ap.add_argument("--rate-records", type=int, default=10_000)
    args = ap.parse_args()
    n = args.records
    naive, ours, floor = [], [], []
    with tempfile.TemporaryDirectory() as tmp, EmbeddedBroker(log_dir=Path(tmp)) as broker:
        cluster = broker.cluster()
        ensure_topics(cluster, {"bench.DLT": PARTITIONS, "bench.orders": PARTITIONS,
                                "bench.naive": PARTITIONS})
        t = time.perf_counter()
        fill(cluster, "bench.DLT", "bench.orders", n)
        print(f"filled {n} dead letters in {time.perf_counter() - t:.1f}s")
        for r in range(args.rounds):
            naive.append(naive_copy(cluster, "bench.DLT", "bench.naive", n))
            print(f"round {r + 1}: naive copy loop          {naive[-1]:>9,.0f} rec/s")
            rate, result = lagdeck_redrive(cluster, "bench.DLT", f"bench-redrive-{r}", n,
                                           batch_size=args.batch_size)
            ours.append(rate)
            print(f"round {r + 1}: lagdeck redrive          {ours[-1]:>9,.0f} rec/s "
                  f"({n / result.elapsed_s:,.0f} rec/s after setup)")
            floor.append(transactional_copy(cluster, "bench.DLT", "bench.naive", n, str(r)))
            print(f"round {r + 1}: bare transactional copy  {floor[-1]:>9,.0f} rec/s")
        if broker.panicked():
            print("broker panicked; numbers are void")
            return 1

    ratio = max(ours) / max(naive)
    ok_ratio = ratio >= 0.5
    print(f"throughput ratio redrive/naive = {ratio:.2f} (target >= 0.50): "
          f"{'OK' if ok_ratio else 'FAIL'}")
    print(f"  for reference: bare transactional copy/naive = {max(floor) / max(naive):.2f}, "
          f"redrive/bare transactional copy = {max(ours) / max(floor):.2f} (best of "
          f"{args.rounds} rounds each)")

    m = args.rate_records
    with tempfile.TemporaryDirectory() as tmp, EmbeddedBroker(log_dir=Path(tmp)) as broker:
        cluster = broker.cluster()
        ensure_topics(cluster, {"rate.DLT": PARTITIONS, "rate.orders": PARTITIONS})
        fill(cluster, "rate.DLT", "rate.orders", m)
        wall, result = lagdeck_redrive(cluster, "rate.DLT", "rate-redrive", m, rate=args.rate)
        stamped = stamped_rate(cluster, "rate.orders", m)
    run_rate = result.rate
    errors = {name: abs(value - args.rate) / args.rate
              for name, value in (("stamps", stamped), ("run", run_rate), ("wall", wall))}
    ok_rate = errors["stamps"] <= 0.05 and errors["run"] <= 0.05
    print(f"--rate {args.rate:g} over {m} records: {stamped:,.1f} rec/s by record timestamps "
          f"({errors['stamps']:.1%} off), {run_rate:,.1f} rec/s first produce to last commit "
          f"({errors['run']:.1%} off): {'OK' if ok_rate else 'FAIL'} (target within 5%); "
          f"{wall:,.1f} rec/s counting client setup too ({errors['wall']:.1%} off)")
    return 0 if ok_ratio and ok_rate else 1


if __name__ == "__main__":
    sys.exit(main())
