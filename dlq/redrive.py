"""Redrive: move dead letters back to the topic they came from, exactly where it matters.

Semantics (what an operator can rely on):

- **Bounded.** The dead-letter topic's end offsets are snapshotted when the
  task starts; records that arrive later are left for the next run, so a
  redrive never chases its own tail (AKHQ #1377).
- **Resumable, once.** Progress is a consumer group on the dead-letter topic
  (`lagdeck-redrive.<topic>` by default, a suffix per `--where` selection and
  `--to` target, or `group=`). Each batch of produced records and the group's new offsets are
  committed in one Kafka transaction (`send_offsets_to_transaction`), so a
  crash loses nothing, a rerun resumes where the last commit left off, and a
  rerun after completion moves nothing. The transactional id is derived from
  the group, so a second redrive of the same selection fences the first.
- **Faithful.** Key, value and headers are kept; `lagdeck-redrive-id`
  (`topic/partition/offset` of the dead letter), `lagdeck-redriven-at` and
  `lagdeck-redrive-count` are set. Records go to their original partition
  when the target is their original topic, else Java-compatible murmur2
  partitioning by key.
- **Moved once.** Records that any earlier redrive of the same topic moved
  (whatever its selection, target or progress group) are recognised by the
  `lagdeck-redrive-id` they carry on the target topics, and skipped unless
  `again` is set; so the advice printed after a stop (`--where ...`) and a
  `--to` after a plain redrive never duplicate a record.
- **Loop protection.** A record already redriven `max_attempts` times is
  refused (counted as skipped), and so is a record whose
  `lagdeck-redrive-count` is malformed (unknown count) unless `force` is set;
  nothing else is skipped: a record that cannot be delivered (no original
  topic, missing target) *stops its partition* there, so nothing is passed
  over silently; fix the cause and rerun.

Counts: `selected` = matched the selection; `redriven + skipped + failed` =
selected (less what a cancel left untouched); `unmatched` = read but not
selected; `behind` = records waiting behind a stopped partition's failure;
`not_reached` = records a cancel or a fence left unread. A fenced run returns
(not raises) what it committed, which is what the audit entry says.
Progress callbacks receive a `RedriveProgress` and must be plain callables;
they run on the redrive's thread.

A broker that dies mid-run: the open transaction is aborted (or, when the
broker cannot even take the abort, left to be fenced by the rerun's
`init_transactions`), the run stops within about `timeout` seconds, and
`RedriveAborted` carries the counts of committed batches only, the same the
audit log records; a rerun resumes from the last commit (docs/outages.md).

Duplicates: on brokers that implement transactions fully, read_committed
consumers see each dead letter once. On brokers that expose aborted records
(Tansu), a crash can duplicate at most the one batch that was in flight;
`lagdeck-redrive-id` identifies them.
"""

from __future__ import annotations

import gc
import hashlib
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

from confluent_kafka import KafkaError, KafkaException, Message, TopicPartition

from collectors.config import ClusterConfig
from collectors.errors import (
    InvalidValue,
    KafkaOperationError,
    LagdeckError,
    NotFoundError,
    UsageError,
)
from collectors.kafka import (
    DEFAULT_TIMEOUT,
    ConsumedMessage,
    consumer,
    describe,
    producer,
    translate,
)
from collectors.logs import get_logger
from collectors.own_groups import REDRIVE_GROUP_PREFIX
from collectors.scan import to_record, watermarks
from collectors.topics import list_topics
from dlq.audit import audited
from dlq.browse import READER_CONF, count_records, iter_bounded
from dlq.guard import ensure_writable
from dlq.select import PickedRecords, Selector, display_text, parse_where
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

DEFAULT_BATCH = 5000
#: seconds an abort may take: a dead broker cannot take it (the rerun fences it instead)
ABORT_TIMEOUT = 5.0
DEFAULT_MAX_ATTEMPTS = 3
#: A producer that fails with one of these can no longer transact (usually: fenced).
_FENCED_CODES = {KafkaError._STATE, KafkaError._FENCED, KafkaError._FATAL,
                 KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH}

