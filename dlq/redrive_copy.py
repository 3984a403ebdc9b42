"""The redrive's transactional copy loop.

One Kafka transaction per consumed batch commits the produced records and the
progress group's new offsets together (`send_offsets_to_transaction`), so a
crash loses nothing and a rerun resumes at the last commit. The commit of
batch k runs on a helper thread while batch k+1 is consumed and planned;
batch k+1 is produced only after batch k committed (one transaction at a
time). A producer that can no longer transact (fenced by a second redrive of
the same group) raises `RedriveFenced`; a batch that cannot be committed is
aborted (or left to be fenced by the rerun when the broker is gone).
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from collectors.config import ClusterConfig
from collectors.errors import KafkaOperationError, LagdeckError
from collectors.kafka import describe, producer, translate
from collectors.logs import get_logger
from collectors.scan import iter_bounded
from dlq.redrive_plan import Batch, Decision, Planner
from dlq.redrive_report import Tally

#: seconds an abort may take: a dead broker cannot take it (the rerun fences it instead)
ABORT_TIMEOUT = 5.0
#: A producer that fails with one of these can no longer transact (usually: fenced).
_FENCED_CODES = {KafkaError._STATE, KafkaError._FENCED, KafkaError._FATAL,
                 KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH}

_log = get_logger("redrive")


class RedriveFenced(LagdeckError):
    """Another redrive with the same progress group took over; what was committed stays."""


class Pacer:
    """Spaces produced records `1/rate` apart on an absolute schedule (no drift)."""

    def __init__(self, rate: float | None, cancel: threading.Event) -> None:
        self.rate = rate
        self.cancel = cancel
        self.start: float | None = None
        self.count = 0

    def wait(self) -> bool:
        """Block until the next record is due; False if cancelled meanwhile."""
        if self.rate is None:  # callers wait only when paced (a rate is set)
            raise AssertionError("Pacer.wait without a rate")
        now = time.monotonic()
        if self.start is None:
            self.start = now
        delay = self.start + self.count / self.rate - now
        if delay > 0 and self.cancel.wait(delay):
            return False
        self.count += 1
        return True


@dataclass
class Pass:
    """One pass of the copy loop over the snapshotted range: what it reads, writes and counts."""

    reader: Consumer
    #: the transactional producer; None in a dry run (plan and count, write nothing)
    txn: Producer | None
    #: partition count per topic on the cluster (routing)
    topics: Mapping[str, int]
    starts: dict[tuple[str, int], int]
    ends: dict[tuple[str, int], int]
    tally: Tally
    cancel: threading.Event
    #: sends the tally to the progress callback
    report: Callable[[], None]
    #: the open audit entry (its counts follow every commit); None in a dry run
    audit: Any = None


class TransactionalCopy:
    """The copy loop: consume a batch, produce its redrives and commit them with the
    group's new offsets in one Kafka transaction; rate-limited, cancellable, and
    stopped cleanly when fenced or when the broker stops answering."""

    def __init__(self, cluster: ClusterConfig, topic: str, *, group: str, planner: Planner,
                 rate: float | None, batch_size: int, timeout: float) -> None:
        self.cluster = cluster
        self.topic = topic
        self.group = group
        self.planner = planner
        self.rate = rate
        self.batch_size = batch_size
        self.timeout = timeout
        self._delivery_errors: list[str] = []

    def open(self) -> Producer:
        """The transactional producer; `init_transactions` fences (and aborts) any earlier
        instance of this redrive first."""
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
        try:
            txn.init_transactions(self.timeout)
        except KafkaException as exc:
            del txn  # the error must not keep the producer (and its connections) alive
            raise translate(exc, f"starting the redrive transaction ({self.group})") from None
        return txn

    def loop(self, run: Pass) -> None:
        """Consume, decide, produce, commit; one transaction per consumed batch.

        The commit of batch k (which waits for the broker) runs on a helper
        thread while batch k+1 is consumed and decided, so the Python work
        overlaps the broker round trips. Batch k+1 is produced only after
        batch k committed: one transaction at a time, as Kafka requires.
        """
        reader, txn, tally, cancel, report, audit = (run.reader, run.txn, run.tally, run.cancel,
                                                     run.report, run.audit)
        starts, ends, topics = run.starts, run.ends, run.topics
        planner = self.planner
        stopped: set[int] = set()
        finished: set[tuple[str, int]] = set()
        pacer = Pacer(self.rate, cancel)
        meta = reader.consumer_group_metadata() if txn is not None else None
        pool = ThreadPoolExecutor(1, thread_name_prefix="lagdeck-commit") if txn else None
        pending: tuple[Future, Batch] | None = None

        def settle() -> None:
            nonlocal pending
            if pending is None:
                return
            future, batch = pending
            pending = None
            future.result()  # raises the commit's error; nothing of that batch is counted
            tally.last_commit = time.monotonic()
            tally.add(batch, planner.sample_limit, dry_run=False)
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
                batch = planner.plan_batch(msgs, topics, stopped, finished, planned, last)
                settle()
                if cancel.is_set():
                    break
                if txn is None:
                    tally.add(batch, planner.sample_limit, dry_run=True)
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
                    batch = planner.prefix(batch, done)
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
            pending = txn = run.txn = None  # see Redrive._execute: nothing may keep it alive

    def _check_complete(self, reader: Consumer, finished: set[tuple[str, int]]) -> None:
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

    def _produce_batch(self, txn, decisions: list[Decision], pacer: Pacer) -> int:
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

    def _produce_slow(self, txn, d: Decision) -> None:
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

    def _commit(self, txn: Producer, meta: Any, offsets: Mapping[int, int], produced: int) -> None:
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

    def _abort(self, txn: Producer) -> None:
        try:
            txn.abort_transaction(min(self.timeout, ABORT_TIMEOUT))
        except KafkaException as exc:
            _log.warning("abort failed (the rerun fences the transaction instead): %s",
                         describe(exc))

    def _txn(self, call: Callable[[], object], doing: str) -> None:
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
