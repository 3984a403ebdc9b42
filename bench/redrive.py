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
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from confluent_kafka import TopicPartition  # noqa: E402

from collectors.kafka import consumer, producer  # noqa: E402
from collectors.scan import watermarks  # noqa: E402
from collectors.topics import ensure_topics  # noqa: E402
from console.embedded import EmbeddedBroker  # noqa: E402
from dlq.redrive import Redrive  # noqa: E402
from tracing.deadletter import REDRIVE_ID_HEADER  # noqa: E402

PARTITIONS = 2


def fill(cluster, dlq: str, target: str, n: int) -> None:
    """n Spring dead letters (~200 B values), bulk, then one record alone per partition."""
    import struct

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


def lagdeck_redrive(cluster, dlq: str, group: str, n: int, rate: float | None = None):
    started = time.perf_counter()
    result = Redrive(cluster, dlq, group=group, rate=rate).run()
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
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--rate", type=float, default=2000.0)
    ap.add_argument("--rate-records", type=int, default=10_000)
    args = ap.parse_args()
    n = args.records
    naive, ours = [], []
    with tempfile.TemporaryDirectory() as tmp, EmbeddedBroker(log_dir=Path(tmp)) as broker:
        cluster = broker.cluster()
        ensure_topics(cluster, {"bench.DLT": PARTITIONS, "bench.orders": PARTITIONS,
                                "bench.naive": PARTITIONS})
        t = time.perf_counter()
        fill(cluster, "bench.DLT", "bench.orders", n)
        print(f"filled {n} dead letters in {time.perf_counter() - t:.1f}s")
        for r in range(args.rounds):
            naive.append(naive_copy(cluster, "bench.DLT", "bench.naive", n))
            print(f"round {r + 1}: naive copy loop   {naive[-1]:>9,.0f} rec/s")
            rate, result = lagdeck_redrive(cluster, "bench.DLT", f"bench-redrive-{r}", n)
            ours.append(rate)
            print(f"round {r + 1}: lagdeck redrive   {ours[-1]:>9,.0f} rec/s "
                  f"({result.elapsed_s:.2f}s inside run, batch {Redrive(cluster, 'x.DLT').batch_size})")
        if broker.panicked():
            print("broker panicked; numbers are void")
            return 1

    ratio = max(ours) / max(naive)
    ok_ratio = ratio >= 0.5
    print(f"throughput ratio redrive/naive = {ratio:.2f} (target >= 0.50): "
          f"{'OK' if ok_ratio else 'FAIL'}")

    m = args.rate_records
    with tempfile.TemporaryDirectory() as tmp, EmbeddedBroker(log_dir=Path(tmp)) as broker:
        cluster = broker.cluster()
        ensure_topics(cluster, {"rate.DLT": PARTITIONS, "rate.orders": PARTITIONS})
        fill(cluster, "rate.DLT", "rate.orders", m)
        wall, result = lagdeck_redrive(cluster, "rate.DLT", "rate-redrive", m, rate=args.rate)
        stamped = stamped_rate(cluster, "rate.orders", m)
    err_stamped = abs(stamped - args.rate) / args.rate
    err_wall = abs(wall - args.rate) / args.rate
    ok_rate = err_stamped <= 0.05 and err_wall <= 0.05
    print(f"--rate {args.rate:g}: {stamped:,.1f} rec/s by record timestamps "
          f"({err_stamped:.1%} off), {wall:,.1f} rec/s wall clock incl. setup ({err_wall:.1%} off)"
          f" over {m} records: {'OK' if ok_rate else 'FAIL'} (target within 5%)")
    return 0 if ok_ratio and ok_rate else 1


if __name__ == "__main__":
    sys.exit(main())