_log = get_logger("redrive")
#: Records read back per target partition, at most, to recognise earlier redrives.
TARGET_CHECK_LIMIT = 2_000_000
ALREADY_MOVED = ("already moved by an earlier redrive of this topic (its lagdeck-redrive-id "
                 "is on the target; --again to move it again)")


class RedriveFenced(LagdeckError):
    """Another redrive with the same progress group took over; what was committed stays."""

ProgressCallback = Callable[["RedriveProgress"], None]


@dataclass(frozen=True)
class RedriveProgress:
    """A point-in-time count for progress bars (CLI and TUI share it)."""

    scanned: int
    total: int
    selected: int
    redriven: int
    skipped: int
    failed: int
    elapsed_s: float
    dry_run: bool = False

    @property
    def rate(self) -> float:
        """Records scanned per second so far."""
        return self.scanned / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def eta_s(self) -> float | None:
        if self.rate <= 0:
            return None
        return max(0.0, (self.total - self.scanned) / self.rate)


@dataclass(frozen=True)
class RedriveSample:
    """One of the first records of a run, as a dry run shows it."""

    partition: int
    offset: int
    key: str | None
    target: str | None
    error_class: str | None
    error_message: str | None
    action: str  # "redrive", "skip" or "fail"
    reason: str | None = None


@dataclass(frozen=True)
class RedriveResult:
    """What a redrive (or its dry run) did, for the CLI summary, the TUI and the audit log.

    `selected = redriven + skipped + failed` for committed work (a dry run
    reports `redriven = 0` and what it would move in `targets`); `unmatched`
    were read but not selected; `errors` name the records that stopped their
    partition; `group` is the progress group a rerun resumes from.
    """

    topic: str
    dry_run: bool
    selected: int
    redriven: int
    skipped: int
    failed: int
    scanned: int
    unmatched: int
    group: str
    targets: tuple[tuple[str, int], ...] = ()
    reasons: tuple[tuple[str, int], ...] = ()
    samples: tuple[RedriveSample, ...] = ()
    start_offsets: tuple[tuple[int, int], ...] = ()
    end_offsets: tuple[tuple[int, int], ...] = ()
    cancelled: bool = False
    elapsed_s: float = 0.0
    errors: tuple[str, ...] = ()
    selection: str = "all records"
    #: from the first record produced to the last commit: the time spent moving records
    moving_s: float = 0.0
    #: records waiting behind a failure that stopped their partition
    behind: int = 0
    #: records in the snapshotted range a cancel or a fence left unread
    not_reached: int = 0
    #: set when another redrive with the same progress group took over (fenced)
    fenced: str | None = None

    @property
    def rate(self) -> float:
        """Records redriven per second while moving (what `--rate` limits)."""
        return self.redriven / self.moving_s if self.moving_s > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        """The docs/contracts.md `dlq redrive` document plus detail keys."""
        return {
            "topic": self.topic, "dry_run": self.dry_run, "selected": self.selected,
            "redriven": self.redriven, "skipped": self.skipped, "failed": self.failed,
            "scanned": self.scanned, "unmatched": self.unmatched, "group": self.group,
            "selection": self.selection, "cancelled": self.cancelled,
            "targets": [{"topic": t, "count": n} for t, n in self.targets],
            "reasons": [{"reason": r, "count": n} for r, n in self.reasons],
            "samples": [s.__dict__ for s in self.samples],
            "elapsed_s": round(self.elapsed_s, 3), "rate": round(self.rate, 1),
            "moving_s": round(self.moving_s, 3),
            "errors": list(self.errors), "behind": self.behind,
            "not_reached": self.not_reached, "fenced": self.fenced,
        }


class RedriveAborted(KafkaOperationError):
    """The redrive stopped part way (broker gone, commit failed): `result` counts the
    committed batches only; everything else was rolled back and a rerun resumes."""

    def __init__(self, message: str, result: RedriveResult) -> None:
        super().__init__(message)
        self.result = result


