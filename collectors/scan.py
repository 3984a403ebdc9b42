"""Bounded reads of topics: from a start point up to end offsets snapshotted first.

A scan never chases a moving end (AKHQ's copy-forever bug, #1377): the end
offsets are read once when the scan starts, and each partition stops there.
Records are fetched in batches with `consume(n)`, which is several times
faster than `poll()` one by one. `read_messages` hands out the raw
confluent-kafka messages (the correlation index decodes millions of them and
cannot afford an object per record); `read_ranges` converts them to
immutable `Record`s for everyone else.

Two readers, for two kinds of caller. `read_messages` serves the trace
scanner: several ranges per partition read one after another from a
throw-away scan consumer, ended by end-of-partition events and cut to the
ranges by bisection. `iter_bounded` serves the dead-letter actions: one range
per partition on the caller's consumer (redrive's `read_committed` progress
group), ended by the consumer's position (a range may end in transaction
markers), with partitions the caller stops (`done`) and, for redrive's hot
loop, batches passed on unfiltered. Both are benchmarked hot paths; one loop
carrying both protocols would slow each.

Also here: the offset and metadata reads a scan plans with (partitions,
watermarks, offsets for a time, topic ids, committed offsets of groups).
Every call has an explicit timeout and turns broker errors into typed errors.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections import defaultdict, deque
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from itertools import groupby
from typing import Any, cast

from confluent_kafka import (
    Consumer,
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    Message,
    TopicCollection,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, OffsetSpec

from collectors.config import ClusterConfig
from collectors.errors import BrokerUnavailable, LagdeckError
from collectors.kafka import (
    DEFAULT_TIMEOUT,
    ConsumedMessage,
    admin,
    consumed,
    consumer,
    describe,
    translate,
)
from collectors.logs import get_logger
from collectors.snapshots import Header, Record

BATCH = 5000
#: Consumer settings for bulk reads: big fetches; an end-of-partition event so a
#: range that ends in a gap (compaction, transaction markers) finishes without
#: waiting; and a short broker-side wait, so a fetch parked at the end of a
#: partition does not hold up the next read of a reused consumer for 500 ms.
SCAN_CONFIG: dict[str, Any] = {
    "fetch.max.bytes": 52428800,
    "max.partition.fetch.bytes": 4194304,
    "enable.partition.eof": True,
    "fetch.wait.max.ms": 20,
}

#: Longest wait of one `consume(n)` call. It returns early only once n messages
#: are in, so a long wait holds up the first batch of every scan (the first
#: fetches bring fewer than n); short waits cost nothing when data flows.
CONSUME_WAIT = 0.05

TP = tuple[str, int]
#: Big fetches for `iter_bounded` readers: their reads are throughput-bound.
READER_CONF: dict[str, Any] = {"fetch.max.bytes": 52428800, "max.partition.fetch.bytes": 10485760}
#: the most one `consume(n)` may ask for: librdkafka refuses n above 1,000,000 with a
#: ValueError, which a large `--limit` or `--batch-size` would otherwise reach
MAX_CONSUME_BATCH = 100_000

_log = get_logger("scan")


@dataclass(frozen=True)
class PartitionRange:
    """Read `[start, end)` of one partition (a negative start means the beginning)."""

    topic: str
    partition: int
    start: int
    end: int

    @property
    def size(self) -> int:
        return max(0, self.end - max(self.start, 0))


def to_record(msg: ConsumedMessage) -> Record:
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


def scan_consumer(cluster: ClusterConfig, **overrides: Any) -> Consumer:
    """A throw-away-group consumer tuned for `read_messages` (pass it as `client=` to reuse)."""
    return consumer(cluster, **{**SCAN_CONFIG, **overrides})


def watermarks(
    cluster: ClusterConfig, partitions: Iterable[tuple[str, int]], timeout: float = 10.0,
    client: Consumer | None = None,
) -> dict[tuple[str, int], tuple[int, int]]:
    """Low and high watermarks per (topic, partition), one request per partition."""
    own = client is None
    c = client if client is not None else consumer(cluster)
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


def _result(future: Future, timeout: float, doing: str):
    try:
        return future.result(timeout=timeout)
    except KafkaException as exc:
        raise translate(exc, doing) from None
    except TimeoutError:
        raise BrokerUnavailable(f"{doing}: no answer within {timeout:g}s") from None


def offset_bounds(cluster: ClusterConfig, partitions: Iterable[TP], *,
                  timeout: float = DEFAULT_TIMEOUT,
                  client: AdminClient | None = None) -> dict[TP, tuple[int, int]]:
    """(earliest, end) offsets of many partitions in two ListOffsets requests."""
    tps = [TopicPartition(t, p) for t, p in dict.fromkeys(partitions)]
    if not tps:
        return {}
    c = client if client is not None else admin(cluster)
    bounds: dict[TP, list[int]] = {}
    try:
        early = c.list_offsets({tp: OffsetSpec.earliest() for tp in tps},
                               request_timeout=timeout)
        late = c.list_offsets({tp: OffsetSpec.latest() for tp in tps}, request_timeout=timeout)
    except KafkaException as exc:
        raise translate(exc, "reading partition offsets") from None
    for which, futures in enumerate((early, late)):
        for tp, future in futures.items():
            doing = f"reading offsets of {tp.topic}[{tp.partition}]"
            info = _result(future, timeout + 1, doing)
            if info.offset < 0:
                # librdkafka answers a ListOffsets that timed out with OFFSET_INVALID
                # (-1001) rather than an error: read as 0, the partition looked empty
                raise BrokerUnavailable(f"{doing}: no offset in the broker's answer "
                                        f"({info.offset}; no answer within {timeout:g}s?)")
            bounds.setdefault((tp.topic, tp.partition), [0, 0])[which] = info.offset
    return {k: (v[0], v[1]) for k, v in bounds.items()}


def offsets_for_times(cluster: ClusterConfig, times: Mapping[TP, int], *,
                      timeout: float = DEFAULT_TIMEOUT,
                      client: AdminClient | None = None) -> dict[TP, int | None]:
    """The first offset at or after a time (ms) per partition; None when there is none.

    One ListOffsets request through the admin client. (A consumer's
    `offsets_for_times` crashes librdkafka 2.16 when the topic was deleted and
    recreated under the consumer's cached metadata.) Brokers answer from
    their time index (Tansu: the append time of each batch), which is exact
    enough for "since 24h" bounds.
    """
    if not times:
        return {}
    c = client if client is not None else admin(cluster)
    try:
        futures = c.list_offsets({TopicPartition(t, p): OffsetSpec.for_timestamp(ms)
                                  for (t, p), ms in times.items()}, request_timeout=timeout)
    except KafkaException as exc:
        raise translate(exc, "looking up offsets by time") from None
    out: dict[TP, int | None] = {}
    for tp, future in futures.items():
        info = _result(future, timeout + 1, f"looking up offsets by time in {tp.topic}")
        out[(tp.topic, tp.partition)] = info.offset if info.offset >= 0 else None
    return out


def topic_ids(cluster: ClusterConfig, topics: Iterable[str], *,
              timeout: float = DEFAULT_TIMEOUT,
              client: AdminClient | None = None) -> dict[str, str | None]:
    """Topic -> the broker's topic id (changes when a topic is deleted and recreated).

    None for a topic whose id the broker does not report (older brokers).
    """
    names = sorted(set(topics))
    if not names:
        return {}
    c = client if client is not None else admin(cluster)
    try:
        futures = c.describe_topics(TopicCollection(names), request_timeout=timeout)
    except KafkaException as exc:
        raise translate(exc, "describing topics") from None
    except (TypeError, ValueError, AttributeError) as exc:  # an old client or broker
        _log.info("topic ids not available: %s", describe(exc))
        return dict.fromkeys(names)
    out: dict[str, str | None] = {}
    for name, future in futures.items():
        try:
            desc = future.result(timeout=timeout + 1)
        except (KafkaException, TimeoutError) as exc:
            _log.info("no topic id for %s: %s", name, describe(exc))
            out[name] = None
            continue
        tid = str(desc.topic_id) if getattr(desc, "topic_id", None) is not None else None
        out[name] = None if tid in (None, "", "AAAAAAAAAAAAAAAAAAAAAA") else tid
    return out


@dataclass(frozen=True)
class GroupOffsets:
    """Committed offsets of every group on some topics, and the groups that could not be read."""

    offsets: Mapping[str, Mapping[TP, int]]
    errors: tuple[str, ...] = ()


def group_offsets(cluster: ClusterConfig, topics: Iterable[str] | None = None, *,
                  timeout: float = DEFAULT_TIMEOUT,
                  client: AdminClient | None = None) -> GroupOffsets:
    """group -> {(topic, partition): committed offset} for groups with commits on `topics`.

    One OffsetFetch per group (the Python client takes one group per call),
    all issued at once. A group that fails is reported in `errors` and left out.
    """
    wanted = set(topics) if topics is not None else None
    c = client if client is not None else admin(cluster)
    listed = _result(c.list_consumer_groups(request_timeout=timeout), timeout + 1,
                     "listing consumer groups")
    names = sorted({g.group_id for g in listed.valid})
    futures = {}
    errors: list[str] = []
    for name in names:
        try:
            futures.update(c.list_consumer_group_offsets(
                [ConsumerGroupTopicPartitions(name)], request_timeout=timeout))
        except KafkaException as exc:
            errors.append(f"{name}: {describe(exc)}")
    out: dict[str, dict[TP, int]] = {}
    for name, future in futures.items():
        try:
            result = _result(future, timeout + 1, f"reading committed offsets of {name}")
        except LagdeckError as exc:
            errors.append(str(exc))
            continue
        committed = {
            (tp.topic, tp.partition): tp.offset
            for tp in result.topic_partitions or ()
            if tp.offset >= 0 and tp.error is None and (wanted is None or tp.topic in wanted)
        }
        if committed:
            out[name] = committed
    return GroupOffsets(out, tuple(errors))


def plan_ranges(ranges: Iterable[PartitionRange],
                merge_gap: int = 0) -> dict[TP, deque[PartitionRange]]:
    """Per partition, non-empty ranges in offset order, merging overlaps and gaps <= merge_gap."""
    by_tp: dict[TP, list[PartitionRange]] = defaultdict(list)
    for r in ranges:
        start = max(r.start, 0)
        if r.end > start:
            by_tp[(r.topic, r.partition)].append(PartitionRange(r.topic, r.partition, start, r.end))
    out: dict[TP, deque[PartitionRange]] = {}
    for tp, items in by_tp.items():
        items.sort(key=lambda r: r.start)
        merged: list[PartitionRange] = [items[0]]
        for r in items[1:]:
            prev = merged[-1]
            if r.start <= prev.end + merge_gap:
                merged[-1] = PartitionRange(prev.topic, prev.partition, prev.start,
                                            max(prev.end, r.end))
            else:
                merged.append(r)
        out[tp] = deque(merged)
    return out


# the stub's Message is too loose for consumed records (see ConsumedMessage)
_topic_of = cast("Callable[[ConsumedMessage], str]", Message.topic)
_partition_of = cast("Callable[[ConsumedMessage], int]", Message.partition)
_offset_of = cast("Callable[[ConsumedMessage], int]", Message.offset)
_error_of = cast("Callable[[ConsumedMessage], KafkaError | None]", Message.error)


def read_messages(
    cluster: ClusterConfig,
    ranges: Iterable[PartitionRange],
    *,
    batch: int = BATCH,
    idle_timeout: float = 10.0,
    client: Consumer | None = None,
    merge_gap: int = 0,
    on_done: Callable[[PartitionRange], None] | None = None,
) -> Iterator[list[ConsumedMessage]]:
    """Yield batches of raw messages inside `ranges`, each partition stopping at its end.

    Several ranges of one partition are read one after the other (ranges
    closer than `merge_gap` offsets are read as one, extra records included).
    `on_done(range)` is called once a range has been read to its end. Stops
    with what it has if nothing arrives for `idle_timeout` seconds, so a
    partition whose records were deleted under it cannot hang a scan. A
    client passed in is left unassigned, ready for reuse.
    """
    pending = plan_ranges(ranges, merge_gap)
    if not pending:
        return
    own = client is None
    c = client if client is not None else scan_consumer(cluster)
    current: dict[TP, PartitionRange] = {tp: q.popleft() for tp, q in pending.items()}
    position: dict[TP, int] = {}  # next offset expected per partition

    def finish(tp: TP, completed: bool = True) -> None:
        r = current.pop(tp)
        if completed and on_done is not None:
            on_done(r)
        c.incremental_unassign([TopicPartition(*tp)])
        queue = pending.get(tp)
        if queue:
            nxt = queue.popleft()
            current[tp] = nxt
            c.incremental_assign([TopicPartition(nxt.topic, nxt.partition, nxt.start)])

    try:
        # A concrete offset, 0 included: OFFSET_BEGINNING costs an offset lookup that
        # delays the first fetch by ~0.5 s; a start below the log's earliest offset
        # is reset to it (auto.offset.reset=earliest), which is what was asked.
        c.assign([TopicPartition(t, p, r.start) for (t, p), r in current.items()])
        last_progress = time.monotonic()
        while current:
            # consume(n) waits for n messages or the timeout: ask for no more than
            # the ranges still hold (plus end-of-partition events), so a small read
            # returns as soon as its records are in.
            left = sum(max(0, r.end - max(r.start, position.get(tp, 0)))
                       for tp, r in current.items())
            want = max(1, min(batch, left + len(current)))
            try:
                msgs = consumed(c.consume(want, timeout=CONSUME_WAIT))
            except KafkaException as exc:
                raise translate(exc, "reading records") from None
            if not msgs:
                if time.monotonic() - last_progress > idle_timeout:
                    _log.info("scan idle for %.0fs with %d range(s) unfinished",
                              idle_timeout, len(current))
                    return
                continue
            last_progress = time.monotonic()
            errors = list(map(_error_of, msgs))
            has_errors = any(errors)
            keys: list[tuple[Any, ...]]  # (topic, partition[, has an error])
            if has_errors:
                keys = list(zip(map(_topic_of, msgs), map(_partition_of, msgs),
                                map(bool, errors), strict=True))
            else:
                keys = list(zip(map(_topic_of, msgs), map(_partition_of, msgs), strict=True))
            out: list[ConsumedMessage] = []
            # Runs in batch order: once a range finishes, the rest of its partition's
            # messages in this batch belong to the old assignment and are skipped
            # (librdkafka drops outdated ones from later batches itself).
            done_here: set[TP] = set()
            start = 0
            for key, run in groupby(keys):
                size = len(list(run))
                part = msgs[start:start + size]
                start += size
                tp = (key[0], key[1])
                if tp in done_here:
                    continue
                if has_errors and key[2]:
                    ended = _handle_errors(part, current, tp)
                    if ended:
                        done_here.add(tp)
                        finish(tp, completed=ended == "eof")
                    continue
                r = current.get(tp)
                if r is None:
                    continue
                first, lastoff = part[0].offset(), part[-1].offset()
                if first >= r.start and lastoff < r.end:
                    out.extend(part)
                else:
                    offsets = list(map(_offset_of, part))
                    out.extend(part[bisect_left(offsets, r.start):bisect_left(offsets, r.end)])
                position[tp] = lastoff + 1
                if lastoff >= r.end - 1:
                    done_here.add(tp)
                    finish(tp)
            if out:
                yield out
    finally:
        if own:
            c.close()
        else:
            try:
                c.unassign()
            except KafkaException:
                _log.debug("unassigning a reused scan consumer", exc_info=True)


def _handle_errors(events: list[ConsumedMessage], current: dict[TP, PartitionRange],
                   tp: TP) -> str | None:
    """Error events of one partition: "eof" or "gone" when they end its current range.

    End-of-partition at or past the range's start means everything there is
    has been read ("eof"); a partition that vanished (topic deleted) ends
    unread ("gone").
    """
    r = current.get(tp)
    if r is None:
        return None
    ended: str | None = None
    for m in events:
        err = m.error()
        if err is None:  # the caller passes only the error events of a batch
            raise AssertionError("_handle_errors got a record without an error")
        if err.code() == KafkaError._PARTITION_EOF:
            if m.offset() >= r.start:
                ended = ended or "eof"
        elif err.code() in (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_PARTITION,
                            KafkaError._UNKNOWN_TOPIC):
            _log.info("partition %s[%s] vanished during a scan", *tp)
            ended = "gone"
        else:
            _log.info("scan error on %s[%s]: %s", tp[0], tp[1], err)
    return ended


def read_ranges(
    cluster: ClusterConfig,
    ranges: Iterable[PartitionRange],
    *,
    batch: int = BATCH,
    idle_timeout: float = 10.0,
    client: Consumer | None = None,
) -> Iterator[list[Record]]:
    """Yield batches of `Record`s of every range, stopping each partition at its end.

    Stops with what it has if nothing arrives for `idle_timeout` seconds
    (a partition whose records were deleted under it cannot hang a scan).
    """
    for msgs in read_messages(cluster, ranges, batch=batch, idle_timeout=idle_timeout,
                              client=client):
        yield [to_record(m) for m in msgs]


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
