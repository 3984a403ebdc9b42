"""Paged reading of dead-letter topics: a page at a time, never the whole topic.

`read_page` is what `lagdeck dlq show` and the TUI's DLQ browser call: it
reads at most `limit` records from each partition starting at a cursor,
merges them in time order (keeping each partition's own order), decodes
their envelopes and returns the cursor of the next page. Memory is bounded by
`limit x partitions` records whatever the depth of the topic.

`iter_bounded` is the raw bounded reader shared with discovery and redrive:
it stops each partition at an end offset snapshotted by the caller and also
finishes a partition whose last offsets are transaction markers (which are
never delivered as messages), by watching the consumer position.
"""

from __future__ import annotations

import heapq
import re
import time
from collections.abc import Generator, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaException, TopicPartition

from collectors.config import ClusterConfig
from collectors.errors import InvalidValue, NotFoundError, UsageError
from collectors.kafka import DEFAULT_TIMEOUT, ConsumedMessage, consumed, consumer, translate
from collectors.scan import to_record, watermarks
from collectors.snapshots import Record
from collectors.topics import list_topics
from tracing.deadletter import DeadLetterEnvelope, decode_envelope
from tracing.frames import Payload, PayloadDecoder

#: Big fetches: scans are throughput-bound, not latency-bound.
READER_CONF: dict[str, Any] = {"fetch.max.bytes": 52428800, "max.partition.fetch.bytes": 10485760}


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
#: the most one `consume(n)` may ask for: librdkafka refuses n above 1,000,000 with a
#: ValueError, which a large `--limit` or `--batch-size` would otherwise reach
MAX_CONSUME_BATCH = 100_000


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


def count_records(client: Consumer, ranges: Mapping[tuple[str, int], tuple[int, int]], *,
                  timeout: float = DEFAULT_TIMEOUT) -> dict[tuple[str, int], list[int]]:
    """The offsets of the data records in each `[start, end)` range, by reading them.

    Offsets are not records: a transactional producer leaves a commit marker
    after each transaction, so the span between watermarks over-counts.
    """
    found: dict[tuple[str, int], list[int]] = {k: [] for k in ranges}
    ends = {k: end for k, (start, end) in ranges.items()}
    starts = {k: start for k, (start, end) in ranges.items()}
    for msgs in iter_bounded(client, ends, starts, batch=20_000, idle_timeout=timeout):
        for msg in msgs:
            found[(msg.topic(), msg.partition())].append(msg.offset())
    client.unassign()
    return found


def topic_partitions(cluster: ClusterConfig, topic: str,
                     timeout: float = DEFAULT_TIMEOUT) -> int:
    """The partition count of `topic`, or `NotFoundError` (never auto-creates it)."""
    count = list_topics(cluster, timeout=timeout, include_internal=True).get(topic)
    if not count:
        raise NotFoundError(f"topic {topic!r} does not exist")
    return count


def iter_bounded(
    client: Consumer,
    ends: Mapping[tuple[str, int], int],
    starts: Mapping[tuple[str, int], int],
    *,
    batch: int = 5000,
    idle_timeout: float = 10.0,
    poll_timeout: float = 0.02,
    done: set[tuple[str, int]] | None = None,
    unfiltered: bool = False,
) -> Generator[list[ConsumedMessage], None, None]:
    """Yield batches of raw messages of `[start, end)` per partition, then stop.

    Assigns `client` itself. A partition is done when a message at or past
    `end - 1` arrives or the consumer position reaches `end` (trailing
    transaction markers), or when the caller adds it to `done`. Gives up
    after `idle_timeout` seconds without progress rather than hanging on a
    partition whose data vanished.

    `poll_timeout` is short on purpose: `consume(n)` waits the whole timeout
    whenever fewer than `n` records are left, which is every scan's last batch.

    With `unfiltered`, batches are yielded as consumed (error events and
    records past `end` included) and the caller, which looks at every record
    anyway, drops those and adds finished partitions to `done`: one pass over
    the records instead of two, for redrive's hot loop.
    """
    todo = {k: end for k, end in ends.items() if end > starts.get(k, 0)}
    if not todo:
        return
    batch = max(1, min(batch, MAX_CONSUME_BATCH))
    client.assign([TopicPartition(t, p, starts[(t, p)]) for (t, p) in todo])
    last_progress = time.monotonic()
    while todo:
        try:
            msgs = consumed(client.consume(batch, timeout=poll_timeout))
        except KafkaException as exc:
            raise translate(exc, "reading records") from None
        if unfiltered:
            finished_now = set(_caught_up(client, todo)) if not msgs else set()
            finished_now.update(k for k in done or () if k in todo)
            for key in finished_now:
                del todo[key]
                client.incremental_unassign([TopicPartition(*key)])
            if msgs or finished_now:
                last_progress = time.monotonic()
            if msgs:
                yield msgs
            elif todo and time.monotonic() - last_progress > idle_timeout:
                return
            continue
        out: list[ConsumedMessage] = []
        finished: set[tuple[str, int]] = set()
        for msg in msgs:
            if msg.error():
                continue
            key = (msg.topic(), msg.partition())
            end = todo.get(key)
            if end is None or msg.offset() >= end:
                if end is not None:
                    finished.add(key)
                continue
            out.append(msg)
            if msg.offset() >= end - 1:
                finished.add(key)
        if not msgs or not out:
            finished.update(_caught_up(client, todo))
        if done:
            finished.update(k for k in done if k in todo)
        for key in finished:
            if todo.pop(key, None) is not None:
                client.incremental_unassign([TopicPartition(*key)])
        if out or finished:
            last_progress = time.monotonic()
        if out:
            yield out
        elif todo and time.monotonic() - last_progress > idle_timeout:
            return


def _caught_up(client: Consumer, todo: Mapping[tuple[str, int], int]) -> list[tuple[str, int]]:
    try:
        positions = client.position([TopicPartition(t, p) for (t, p) in todo])
    except KafkaException:
        return []
    return [(tp.topic, tp.partition) for tp in positions
            if tp.offset >= 0 and tp.offset >= todo[(tp.topic, tp.partition)]]


def decode_dead_letter(record: Record, payloads: PayloadDecoder) -> DeadLetter:
    """A record with its envelope and decoded payload (never raises on record content)."""
    headers = [(h.key, h.value) for h in record.headers]
    key_payload = None
    if record.key and record.key[0] == 0:
        key_payload = payloads.decode(record.key, headers, record.topic, is_key=True)
    return DeadLetter(record, decode_envelope(record),
                      payloads.decode(record.value, headers, record.topic), key_payload)


def read_page(cluster: ClusterConfig, topic: str, *,
              start: PageCursor | Mapping[int, int] | int | None = None,
              limit: int = 50, timeout: float = DEFAULT_TIMEOUT,
              payloads: PayloadDecoder | None = None, strict: bool = False) -> DlqPage:
    """One page of `topic` from `start` (a cursor, {partition: offset}, an offset of a
    one-partition topic, or None for the beginning), at most `limit` dead letters.

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