def default_group(topic: str, selector: Selector, to: str | None = None) -> str:
    """The one naming scheme of redrive progress groups.

    `lagdeck-redrive.<topic>`, plus a short hash of the selection and the `--to`
    target when there are any (a `--to` run has its own progress); records picked
    by hand get `.picked-<hash of the positions>`, so picking never advances the
    topic-wide group past records nobody picked. The names are what a rerun resumes
    from: they must not change between versions.
    """
    if not selector.conditions and to is None:
        return REDRIVE_GROUP_PREFIX + topic
    match selector.conditions:
        case (PickedRecords(picked=picked),) if to is None:
            digest = hashlib.sha1(repr(sorted(picked)).encode()).hexdigest()[:10]
            return f"{REDRIVE_GROUP_PREFIX}{topic}.picked-{digest}"
    parts = sorted(str(c) for c in selector.conditions)
    if to is not None:
        parts.append(f"to={to}")
    key = "\n".join(parts)
    return f"{REDRIVE_GROUP_PREFIX}{topic}.{hashlib.sha1(key.encode()).hexdigest()[:8]}"


@dataclass
class _Tally:
    scanned: int = 0
    selected: int = 0
    redriven: int = 0
    skipped: int = 0
    failed: int = 0
    unmatched: int = 0
    targets: Counter = field(default_factory=Counter)
    reasons: Counter = field(default_factory=Counter)
    samples: list[RedriveSample] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    first_produce: float | None = None
    last_commit: float | None = None
    #: partition -> offset of the failure that stopped it
    stops: dict[int, int] = field(default_factory=dict)
    #: partition -> next offset to handle (committed, or planned in a dry run)
    positions: dict[int, int] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        return {"scanned": self.scanned, "selected": self.selected, "redriven": self.redriven,
                "skipped": self.skipped, "failed": self.failed, "unmatched": self.unmatched}


@dataclass
class _Batch:
    """One consumed batch: its decisions, counts and the progress it commits."""

    decisions: list[_Decision] = field(default_factory=list)
    offsets: dict[int, int] = field(default_factory=dict)
    targets: Counter = field(default_factory=Counter)
    reasons: Counter = field(default_factory=Counter)
    samples: list[RedriveSample] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    unmatched: int = 0
    skipped: int = 0
    failed: int = 0
    stops: dict[int, int] = field(default_factory=dict)


class _Decision(NamedTuple):
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


class _Pacer:
    """Spaces produced records `1/rate` apart on an absolute schedule (no drift)."""

    def __init__(self, rate: float | None, cancel: threading.Event) -> None:
        self.rate = rate
        self.cancel = cancel
        self.start: float | None = None
        self.count = 0

    def wait(self) -> bool:
        """Block until the next record is due; False if cancelled meanwhile."""
        if self.rate is None:  # callers wait only when paced (a rate is set)
            raise AssertionError("_Pacer.wait without a rate")
        now = time.monotonic()
        if self.start is None:
            self.start = now
        delay = self.start + self.count / self.rate - now
        if delay > 0 and self.cancel.wait(delay):
            return False
        self.count += 1
        return True


