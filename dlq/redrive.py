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

Parts: `dlq.redrive_plan` decides per record (selection, routing, loop
protection), `dlq.redrive_copy` runs the transactional copy loop, and
`dlq.redrive_report` holds the progress, result and audit counts; `Redrive`
here snapshots the range, wires them together and audits the run.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

from confluent_kafka import Consumer, KafkaException, TopicPartition

from collectors.config import ClusterConfig
from collectors.errors import (
    InvalidValue,
    KafkaOperationError,
    LagdeckError,
    NotFoundError,
    UsageError,
)
from collectors.kafka import DEFAULT_TIMEOUT, consumer, translate
from collectors.logs import get_logger
from collectors.own_groups import REDRIVE_GROUP_PREFIX
from collectors.scan import READER_CONF, count_records, watermarks
from collectors.topics import list_topics
from dlq.audit import audited
from dlq.guard import ensure_writable
from dlq.redrive_copy import ABORT_TIMEOUT, Pass, RedriveFenced, TransactionalCopy
from dlq.redrive_plan import ALREADY_MOVED, TARGET_CHECK_LIMIT, Planner
from dlq.redrive_report import (
    ProgressCallback,
    RedriveProgress,
    RedriveResult,
    RedriveSample,
    Tally,
    audit_counts,
    reporter,
)
from dlq.select import PickedRecords, Selector, parse_where
from tracing.frames import PayloadDecoder

__all__ = [
    "ABORT_TIMEOUT", "ALREADY_MOVED", "DEFAULT_BATCH", "DEFAULT_MAX_ATTEMPTS",
    "TARGET_CHECK_LIMIT", "ProgressCallback", "Redrive", "RedriveAborted", "RedriveFenced",
    "RedriveProgress", "RedriveResult", "RedriveSample", "default_group",
]

DEFAULT_BATCH = 5000
#: (topic, partition) -> offset
Offsets = dict[tuple[str, int], int]
DEFAULT_MAX_ATTEMPTS = 3

_log = get_logger("redrive")


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
        self.planner = Planner(cluster, topic, to=to, selector=self.selector,
                               payloads=self.payloads, max_attempts=max_attempts, again=again,
                               force=force, sample_limit=samples, timeout=timeout)
        self.copier = TransactionalCopy(cluster, topic, group=self.group, planner=self.planner,
                                        rate=rate, batch_size=self.batch_size, timeout=timeout)

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
                audit.counts = audit_counts(exc.result)  # committed only, as the summary
                raise
            audit.counts = audit_counts(result)
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

        txn = None if dry_run else self.copier.open()
        run: Pass | None = None

        reader = consumer(self.cluster, group=self.group, **READER_CONF,
                          **{"isolation.level": "read_committed"})
        started = time.monotonic()
        tally = Tally()
        try:
            marks = watermarks(self.cluster, parts, self.timeout, reader)
            ends = {k: hi for k, (lo, hi) in marks.items()}
            starts = self._committed(reader, marks)
            total = sum(max(0, ends[k] - starts[k]) for k in ends)
            _log.info("redrive %s group=%s dry_run=%s starts=%s ends=%s", self.topic, self.group,
                      dry_run, starts, ends)
            report = reporter(progress, tally, total, started, dry_run)
            report()
            self.planner.start(starts, ends)
            fenced = None
            try:
                run = Pass(reader, txn, topics, starts, ends, tally, cancel, report, audit)
                self.copier.loop(run)
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
            if run is not None:
                run.txn = None
        return result

    def _result(self, tally: Tally, starts: Offsets, ends: Offsets, cancel: threading.Event,
                started: float, dry_run: bool, left: tuple[int, int],
                fenced: str | None) -> RedriveResult:
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

    def _committed(self, reader: Consumer, marks: Mapping[tuple[str, int], tuple[int, int]]
                   ) -> Offsets:
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

    def _left(self, tally: Tally, starts: Offsets, ends: Offsets,
              stopped_early: bool) -> tuple[int, int]:
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
