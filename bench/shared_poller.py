"""Broker requests per minute: consoles polling the groups vs consoles reading snapshots.

Side A: `--consoles` consoles each poll every group themselves (a
`LagCollector.refresh()` every `--interval` seconds, as the TUI does).
Side B: one watcher polls and publishes one snapshot per group to the
snapshot topic every `--interval` seconds (`LagCollector` + `SnapshotPublisher`,
what `lagdeck watch --publish` runs), and the same number of consoles read
the topic (`SnapshotReader.read()`, what `--from-snapshots` runs) every
interval. Both sides run for `--duration` seconds in this process, against
the same broker (the embedded Tansu broker unless `--bootstrap` is given).

Requests are counted from librdkafka's own statistics (`stats_cb`, per broker
`tx`: every request sent, whatever its type) over every client of each side,
plus the batched reader's own count of what it sent through kafka-python
(OffsetFetch, DescribeGroups, FindCoordinator: librdkafka never sees those),
then scaled to one minute. Requests per refresh and per read are printed too,
since a console whose refresh overruns the interval makes fewer refreshes
(which flatters side A, never side B).

    .venv/bin/python bench/shared_poller.py                       # modest: 5 consoles, 300 groups
    .venv/bin/python bench/shared_poller.py --consoles 20 --groups 1000 --duration 60
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from collectors.config import ClusterConfig
from collectors.history import LagHistory
from collectors.lag import LagCollector
from collectors.snapshot_topic import SnapshotPublisher, SnapshotReader

sys.path.insert(0, str(Path(__file__).resolve().parent))

from lag_refresh import RequestCounter, add_groups, create_world
from tui_cpu import cpu_seconds


class Requests(RequestCounter):
    """Requests sent by a set of clients, from their latest statistics (cumulative):
    lag_refresh's counter, whose `by_type` puts what librdkafka does not itemise under
    "other", plus the requests the collectors' batched reader sent through kafka-python
    (committed offsets, group descriptions, coordinators), which librdkafka never sees."""

    def __init__(self) -> None:
        super().__init__()
        self.batched: Counter[str] = Counter()

    def add_batched(self, requests: Mapping[str, int]) -> None:
        with self.lock:
            self.batched.update({f"{k} (kafka-python)": n for k, n in requests.items()})

    def totals(self) -> tuple[int, Counter[str]]:
        by_type = self.by_type()
        with self.lock:
            by_type.update(self.batched)
        return sum(by_type.values()), by_type


def every(interval: float, stop: threading.Event, work, done: list[float]) -> None:
    """Run `work` every `interval` seconds (from its start) until `stop`."""
    while not stop.is_set():
        started = time.monotonic()
        work()
        done.append(time.monotonic() - started)
        stop.wait(max(0.0, interval - (time.monotonic() - started)))


#: CPU seconds per minute of one side: (the broker's process tree, this process = the clients)
CPU: list[tuple[float, float]] = []


def own_cpu() -> float:
    times = os.times()
    return times.user + times.system


def run_side(workers: list, interval: float, duration: float, counters: list[Requests],
             pollers: list, broker_pid: int | None = None,
             ) -> tuple[list[float], float, list[list[float]]]:
    """Run every worker on its own thread for `duration`; (requests/min per counter,
    seconds, times). The side's CPU per minute (broker, clients) goes to `CPU`: since
    batched reads, one request can cost the broker a lot, so requests alone mislead."""
    stop = threading.Event()
    times: list[list[float]] = [[] for _ in workers]
    threads = [threading.Thread(target=every, args=(interval, stop, w, times[i]), daemon=True)
               for i, w in enumerate(workers)]
    bases = [c.totals()[0] for c in counters]
    broker_base = cpu_seconds(broker_pid) if broker_pid else 0.0
    own_base = own_cpu()
    started = time.monotonic()
    for t in threads:
        t.start()
    stop.wait(duration)
    stop.set()
    for t in threads:
        t.join(120)
    elapsed = time.monotonic() - started
    CPU.append(((cpu_seconds(broker_pid) - broker_base) * 60.0 / elapsed if broker_pid else 0.0,
                (own_cpu() - own_base) * 60.0 / elapsed))
    deadline = time.monotonic() + 0.6  # one more statistics round
    while time.monotonic() < deadline:
        for poll in pollers:
            poll(0.05)
    rates = [(c.totals()[0] - base) * 60.0 / elapsed for c, base in zip(counters, bases,
                                                                         strict=True)]
    return rates, elapsed, times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", help="an existing cluster (default: start Tansu)")
    parser.add_argument("--groups", type=int, default=300)
    parser.add_argument("--consoles", type=int, default=5)
    parser.add_argument("--topics", type=int, default=10)
    parser.add_argument("--partitions", type=int, default=2)
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between refreshes")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per side")
    args = parser.parse_args(argv)

    broker: Any = None
    bootstrap = args.bootstrap
    if bootstrap is None:
        from console.embedded import EmbeddedBroker

        broker = EmbeddedBroker(log_dir=Path(tempfile.mkdtemp(prefix="lagdeck-bench-")))
        broker.start()
        bootstrap = broker.bootstrap
    broker_pid = broker.pid if broker is not None else None
    cluster = ClusterConfig({"bootstrap.servers": bootstrap})
    try:
        t0 = time.perf_counter()
        # lag_refresh's world: topics of 20 records a partition, groups committed on
        # every partition of one topic at random offsets
        add_groups(bootstrap, 0, args.groups,
                   create_world(bootstrap, args.topics, args.partitions, 20),
                   args.partitions, 20, seed=7)
        print(f"setup: {args.groups} groups x {args.partitions} partitions in "
              f"{time.perf_counter() - t0:.1f}s on {bootstrap}; {args.consoles} consoles, "
              f"refresh every {args.interval:g}s, {args.duration:g}s per side")
        regex = "^bench-group-"

        # side A: every console polls
        direct = Requests()
        histories = [LagHistory.in_memory() for _ in range(args.consoles)]
        collectors = [LagCollector(cluster, h, client_overrides=direct.overrides())
                      for h in histories]
        try:
            (per_min_a,), elapsed_a, times_a = run_side(
                [lambda c=c: (c.refresh(regex), direct.add_batched(c.batched_requests))
                 for c in collectors], args.interval,
                args.duration, [direct], [c.poll for c in collectors], broker_pid)
        finally:
            for c in collectors:
                c.close()
            for h in histories:
                h.close()
        refreshes_a = sum(len(t) for t in times_a)

        # side B: one watcher publishes, every console reads the snapshots
        shared, viewers = Requests(), Requests()
        topic = "_lagdeck.bench-lag"
        history = LagHistory.in_memory()
        watcher = LagCollector(cluster, history, client_overrides=shared.overrides())
        publisher = SnapshotPublisher(cluster, topic, interval=args.interval,
                                      client_overrides=shared.overrides())

        def publish_round() -> None:
            started = time.monotonic()
            snapshot = watcher.refresh(regex)
            shared.add_batched(watcher.batched_requests)
            publisher.publish(snapshot, owns=lambda g: True,
                              refresh_seconds=time.monotonic() - started)

        publish_round()  # the topic holds every group before the consoles start
        readers = [SnapshotReader(cluster, topic, client_overrides=viewers.overrides())
                   for _ in range(args.consoles)]
        try:
            for r in readers:  # the first read of each console: from the beginning
                r.read()
            (per_min_w, per_min_v), _, times_b = run_side(
                [publish_round, *[r.read for r in readers]], args.interval, args.duration,
                [shared, viewers], [watcher.poll, *[r.poll for r in readers],
                         lambda t: publisher._producer.poll(t)], broker_pid)
            last = readers[0].read()
        finally:
            for r in readers:
                r.close()
            publisher.close()
            watcher.close()
            history.close()
        reads_b = sum(len(t) for t in times_b[1:])
        assert len(last.snapshot.groups) == args.groups, len(last.snapshot.groups)
    finally:
        if broker is not None:
            broker.stop()

    def mean(values: list[float]) -> float:
        return sum(values) / len(values) if values else 0.0

    print(f"A: {args.consoles} consoles polling directly: {per_min_a:,.0f} requests/min "
          f"({refreshes_a} refreshes, {mean([x for t in times_a for x in t]):.2f}s each)")
    read_time = mean([x for t in times_b[1:] for x in t])
    per_min_b = per_min_w + per_min_v
    print(f"B: 1 watcher publishing + {args.consoles} consoles reading snapshots: "
          f"{per_min_b:,.0f} requests/min ({len(times_b[0])} publishing rounds "
          f"{mean(times_b[0]):.2f}s each, {reads_b} reads {read_time:.3f}s each): watcher "
          f"{per_min_w:,.0f}, consoles {per_min_v:,.0f} ({per_min_v / args.consoles:,.0f} "
          "each)")
    print(f"ratio: direct polling sends {per_min_a / max(per_min_b, 1):.1f}x the requests "
          "of shared snapshots")
    (broker_a, clients_a), (broker_b, clients_b) = CPU
    if broker_pid:
        print(f"broker CPU: {broker_a:.2f} s/min direct, {broker_b:.2f} s/min shared "
              f"({broker_a / max(broker_b, 1e-9):.1f}x); clients (this process): "
              f"{clients_a:.2f} vs {clients_b:.2f} s/min")
    per_refresh = per_min_a * elapsed_a / 60.0 / max(refreshes_a, 1)
    if mean([x for t in times_a for x in t]) > args.interval:
        kept = args.consoles * 60.0 / args.interval * per_refresh
        print(f"  the direct consoles could not keep their {args.interval:g}s interval (the "
              f"broker was saturated): {per_refresh:,.0f} requests per refresh; at their "
              f"interval they would send {kept:,.0f}/min, {kept / max(per_min_b, 1):.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