class Redrive:
    """One redrive task over a dead-letter topic; `plan()` is the dry run, `run()` moves.

    Arguments: `to` overrides every record's target; `where` is a list of
    `--where` expressions (see `dlq.select`) or a `Selector`; `max_attempts`
    refuses records lagdeck already redrove that many times; `rate` caps
    records redriven per second; `group` overrides the progress group;
    `batch_size` bounds one transaction (and so the duplicates a crash can
    cause on brokers that expose aborted records); `again` moves records an
    earlier redrive already moved; `force` redrives records whose redrive
    count is malformed.
    """

    def __init__(self, cluster: ClusterConfig, topic: str, *, to: str | None = None,
                 where: Iterable[str] | Selector = (), max_attempts: int = DEFAULT_MAX_ATTEMPTS,
                 rate: float | None = None, group: str | None = None,
                 batch_size: int | None = None, samples: int = 5,
                 again: bool = False, force: bool = False,
                 timeout: float = DEFAULT_TIMEOUT,
                 payloads: PayloadDecoder | None = None) -> None:
        if rate is not None and rate <= 0:
            raise InvalidValue("rate", f"must be positive, got {rate:g}")
        if batch_size is not None and batch_size < 1:
            raise UsageError(f"batch size must be at least 1, got {batch_size}")
        if max_attempts < 1:
            raise InvalidValue("max_attempts", f"must be at least 1, got {max_attempts}")
        if to is not None and to == topic:
            raise InvalidValue("to", f"{to!r} is the dead-letter topic itself")
        self.cluster = cluster
        self.topic = topic
        self.to = to
        self.selector = where if isinstance(where, Selector) else parse_where(where)
        #: decodes values for `value.PATH` conditions (registry frames need a registry)
        self.payloads = payloads if payloads is not None else PayloadDecoder(None)
        self.max_attempts = max_attempts
        self.rate = rate
        self.group = group or default_group(topic, self.selector, to)
        self.again = again
        self.force = force
        if batch_size is not None:  # an explicit size is the operator's: never replaced
            self.batch_size = batch_size
        elif rate is not None:  # keep commits (and progress) coming a few times a second
            self.batch_size = max(1, min(DEFAULT_BATCH, int(rate / 5) or 1))
        else:
            self.batch_size = DEFAULT_BATCH
        self.sample_limit = samples
        self.timeout = timeout
        self._routes: dict[Route, tuple[str, str | None, int, str | None]] = {}
        self._delivery_errors: list[str] = []
        #: `lagdeck-redrive-id`s of this topic found on target topics (earlier redrives)
        self._moved: set[bytes] = set()
        self._checked_targets: set[str] = set()
        self._since_ms: int | None = None

    # -- public entry points -------------------------------------------------------------

    def parameters(self) -> dict[str, Any]:
        return {"topic": self.topic, "to": self.to, "where": self.selector.describe(),
                "max_attempts": self.max_attempts, "rate": self.rate, "group": self.group,
                "batch_size": self.batch_size, "again": self.again, "force": self.force}

    def plan(self, *, progress: ProgressCallback | None = None,
             cancel: threading.Event | None = None) -> RedriveResult:
        """Dry run: what `run()` would do from the current progress, changing nothing."""
        return self._execute(dry_run=True, progress=progress, cancel=cancel)

    def run(self, *, progress: ProgressCallback | None = None,
            cancel: threading.Event | None = None, dry_run: bool = False) -> RedriveResult:
        """Redrive (or, with `dry_run`, plan); audited and blocked in read-only mode.

        Setting `cancel` stops after the record in hand: what was produced is
        committed with its offsets, and the result has `cancelled=True`.
        """
        if dry_run:
            return self.plan(progress=progress, cancel=cancel)
        ensure_writable(self.cluster, f"redrive of {self.topic}")
        with audited(self.cluster, "dlq.redrive", self.parameters()) as audit:
            try:
                result = self._execute(dry_run=False, progress=progress, cancel=cancel,
                                       audit=audit)
            except RedriveAborted as exc:
                audit.counts = _audit_counts(exc.result)  # committed only, as the summary
                raise
            audit.counts = _audit_counts(result)
            if result.fenced:
                audit.outcome = "fenced"
            elif result.cancelled:
                audit.outcome = "cancelled"
            elif result.failed:
                audit.outcome = "partial"
            return result

    # -- the work ---------------------------------------------------------------------

    def _execute(self, *, dry_run: bool, progress: ProgressCallback | None,
                 cancel: threading.Event | None, audit=None) -> RedriveResult:
        cancel = cancel or threading.Event()
        topics = list_topics(self.cluster, timeout=self.timeout, include_internal=True)
        if self.topic not in topics:
            raise NotFoundError(f"dead-letter topic {self.topic!r} does not exist")
        if self.to is not None and self.to not in topics:
            raise NotFoundError(f"target topic {self.to!r} does not exist")
        parts = [(self.topic, p) for p in range(topics[self.topic])]

        txn = None
        if not dry_run:
            self._delivery_errors = []
            txn = producer(self.cluster, **{
                "transactional.id": self.group,
                "partitioner": "murmur2_random",
                "linger.ms": 5,
                "transaction.timeout.ms": 60000,
                # a request to a dead broker fails after `timeout`, not librdkafka's 60 s, so
                # a redrive whose broker died stops within its deadline
                "socket.timeout.ms": max(1000, int(self.timeout * 1000)),
                "delivery.report.only.error": True,
                "on_delivery": self._on_delivery,
            })
            try:  # fences (and aborts) any earlier instance of this redrive first
                txn.init_transactions(self.timeout)
            except KafkaException as exc:
                txn = None
                raise translate(exc, f"starting the redrive transaction ({self.group})") from None

        reader = consumer(self.cluster, group=self.group, **READER_CONF,
                          **{"isolation.level": "read_committed"})
        started = time.monotonic()
        tally = _Tally()
        try:
            marks = watermarks(self.cluster, parts, self.timeout, reader)
            ends = {k: hi for k, (lo, hi) in marks.items()}
            starts = self._committed(reader, marks)
            total = sum(max(0, ends[k] - starts[k]) for k in ends)
            _log.info("redrive %s group=%s dry_run=%s starts=%s ends=%s", self.topic, self.group,
                      dry_run, starts, ends)
            report = self._reporter(progress, tally, total, started, dry_run)
            report()
            self._since_ms = self._oldest_timestamp(starts, ends)
            self._moved, self._checked_targets = set(), set()
            if self.to is not None:
                self._check_target(self.to)
            fenced = None
            try:
                self._loop(reader, txn, topics, starts, ends, tally, cancel, report, audit,
                           dry_run)
            except RedriveFenced as exc:
                _log.info("redrive of %s fenced", self.topic, exc_info=True)
                fenced = str(exc)
            except LagdeckError as exc:
                # The inner frames reference the producer; an error kept by a caller (the
                # TUI shows it) must not keep a fenced producer and its connections alive.
                _log.info("redrive of %s stopped", self.topic, exc_info=True)
                exc.__context__ = exc.__cause__ = None
                if dry_run:
                    raise exc.with_traceback(None) from None
                # the broker may be gone: what is left is not counted (a rerun resumes)
                partial = self._result(tally, starts, ends, cancel, started, dry_run,
                                       (0, 0), None)
                raise RedriveAborted(
                    f"{exc}; {partial.redriven} of {partial.selected} selected records were "
                    "redriven and committed before it stopped", partial) from None
            left = self._left(tally, starts, ends, fenced is not None or cancel.is_set())
            result = self._result(tally, starts, ends, cancel, started, dry_run, left, fenced)
        finally:
            reader.close()
            # Drop the producer now, even when an error's traceback keeps this frame alive:
            # a live, fenced producer holds its broker connections open.
            txn = None
        return result

    def _result(self, tally: _Tally, starts, ends, cancel: threading.Event, started: float,
                dry_run: bool, left: tuple[int, int], fenced: str | None) -> RedriveResult:
        """The result from the tally, which holds committed batches only."""
        behind, not_reached = left
        elapsed = time.monotonic() - started
        moving = (tally.last_commit - tally.first_produce) \
            if tally.first_produce is not None and tally.last_commit is not None else 0.0
        return RedriveResult(
            topic=self.topic, dry_run=dry_run, selected=tally.selected,
            redriven=tally.redriven, skipped=tally.skipped, failed=tally.failed,
            scanned=tally.scanned, unmatched=tally.unmatched, group=self.group,
            targets=tuple(sorted(tally.targets.items())),
            reasons=tuple(tally.reasons.most_common()),
            samples=tuple(tally.samples),
            start_offsets=tuple(sorted((p, o) for (_, p), o in starts.items())),
            end_offsets=tuple(sorted((p, o) for (_, p), o in ends.items())),
            cancelled=cancel.is_set(), elapsed_s=elapsed, moving_s=moving,
            errors=tuple(tally.errors), selection=self.selector.describe(),
            behind=behind, not_reached=not_reached, fenced=fenced,
        )

    def _committed(self, reader, marks) -> dict[tuple[str, int], int]:
        try:
            committed = reader.committed([TopicPartition(t, p) for (t, p) in marks],
                                         timeout=self.timeout)
        except KafkaException as exc:
            raise translate(exc, f"reading redrive progress of group {self.group}") from None
        starts = {}
        for tp in committed:
            lo, hi = marks[(tp.topic, tp.partition)]
            starts[(tp.topic, tp.partition)] = min(max(tp.offset, lo), hi) if tp.offset >= 0 \
                else lo
        return starts

    def _oldest_timestamp(self, starts, ends) -> int | None:
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

    def _left(self, tally: _Tally, starts, ends, stopped_early: bool) -> tuple[int, int]:
        """(records behind a failure, records never reached), counted by reading offsets:
        a transaction marker is not a record."""
        behind_ranges = {}
        for p, o in tally.stops.items():
            key = (self.topic, p)
            if o + 1 < ends[key]:
                behind_ranges[key] = (o + 1, ends[key])
        unread = {}
        if stopped_early:
            for key, end in ends.items():
                p = key[1]
                if p in tally.stops:
                    continue
                pos = tally.positions.get(p, starts[key])
                if pos < end:
                    unread[key] = (pos, end)
        if not behind_ranges and not unread:
            return 0, 0
        client = consumer(self.cluster, **READER_CONF)
        try:
            counted = count_records(client, {**behind_ranges, **unread}, timeout=self.timeout)
        finally:
            client.close()
        behind = sum(len(counted[k]) for k in behind_ranges)
        return behind, sum(len(counted[k]) for k in unread)

    @staticmethod
    def _reporter(progress, tally: _Tally, total: int, started: float, dry_run: bool):
        def report() -> None:
            if progress is None:
                return
            progress(RedriveProgress(
                scanned=tally.scanned, total=total, selected=tally.selected,
                redriven=tally.redriven, skipped=tally.skipped, failed=tally.failed,
                elapsed_s=time.monotonic() - started, dry_run=dry_run))
        return report

    def _route_action(self, route: Route, topics: Mapping[str, int]
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

    def _decide(self, msg: ConsumedMessage, topics: Mapping[str, int], now_text: bytes,
                want_sample: bool) -> _Decision:
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
                return _Decision(msg, "unmatched")
        route = decode_route(raw)
        action, target, partition, reason = self._route_action(route, topics)
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
        return _Decision(msg, action, target, partition, headers, reason, sample)

    def _plan_batch(self, msgs: list[ConsumedMessage], topics: Mapping[str, int],
                    stopped: set[int], finished: set[tuple[str, int]],
                    samples_so_far: int, last: Mapping[int, int]) -> _Batch:
        """Decisions for one consumed batch, in order, with their counts and the progress
        to commit; a failure stops its partition (progress stays *at* that record).

        Records past a partition's snapshotted end (`last` is end - 1) are dropped
        here and the partition is marked finished.
        """
        now_text = datetime.now(UTC).isoformat(timespec="milliseconds").encode()
        batch = _Batch()
        decisions = batch.decisions
        offsets = batch.offsets
        targets = batch.targets
        want = samples_so_far < self.sample_limit
        decide = self._decide
        fast = not self.selector.conditions
        route_action = self._route_action
        routes = self._routes
        id_prefix = f"{self.topic}/"
        moved = None if self.again else self._moved
        new = tuple.__new__  # a _Decision without the Python-level NamedTuple constructor
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
                        decisions.append(_Decision(msg, "skip", target, -1, None, ALREADY_MOVED))
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
                    decisions.append(new(_Decision, (msg, action, target, partition, headers,
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

    def _count(self, batch: _Batch, tally: _Tally, dry_run: bool) -> None:
        """Fold a committed (or, in a dry run, planned) batch into the tally."""
        redrives = sum(batch.targets.values())
        tally.scanned += len(batch.decisions)
        tally.unmatched += batch.unmatched
        tally.selected += len(batch.decisions) - batch.unmatched
        tally.skipped += batch.skipped
        tally.failed += batch.failed
        if not dry_run:
            tally.redriven += redrives
        tally.targets.update(batch.targets)
        tally.reasons.update(batch.reasons)
        tally.stops.update(batch.stops)
        tally.positions.update(batch.offsets)
        tally.errors.extend(batch.errors)
        tally.samples.extend(batch.samples[:max(0, self.sample_limit - len(tally.samples))])

    def _prefix(self, batch: _Batch, done: int) -> _Batch:
        """The part of a batch handled before a cancel (rare: only while rate-limited)."""
        out = _Batch()
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

    def _loop(self, reader, txn, topics, starts, ends, tally: _Tally, cancel, report, audit,
              dry_run: bool) -> None:
        """Consume, decide, produce, commit; one transaction per consumed batch.

        The commit of batch k (which waits for the broker) runs on a helper
        thread while batch k+1 is consumed and decided, so the Python work
        overlaps the broker round trips. Batch k+1 is produced only after
        batch k committed: one transaction at a time, as Kafka requires.
        """
        stopped: set[int] = set()
        finished: set[tuple[str, int]] = set()
        pacer = _Pacer(self.rate, cancel)
        meta = reader.consumer_group_metadata() if txn is not None else None
        pool = ThreadPoolExecutor(1, thread_name_prefix="lagdeck-commit") if txn else None
        pending: tuple[Future, _Batch] | None = None

        def settle() -> None:
            nonlocal pending
            if pending is None:
                return
            future, batch = pending
            pending = None
            future.result()  # raises the commit's error; nothing of that batch is counted
            tally.last_commit = time.monotonic()
            self._count(batch, tally, dry_run=False)
            if audit is not None:
                audit.counts = tally.counts()
            report()

        batches = iter_bounded(reader, ends, starts, batch=self.batch_size,
                               idle_timeout=self.timeout, done=finished, unfiltered=True)
        last = {p: end - 1 for (_, p), end in ends.items()}
        # The loop allocates a few small acyclic objects per record; the cyclic collector
        # would walk them again and again for nothing (a third of the time, measured).
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            for msgs in batches:
                planned = len(tally.samples) + (len(pending[1].samples) if pending else 0)
                batch = self._plan_batch(msgs, topics, stopped, finished, planned, last)
                settle()
                if cancel.is_set():
                    break
                if txn is None:
                    self._count(batch, tally, dry_run=True)
                    report()
                    continue
                self._txn(txn.begin_transaction, "beginning a transaction")
                if tally.first_produce is None and batch.targets:
                    tally.first_produce = time.monotonic()
                try:
                    done = self._produce_batch(txn, batch.decisions, pacer)
                except LagdeckError:
                    self._abort(txn)  # nothing of this batch may stay half-written
                    raise
                if done < len(batch.decisions):
                    batch = self._prefix(batch, done)
                if pool is None:  # made whenever there is a transaction, checked above
                    raise AssertionError("no commit pool for a transactional redrive")
                future = pool.submit(self._commit, txn, meta, batch.offsets,
                                     sum(batch.targets.values()))
                pending = (future, batch)
                if cancel.is_set():
                    break
            settle()
            if not cancel.is_set():
                self._check_complete(reader, finished)
        finally:
            if gc_was_enabled:
                gc.enable()
            batches.close()
            if pool is not None:
                pool.shutdown(wait=True)
            pending = txn = None  # see _execute: nothing may keep the producer alive

    def _check_complete(self, reader, finished: set[tuple[str, int]]) -> None:
        """The scan gives up on partitions that sent nothing for `timeout` seconds and
        leaves them assigned: that is a broker gone quiet, not the end of the work."""
        try:
            assigned = reader.assignment()
        except KafkaException:
            assigned = []
        stuck = sorted(tp.partition for tp in assigned
                       if (tp.topic, tp.partition) not in finished)
        if stuck:
            raise KafkaOperationError(
                f"redrive of {self.topic}: partition(s) {', '.join(map(str, stuck))} sent no "
                f"records for {self.timeout:g}s (is the broker reachable?); rerun to resume")

    def _produce_batch(self, txn, decisions: list[_Decision], pacer: _Pacer) -> int:
        """Produce the batch's redrives; returns how many decisions were handled (all,
        unless a cancel arrived while waiting for the rate limit)."""
        produce = txn.produce
        paced = pacer.rate is not None
        for i, d in enumerate(decisions):
            if d.action != "redrive":
                continue
            if paced and not pacer.wait():
                return i
            msg = d.msg
            try:
                produce(d.target, msg.value(), msg.key(), d.partition, headers=d.headers)
            except BufferError:
                self._produce_slow(txn, d)
            except KafkaException as exc:
                raise self._fenced(exc) or translate(exc, f"producing to {d.target}") from None
        return len(decisions)

    def _produce_slow(self, txn, d: _Decision) -> None:
        while True:
            txn.poll(0.05)
            try:
                txn.produce(d.target, d.msg.value(), d.msg.key(), d.partition,
                            headers=d.headers)
                return
            except BufferError:
                continue
            except KafkaException as exc:
                raise self._fenced(exc) or translate(exc, f"producing to {d.target}") from None

    def _on_delivery(self, err: KafkaError | None, _msg: Message) -> None:
        if err is not None and len(self._delivery_errors) < 5:
            self._delivery_errors.append(f"{err.name()}: {err.str()}")

    def _commit(self, txn, meta, offsets: Mapping[int, int], produced: int) -> None:
        delivery_errors = self._delivery_errors
        try:
            if offsets:
                txn.send_offsets_to_transaction(
                    [TopicPartition(self.topic, p, o) for p, o in offsets.items()],
                    meta, self.timeout)
            txn.commit_transaction(self.timeout)
        except KafkaException as exc:
            fenced = self._fenced(exc)
            if fenced is not None:
                raise fenced from None
            detail = "; ".join(delivery_errors) or describe(exc)
            self._abort(txn)
            raise KafkaOperationError(
                f"redrive of {self.topic}: a batch of {produced} records could not be "
                f"committed and was rolled back ({detail}); rerun to resume") from None
        if delivery_errors:  # should not happen: commit fails when a record failed
            raise KafkaOperationError(f"redrive of {self.topic}: {delivery_errors[0]}")

    def _abort(self, txn) -> None:
        try:
            txn.abort_transaction(min(self.timeout, ABORT_TIMEOUT))
        except KafkaException as exc:
            _log.warning("abort failed (the rerun fences the transaction instead): %s",
                         describe(exc))

    def _txn(self, call, doing: str) -> None:
        try:
            call()
        except KafkaException as exc:
            raise self._fenced(exc) or translate(exc, f"redrive of {self.topic}: {doing}") \
                from None

    def _fenced(self, exc: KafkaException) -> LagdeckError | None:
        """The one-line error for a producer that can no longer transact (usually fenced)."""
        err = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
        if err is None or not (err.fatal() or err.code() in _FENCED_CODES):
            return None
        return RedriveFenced(
            f"redrive of {self.topic} stopped: its transaction was fenced ({describe(exc)}); "
            f"most likely another redrive with progress group {self.group} started. What was "
            "committed stays committed; rerun when the other one is done")


def _audit_counts(result: RedriveResult) -> dict[str, int]:
    return {"selected": result.selected, "redriven": result.redriven,
            "skipped": result.skipped, "failed": result.failed,
            "scanned": result.scanned, "unmatched": result.unmatched,
            "behind": result.behind, "not_reached": result.not_reached}
