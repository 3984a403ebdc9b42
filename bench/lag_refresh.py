"""One lagdeck lag refresh against the naive loop, on 1,000 groups over 10 topics.

The naive loop is what a user writes with the same client: list the groups,
then per group fetch its committed offsets and then the watermarks of each of
its partitions, one call after another. lagdeck's refresh lists and describes
the groups, issues every group's OffsetFetch at once, asks the end offsets of
every partition in one ListOffsets call, and on top of that reads lag in
seconds and judges status (work the naive loop does not do).

Both run in the same process against the same broker (the embedded Tansu
broker unless `--bootstrap` is given), each with fresh clients. Broker
requests are counted from librdkafka's own statistics (`stats_cb`), per
request type, for every client each side uses.

    .venv/bin/python bench/lag_refresh.py [--groups 1000] [--topics 10] [--partitions 2]
        [--rtt-ms 0]

`--rtt-ms N` puts a TCP proxy that delays every byte by N/2 ms each way between
the clients and Tansu (started advertising the proxy), to show the same
refresh over a network instead of loopback; the proxy runs in its own process.

Target (issue 3): lagdeck >= 10x faster than the naive loop, under 2 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from confluent_kafka import ConsumerGroupTopicPartitions, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from collectors.config import ClusterConfig
from collectors.history import LagHistory
from collectors.lag import LagCollector


class RequestCounter:
    """Sums librdkafka's per-broker request counters over the clients of one side."""

    def __init__(self) -> None:
        self.latest: dict[str, dict[str, Any]] = {}
        self.lock = threading.Lock()

    def __call__(self, raw: str) -> None:
        stats = json.loads(raw)
        with self.lock:
            self.latest[stats["name"]] = stats

    def overrides(self) -> dict[str, Any]:
        return {"statistics.interval.ms": 100, "stats_cb": self}

    def by_type(self) -> Counter[str]:
        """Requests sent, per type where librdkafka itemises it; the rest under "other".

        librdkafka's `req` table omits some types (OffsetFetch, DescribeGroups and
        JoinGroup among them); its `tx` counter counts every request sent.
        """
        out: Counter[str] = Counter()
        with self.lock:
            for stats in self.latest.values():
                for broker in stats.get("brokers", {}).values():
                    itemised = 0
                    for kind, n in (broker.get("req") or {}).items():
                        if n:
                            out[kind] += n
                            itemised += n
                    if broker.get("tx", 0) > itemised:
                        out["other"] += broker["tx"] - itemised
        return out


def drain(poll, counter: RequestCounter, settle: float = 0.35) -> None:
    """Serve callbacks until a statistics round after the work has been seen."""
    deadline = time.monotonic() + settle
    while time.monotonic() < deadline:
        poll(0.05)


