"""A redrive killed with SIGKILL at five random points loses nothing and duplicates little.

20,000 dead letters are redriven by `lagdeck dlq redrive` run as a separate
process; the test kills it with SIGKILL when its committed progress passes
a random point (plus a random few milliseconds, so kills land anywhere in a
transaction), restarts it, and repeats five times before letting it finish.

Every dead letter must reach its target. On Kafka, read_committed consumers
would see no duplicates at all; Tansu delivers records of aborted
transactions, so the batch in flight at each kill shows up twice: the
duplicates (identified by `lagdeck-redrive-id`) must stay within one
transaction's batch per kill.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest
from confluent_kafka import TopicPartition

from collectors.kafka import consumer, producer
from dlq.redrive import ALREADY_MOVED
from dlq.replay import committed_offsets
from tests.conftest import create_topics
from tests.test_dlq_support import read_topic

pytestmark = pytest.mark.integration

N = 20_000
BATCH = 1000
RATE = 20_000
KILLS = 5
PARTITIONS = 2


def _write_dead_letters(cluster, dlq: str, target: str) -> None:
    """Bulk-produce N Spring-style dead letters, then one record alone per partition (Tansu's
    end offsets are right only when a partition's last batch holds one record)."""
    p = producer(cluster, **{"linger.ms": 20})
    for i in range(N):
        if i == N - PARTITIONS:
            p.flush(30)
        p.produce(dlq, key=f"order-{i}".encode(), value=f'{{"n": {i}}}'.encode(),
                  partition=i % PARTITIONS,
                  headers=[("kafka_dlt-original-topic", target.encode()),
                           ("kafka_dlt-exception-fqcn", b"java.lang.IllegalStateException")])
        if i >= N - PARTITIONS:
            p.flush(30)
    assert p.flush(30) == 0


def _command(bootstrap: str, dlq: str) -> list[str]:
    # --rate keeps a run long enough (about a second) for the watcher to catch every kill
    # point on a busy machine; kills then land anywhere: producing, committing, starting.
    return [sys.executable, "-m", "console.cli", "-b", bootstrap, "dlq", "redrive", dlq,
            "--yes", "--json", "--batch-size", str(BATCH), "--rate", str(RATE)]


def _progress(watcher, dlq: str) -> int:
    """Dead letters whose redrive is committed (the progress group's offsets)."""
    tps = watcher.committed([TopicPartition(dlq, p) for p in range(PARTITIONS)], timeout=10)
    return sum(max(0, tp.offset) for tp in tps)


def test_sigkill_at_five_random_points_loses_nothing(cluster, bootstrap, names) -> None:
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    target, dlq = names("orders"), names("crash") + ".DLT"
    create_topics(bootstrap, target, dlq, partitions=PARTITIONS)
    _write_dead_letters(cluster, dlq, target)
    group = f"lagdeck-redrive.{dlq}"
    # one random point in each fifth of [5%, 80%] of the work, so all five kills happen
    # while there is plenty left to do
    span = (0.80 - 0.05) * N / KILLS
    points = [int(0.05 * N + k * span + rng.random() * span) for k in range(KILLS)]
    kills = []
    watcher = consumer(cluster, group=group)  # never subscribes: only reads the progress
    for point in points:
        proc = subprocess.Popen(_command(bootstrap, dlq), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        try:
            while proc.poll() is None and _progress(watcher, dlq) < point:
                time.sleep(0.002)
            assert proc.poll() is None, (
                f"seed {seed}: redrive finished before kill point {point}: "
                f"{proc.stderr.read().decode()[-500:]}")
            time.sleep(rng.random() * 0.05)  # anywhere inside the next transaction
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
            kills.append(committed_offsets(cluster, group, dlq, PARTITIONS))
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.communicate(timeout=10)
        assert proc.returncode == -signal.SIGKILL
    watcher.close()
    done = [sum(o or 0 for o in k.values()) for k in kills]
    assert done == sorted(done) and done[-1] < N, (seed, kills)

    final = subprocess.run(_command(bootstrap, dlq), capture_output=True, timeout=120)
    assert final.returncode == 0, final.stderr.decode()[-2000:]
    doc = json.loads(final.stdout)
    # records of a killed run's last batch that the broker still shows (Tansu exposes
    # aborted records) are recognised on the target and skipped, not copied again
    assert doc["failed"] == 0 and doc["redriven"] + doc["skipped"] == N - done[-1], (seed, doc)
    assert {r["reason"] for r in doc["reasons"]} <= {ALREADY_MOVED}, (seed, doc)
    assert committed_offsets(cluster, group, dlq, PARTITIONS) == {
        p: N // PARTITIONS for p in range(PARTITIONS)}

    copies = Counter(r.header("lagdeck-redrive-id").decode()
                     for r in read_topic(cluster, target, PARTITIONS, N, timeout=60))
    expected = {f"{dlq}/{i % PARTITIONS}/{i // PARTITIONS}" for i in range(N)}
    missing = expected - set(copies)
    assert not missing, f"seed {seed}: {len(missing)} dead letters lost, e.g. {sorted(missing)[:5]}"
    assert set(copies) == expected
    duplicates = sum(copies.values()) - N
    assert duplicates <= KILLS * BATCH, f"seed {seed}: {duplicates} duplicates after {KILLS} kills"
    # A kill can duplicate only records of the batch in flight when the process died: it
    # starts at the progress committed then and holds at most BATCH records. So every extra
    # copy needs its own kill whose in-flight window covers it, and the copies only one
    # kill can explain stay within one batch.
    only = Counter()
    for rid, n in copies.items():
        if n == 1:
            continue
        _, p, o = rid.rsplit("/", 2)
        owners = [k for k, c in enumerate(kills)
                  if (c[int(p)] or 0) <= int(o) < (c[int(p)] or 0) + BATCH]
        assert n - 1 <= len(owners), f"seed {seed}: {rid} x{n} not explained by kills {kills}"
        if len(owners) == 1:
            only[owners[0]] += n - 1
    assert all(n <= BATCH for n in only.values()), (seed, kills, only)

    again = subprocess.run(_command(bootstrap, dlq), capture_output=True, timeout=60)
    assert json.loads(again.stdout)["redriven"] == 0
