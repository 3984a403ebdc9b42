"""A broker that keeps its data across SIGKILL: Tansu on S3 storage (moto on loopback).

The wheel's Tansu has no PostgreSQL storage (docs/outages.md), but its `s3://`
engine is built in. Records and committed group offsets written before a
SIGKILL are there after a restart on the same port and the same bucket. End
offsets on this storage are not reliable, so records are read to a quiet
spell, never to the end offset.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import TopicPartition

from collectors.kafka import consumer, producer
from tests.conftest import create_topics, kp_commit
from tests.faults.cluster import FaultyBroker, S3Endpoint

pytestmark = pytest.mark.integration


@pytest.fixture
def durable(tmp_path: Path) -> Iterator[FaultyBroker]:
    with S3Endpoint(tmp_path) as s3, FaultyBroker(tmp_path / "logs", s3=s3) as broker:
        yield broker


def read_all(cluster, topic: str) -> list[bytes]:
    reader = consumer(cluster)
    reader.assign([TopicPartition(topic, 0, 0)])
    values: list[bytes] = []
    quiet = time.monotonic()
    try:
        while time.monotonic() - quiet < 3.0:
            msgs = reader.consume(500, timeout=0.2)
            values += [m.value() for m in msgs if m.error() is None]
            if msgs:
                quiet = time.monotonic()
    finally:
        reader.close()
    return values


def test_records_and_committed_offsets_survive_sigkill_and_restart(
        durable: FaultyBroker) -> None:
    cluster = durable.cluster()
    create_topics(durable.bootstrap, "orders.events")
    p = producer(cluster, **{"linger.ms": 5})
    for i in range(200):
        p.produce("orders.events", value=f"order-{i}".encode(), partition=0)
    assert p.flush(30) == 0
    kp_commit(durable.bootstrap, "billing", {("orders.events", 0): 120})
    before = read_all(cluster, "orders.events")
    assert len(before) == 200

    durable.kill()
    durable.restart()  # same port, same bucket

    assert read_all(cluster, "orders.events") == before
    reader = consumer(cluster, group="billing")
    try:
        committed = reader.committed([TopicPartition("orders.events", 0)], timeout=10)
    finally:
        reader.close()
    assert committed[0].offset == 120
