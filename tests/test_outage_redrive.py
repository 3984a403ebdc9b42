"""A redrive whose broker goes away mid-run: it stops, tells the truth, and a rerun loses nothing.

The run must stop on its own (no hang), exit 1 with one line on stderr, report
only committed records on stdout (summary = audit), keep the operator's
`--batch-size`, and a rerun after the broker is back must deliver every dead
letter, counted by `lagdeck-redrive-id`.

Two faults: SIGKILL of the broker (in-memory storage: what was committed is
gone with it, so this one checks the stop and the report), and a crash as the
network sees it (every connection cut, then nothing answers, through the
fault proxy) on a broker whose data stays, for the rerun. Tansu on S3 storage
keeps data across SIGKILL, but its end offsets come out wrong there, and
redrive is bounded by end offsets (docs/outages.md).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from confluent_kafka import TopicPartition

from collectors.kafka import consumer, producer
from dlq.audit import read_audit
from tests.conftest import create_topics, wait_until
from tests.faults.cluster import FaultyBroker

pytestmark = pytest.mark.integration

N = 2400
BATCH = 200
RATE = 800


def write_dead_letters(cluster, dlq: str, target: str) -> None:
    """Bulk, then one record alone (Tansu's end offsets are right when the last batch of a
    partition holds one record)."""
    p = producer(cluster, **{"linger.ms": 20})
    for i in range(N):
        if i == N - 1:
            assert p.flush(30) == 0
        p.produce(dlq, key=f"order-{i}".encode(), value=f'{{"n": {i}}}'.encode(), partition=0,
                  headers=[("kafka_dlt-original-topic", target.encode()),
                           ("kafka_dlt-exception-fqcn", b"java.lang.IllegalStateException")])
    assert p.flush(30) == 0


def redrive_ids(cluster, topic: str) -> Counter:
    """Every `lagdeck-redrive-id` in `topic`, read until a quiet spell (not to the end
    offset: records of aborted transactions are delivered on Tansu)."""
    reader = consumer(cluster)
    reader.assign([TopicPartition(topic, 0, 0)])
    ids: Counter = Counter()
    quiet = time.monotonic()
    try:
        while time.monotonic() - quiet < 3.0:
            msgs = reader.consume(1000, timeout=0.2)
            for m in msgs:
                if m.error() is None:
                    ids[dict(m.headers() or [])["lagdeck-redrive-id"].decode()] += 1
            if msgs:
                quiet = time.monotonic()
    finally:
        reader.close()
    return ids


def command(bootstrap: str, dlq: str) -> list[str]:
    return [sys.executable, "-m", "console.cli", "-b", bootstrap, "dlq", "redrive", dlq,
            "--yes", "--json", "--batch-size", str(BATCH), "--rate", str(RATE)]


def start_and_break(broker: FaultyBroker, dlq: str, target: str, fault) -> tuple[dict, str, int]:
    """Run the redrive, apply `fault` after three committed batches; (summary, stderr,
    committed progress seen before the fault)."""
    cluster = broker.cluster()
    create_topics(broker.bootstrap, target, dlq)
    write_dead_letters(cluster, dlq, target)
    watcher = consumer(cluster, group=f"lagdeck-redrive.{dlq}")  # reads the progress only
    proc = subprocess.Popen(command(broker.bootstrap, dlq), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=Path(__file__).parent.parent)
    try:
        seen = wait_until(
            lambda: max(0, watcher.committed([TopicPartition(dlq, 0)], timeout=5)[0].offset)
            >= 3 * BATCH and watcher.committed([TopicPartition(dlq, 0)], timeout=5)[0].offset,
            60, every=0.02, message="three committed batches")
        watcher.close()
        fault()
        out, err = proc.communicate(timeout=120)  # it must stop on its own
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 1, err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("lagdeck: error")]
    assert len(errors) == 1 and errors[0].startswith("lagdeck: error: redrive of"), err
    summary = json.loads(out)
    assert summary["aborted"] is True and summary["error"] in err
    assert 3 * BATCH <= seen <= summary["redriven"] < N, (seen, summary["redriven"])

    after = [e for e in read_audit() if e["event"] == "after"]
    assert after[-1]["outcome"] == "error"
    assert after[-1]["counts"]["redriven"] == summary["redriven"]  # committed only, both
    assert after[-1]["parameters"]["batch_size"] == BATCH  # never silently replaced
    return summary, err, int(seen)


def test_broker_killed_mid_redrive_stops_and_reports_committed_only(
        killable: FaultyBroker) -> None:
    start_and_break(killable, "orders.events-dlt", "orders.events", killable.kill)


def test_broker_crash_mid_redrive_then_rerun_loses_nothing(proxied: FaultyBroker) -> None:
    dlq, target = "orders.events-dlt", "orders.events"

    def crash() -> None:  # as clients see a crash: connections reset, then no answer
        proxied.proxy.blackhole()
        proxied.proxy.cut()

    summary, _, _ = start_and_break(proxied, dlq, target, crash)
    proxied.proxy.heal()
    cluster = proxied.cluster()
    reader = consumer(cluster, group=f"lagdeck-redrive.{dlq}")
    committed = reader.committed([TopicPartition(dlq, 0)], timeout=10)[0].offset
    reader.close()
    assert committed == summary["redriven"], "the summary must equal what was committed"

    rerun = subprocess.run(command(proxied.bootstrap, dlq), capture_output=True, text=True,
                           timeout=180, cwd=Path(__file__).parent.parent)
    assert rerun.returncode == 0, rerun.stderr
    doc = json.loads(rerun.stdout)
    # the rerun moves the rest; records of the rolled-back batch that Tansu still shows on
    # the target (it delivers aborted records) are recognised by their id and skipped
    assert doc["failed"] == 0 and doc["redriven"] + doc["skipped"] == N - committed, doc

    copies = redrive_ids(cluster, target)
    expected = {f"{dlq}/0/{i}" for i in range(N)}
    missing = expected - set(copies)
    assert not missing, f"{len(missing)} dead letters lost, e.g. {sorted(missing)[:5]}"
    assert set(copies) == expected
    # Tansu delivers records of aborted transactions: the batch in flight may appear twice
    assert sum(copies.values()) - N <= BATCH