def setup(bootstrap: str, groups: int, topics: int, partitions: int, records: int,
          seed: int) -> list[str]:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    names = [f"bench-topic-{i:02d}" for i in range(topics)]
    futures = admin.create_topics([NewTopic(t, partitions, 1) for t in names],
                                  operation_timeout=30, request_timeout=30)
    for future in futures.values():
        future.result(timeout=60)
    # one record per batch: end offsets on Tansu are right only then (BROKER-NOTES.md)
    producer = Producer({"bootstrap.servers": bootstrap, "batch.num.messages": 1,
                         "linger.ms": 0})
    now_ms = int(time.time() * 1000)
    for t in names:
        for p in range(partitions):
            for i in range(records):
                producer.produce(t, b"x" * 64, partition=p,
                                 timestamp=now_ms - (records - i) * 1000)
        producer.flush(60)
    rng = random.Random(seed)
    group_ids = [f"bench-group-{i:04d}" for i in range(groups)]
    pending = []
    for i, g in enumerate(group_ids):
        topic = names[i % topics]
        tps = [TopicPartition(topic, p, rng.randint(records // 2, records))
               for p in range(partitions)]
        pending += admin.alter_consumer_group_offsets(
            [ConsumerGroupTopicPartitions(g, tps)], request_timeout=30).values()
        if len(pending) >= 200:
            for f in pending:
                f.result(timeout=60)
            pending = []
    for f in pending:
        f.result(timeout=60)
    return group_ids


def lagdeck_refresh(cluster: ClusterConfig) -> tuple[float, float, Counter[str], int, dict]:
    """A cold refresh (new clients, empty history), then a warm one (as the TUI repeats)."""
    counter = RequestCounter()
    with LagHistory.in_memory() as history, LagCollector(
        cluster, history, client_overrides=counter.overrides()
    ) as collector:
        started = time.perf_counter()
        snapshot = collector.refresh()
        cold = time.perf_counter() - started
        drain(collector.poll, counter)
        requests = counter.by_type()
        stats = dict(collector.last_stats)
        started = time.perf_counter()
        collector.refresh()
        warm = time.perf_counter() - started
    partitions = sum(len(g.partitions) for g in snapshot.groups)
    return cold, warm, requests, partitions, stats


def naive_loop(bootstrap: str) -> tuple[float, Counter[str], int]:
    """Per group: committed offsets, then each partition's watermarks, one after another."""
    counter = RequestCounter()
    conf = {"bootstrap.servers": bootstrap, **counter.overrides()}
    admin = AdminClient(conf)
    from confluent_kafka import Consumer

    consumer = Consumer({**conf, "group.id": "bench-naive-reader", "enable.auto.commit": False})
    partitions = 0
    started = time.perf_counter()
    listing = admin.list_consumer_groups(request_timeout=10).result()
    for group in sorted(g.group_id for g in listing.valid):
        offsets = admin.list_consumer_group_offsets(
            [ConsumerGroupTopicPartitions(group)], request_timeout=10)[group].result()
        for tp in offsets.topic_partitions:
            _low, high = consumer.get_watermark_offsets(
                TopicPartition(tp.topic, tp.partition), timeout=10, cached=False)
            _lag = max(0, high - tp.offset)
            partitions += 1
    elapsed = time.perf_counter() - started

    def poll_both(timeout: float) -> None:
        admin.poll(timeout)
        consumer.poll(0)

    drain(poll_both, counter)
    consumer.close()
    return elapsed, counter.by_type(), partitions


def describe(counts: Counter[str]) -> str:
    shown = {k: v for k, v in counts.items() if k not in ("ApiVersion",
                                                           "GetTelemetrySubscriptions")}
    return f"{sum(counts.values())} ({', '.join(f'{k} {v}' for k, v in sorted(shown.items()))})"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _proxy(listen: int, target: int, one_way: float) -> None:
    """Forward 127.0.0.1:listen to :target, each chunk delivered `one_way` seconds later."""

    async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        queue: asyncio.Queue = asyncio.Queue()
        loop = asyncio.get_running_loop()

        async def deliver() -> None:
            while True:
                due, data = await queue.get()
                if data is None:
                    writer.close()
                    return
                await asyncio.sleep(max(0.0, due - loop.time()))
                writer.write(data)
                await writer.drain()

        task = asyncio.create_task(deliver())
        try:
            while data := await reader.read(65536):
                queue.put_nowait((loop.time() + one_way, data))
        finally:
            queue.put_nowait((0.0, None))
            await task

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target)
        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer),
                             return_exceptions=True)

    async def serve() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", listen)
        async with server:
            await server.serve_forever()

    asyncio.run(serve())


