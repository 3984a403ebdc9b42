"""Redrive planning: which dead letters a redrive takes, where each goes, which it refuses.

The hot path of a redrive: `Planner.plan_batch` turns a consumed batch into
`Decision`s (redrive, skip, fail, unmatched) with the headers to write, and
the progress the batch commits. A full envelope is decoded only when the
selection or a sample needs it; routes are memoised.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from confluent_kafka import KafkaException, TopicPartition

from collectors.config import ClusterConfig
from collectors.kafka import ConsumedMessage, consumer, translate
from collectors.scan import READER_CONF, iter_bounded, to_record, watermarks
from collectors.timefmt import now_iso_utc
from collectors.topics import list_topics
from dlq.redrive_report import RedriveSample
from dlq.select import Selector, display_text
from tracing.deadletter import (
    REDRIVE_COUNT_HEADER,
    REDRIVE_HEADERS,
    REDRIVE_ID_HEADER,
    REDRIVEN_AT_HEADER,
    Route,
    decode_envelope,
    decode_route,
)
from tracing.frames import PayloadDecoder

#: Records read back per target partition, at most, to recognise earlier redrives.
TARGET_CHECK_LIMIT = 2_000_000
ALREADY_MOVED = ("already moved by an earlier redrive of this topic (its lagdeck-redrive-id "
                 "is on the target; --again to move it again)")


@dataclass
class Batch:
    """One consumed batch: its decisions, counts and the progress it commits."""

    decisions: list[Decision] = field(default_factory=list)
    offsets: dict[int, int] = field(default_factory=dict)
    targets: Counter = field(default_factory=Counter)
    reasons: Counter = field(default_factory=Counter)
    samples: list[RedriveSample] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    unmatched: int = 0
    skipped: int = 0
    failed: int = 0
    stops: dict[int, int] = field(default_factory=dict)


class Decision(NamedTuple):
    msg: ConsumedMessage
    action: str  # "redrive", "skip", "fail", "unmatched"
    target: str | None = None
    partition: int = -1  # -1: let the (murmur2) partitioner choose
    headers: list | None = None
    reason: str | None = None
    sample: RedriveSample | None = None


class _CountBytes(dict):
    """`lagdeck-redrive-count` values: the next count for a record already redriven n times."""

    def __missing__(self, n: int) -> bytes:
        value = self[n] = str(n + 1).encode()
        return value


_COUNTS = _CountBytes()


class Planner:
    """Decides, record by record, what a redrive does: select, route, refuse or stop.

    Pure work on consumed records, except for the look at the target topics
    for `lagdeck-redrive-id`s an earlier redrive left there (`start`,
    `_check_target`), which makes "moved once" hold across selections.
    Routes are memoised for the task's life (they repeat a lot).
    """

    def __init__(self, cluster: ClusterConfig, topic: str, *, to: str | None,
                 selector: Selector, payloads: PayloadDecoder, max_attempts: int,
                 again: bool, force: bool, sample_limit: int, timeout: float) -> None:
        self.cluster = cluster
        self.topic = topic
        self.to = to
        self.selector = selector
        #: decodes values for `value.PATH` conditions (registry frames need a registry)
        self.payloads = payloads
        self.max_attempts = max_attempts
        self.again = again
        self.force = force
        self.sample_limit = sample_limit
        self.timeout = timeout
        self._routes: dict[Route, tuple[str, str | None, int, str | None]] = {}
        #: `lagdeck-redrive-id`s of this topic found on target topics (earlier redrives)
        self._moved: set[bytes] = set()
        self._checked_targets: set[str] = set()
        self._since_ms: int | None = None

    def start(self, starts: Mapping[tuple[str, int], int],
              ends: Mapping[tuple[str, int], int]) -> None:
        """Before a pass over [starts, ends): forget what an earlier pass found on the
        targets, and look at the `--to` target now (others when first routed to)."""
        self._since_ms = self._oldest_timestamp(starts, ends)
        self._moved, self._checked_targets = set(), set()
        if self.to is not None:
            self._check_target(self.to)

    def route_action(self, route: Route, topics: Mapping[str, int]
                      ) -> tuple[str, str | None, int, str | None]:
        """(action, target, partition, reason) for a route; memoised by route (routes
        repeat a lot), except skips, whose reason names the count."""
        found = self._routes.get(route)
        if found is not None:
            return found
        count = route.redrive_count or 0
        target = self.to or route.original_topic
        partition = -1
        if route.malformed_count is not None and not self.force:
            shown = display_text(route.malformed_count)
            found = ("skip", target, -1,
                     f"its {REDRIVE_COUNT_HEADER} header is malformed ({shown!r}), so how often "
                     "it was redriven is unknown (--force to redrive it anyway)")
        elif count >= self.max_attempts:
            found = ("skip", target, -1,
                     f"already redriven {count} times (--max-attempts {self.max_attempts})")
        elif target is None:
            found = ("fail", None, -1, "no original topic in its headers (use --to, or "
                                       "exclude with --where 'original_topic!='; records "
                                       "already moved are recognised and not moved again)")
        elif target == self.topic:
            found = ("fail", target, -1, "its original topic is the dead-letter topic itself")
        elif target not in topics:
            found = ("fail", target, -1, f"target topic {target!r} does not exist")
        else:
            if self.to is None and route.original_partition is not None \
                    and 0 <= route.original_partition < topics[target]:
                partition = route.original_partition
            found = ("redrive", target, partition, None)
            self._check_target(target)
        if found[0] != "skip" and len(self._routes) < 10_000:
            self._routes[route] = found
        return found

    def decide(self, msg: ConsumedMessage, topics: Mapping[str, int], now_text: bytes,
                want_sample: bool) -> Decision:
        """What to do with one dead letter. The hot path of a redrive: a full envelope
        is decoded only when the selection or a sample needs it."""
        raw = msg.headers()
        record = envelope = None
        if self.selector.conditions:
            record = to_record(msg)
            if self.selector.needs_envelope:
                envelope = decode_envelope(record)
            payload = None
            if self.selector.needs_payload:
                payload = self.payloads.decode(record.value, raw, record.topic)
            if not self.selector.matches(record, envelope, payload):
                return Decision(msg, "unmatched")
        route = decode_route(raw)
        action, target, partition, reason = self.route_action(route, topics)
        headers = None
        if action == "redrive" and not self.again and self._moved and \
                f"{self.topic}/{msg.partition()}/{msg.offset()}".encode() in self._moved:
            action, reason = "skip", ALREADY_MOVED
        if action == "redrive":
            if route.has_redrive_headers and raw is not None:  # implies headers
                raw = [(k, v) for k, v in raw if k.lower() not in REDRIVE_HEADERS]
            headers = (raw or []) + [
                (REDRIVE_ID_HEADER, f"{self.topic}/{msg.partition()}/{msg.offset()}".encode()),
                (REDRIVEN_AT_HEADER, now_text),
                (REDRIVE_COUNT_HEADER, _COUNTS[route.redrive_count or 0])]
        sample = None
        if want_sample:
            envelope = envelope or decode_envelope(record or to_record(msg))
            sample = RedriveSample(
                partition=msg.partition(), offset=msg.offset(), key=display_text(msg.key()),
                target=target, error_class=envelope.error_class,
                error_message=envelope.error_message, action=action, reason=reason)
        return Decision(msg, action, target, partition, headers, reason, sample)

    def plan_batch(self, msgs: list[ConsumedMessage], topics: Mapping[str, int],
                    stopped: set[int], finished: set[tuple[str, int]],
                    samples_so_far: int, last: Mapping[int, int]) -> Batch:
        """Decisions for one consumed batch, in order, with their counts and the progress
        to commit; a failure stops its partition (progress stays *at* that record).

        Records past a partition's snapshotted end (`last` is end - 1) are dropped
        here and the partition is marked finished.
        """
        now_text = now_iso_utc().encode()
        batch = Batch()
        decisions = batch.decisions
        offsets = batch.offsets
        targets = batch.targets
        want = samples_so_far < self.sample_limit
        decide = self.decide
        fast = not self.selector.conditions
        route_action = self.route_action
        routes = self._routes
        id_prefix = f"{self.topic}/"
        moved = None if self.again else self._moved
        new = tuple.__new__  # a Decision without the Python-level NamedTuple constructor
        for msg in msgs:
            if msg.error() is not None:
                continue
            p = msg.partition()
            o = msg.offset()
            if o >= last[p]:
                finished.add((self.topic, p))
                if o > last[p] or p in stopped:
                    continue
            if p in stopped:
                continue
            if fast and not want:
                # the common case, inlined: no selection, no sample, a routable record
                raw = msg.headers()
                route = decode_route(raw)
                action, target, partition, _ = routes.get(route) or route_action(route, topics)
                if action == "redrive":
                    rid = f"{id_prefix}{p}/{o}".encode()
                    if moved and rid in moved:
                        decisions.append(Decision(msg, "skip", target, -1, None, ALREADY_MOVED))
                        batch.skipped += 1
                        batch.reasons[ALREADY_MOVED] += 1
                        offsets[p] = o + 1
                        continue
                    if route.has_redrive_headers and raw is not None:  # implies headers
                        raw = [(k, v) for k, v in raw if k.lower() not in REDRIVE_HEADERS]
                    headers = (raw or []) + [
                        (REDRIVE_ID_HEADER, rid),
                        (REDRIVEN_AT_HEADER, now_text),
                        (REDRIVE_COUNT_HEADER, _COUNTS[route.redrive_count or 0])]
                    decisions.append(new(Decision, (msg, action, target, partition, headers,
                                                     None, None)))
                    targets[target] += 1
                    offsets[p] = o + 1
                    continue
            d = decide(msg, topics, now_text, want)
            decisions.append(d)
            action = d.action
            if action == "redrive":
                targets[d.target] += 1
                offsets[p] = o + 1
            elif action == "unmatched":
                batch.unmatched += 1
                offsets[p] = o + 1
                continue
            elif action == "skip":
                batch.skipped += 1
                batch.reasons[d.reason] += 1
                offsets[p] = o + 1
            else:
                batch.failed += 1
                batch.reasons[d.reason] += 1
                batch.errors.append(f"{self.topic}[{p}]@{o}: {d.reason}; "
                                    f"partition {p} stopped there")
                offsets[p] = o
                batch.stops[p] = o
                stopped.add(p)
                finished.add((self.topic, p))
            if d.sample is not None:
                batch.samples.append(d.sample)
                want = samples_so_far + len(batch.samples) < self.sample_limit
        return batch

    def prefix(self, batch: Batch, done: int) -> Batch:
        """The part of a batch handled before a cancel (rare: only while rate-limited)."""
        out = Batch()
        for d in batch.decisions[:done]:
            out.decisions.append(d)
            p, o = d.msg.partition(), d.msg.offset()
            out.offsets[p] = o + (0 if d.action == "fail" else 1)
            if d.action == "redrive":
                out.targets[d.target] += 1
            elif d.action == "unmatched":
                out.unmatched += 1
            elif d.action == "skip":
                out.skipped += 1
                out.reasons[d.reason] += 1
            else:
                out.failed += 1
                out.reasons[d.reason] += 1
                out.errors.append(f"{self.topic}[{p}]@{o}: {d.reason}; "
                                  f"partition {p} stopped there")
                out.stops[p] = o
            if d.sample is not None:
                out.samples.append(d.sample)
        return out

    def _oldest_timestamp(self, starts: Mapping[tuple[str, int], int],
                          ends: Mapping[tuple[str, int], int]) -> int | None:
        """The oldest timestamp among the first pending record of each partition: no
        earlier redrive can have moved any of them before that time."""
        heads = {k: (starts[k], min(ends[k], starts[k] + 1)) for k in ends if ends[k] > starts[k]}
        if not heads:
            return None
        client = consumer(self.cluster, **READER_CONF)
        oldest: int | None = None
        try:
            for msgs in iter_bounded(client, {k: e for k, (_, e) in heads.items()},
                                     {k: s for k, (s, _) in heads.items()},
                                     idle_timeout=self.timeout):
                for msg in msgs:
                    ts_type, ts = msg.timestamp()
                    if ts_type and ts >= 0:
                        oldest = ts if oldest is None else min(oldest, ts)
        finally:
            client.close()
        return oldest

    def _check_target(self, target: str) -> None:
        """Collect the `lagdeck-redrive-id`s of this topic's records on `target`, written
        since the oldest pending dead letter (an earlier redrive of any selection)."""
        if self.again or target in self._checked_targets or self._since_ms is None:
            return
        self._checked_targets.add(target)
        prefix = f"{self.topic}/".encode()
        client = consumer(self.cluster, **READER_CONF)
        try:
            count = list_topics(self.cluster, timeout=self.timeout,
                                include_internal=True).get(target, 0)
            keys = [(target, p) for p in range(count)]
            marks = watermarks(self.cluster, keys, self.timeout, client)
            try:
                found = client.offsets_for_times(
                    [TopicPartition(target, p, self._since_ms) for p in range(count)],
                    timeout=self.timeout)
            except KafkaException as exc:
                raise translate(exc, f"looking for earlier redrives in {target}") from None
            starts, ends = {}, {}
            for tp in found:
                lo, hi = marks[(target, tp.partition)]
                start = tp.offset if 0 <= tp.offset <= hi else hi
                start = max(lo, start, hi - TARGET_CHECK_LIMIT)
                starts[(target, tp.partition)], ends[(target, tp.partition)] = start, hi
            for msgs in iter_bounded(client, ends, starts, batch=20_000,
                                     idle_timeout=self.timeout):
                for msg in msgs:
                    for key, value in msg.headers() or ():
                        if key == REDRIVE_ID_HEADER and value and value.startswith(prefix):
                            self._moved.add(value)
        finally:
            client.close()
