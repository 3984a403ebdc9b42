"""The demo world, checked from outside with kafka-python (an independent client)."""

from __future__ import annotations

import json
import os
import random
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from console.demo import events as ev
from tests.conftest import wait_until

TOPICS = [ev.ORDERS, ev.INVENTORY, ev.PAYMENTS, ev.PAYMENTS_DLT, ev.NOTIFICATIONS]


def test_seed_makes_orders_and_outcomes_reproducible() -> None:
    a, b = random.Random(7), random.Random(7)
    orders_a = [ev.order_id(a) for _ in range(50)]
    assert orders_a == [ev.order_id(b) for _ in range(50)]
    assert all(o.startswith("ord_") and len(o) == 9 for o in orders_a)
    outcomes = [ev.payment_outcome(7, o) for o in orders_a]
    assert outcomes == [ev.payment_outcome(7, o) for o in orders_a]
    assert {o.kind for o in outcomes} <= {"captured", "declined", "error"}
    other = [ev.order_id(random.Random(8)) for _ in range(1)]
    assert other[0] != orders_a[0]


def test_traceparent_is_valid_w3c() -> None:
    tp = ev.traceparent(ev.trace_id_of(7, "ord_x"), 0xABC)
    version, trace_id, span_id, flags = tp.split("-")
    assert (version, flags, len(trace_id), span_id) == ("00", "01", 32, "0000000000000abc")
    assert int(trace_id, 16) == ev.trace_id_of(7, "ord_x")


def _consume_all(bootstrap: str) -> dict[str, list]:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             enable_auto_commit=False, consumer_timeout_ms=1000)
    consumer.assign([TopicPartition(t, p) for t in TOPICS for p in range(ev.TOPICS[t])])
    seen: dict[str, list] = {t: [] for t in TOPICS}
    for msg in consumer:
        seen[msg.topic].append(msg)
    consumer.close()
    return seen


@pytest.mark.integration
def test_headless_demo_runs_the_pipeline(tmp_path: Path) -> None:
    from kafka import KafkaAdminClient

    env = {**os.environ, "LAGDECK_STATE_DIR": str(tmp_path)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "console.cli", "demo", "--headless", "--duration", "20",
         "--seed", "7"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        assert line.startswith("bootstrap: 127.0.0.1:"), line
        bootstrap = line.split()[1]

        admin = KafkaAdminClient(bootstrap_servers=bootstrap)

        def committed() -> dict[str, dict] | None:
            out = {g: admin.list_group_offsets(g)[g] for g in ev.GROUPS}
            return out if all(out.values()) else None

        offsets = wait_until(committed, timeout=10, every=0.5, message="commits of every group")
        assert isinstance(offsets, dict)
        assert {tp.topic for tp in offsets[ev.ANALYTICS_GROUP]} == {ev.ORDERS, ev.PAYMENTS}
        admin.close()

        def enough() -> dict[str, list] | None:
            seen = _consume_all(bootstrap)
            return seen if all(seen.values()) else None

        seen = wait_until(enough, timeout=16, every=1.0, message="events on all five topics")
        assert isinstance(seen, dict)

        orders = seen[ev.ORDERS]
        first = dict(orders[0].headers)
        assert first["correlation-id"].decode() == orders[0].key.decode()
        assert first["traceparent"].startswith(b"00-")
        assert json.loads(orders[0].value)["event"] == "OrderPlaced"
        assert all(b"X-Correlation-ID" in dict(m.headers) or "X-Correlation-ID" in dict(m.headers)
                   for m in seen[ev.INVENTORY])
        assert all("traceparent" in dict(m.headers) for t in TOPICS for m in seen[t])
        # notification-service puts the order id only in the payload
        note = seen[ev.NOTIFICATIONS][0]
        assert "correlation-id" not in dict(note.headers)
        assert json.loads(note.value)["orderId"].startswith("ord_")

        # Spring DeadLetterPublishingRecoverer encoding, decoded independently here
        dead = seen[ev.PAYMENTS_DLT][0]
        h = dict(dead.headers)
        assert h["kafka_dlt-original-topic"] == ev.INVENTORY.encode()
        (partition,) = struct.unpack(">i", h["kafka_dlt-original-partition"])
        (offset,) = struct.unpack(">q", h["kafka_dlt-original-offset"])
        (stamp,) = struct.unpack(">q", h["kafka_dlt-original-timestamp"])
        assert len(h["kafka_dlt-original-partition"]) == 4
        assert len(h["kafka_dlt-original-offset"]) == 8
        assert h["kafka_dlt-original-consumer-group"] == ev.PAYMENT_GROUP.encode()
        assert h["kafka_dlt-exception-fqcn"].decode() in {e[0] for e in ev.PAYMENT_ERRORS}
        original = [m for m in seen[ev.INVENTORY] if m.partition == partition
                    and m.offset == offset]
        assert original and original[0].key == dead.key and original[0].timestamp == stamp

        assert proc.wait(timeout=30) == 0
        assert "Traceback" not in (proc.stderr.read() if proc.stderr else "")
    finally:
        if proc.poll() is None:
            proc.kill()
