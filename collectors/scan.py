"""Bounded reads of topics: from a start point up to end offsets snapshotted first.

A scan never chases a moving end (AKHQ's copy-forever bug, #1377): the end
offsets are read once when the scan starts, and each partition stops there.
Records are fetched in batches with `consume(n)`, which is several times
faster than `poll()` one by one, and converted to immutable `Record`s.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

from collectors.config import ClusterConfig
from collectors.kafka import consumer, translate
from collectors.snapshots import Header, Record

BATCH = 5000


@dataclass(frozen=True)
class PartitionRange:
    """Read `[start, end)` of one partition."""

    topic: str
    partition: int
    start: int
    end: int

    @property
    def size(self) -> int:
        return max(0, self.end - self.start)


def to_record(msg) -> Record:
    """Convert a confluent-kafka Message into a `Record` (headers keep raw bytes)."""
    ts_type, ts = msg.timestamp()
    raw_headers = msg.headers() or ()
    headers = tuple(Header(str(k), v) for k, v in raw_headers)
    return Record(
        topic=msg.topic(),
        partition=msg.partition(),
        offset=msg.offset(),
        timestamp_ms=ts if ts_type != 0 and ts >= 0 else None,
        key=msg.key(),
        value=msg.value(),
        headers=headers,
    )


def watermarks(
    cluster: ClusterConfig, partitions: Iterable[tuple[str, int]], timeout: float = 10.0,
    client: Consumer | None = None,
) -> dict[tuple[str, int], tuple[int, int]]:
    """Low and high watermarks per (topic, partition)."""
    own = client is None
    c = client or consumer(cluster)
    try:
        out = {}
        for topic, partition in partitions:
            try:
                out[(topic, partition)] = c.get_watermark_offsets(
                    TopicPartition(topic, partition), timeout=timeout, cached=False
                )
            except KafkaException as exc:
                raise translate(exc, f"reading offsets of {topic}[{partition}]") from None
        return out
    finally:
        if own:
            c.close()


def read_ranges(
    cluster: ClusterConfig,
    ranges: Iterable[PartitionRange],
    *,
    batch: int = BATCH,
    idle_timeout: float = 10.0,
    client: Consumer | None = None,
) -> Iterator[list[Record]]:
    """Yield batches of records of every range, stopping each partition at its end.

    Stops with what it has if nothing arrives for `idle_timeout` seconds
    (a partition whose records were deleted under it cannot hang a scan).
    """
    todo = {(r.topic, r.partition): r for r in ranges if r.size > 0}
    if not todo:
        return
    own = client is None
    c = client or consumer(cluster, **{"fetch.max.bytes": 52428800})
    try:
        c.assign([TopicPartition(t, p, r.start if r.start >= 0 else OFFSET_BEGINNING)
                  for (t, p), r in todo.items()])
        last_progress = time.monotonic()
        while todo:
            try:
                msgs = c.consume(batch, timeout=0.5)
            except KafkaException as exc:
                raise translate(exc, "reading records") from None
            out: list[Record] = []
            finished: list[tuple[str, int]] = []
            for msg in msgs:
                if msg.error():
                    continue
                key = (msg.topic(), msg.partition())
                r = todo.get(key)
                if r is None or msg.offset() >= r.end:
                    if r is not None:
                        finished.append(key)
                    continue
                out.append(to_record(msg))
                if msg.offset() >= r.end - 1:
                    finished.append(key)
            for key in finished:
                if key in todo:
                    del todo[key]
                    c.incremental_unassign([TopicPartition(*key)])
            if out:
                last_progress = time.monotonic()
                yield out
            elif time.monotonic() - last_progress > idle_timeout:
                return
    finally:
        if own:
            c.close()
