"""lagdeck lag refresh against the naive loop: in-process, as whole processes, and a cost curve.

The naive loop is what a user writes with confluent-kafka: list the groups,
then per group fetch its committed offsets and then the watermarks of each of
its partitions, one call after another. lagdeck's refresh lists the groups,
reads every group's committed offsets and state in batched OffsetFetch v8 /
DescribeGroups requests per coordinator (collectors/batched_groups.py; the
per-group librdkafka path with `--per-group`), asks the end offsets of every
partition in one ListOffsets call, and on top of that reads lag in seconds and
judges status (work the naive loop does not do).

Three measures per size, all in the same run against the same broker (the
embedded Tansu broker unless `--bootstrap` is given):
- in-process: one cold refresh (fresh clients, empty history) vs the naive
  loop in this process;
- whole process: `lagdeck lag --json` vs the naive loop run as its own
  `python` process (interpreter start-up and imports included on both sides);
  lagdeck runs with a lag history already present (the second run of the day);
  wall seconds and CPU seconds (user+sys of the child, from RUSAGE_CHILDREN:
  robust to other work on a shared machine), with the load average beside them;
  the children run without PYTHONDONTWRITEBYTECODE, after a warm-up run wrote
  the bytecode, as on a user's machine;
- requests per refresh by type: librdkafka's own statistics (`stats_cb`) for
  the confluent-kafka clients, plus the batched reader's own count.

Groups are spread over `--topics` topics of `--partitions` partitions; each
group commits on every partition of one topic.

    .venv/bin/python bench/lag_refresh.py                      # modest: 200 groups x 10
    .venv/bin/python bench/lag_refresh.py --groups 1000        # the issue-11 size
    .venv/bin/python bench/lag_refresh.py --curve --repeat 1   # cost curve 1k/5k/10k
    [--partitions 10] [--topics 10] [--per-group] [--rtt-ms 0]

`--rtt-ms N` puts a TCP proxy that delays every byte by N/2 ms each way between
the clients and Tansu (started advertising the proxy).

Targets (issue 11), at 1,000 groups x 10 partitions: in-process refresh >= 10x
the naive loop; `lagdeck lag --json` <= 1.0 s and >= 5x the naive process;
committed-offset step <= 10 requests on one broker. Curve: 10,000 groups <= 3 s
as a whole process, per-group cost not growing with the number of groups.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import multiprocessing
import os
import random
import resource
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


def create_world(bootstrap: str, topics: int, partitions: int, records: int) -> list[str]:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    names = [f"bench-topic-{i:02d}" for i in range(topics)]
    futures = admin.create_topics([NewTopic(t, partitions, 1) for t in names],
                                  operation_timeout=30, request_timeout=30)
    for future in futures.values():
        future.result(timeout=60)
    # one record per batch: end offsets on Tansu are right only then (docs/broker-notes.md)
    producer = Producer({"bootstrap.servers": bootstrap, "batch.num.messages": 1,
                         "linger.ms": 0})
    now_ms = int(time.time() * 1000)
    for t in names:
        for p in range(partitions):
            for i in range(records):
                producer.produce(t, b"x" * 64, partition=p,
                                 timestamp=now_ms - (records - i) * 1000)
        producer.flush(60)
    return names


def add_groups(bootstrap: str, first: int, last: int, names: list[str], partitions: int,
               records: int, seed: int) -> None:
    """Groups first..last-1 commit on every partition of one topic."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    rng = random.Random(seed + first)
    pending = []
    for i in range(first, last):
        topic = names[i % len(names)]
        tps = [TopicPartition(topic, p, rng.randint(records // 2, records))
               for p in range(partitions)]
        pending += admin.alter_consumer_group_offsets(
            [ConsumerGroupTopicPartitions(f"bench-group-{i:05d}", tps)],
            request_timeout=30).values()
        if len(pending) >= 200:
            for f in pending:
                f.result(timeout=60)
            pending = []
    for f in pending:
        f.result(timeout=60)


def lagdeck_refresh(cluster: ClusterConfig, per_group: bool, count: bool = False
                    ) -> tuple[float, float, Counter[str], int, dict, str]:
    """A cold refresh (new clients, empty history), then a warm one (as the TUI repeats).

    With `count`, requests are counted from librdkafka's statistics, whose callbacks
    cost CPU: timed runs go without them and one more run counts.
    """
    counter = RequestCounter()
    with LagHistory.in_memory() as history, LagCollector(
        cluster, history, client_overrides=counter.overrides() if count else None,
        offsets_via="per-group" if per_group else "auto",
    ) as collector:
        started = time.perf_counter()
        snapshot = collector.refresh()
        cold = time.perf_counter() - started
        if count:
            drain(collector.poll, counter)
        requests = counter.by_type()
        requests.update({f"{k} (kafka-python)": n
                         for k, n in collector.batched_requests.items()})
        stats = dict(collector.last_stats)
        started = time.perf_counter()
        collector.refresh()
        warm = time.perf_counter() - started
    partitions = sum(len(g.partitions) for g in snapshot.groups)
    via = f"{snapshot.offsets_via} ({snapshot.offsets_via_reason})"
    return cold, warm, requests, partitions, stats, via


def child_env(**extra: str) -> dict[str, str]:
    """The environment of the measured processes: PYTHONDONTWRITEBYTECODE removed, so
    bytecode is written once (by the warm-up run) and read after, as on a user's machine."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    return {**env, **extra}


def timed_child(command: list[str], env: dict[str, str], timeout: float
                ) -> tuple[float, float, float, subprocess.CompletedProcess[str]]:
    """Run `command`: wall seconds, CPU seconds of the child (user + sys, from
    RUSAGE_CHILDREN: robust to other load on the machine), the 1-minute load average
    when it ended, and the result."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return elapsed, cpu, os.getloadavg()[0], done


def lagdeck_process(bootstrap: str, state: Path, per_group: bool
                    ) -> tuple[float, float, float, int]:
    """`lagdeck lag --json` as its own process: wall s, CPU s, load, partitions printed."""
    env = child_env(LAGDECK_STATE_DIR=str(state), LAGDECK_CONFIG=str(state / "none.toml"))
    (state / "none.toml").write_text('[lag]\noffsets_via = "per-group"\n' if per_group else "")
    command = [str(Path(sys.executable).parent / "lagdeck"), "-b", bootstrap, "lag", "--json"]
    elapsed, cpu, load, done = timed_child(command, env, 300)
    if done.returncode != 0:
        raise SystemExit(f"lagdeck lag failed: {done.stderr.strip()[-500:]}")
    document = json.loads(done.stdout)
    return elapsed, cpu, load, sum(len(g["partitions"]) for g in document["groups"])


def naive_process(bootstrap: str) -> tuple[float, float, float, int]:
    """The naive loop as its own `python` process (start-up and imports in): wall s, CPU s,
    load, partitions."""
    elapsed, cpu, load, done = timed_child(
        [sys.executable, str(Path(__file__).resolve()), "--naive-only", "--bootstrap",
         bootstrap], child_env(), 600)
    if done.returncode != 0:
        raise SystemExit(f"naive process failed: {done.stderr.strip()[-500:]}")
    return elapsed, cpu, load, int(done.stdout.split()[-1])


def naive_loop(bootstrap: str, count: bool = False) -> tuple[float, Counter[str], int]:
    """Per group: committed offsets, then each partition's watermarks, one after another."""
    counter = RequestCounter()
    conf = {"bootstrap.servers": bootstrap, **(counter.overrides() if count else {})}
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

    if count:
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


def spread(values: list[float]) -> str:
    return f"median {statistics.median(values):.3f}s (min {min(values):.3f}s, " \
           f"max {max(values):.3f}s, {len(values)} runs)"


def loads(values: list[float]) -> str:
    return f"load {min(values):.1f}-{max(values):.1f}" if values else "load -"


def measure(bootstrap: str, groups: int, args: argparse.Namespace) -> dict[str, float]:
    """All measures at one size; prints them and returns the medians."""
    cluster = ClusterConfig({"bootstrap.servers": bootstrap})
    colds: list[float] = []
    warms: list[float] = []
    naives: list[float] = []
    procs: list[float] = []
    proc_cpus: list[float] = []
    proc_loads: list[float] = []
    naive_procs: list[float] = []
    naive_cpus: list[float] = []
    naive_loads: list[float] = []
    refresh_loads: list[float] = []
    state = Path(tempfile.mkdtemp(prefix="lagdeck-bench-state-"))
    # a first run fills the lag history, as any run after the first of the day finds it,
    # and writes lagdeck's bytecode (PYTHONDONTWRITEBYTECODE is removed for the children)
    lagdeck_process(bootstrap, state, args.per_group)
    # requests counted in runs of their own (statistics callbacks cost CPU)
    with_naive = groups <= args.naive_max
    _c, _w, our_requests, _p, _s, _v = lagdeck_refresh(cluster, args.per_group, count=True)
    naive_requests: Counter[str] = Counter()
    naive_parts = 0
    if with_naive:
        _n, naive_requests, _np = naive_loop(bootstrap, count=True)
        naive_process(bootstrap)  # the naive side's bytecode too
    for _ in range(max(1, args.repeat)):
        cold, warm, _r, our_parts, stats, via = lagdeck_refresh(cluster, args.per_group)
        refresh_loads.append(os.getloadavg()[0])
        proc, cpu, load, proc_parts = lagdeck_process(bootstrap, state, args.per_group)
        colds.append(cold)
        warms.append(warm)
        procs.append(proc)
        proc_cpus.append(cpu)
        proc_loads.append(load)
        if not with_naive:
            continue
        naive, _nr, naive_parts = naive_loop(bootstrap)
        naive_proc, naive_cpu, naive_load, _ = naive_process(bootstrap)
        naives.append(naive)
        naive_procs.append(naive_proc)
        naive_cpus.append(naive_cpu)
        naive_loads.append(naive_load)
    print(f"--- {groups} groups, {our_parts} group partitions; offsets via {via}")
    print(f"lagdeck refresh in-process, cold: {spread(colds)}; {loads(refresh_loads)}")
    print(f"  exact lag-in-seconds for {stats.get('exact', 0):.0f} of "
          f"{stats.get('lagging', 0):.0f} lagging partitions ({stats.get('exact_reads', 0):.0f} "
          "records read); status and history included")
    print(f"  broker requests: {describe(our_requests)}")
    committed = sum(n for k, n in our_requests.items() if k.startswith("OffsetFetch")) \
        if not args.per_group else None
    if committed is not None:
        print(f"  committed-offsets step: {committed} OffsetFetch request(s)")
    print(f"lagdeck refresh in-process, warm (clients open, as the TUI repeats): "
          f"{spread(warms)}")
    print(f"`lagdeck lag --json` process: wall {spread(procs)}; CPU (user+sys) "
          f"{spread(proc_cpus)}; {loads(proc_loads)} ({proc_parts} partitions printed)")
    out = {"cold": statistics.median(colds), "warm": statistics.median(warms),
           "proc": statistics.median(procs), "proc_cpu": statistics.median(proc_cpus),
           "proc_load": statistics.median(proc_loads), "naive": math.nan,
           "naive_proc": math.nan, "naive_cpu": math.nan}
    out["committed_requests"] = committed if committed is not None else -1
    if not with_naive:
        print(f"naive loop: not run above --naive-max {args.naive_max} groups")
        out["ratio"] = out["proc_ratio"] = out["cpu_ratio"] = math.nan
        return out
    print(f"naive loop in-process: {spread(naives)} for {naive_parts} group partitions "
          "(lag only)")
    print(f"  broker requests: {describe(naive_requests)}")
    print(f"naive loop process: wall {spread(naive_procs)}; CPU (user+sys) "
          f"{spread(naive_cpus)}; {loads(naive_loads)}")
    out["naive"] = statistics.median(naives)
    out["naive_proc"] = statistics.median(naive_procs)
    out["naive_cpu"] = statistics.median(naive_cpus)
    out["ratio"] = out["naive"] / out["cold"]
    out["proc_ratio"] = out["naive_proc"] / out["proc"]
    out["cpu_ratio"] = out["naive_cpu"] / out["proc_cpu"]
    print(f"ratios (medians): in-process cold refresh {out['ratio']:.1f}x faster than the naive "
          f"loop (warm {out['naive'] / out['warm']:.1f}x); whole process "
          f"{out['proc_ratio']:.1f}x wall, {out['cpu_ratio']:.1f}x CPU")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", help="an existing cluster (default: start Tansu)")
    parser.add_argument("--groups", default="200",
                        help="groups, or a comma-separated rising list for a cost curve "
                             "(full sizes: 1000 or 1000,5000,10000)")
    parser.add_argument("--topics", type=int, default=10)
    parser.add_argument("--partitions", type=int, default=10, help="partitions per topic")
    parser.add_argument("--records", type=int, default=20, help="records per partition")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each side, alternated")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--per-group", action="store_true",
                        help="lagdeck's per-group librdkafka path instead of the batched one")
    parser.add_argument("--rtt-ms", type=float, default=0.0,
                        help="simulated network round trip through a delaying proxy")
    parser.add_argument("--naive-max", type=int, default=10**9, metavar="N",
                        help="run the naive loop only at sizes up to N groups (it takes ~6 s "
                             "per 1,000 groups)")
    parser.add_argument("--curve", action="store_true",
                        help="the issue-11 cost curve: --groups 1000,5000,10000, the naive loop "
                             "at 1,000 only (unless --naive-max says otherwise)")
    parser.add_argument("--naive-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.curve:
        args.groups = "1000,5000,10000"
        if args.naive_max == 10**9:
            args.naive_max = 1000
    if args.naive_only:  # the naive loop as its own process (see naive_process)
        _elapsed, _requests, parts = naive_loop(args.bootstrap)
        print(parts)
        return 0
    try:
        sizes = [int(x) for x in str(args.groups).split(",")]
    except ValueError:
        parser.error(f"--groups: a number or a comma-separated list, got {args.groups!r}")
    if sizes != sorted(sizes) or sizes[0] < 1:
        parser.error("--groups: sizes must rise")

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
    results: dict[int, dict[str, float]] = {}
    try:
        t0 = time.perf_counter()
        names = create_world(bootstrap, args.topics, args.partitions, args.records)
        where = f"{bootstrap}, {args.rtt_ms:g} ms simulated RTT" if args.rtt_ms else \
            f"{bootstrap} (loopback)"
        print(f"world: {args.topics} topics x {args.partitions} partitions, {args.records} "
              f"records each, in {time.perf_counter() - t0:.1f}s on {where}; "
              f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f} (1-min average)")
        print("processes run without PYTHONDONTWRITEBYTECODE (bytecode written by a warm-up "
              "run, read after, as on a user's machine); CPU = user+sys of the child")
        have = 0
        for size in sizes:
            t0 = time.perf_counter()
            add_groups(bootstrap, have, size, names, args.partitions, args.records, args.seed)
            have = size
            print(f"setup: {size} groups (each on all partitions of one topic) in "
                  f"{time.perf_counter() - t0:.1f}s")
            results[size] = measure(bootstrap, size, args)
    finally:
        if broker is not None:
            broker.stop()

    ok = True
    if len(sizes) > 1:
        print("--- cost curve (medians; whole process: wall, CPU user+sys, load when it ended)")
        print(f"{'groups':>7} {'in-process':>11} {'proc wall':>10} {'proc CPU':>9} "
              f"{'load':>5} {'naive proc':>11} {'CPU ms/1k groups':>17}")
        for size, r in results.items():
            print(f"{size:>7} {r['cold']:>10.3f}s {r['proc']:>9.3f}s {r['proc_cpu']:>8.3f}s "
                  f"{r['proc_load']:>5.1f} {r['naive_proc']:>10.3f}s "
                  f"{r['proc_cpu'] / size * 1e6:>17.1f}")
        small, big = results[sizes[0]], results[sizes[-1]]
        growth = (big["cold"] / sizes[-1]) / (small["cold"] / sizes[0])
        cpu_growth = (big["proc_cpu"] / sizes[-1]) / (small["proc_cpu"] / sizes[0])
        print(f"cost per group at {sizes[-1]} vs {sizes[0]} groups: refresh {growth:.2f}x, "
              f"whole-process CPU {cpu_growth:.2f}x (<= 1: no worse than linear)")
        if sizes[-1] >= 10_000:
            met = big["proc"] <= 3.0 and cpu_growth <= 1.0
            print(f"target ({sizes[-1]} groups <= 3 s whole process, no worse than linear): "
                  f"{'met' if met else 'NOT met'} (wall {big['proc']:.2f}s at load "
                  f"{big['proc_load']:.1f}, CPU {big['proc_cpu']:.2f}s)")
            ok = ok and met
    r = results.get(1000)
    if r is not None and not args.per_group:
        met = (r["ratio"] >= 10 and r["proc"] <= 1.0 and r["proc_ratio"] >= 5
               and 0 < r["committed_requests"] <= 10)
        print("target at 1,000 groups (in-process >= 10x, process <= 1.0 s and >= 5x, "
              "committed offsets in <= 10 requests):", "met" if met else "NOT met",
              f"(process wall {r['proc']:.2f}s, CPU {r['proc_cpu']:.2f}s at load "
              f"{r['proc_load']:.1f}; {r['proc_ratio']:.1f}x wall, {r['cpu_ratio']:.1f}x CPU)")
        ok = ok and met
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
