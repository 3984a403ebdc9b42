"""Helpers for the DLQ tests: dead letters written the way other teams' services write them.

Spring's DeadLetterPublishingRecoverer writes binary headers (big-endian int
partition, long offset and timestamp); Kafka Connect writes UTF-8 strings.
Both are produced here with kafka-python, an independent client, one record
per batch so end offsets are right on Tansu.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Iterable

from confluent_kafka import TopicPartition

from collectors.config import ClusterConfig
from collectors.kafka import consumer
from collectors.scan import to_record
from collectors.snapshots import Record
from tests.conftest import kp_producer


def spring_headers(topic: str, partition: int, offset: int, timestamp_ms: int, group: str,
                   error_class: str, message: str) -> list[tuple[str, bytes]]:
    return [
        ("kafka_dlt-original-topic", topic.encode()),
        ("kafka_dlt-original-partition", struct.pack(">i", partition)),
        ("kafka_dlt-original-offset", struct.pack(">q", offset)),
        ("kafka_dlt-original-timestamp", struct.pack(">q", timestamp_ms)),
        ("kafka_dlt-original-timestamp-type", b"CreateTime"),
        ("kafka_dlt-original-consumer-group", group.encode()),
        ("kafka_dlt-exception-fqcn", error_class.encode()),
        ("kafka_dlt-exception-message", message.encode()),
        ("kafka_dlt-exception-stacktrace", f"{error_class}: {message}\n\tat Handler".encode()),
    ]


def connect_headers(topic: str, partition: int, offset: int, connector: str,
                    error_class: str, message: str) -> list[tuple[str, bytes]]:
    return [
        ("__connect.errors.topic", topic.encode()),
        ("__connect.errors.partition", str(partition).encode()),
        ("__connect.errors.offset", str(offset).encode()),
        ("__connect.errors.connector.name", connector.encode()),
        ("__connect.errors.task.id", b"0"),
        ("__connect.errors.stage", b"VALUE_CONVERTER"),
        ("__connect.errors.class.name", b"org.apache.kafka.connect.json.JsonConverter"),
        ("__connect.errors.exception.class.name", error_class.encode()),
        ("__connect.errors.exception.message", message.encode()),
        ("__connect.errors.exception.stacktrace", f"{error_class}: {message}".encode()),
    ]


def produce(bootstrap: str, topic: str,
            records: Iterable[tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]],
            partition: int | None = None) -> int:
    """Send (key, value, headers) records with kafka-python, one per batch; returns the count."""
    producer = kp_producer(bootstrap)
    n = 0
    try:
        for key, value, headers in records:
            producer.send(topic, key=key, value=value, headers=headers, partition=partition)
            n += 1
        producer.flush(timeout=30)
    finally:
        producer.close(timeout=5)
    return n


def spring_dead_letters(original: str, count: int, *, group: str = "payment-service",
                        error_class: str = "java.lang.IllegalStateException",
                        start: int = 0) -> list[tuple[bytes, bytes, list[tuple[str, bytes]]]]:
    now = int(time.time() * 1000)
    return [(f"order-{i}".encode(), f'{{"order": {i}}}'.encode(),
             spring_headers(original, 0, 1000 + i, now - 60_000 + i, group, error_class,
                            f"card declined for order-{i}"))
            for i in range(start, start + count)]


def read_topic(cluster: ClusterConfig, topic: str, partitions: int, expected: int,
               timeout: float = 30.0) -> list[Record]:
    """Every record of `topic` from the beginning, waiting until `expected` have arrived.

    Reads past the count target for a short grace so extra records (duplicates) show up.
    """
    c = consumer(cluster, **{"fetch.max.bytes": 52428800})
    out: list[Record] = []
    try:
        c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        deadline = time.monotonic() + timeout
        quiet_since = None
        while time.monotonic() < deadline:
            msgs = c.consume(10000, timeout=0.1)
            got = [m for m in msgs if not m.error()]
            out.extend(to_record(m) for m in got)
            if len(out) >= expected:
                if got:
                    quiet_since = None
                elif quiet_since is None:
                    quiet_since = time.monotonic()
                elif time.monotonic() - quiet_since > 0.3:
                    break
    finally:
        c.close()
    return out
