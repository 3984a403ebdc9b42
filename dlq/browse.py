"""Paged reading of dead-letter topics: a page at a time, never the whole topic.

`read_page` is what `lagdeck dlq show` and the TUI's DLQ browser call: it
reads at most `limit` records from each partition starting at a cursor,
merges them in time order (keeping each partition's own order), decodes
their envelopes and returns the cursor of the next page. Memory is bounded by
`limit x partitions` records whatever the depth of the topic.

Pages are read with `collectors.scan.iter_bounded`, the bounded reader
shared with discovery, replay and redrive: it stops each partition at an end
offset snapshotted by the caller and also finishes a partition whose last
offsets are transaction markers (never delivered as messages), by watching
the consumer position.
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

from confluent_kafka import Consumer

from collectors.config import ClusterConfig
from collectors.errors import InvalidValue, NotFoundError, UsageError
from collectors.kafka import DEFAULT_TIMEOUT, consumer
from collectors.scan import READER_CONF, count_records, iter_bounded, to_record, watermarks
from collectors.snapshots import Record
from collectors.topics import list_topics
from tracing.deadletter import DeadLetterEnvelope, decode_envelope
from tracing.frames import Payload, PayloadDecoder


@dataclass(frozen=True)
class DeadLetter:
    """One record of a dead-letter topic with its decoded envelope."""

    record: Record
    envelope: DeadLetterEnvelope
    #: the decoded value (None when the page was read without decoding)
    payload: Payload | None = None
    #: the key decoded, when it is a Schema Registry frame
    key_payload: Payload | None = None


@dataclass(frozen=True)
class PageCursor:
    """Next offset to read per partition: an opaque bookmark for the next page."""

    positions: tuple[tuple[int, int], ...]

    def as_dict(self) -> dict[int, int]:
        return dict(self.positions)


@dataclass(frozen=True)
class RecordAt:
    """Open a page at one record: `partition` from `offset`, every other partition
    from its end, so the record is the first on the page whatever the topic's
    partition count (a timeline jumping to a dead letter it found)."""

    partition: int
    offset: int


@dataclass(frozen=True)
class DlqPage:
    """One page of decoded dead letters, oldest first.

    `next` is None when the page reached the end offsets snapshotted when it
    was read; `depth` is the number of records in the topic, `remaining`
    those after this page: data records only (transaction markers are not
    counted) when `exact`, offset spans for topics beyond `EXACT_COUNT_LIMIT`.
    """

    topic: str
    entries: tuple[DeadLetter, ...]
    start: PageCursor
    next: PageCursor | None
    depth: int
    remaining: int
    exact: bool = True


#: Up to this many offsets, depth and "remaining" are exact record counts (transaction
#: markers excluded), found by reading; beyond it they are offset spans, marked inexact.
EXACT_COUNT_LIMIT = 200_000


def parse_offsets(text: str) -> int | dict[int, int]:
    """`--offset` as typed: `N` (one partition) or `P:O,P:O,...` (what `dlq show` prints
    as the next page); negative numbers and malformed pairs are usage errors."""
    raw = text.strip()
    if re.fullmatch(r"\d+", raw):
        return int(raw)
    out: dict[int, int] = {}
    for part in raw.split(","):
        match = re.fullmatch(r"\s*(\d+)\s*:\s*(\d+)\s*", part)
        if not match:
            raise InvalidValue(
                "offset", f"{text!r}: expected OFFSET or PARTITION:OFFSET,... such as 0:1,1:0,2:1 "
                "(offsets are 0 or more)")
        partition, offset = int(match.group(1)), int(match.group(2))
        if partition in out:
            raise InvalidValue("offset", f"{text!r}: partition {partition} is given twice")
        out[partition] = offset
    return out


def format_offsets(cursor: PageCursor) -> str:
    """A cursor as `--offset` takes it: `0:1,1:0,2:1`."""
    return ",".join(f"{p}:{o}" for p, o in cursor.positions)



def topic_partitions(cluster: ClusterConfig, topic: str,
                     timeout: float = DEFAULT_TIMEOUT) -> int:
    """The partition count of `topic`, or `NotFoundError` (never auto-creates it)."""
    count = list_topics(cluster, timeout=timeout, include_internal=True).get(topic)
    if not count:
        raise NotFoundError(f"topic {topic!r} does not exist")
    return count



def decode_dead_letter(record: Record, payloads: PayloadDecoder) -> DeadLetter:
    """A record with its envelope and decoded payload (never raises on record content)."""
    headers = [(h.key, h.value) for h in record.headers]
    key_payload = None
    if record.key and record.key[0] == 0:
        key_payload = payloads.decode(record.key, headers, record.topic, is_key=True)
    return DeadLetter(record, decode_envelope(record),
                      payloads.decode(record.value, headers, record.topic), key_payload)


def read_page(cluster: ClusterConfig, topic: str, *,
              start: PageCursor | RecordAt | Mapping[int, int] | int | None = None,
              limit: int = 50, timeout: float = DEFAULT_TIMEOUT,
              payloads: PayloadDecoder | None = None, strict: bool = False) -> DlqPage:
    """One page of `topic` from `start` (a cursor, one record, {partition: offset}, an
    offset of a one-partition topic, or None for the beginning), at most `limit` dead
    letters.

    With `strict` (what an operator typed), a partition the topic does not have is
    an error; otherwise such positions are ignored. Values (and Schema Registry
    framed keys) are decoded with `payloads` (a decoder without a registry when None)."""
    if limit < 1:
        raise UsageError(f"page size must be at least 1, got {limit}")
    partitions = topic_partitions(cluster, topic, timeout)
    client = consumer(cluster, **READER_CONF)
    try:
        marks = watermarks(cluster, [(topic, p) for p in range(partitions)], timeout, client)
        if isinstance(start, PageCursor):
            wanted = start.as_dict()
        elif isinstance(start, RecordAt):
            if strict and not 0 <= start.partition < partitions:
                raise UsageError(f"{topic} has no partition {start.partition} "
                                 f"(it has {partitions})")
            wanted = {p: start.offset if p == start.partition else hi
                      for (_, p), (_, hi) in marks.items()}
        elif isinstance(start, Mapping):
            wanted = {int(p): int(o) for p, o in start.items()}
            unknown = sorted(p for p in wanted if not 0 <= p < partitions)
            if unknown and strict:
                raise UsageError(f"{topic} has no partition {unknown[0]} (it has {partitions})")
        elif isinstance(start, int):
            if partitions > 1:
                raise UsageError(
                    f"one offset for {topic}, which has {partitions} partitions: give one per "
                    "partition, e.g. " + ",".join(f"{p}:{start}" for p in range(partitions)))
            wanted = {0: start}
        else:
            wanted = {}
        if any(o < 0 for o in wanted.values()):
            raise UsageError("offsets must be 0 or more")
        pos = {p: min(max(wanted.get(p, lo), lo), hi) for (_, p), (lo, hi) in marks.items()}
        ends = {(topic, p): min(pos[p] + limit, marks[(topic, p)][1]) for p in pos}
        per_partition: dict[int, list[Record]] = {p: [] for p in pos}
        for msgs in iter_bounded(client, ends, {(topic, p): o for p, o in pos.items()},
                                 batch=limit * max(1, len(pos)), idle_timeout=timeout):
            for msg in msgs:
                per_partition[msg.partition()].append(to_record(msg))
    finally:
        client.close()
    merged = heapq.merge(*(sorted(rs, key=lambda r: r.offset) for rs in per_partition.values()),
                         key=lambda r: (r.timestamp_ms or 0, r.partition))
    entries: list[DeadLetter] = []
    next_pos = dict(pos)
    decoder = payloads if payloads is not None else PayloadDecoder(None)
    for record in merged:
        if len(entries) >= limit:
            break
        entries.append(decode_dead_letter(record, decoder))
        next_pos[record.partition] = record.offset + 1
    for p, records in per_partition.items():
        # a partition whose whole read window made it onto the page moves to the window end
        # (this also steps over trailing transaction markers)
        if all(next_pos[p] > r.offset for r in records):
            next_pos[p] = max(next_pos[p], ends[(topic, p)])
    span = sum(hi - lo for lo, hi in marks.values())
    done = all(o >= marks[(topic, p)][1] for p, o in next_pos.items())
    if span <= EXACT_COUNT_LIMIT:
        with _reader(cluster) as counter:
            offsets = count_records(counter, marks, timeout=timeout)
        depth = sum(len(v) for v in offsets.values())
        remaining = sum(1 for (_, p), v in offsets.items() for o in v if o >= next_pos[p])
    else:
        depth = span
        remaining = sum(max(0, marks[(topic, p)][1] - o) for p, o in next_pos.items())
    return DlqPage(
        topic=topic,
        entries=tuple(entries),
        start=PageCursor(tuple(sorted(pos.items()))),
        next=None if done or (span <= EXACT_COUNT_LIMIT and remaining == 0)
        else PageCursor(tuple(sorted(next_pos.items()))),
        depth=depth,
        remaining=remaining,
        exact=span <= EXACT_COUNT_LIMIT,
    )


@contextmanager
def _reader(cluster: ClusterConfig) -> Iterator[Consumer]:
    client = consumer(cluster, **READER_CONF)
    try:
        yield client
    finally:
        client.close()
