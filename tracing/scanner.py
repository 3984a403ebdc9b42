"""The bulk half of a lookup: read ranges once, answer, then index every record.

`FastScan` (phase 1) reads the ranges, decodes only the records the
prefilter flags and keeps the batches; once the lookup has its answer it
hands them to `Scanner` (phase 2), which turns batches of raw messages into
index postings with `FastDecoder`. Its hot loop works on
confluent-kafka messages directly: a `Record` per message would cost more
than the decoding.

A big cold scan is CPU-bound in Python, so it is split across processes by
partition (`Workers`): each worker process runs its own consumer over its
share, reports its matches, searches its kept batches for the ids of the
one hop when the caller sends them, then indexes its share into the same
SQLite index; the caller scans a share itself meanwhile. Workers are
only worth their start-up (~0.3 s) for scans of several hundred thousand
records.
"""

from __future__ import annotations

import gc
import os
import pickle
import select
import subprocess
import sys
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import groupby
from pathlib import Path
from typing import cast

from confluent_kafka import Message

from collectors.config import ClusterConfig
from collectors.errors import LagdeckError
from collectors.kafka import ConsumedMessage
from collectors.logs import get_logger
from collectors.redact import is_secret_key, remember_secret, scrub
from collectors.registry import RegistryConfig
from collectors.scan import PartitionRange, read_messages
from tracing.extract import FastDecoder, where_found
from tracing.flowfacts import FlowFacts
from tracing.frames import PayloadDecoder
from tracing.index import TP_BITS, CorrelationIndex
from tracing.prefilter import RawBatch
from tracing.settings import TraceSettings

#: Records decoded between two writes to the index (bounds memory on big scans).
FLUSH_EVERY = 100_000
#: Below this many records a scan runs in the calling process only.
PARALLEL_MIN = 300_000
#: Worker processes never exceed this (SQLite has one writer at a time anyway).
MAX_PROCESSES = 4
#: A process keeps at most this many records between the two phases (~1.4 KB each);
#: a bigger share is indexed while it is read, and the lookup answers after that.
MAX_KEPT = 2_000_000

TP = tuple[str, int]
#: progress(records_done, records_total); may raise to abort the lookup
Progress = Callable[[int, int], object]

_log = get_logger("trace.scanner")

# the stub's Message is too loose for consumed records (see ConsumedMessage)
_topic_of = cast("Callable[[ConsumedMessage], str]", Message.topic)
_partition_of = cast("Callable[[ConsumedMessage], int]", Message.partition)
_offset_of = cast("Callable[[ConsumedMessage], int]", Message.offset)
_key_of = cast("Callable[[ConsumedMessage], bytes | None]", Message.key)
_value_of = cast("Callable[[ConsumedMessage], bytes | None]", Message.value)
_headers_of = cast("Callable[[ConsumedMessage], list[tuple[str, bytes | None]] | None]",
                   Message.headers)
_timestamp_of = cast("Callable[[ConsumedMessage], tuple[int, int]]", Message.timestamp)


@dataclass
class PartitionPlan:
    """One partition in one lookup: what the index covered before, what is read now."""

    tp_id: int
    cov_start: int  # covered [cov_start, cov_end) before this lookup
    cov_end: int
    head_start: int | None  # also scan [head_start, cov_start)
    high: int  # end offset snapshot
    since_ms: int
    head_done: bool = False
    tail_done: bool = False
    tail_progress: int = 0

    def __post_init__(self) -> None:
        self.tail_progress = max(self.tail_progress, self.cov_end)

    @property
    def scanning(self) -> bool:
        return self.head_start is not None or self.high > self.cov_end

    def ranges(self, topic: str, partition: int) -> list[PartitionRange]:
        out = []
        if self.head_start is not None:
            out.append(PartitionRange(topic, partition, self.head_start, self.cov_start))
        if self.high > self.cov_end:
            out.append(PartitionRange(topic, partition, self.cov_end, self.high))
        return out

    def coverage(self, cutoff_ms: int) -> tuple[int, int, int]:
        """(start, end, since_ms) the index may claim after this lookup's progress."""
        start, since = self.cov_start, self.since_ms
        if self.head_start is not None and self.head_done:
            start, since = self.head_start, min(since, cutoff_ms)
        end = self.high if self.tail_done else max(self.cov_end, self.tail_progress)
        return start, end, since