class DelayedBroker:
    """Tansu advertising a delaying proxy in front of it."""

    def __init__(self, rtt_ms: float, log_dir: Path) -> None:
        from console.embedded import broker_binary

        self.port, proxy_port = _free_port(), _free_port()
        self.bootstrap = f"127.0.0.1:{proxy_port}"
        log = open(log_dir / "tansu.log", "wb")  # noqa: SIM115 - lives as long as the broker
        self.process = subprocess.Popen(
            [broker_binary(), "broker", "--listener-url", f"tcp://127.0.0.1:{self.port}",
             "--advertised-listener-url", f"tcp://{self.bootstrap}"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        )
        self.proxy = multiprocessing.Process(
            target=_proxy, args=(proxy_port, self.port, rtt_ms / 2000.0), daemon=True)
        self.proxy.start()
        from collectors.kafka import wait_for_port

        if not (wait_for_port("127.0.0.1", self.port, 10)
                and wait_for_port("127.0.0.1", proxy_port, 10)):
            self.stop()
            raise SystemExit("the broker or the proxy did not start")

    def stop(self) -> None:
        self.proxy.terminate()
        self.process.terminate()
        self.process.wait(10)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", help="an existing cluster (default: start Tansu)")
    parser.add_argument("--groups", type=int, default=1000)
    parser.add_argument("--topics", type=int, default=10)
    parser.add_argument("--partitions", type=int, default=2, help="partitions per topic")
    parser.add_argument("--records", type=int, default=20, help="records per partition")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each side, alternated")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--rtt-ms", type=float, default=0.0,
                        help="simulated network round trip through a delaying proxy")
    args = parser.parse_args(argv)

    broker: Any = None
    bootstrap = args.bootstrap
    log_dir = Path(tempfile.mkdtemp(prefix="lagdeck-bench-"))
    if bootstrap is None and args.rtt_ms > 0:
        broker = DelayedBroker(args.rtt_ms, log_dir)
        bootstrap = broker.bootstrap
    elif bootstrap is None:
        from console.embedded import EmbeddedBroker

        broker = EmbeddedBroker(log_dir=log_dir)
        broker.start()
        bootstrap = broker.bootstrap
    colds: list[float] = []
    warms: list[float] = []
    naives: list[float] = []
    try:
        t0 = time.perf_counter()
        setup(bootstrap, args.groups, args.topics, args.partitions, args.records, args.seed)
        where = f"{bootstrap}, {args.rtt_ms:g} ms simulated RTT" if args.rtt_ms else \
            f"{bootstrap} (loopback)"
        print(f"setup: {args.groups} groups over {args.topics} topics x {args.partitions} "
              f"partitions (each group on one topic) in {time.perf_counter() - t0:.1f}s "
              f"on {where}")
        cluster = ClusterConfig({"bootstrap.servers": bootstrap})
        for _ in range(max(1, args.repeat)):
            cold, warm, our_requests, our_parts, stats = lagdeck_refresh(cluster)
            naive, naive_requests, naive_parts = naive_loop(bootstrap)
            colds.append(cold)
            warms.append(warm)
            naives.append(naive)
    finally:
        if broker is not None:
            broker.stop()

    def spread(values: list[float]) -> str:
        return f"median {statistics.median(values):.3f}s (min {min(values):.3f}s, " \
               f"max {max(values):.3f}s, {len(values)} runs)"

    print(f"lagdeck refresh, cold: {spread(colds)} for {our_parts} group partitions")
    print(f"  exact lag-in-seconds for {stats.get('exact', 0):.0f} of "
          f"{stats.get('lagging', 0):.0f} lagging partitions ({stats.get('exact_reads', 0):.0f} "
          "records read); status and history included")
    print(f"  broker requests: {describe(our_requests)}")
    print(f"lagdeck refresh, warm (clients open, as the TUI repeats): {spread(warms)}")
    print(f"naive loop: {spread(naives)} for {naive_parts} group partitions (lag only)")
    print(f"  broker requests: {describe(naive_requests)}")
    ratio = statistics.median(naives) / statistics.median(colds)
    warm_ratio = statistics.median(naives) / statistics.median(warms)
    print(f"ratio (medians): cold refresh {ratio:.1f}x faster than the naive loop, "
          f"warm {warm_ratio:.1f}x")
    ok = ratio >= 10 and statistics.median(colds) < 2.0
    print("target (>= 10x and < 2 s):", "met" if ok else "NOT met")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