@dataclass
class Scanner:
    """Indexes the records it is fed and keeps those carrying the wanted ids.

    `plans` must hold every partition whose messages are fed; `owned` are the
    partitions whose coverage this scanner writes (default: all of `plans`).
    """

    index: CorrelationIndex
    decoder: FastDecoder
    wanted: frozenset[bytes]
    plans: Mapping[TP, PartitionPlan]
    cutoff_ms: int
    owned: frozenset[TP] | None = None
    progress: Callable[[int], object] | None = None
    done: int = 0
    #: (topic, partition, row) of the records carrying a wanted id
    matches: list[tuple[str, int, tuple]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.pending: defaultdict[bytes, list[int]] = defaultdict(list)
        self.rows: defaultdict[int, list[tuple]] = defaultdict(list)
        self.flow = FlowFacts(self.decoder.settings)
        self.facts: defaultdict[int, list[tuple]] = defaultdict(list)
        self.unflushed = 0
        self._writer: ThreadPoolExecutor | None = None
        self._writing: Future | None = None

    def on_done(self, r: PartitionRange) -> None:
        plan = self.plans.get((r.topic, r.partition))
        if plan is None:
            return
        if plan.head_start is not None and r.start <= plan.head_start and r.end >= plan.cov_start:
            plan.head_done = True
        if r.start <= plan.cov_end and r.end >= plan.high:
            plan.tail_done = True

    def feed(self, msgs: list[ConsumedMessage]) -> None:
        keys = list(zip(map(_topic_of, msgs), map(_partition_of, msgs), strict=True))
        start = 0
        for tp, run in groupby(keys):
            size = len(list(run))
            part = msgs[start:start + size]
            start += size
            plan = self.plans[tp]
            last = self._index(tp, part, plan.tp_id)
            if last >= plan.cov_end:
                plan.tail_progress = max(plan.tail_progress, last + 1)
        self.done += len(msgs)
        if self.unflushed >= FLUSH_EVERY:
            self.flush()
        if self.progress is not None:
            self.progress(self.done)

    def _index(self, tp: TP, msgs: list[ConsumedMessage], tp_id: int) -> int:
        decode = self.decoder.decode
        pending = self.pending
        rows = self.rows[tp_id]
        wanted = self.wanted
        matches = self.matches
        facts = self.facts[tp_id]
        fact = self.flow.fact
        topic = tp[0]
        offset = -1
        for offset, stamp, key, value, headers in zip(
                map(_offset_of, msgs), map(_timestamp_of, msgs), map(_key_of, msgs),
                map(_value_of, msgs), map(_headers_of, msgs), strict=True):
            ts_type, ts = stamp
            ids, row = decode(offset, ts if ts_type and ts >= 0 else None, key, value, headers)
            rows.append(row)
            facts.append(fact(topic, offset, row[1], key, value, headers, row))
            pos = (offset << TP_BITS) | tp_id
            for ident in ids:
                pending[ident].append(pos)
            if not wanted.isdisjoint(ids):
                matches.append((tp[0], tp[1], row))
        self.unflushed += len(msgs)
        return offset

    @property
    def scanned(self) -> int:
        return self.done

    def flush(self) -> None:
        """Hand postings, rows and the coverage they justify to the writer thread.

        The write (one transaction) compresses and stores in a background
        thread: zlib and SQLite release the GIL, so decoding goes on meanwhile.
        At most one write is outstanding, which bounds memory to two batches.
        """
        coverage = {p.tp_id: p.coverage(self.cutoff_ms) for tp, p in self.plans.items()
                    if p.scanning and (self.owned is None or tp in self.owned)}
        batch = (self.pending, coverage, self.rows, (self.facts, self.flow.take_names()))
        self.pending = defaultdict(list)
        self.rows = defaultdict(list)
        self.facts = defaultdict(list)
        self.unflushed = 0
        self.wait()
        if batch[0] or batch[1] or batch[2]:
            if self._writer is None:
                self._writer = ThreadPoolExecutor(1, thread_name_prefix="lagdeck-index")
            self._writing = self._writer.submit(self.index.write, *batch)

    def wait(self) -> None:
        """Wait for the outstanding write; its error, if any, is raised here."""
        writing, self._writing = self._writing, None
        if writing is not None:
            writing.result()

    def close(self) -> None:
        try:
            self.wait()
        finally:
            writer, self._writer = self._writer, None
            if writer is not None:
                writer.shutdown(wait=True)

    def run(self, cluster: ClusterConfig, ranges: Sequence[PartitionRange],
            client=None) -> None:
        """Read `ranges` to their ends; the cyclic GC is paused meanwhile.

        A scan allocates millions of small objects that all live until the
        next flush; the collector would walk them over and over for nothing.
        """
        collect = gc.isenabled()
        gc.disable()
        try:
            for msgs in read_messages(cluster, ranges, batch=10_000, client=client,
                                      on_done=self.on_done):
                self.feed(msgs)
        finally:
            try:
                self.flush()
                self.close()
            finally:
                if collect:
                    gc.enable()


# -- two phases: answer first, index afterwards -------------------------------------

#: (topic, partition, row) of one record
Found = tuple[str, int, tuple]


@dataclass
class FastScan:
    """Phase 1 of a lookup: read the ranges once, find the wanted records, keep the batches.

    Only the records the prefilter (`tracing.prefilter`) flags are decoded,
    exactly, so the answer is known after one pass at nearly the speed of
    reading. The raw batches are kept: `related` searches them again for ids
    learned from the matches (one hop), and `index` (phase 2) decodes all
    of them into the correlation index without reading Kafka a second time.
    """

    decoder: FastDecoder
    wanted: frozenset[bytes]
    progress: Callable[[int], object] | None = None
    done: int = 0
    #: records carrying a wanted id
    matches: list[Found] = field(default_factory=list)
    #: the id as typed, looked for in every header value and payload string (see `where_found`)
    discover: str | None = None
    #: keep the batches for the hop and the indexing (False: a discovery-only pass)
    keep: bool = True
    #: records carrying `discover` outside the configured names: (topic, partition, row, where)
    discovered: list[tuple[str, int, tuple, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.kept: deque[tuple[list[ConsumedMessage], RawBatch]] = deque()
        self._needle = (self.discover.strip().encode("utf-8", errors="surrogatepass")
                        if self.discover else b"")
        #: position -> (ids, row) of every record decoded so far
        self.decoded: dict[tuple[str, int, int], tuple[set[bytes], tuple]] = {}
        self.finished: list[PartitionRange] = []
        #: ranges read to their end (both paths; `finished` is for phase 2 only)
        self.completed: set[PartitionRange] = set()

    def run(self, cluster: ClusterConfig, ranges: Sequence[PartitionRange],
            index: CorrelationIndex, plans: Mapping[TP, PartitionPlan], cutoff_ms: int,
            owned: frozenset[TP] | None = None) -> None:
        """Phase 1 over `ranges`; a share too big to keep is indexed as it is read instead."""
        if self.keep and sum(r.size for r in ranges) > MAX_KEPT:
            # One pass that indexes everything: the index then answers the hop and
            # the dead letters, and `related`, `dead_letters` and `index` have nothing to add.
            scanner = Scanner(index, self.decoder, self.wanted, plans, cutoff_ms, owned=owned,
                              progress=self.progress)
            claim = scanner.on_done

            def on_done(r: PartitionRange) -> None:
                self.completed.add(r)
                claim(r)

            scanner.on_done = on_done  # type: ignore[method-assign]
            scanner.run(cluster, ranges)
            self.done, self.matches = scanner.done, scanner.matches
            return
        collect = gc.isenabled()
        gc.disable()  # millions of long-lived objects: see Scanner.run
        try:
            def on_done(r: PartitionRange) -> None:
                self.completed.add(r)
                self.finished.append(r)

            for msgs in read_messages(cluster, ranges, batch=10_000, on_done=on_done):
                self.feed(msgs)
        finally:
            if collect:
                gc.enable()

    def feed(self, msgs: list[ConsumedMessage]) -> None:
        batch = RawBatch(list(map(_key_of, msgs)), list(map(_value_of, msgs)),
                         list(map(_headers_of, msgs)), self.decoder)
        if self.keep:
            self.kept.append((msgs, batch))
        wanted = self.wanted
        needle = self._needle
        # The id as typed is one of the wanted ids: search its bytes once, for both uses.
        spelled = batch.candidates([needle]) if needle else set()
        candidates = spelled | batch.candidates(wanted - {needle}) if needle \
            else batch.candidates(wanted)
        for i in sorted(candidates.union(batch.irregular)):
            pos, (ids, row) = self._decode(msgs, batch, i)
            if not wanted.isdisjoint(ids):
                self.matches.append((pos[0], pos[1], row))
        if needle and self.discover is not None:
            # The id as typed, anywhere: records whose bytes hold it, and JSON with escapes.
            values = batch.values
            for i in sorted(spelled.union(j for j in batch.irregular
                                          if (v := values[j]) and b"\\" in v)):
                pos, (ids, row) = self._decode(msgs, batch, i)
                if not wanted.isdisjoint(ids):
                    continue
                where = where_found(self.discover, values[i], batch.headers[i],
                                    self.decoder.payloads)
                if where is not None:
                    self.discovered.append((pos[0], pos[1], row, where))
        self.done += len(msgs)
        if self.progress is not None:
            self.progress(self.done)

    def _decode(self, msgs: list[ConsumedMessage], batch: RawBatch, i: int):
        m = msgs[i]
        pos = (m.topic(), m.partition(), m.offset())
        got = self.decoded.get(pos)
        if got is None:
            ts_type, ts = m.timestamp()
            got = self.decoder.decode(pos[2], ts if ts_type and ts >= 0 else None,
                                      batch.keys[i], batch.values[i], batch.headers[i])
            self.decoded[pos] = got
        return pos, got

    def related(self, ids: frozenset[bytes]) -> list[Found]:
        """Records read in phase 1 carrying any of `ids` (exact, like an index lookup)."""
        if not ids:
            return []
        out = []
        for msgs, batch in self.kept:
            for i in sorted(batch.candidates(ids).union(batch.irregular)):
                pos, (found, row) = self._decode(msgs, batch, i)
                if not ids.isdisjoint(found):
                    out.append((pos[0], pos[1], row))
        return out

    def dead_letters(self) -> list[Found]:
        """Decoded dead letters (always decoded: they are irregular) with their rows."""
        return [(t, p, row) for (t, p, _), (_, row) in self.decoded.items()
                if row[7] is not None]

    def index(self, index: CorrelationIndex, plans: Mapping[TP, PartitionPlan],
              cutoff_ms: int, owned: frozenset[TP] | None = None,
              progress: Callable[[int], object] | None = None) -> None:
        """Phase 2: decode every kept batch into the index, then claim the coverage.

        Finished ranges are only reported after their records were fed, so no
        flush claims coverage for records not yet written.
        """
        if not self.kept and not self.finished:
            return  # nothing read, or indexed while read (a share above MAX_KEPT)
        scanner = Scanner(index, self.decoder, frozenset(), plans, cutoff_ms, owned=owned,
                          progress=progress)
        collect = gc.isenabled()
        gc.disable()
        try:
            while self.kept:
                msgs, _ = self.kept.popleft()
                scanner.feed(msgs)
            for r in self.finished:
                scanner.on_done(r)
        finally:
            try:
                scanner.flush()
                scanner.close()
            finally:
                self.decoded.clear()
                if collect:
                    gc.enable()


# -- parallel scans ---------------------------------------------------------------


@dataclass(frozen=True)
class ShareJob:
    """What a worker process needs (picklable: no clients, no open files)."""

    properties: dict[str, str]
    index_path: str
    fingerprint: str
    settings: TraceSettings
    wanted: frozenset[bytes]
    cutoff_ms: int
    plans: dict[TP, PartitionPlan]
    registry: RegistryConfig | None = None
    discover: str | None = None


@dataclass(frozen=True)
class ShareAnswer:
    """What a worker found in phase 1: records carrying the ids, and its dead letters."""

    scanned: int = 0
    matches: tuple[Found, ...] = ()
    dead_letters: tuple[Found, ...] = ()
    discovered: tuple[tuple[str, int, tuple, str], ...] = ()


@dataclass(frozen=True)
class ShareResult:
    scanned: int = 0
    error: str | None = None
    error_type: str | None = None


def run_share(job: ShareJob, send: Callable[[str, object], None],
              receive: Callable[[], object]) -> None:
    """The body of a scan worker process, in three steps the parent drives.

    1. scan its share (phase 1) and send ("answer", ShareAnswer);
    2. receive the ids of the one-hop search (None: the parent is gone) and
       send ("related", matches);
    3. index the share (phase 2) and send ("result", ShareResult).
    """
    try:
        for key, value in job.properties.items():
            if is_secret_key(key):
                remember_secret(value)
        if job.registry is not None:
            for secret in (job.registry.password, job.registry.bearer_token):
                if secret:
                    remember_secret(secret)
        cluster = ClusterConfig(job.properties)
        payloads = PayloadDecoder(job.registry)
        last = [0.0]

        def report(done: int) -> None:
            now = time.monotonic()
            if now - last[0] >= 0.2:
                last[0] = now
                send("progress", done)

        with CorrelationIndex(Path(job.index_path), job.fingerprint) as index:
            fast = FastScan(FastDecoder(job.settings, payloads), job.wanted, progress=report,
                            discover=job.discover)
            ranges = [r for tp, plan in job.plans.items() for r in plan.ranges(*tp)]
            fast.run(cluster, ranges, index, job.plans, job.cutoff_ms)
            send("progress", fast.done)
            send("answer", ShareAnswer(fast.done, tuple(fast.matches),
                                       tuple(fast.dead_letters()), tuple(fast.discovered)))
            ids = receive()
            if isinstance(ids, frozenset):
                send("related", tuple(fast.related(ids)))
            fast.index(index, job.plans, job.cutoff_ms)
        result = ShareResult(fast.done)
    except BaseException as exc:  # reported to the parent, which raises it
        _log.info("scan worker failed", exc_info=True)
        result = ShareResult(error=scrub(str(exc)) or type(exc).__name__,
                             error_type=type(exc).__name__)
    send("result", result)


def frame(obj: object) -> bytes:
    data = pickle.dumps(obj)
    return len(data).to_bytes(4, "big") + data


class _Worker:
    """One `python -m tracing.scanworker` process: framed pickles both ways."""

    def __init__(self, job: ShareJob) -> None:
        # No preexec_fn (unsafe next to librdkafka's threads): a worker whose parent
        # died stops at its next progress report, on the broken pipe.
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tracing.scanworker"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            close_fds=True)
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.out = self.proc.stdout
        self.buffer = b""
        self.done = 0
        self.answer: ShareAnswer | None = None
        self.related: tuple[Found, ...] | None = None
        self.result: ShareResult | None = None
        try:
            self.proc.stdin.write(frame(job))
            self.proc.stdin.flush()
        except OSError:
            self.result = ShareResult(error="a scan worker did not start")

    def send(self, obj: object) -> None:
        """The one message after the job (the ids to follow); closes the worker's stdin."""
        stdin = self.proc.stdin
        if stdin is None or stdin.closed:
            return
        try:
            stdin.write(frame(obj))
            stdin.close()
        except OSError:
            if self.result is None:
                self.result = ShareResult(error="a scan worker stopped early")

    def read(self) -> None:
        chunk = os.read(self.out.fileno(), 1 << 20)
        if not chunk:
            if self.result is None:
                code = self.proc.wait(timeout=5)
                self.result = ShareResult(error=f"a scan worker exited with code {code}")
            return
        self.buffer += chunk
        while len(self.buffer) >= 4:
            size = int.from_bytes(self.buffer[:4], "big")
            if len(self.buffer) < 4 + size:
                break
            kind, payload = pickle.loads(self.buffer[4:4 + size])
            self.buffer = self.buffer[4 + size:]
            if kind == "progress":
                self.done = payload
            elif kind == "answer":
                self.answer = payload
            elif kind == "related":
                self.related = payload
            else:
                self.result = payload


def split(plans: Mapping[TP, PartitionPlan], shares: int) -> list[dict[TP, PartitionPlan]]:
    """Partitions into `shares` groups of about equal record counts (largest first)."""
    groups: list[dict[TP, PartitionPlan]] = [{} for _ in range(shares)]
    loads = [0] * shares
    sized = sorted(((sum(r.size for r in p.ranges(*tp)), tp) for tp, p in plans.items()
                    if p.scanning), reverse=True)
    for size, tp in sized:
        i = loads.index(min(loads))
        groups[i][tp] = plans[tp]
        loads[i] += size
    return [g for g in groups if g]


def processes_for(records: int, configured: int | None) -> int:
    """How many processes a scan of `records` should use (1: no workers)."""
    if configured is not None:
        return max(1, min(configured, MAX_PROCESSES))
    if records < PARALLEL_MIN:
        return 1
    return max(1, min(os.cpu_count() or 1, MAX_PROCESSES))


class Workers:
    """Worker processes scanning shares of a lookup, started before the caller scans its own.

    They run `python -m tracing.scanworker` (not `multiprocessing`, whose
    `spawn` re-imports the caller's main module and whose `fork` is unsafe
    next to librdkafka's threads).
    """

    def __init__(self, cluster: ClusterConfig, index: CorrelationIndex, settings: TraceSettings,
                 wanted: frozenset[bytes], cutoff_ms: int,
                 shares: Iterable[dict[TP, PartitionPlan]],
                 registry: RegistryConfig | None = None, discover: str | None = None) -> None:
        self.workers: list[_Worker] = []
        try:
            for share in shares:
                job = ShareJob(dict(cluster.properties), str(index.path), index.fingerprint,
                               settings, wanted, cutoff_ms, share, registry, discover)
                self.workers.append(_Worker(job))
        except OSError as exc:
            self.stop()
            raise LagdeckError(f"cannot start a scan worker process: {exc}") from None

    @property
    def progress(self) -> int:
        return sum(w.done for w in self.workers)

    def poll(self, timeout: float = 0.0) -> None:
        """Take in the progress reports and results that have arrived."""
        waiting = {w.out.fileno(): w for w in self.workers if w.result is None}
        if not waiting:
            return
        ready, _, _ = select.select(list(waiting), [], [], timeout)
        for fd in ready:
            waiting[fd].read()

    def _wait(self, ready: Callable[[_Worker], bool],
              progress: Callable[[int], object] | None = None) -> None:
        """Poll until every worker is `ready` or has its result; raise a worker's error."""
        while any(w.result is None and not ready(w) for w in self.workers):
            self.poll(0.2)
            if progress is not None:
                progress(self.progress)
        failed = [w.result for w in self.workers if w.result is not None and w.result.error]
        if failed:
            raise LagdeckError(f"scanning topics failed: {failed[0].error}")

    def answers(self, progress: Callable[[int], object] | None = None) -> list[ShareAnswer]:
        """Phase 1 of every worker: what its share holds of the wanted ids."""
        self._wait(lambda w: w.answer is not None, progress)
        return [w.answer for w in self.workers if w.answer is not None]

    def related(self, ids: frozenset[bytes]) -> list[Found]:
        """The one-hop search in every worker's kept batches."""
        for w in self.workers:
            w.send(ids)
        self._wait(lambda w: w.related is not None)
        return [found for w in self.workers for found in w.related or ()]

    def join(self, progress: Callable[[int], object] | None = None) -> list[ShareResult]:
        """Phase 2: wait until every worker has indexed its share."""
        for w in self.workers:
            w.send(None)  # a worker still waiting for the hop ids goes on to index
        while any(w.result is None for w in self.workers):
            self.poll(0.2)
            if progress is not None:
                progress(self.progress)
        for w in self.workers:
            try:
                w.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                w.proc.kill()
                w.proc.wait(timeout=5)
            w.out.close()
        results = [w.result for w in self.workers if w.result is not None]
        failed = [r for r in results if r.error]
        if failed:
            raise LagdeckError(f"scanning topics failed: {failed[0].error}")
        return results

    def stop(self) -> None:
        """Terminate the workers this object started (after an abort or an error)."""
        for w in self.workers:
            if w.proc.stdin is not None and not w.proc.stdin.closed:
                try:
                    w.proc.stdin.close()
                except OSError:
                    _log.debug("closing a scan worker's stdin", exc_info=True)
            if w.proc.poll() is None:
                w.proc.terminate()
            try:
                w.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                w.proc.kill()
                w.proc.wait(timeout=5)
            w.out.close()
