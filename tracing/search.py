"""Find every event of one order and build its timeline: bounded scan + correlation index.

    timeline = find_timeline(cluster, "ord_8x92k", since_seconds=3600)
    for event in timeline.events:
        print(event.timestamp, event.topic, event.event_type, event.consumers, event.stuck)

How a lookup runs:

1. List the topics (regex, default all non-internal) and snapshot their
   earliest/end offsets and topic ids; retire index parts whose topic was
   deleted and recreated.
2. Read, with a fresh consumer in `consume(n)` batches, the new tail of every
   partition since the last lookup and (the first time, or for a longer
   `--since`) the range from `--since` up to what is covered. This first
   pass decodes only the records a substring prefilter on the raw bytes
   flags (`tracing.prefilter`: it can over-report, never miss) and keeps
   the batches in memory. A big scan is split across processes
   (`tracing.scanner`).
3. Answer from the index (what it covered before) plus the scan's matches:
   the records carrying the id, then one hop to records sharing their trace
   or correlation ids (an event with only a `traceparent` joins its order
   this way; the kept batches are searched again for those ids), then dead
   letters that point at any of them. Old records are never fetched again.
   `on_answer` gets the timeline now.

   The hop only takes events that belong to this order: an event that
   carries another order's id (a correlation id or a payload order id not
   among this order's) does not join, and an id that events of
   `SHARED_ID_ORDERS` or more distinct orders carry (a batch job's
   traceparent, a session id) is not followed at all; the answer says which
   id was not followed and why.

   When the configured names find nothing, the id is looked for in every
   header value and every string field of the decoded payloads
   (`where_found`): during the scan, and over what the index covers by
   reading it again. The answer says where it was found, so the operator can
   add that header or path to `[trace]` and have it indexed.
4. Then every kept record is decoded into the index (the second phase), so
   the next lookup of *any* id there needs no scan; `find` returns when
   that is done.

The timeline itself uses the consumer groups' committed offsets (pure,
`tracing.timeline`).

`Tracer` keeps the index open between lookups (the TUI holds one);
`find_timeline` is the one-shot form the CLI uses.
"""

from __future__ import annotations

import re
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace

from confluent_kafka.admin import AdminClient

from collectors.config import ClusterConfig, Settings
from collectors.durations import duration_seconds
from collectors.errors import InvalidValue, NothingMatches, UsageError
from collectors.kafka import DEFAULT_TIMEOUT, admin
from collectors.logs import get_logger
from collectors.registry import RegistryConfig
from collectors.scan import (
    PartitionRange,
    group_offsets,
    offset_bounds,
    offsets_for_times,
    topic_ids,
)
from collectors.topics import list_topics
from tracing.extract import (
    MAX_KEPT_VALUE,
    EventInfo,
    FastDecoder,
    event_from_row,
    reference_id,
)
from tracing.frames import BINARY, Payload, PayloadDecoder
from tracing.headers import MAX_ID_BYTES, normalise_query, trace_id_forms
from tracing.index import CorrelationIndex, Coverage, index_path
from tracing.jaeger import fetch_spans
from tracing.scanner import (
    FastScan,
    Found,
    PartitionPlan,
    ShareAnswer,
    Workers,
    processes_for,
    split,
)
from tracing.settings import TraceSettings, from_settings
from tracing.timeline import ScanStats, Timeline, build_timeline

DAY = 86400.0
#: Ids of the matched events followed to related events (one hop).
MAX_RELATED_IDS = 32
#: Events in one timeline; an id shared by more (a batch id?) keeps the most recent.
MAX_EVENTS = 5000
#: An id carried by events of this many distinct orders (correlation or payload order
#: ids) is not followed by the hop: it is a batch's, a job's or a session's, not an order's.
SHARED_ID_ORDERS = 3
#: An id carried by more events than this is not followed by the hop either.
MAX_HOP_EVENTS = 1000

#: progress(records_done, records_total); may raise to abort the lookup
Progress = Callable[[int, int], object]

_log = get_logger("trace.search")


def parse_duration(text: str, flag: str = "duration") -> float:
    """`90`, `90s`, `15m`, `24h`, `7d`, `1h30m` -> seconds; a bad value is a usage error."""
    try:
        return duration_seconds(text)
    except ValueError:
        raise UsageError(f"{flag}: {text!r} is not a duration "
                         "(examples: 90s, 15m, 24h, 7d, PT1H)") from None


def query_ids(query: str) -> tuple[str, ...]:
    """The id as typed plus the trace ids it may stand for (see `trace_id_forms`)."""
    q = normalise_query(query)
    if not q:
        raise UsageError("the id to trace is empty")
    if len(q.encode("utf-8", errors="replace")) > MAX_ID_BYTES:
        raise UsageError(f"the id to trace is longer than {MAX_ID_BYTES} bytes")
    return (q, *trace_id_forms(q))


@dataclass
class _Scan:
    """One lookup's scan between its two phases: the answer's parts, then the indexing."""

    own: FastScan
    plans: dict[tuple[str, int], PartitionPlan]
    owned: frozenset[tuple[str, int]]
    cutoff_ms: int
    workers: Workers | None
    answers: list[ShareAnswer]
    #: the ranges this process set out to read
    planned: tuple[PartitionRange, ...] = ()

    @property
    def unread(self) -> list[PartitionRange]:
        """Ranges the scan gave up on (nothing arrived for its idle timeout: usually the
        broker stopped answering); their records are missing from the answer."""
        done = self.own.completed

        def read(r: PartitionRange) -> bool:
            start = max(r.start, 0)
            return r.end <= start or any(
                c.topic == r.topic and c.partition == r.partition and c.start <= start
                and c.end >= r.end for c in done)

        return [r for r in self.planned if not read(r)]

    @property
    def scanned(self) -> int:
        return self.own.done + sum(a.scanned for a in self.answers)

    @property
    def matches(self) -> list[Found]:
        return self.own.matches + [m for a in self.answers for m in a.matches]

    def dead_letters(self) -> list[Found]:
        return self.own.dead_letters() + [d for a in self.answers for d in a.dead_letters]

    def discovered(self) -> list[tuple[str, int, tuple, str]]:
        return self.own.discovered + [d for a in self.answers for d in a.discovered]

    def related(self, ids: frozenset[bytes]) -> list[Found]:
        found = self.own.related(ids)
        if self.workers is not None:
            found += self.workers.related(ids)
        return found

    def finish(self, index: CorrelationIndex) -> None:
        """Phase 2: index everything read (this process's share, then wait for the workers)."""
        self.own.index(index, self.plans, self.cutoff_ms, owned=self.owned)
        if self.workers is not None:
            self.workers.join()

    def abort(self) -> None:
        if self.workers is not None:
            self.workers.stop()


@dataclass(frozen=True)
class _Lookup:
    """What one `find` looks for and over which time window (travels from `_find` to
    `_answer` as one value)."""

    #: the id as typed, then the trace ids it may stand for (`query_ids`)
    forms: tuple[str, ...]
    wanted: frozenset[bytes]
    since_seconds: float
    stuck_after_seconds: float
    now_ms: int
    #: records older than this are out of the window
    cutoff_ms: int
    #: `time.monotonic()` when the lookup began (for its stats)
    started: float

    @property
    def query(self) -> str:
        return self.forms[0]


def _window(since_seconds: float, now_ms: int | None) -> tuple[int, int]:
    """(now, cutoff) in epoch ms for a window of `since_seconds` back from `now_ms`."""
    if since_seconds <= 0:
        raise InvalidValue("since", "must be positive")
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    return now_ms, now_ms - int(since_seconds * 1000)


@dataclass(frozen=True)
class _Scope:
    """The partitions a lookup or an index sync covers, as the broker describes them now."""

    topics: dict[str, int]
    #: every (topic, partition), sorted
    tps: list[tuple[str, int]]
    #: (topic, partition) -> (earliest offset on the broker, end offset)
    bounds: dict[tuple[str, int], tuple[int, int]]
    ids: dict[str, str | None]
    #: what reconciling the index found (a topic recreated...)
    notes: list[str]
    admin_client: AdminClient


class Tracer:
    """Order lookups against one cluster, keeping the correlation index open between them.

    Not thread-safe: give each worker thread its own, or serialise calls.
    """

    def __init__(self, cluster: ClusterConfig, settings: TraceSettings | Settings | None = None,
                 *, timeout: float = DEFAULT_TIMEOUT,
                 registry: RegistryConfig | None = None) -> None:
        self.cluster = cluster
        self.settings = (settings if isinstance(settings, TraceSettings)
                         else from_settings(settings))
        self.timeout = timeout
        self.registry = registry
        self.payloads = PayloadDecoder(registry)
        self.decoder = FastDecoder(self.settings, self.payloads)
        self._admin: AdminClient | None = None
        self._index: CorrelationIndex | None = None

    @property
    def fingerprint(self) -> str:
        """The index's settings fingerprint: what decides a record's ids, registry included
        (with one, registry frames give payload ids and event types)."""
        return self.settings.fingerprint() + ("+sr" if self.registry is not None else "")

    @property
    def index(self) -> CorrelationIndex:
        if self._index is None:
            self._index = CorrelationIndex(index_path(self.cluster), self.fingerprint)
        return self._index

    def _admin_client(self):
        """The admin client, kept between lookups (metadata, offsets, groups).

        No consumer is kept: each scan reads with its own, closed at its end.
        librdkafka 2.16 can crash in a consumer's metadata cache when a topic
        it has read is deleted and recreated; a consumer per scan never holds
        stale metadata.
        """
        if self._admin is None:
            self._admin = admin(self.cluster)
        return self._admin

    def close(self) -> None:
        self._admin = None
        self.payloads.close()
        index, self._index = self._index, None
        if index is not None:
            index.close()

    def __enter__(self) -> Tracer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the lookup -------------------------------------------------------------

    def find(self, query: str, *, since_seconds: float = DAY, topics_regex: str | None = None,
             stuck_after_seconds: float = 300.0, progress: Progress | None = None,
             now_ms: int | None = None, on_answer: Callable[[Timeline], object] | None = None
             ) -> Timeline:
        """The timeline of `query` (an order id, correlation id or trace id).

        A lookup that reads records answers from a first pass that decodes
        only the records that may carry the ids, then decodes everything it
        read into the index. `on_answer(timeline)` is called as soon as the
        answer is known, before that indexing; `find` returns the same
        timeline once the index covers everything read.
        """
        try:
            started = time.monotonic()
            self._retry_registry()
            forms = query_ids(query)
            now, cutoff = _window(since_seconds, now_ms)
            if stuck_after_seconds < 0:
                raise InvalidValue("stuck_after", "must not be negative")
            lookup = _Lookup(forms, frozenset(f.encode("utf-8") for f in forms), since_seconds,
                             stuck_after_seconds, now, cutoff, started)
            return self._find(lookup, topics_regex, progress, on_answer)
        except BaseException:
            self._admin = None  # reconnect from scratch next time
            raise

    def _retry_registry(self) -> None:
        """The registry was down for an earlier lookup (the TUI keeps its tracer): try it
        again, at the cost of at most one more timeout for this lookup."""
        if self.payloads.down:
            self.payloads.close()
            self.payloads = PayloadDecoder(self.registry)
            self.decoder = FastDecoder(self.settings, self.payloads)

    def _find(self, lookup: _Lookup, topics_regex: str | None, progress: Progress | None,
              on_answer: Callable[[Timeline], object] | None) -> Timeline:
        cutoff = lookup.cutoff_ms
        index = self.index
        scope = self._scope(topics_regex)
        plans = self._plan(scope.tps, scope.bounds, scope.ids, index.coverage(), cutoff,
                           scope.admin_client)
        scan = self._scan(plans, lookup.wanted, cutoff, progress, lookup.query)
        try:
            timeline = self._answer(scan, lookup, scope)
            if on_answer is not None:
                on_answer(timeline)
            scan.finish(index)
        except BaseException:
            scan.abort()
            raise
        if self.payloads.down and scan.scanned:
            # Frames read while the registry was down were indexed without their
            # payload ids: drop the index rather than answer from it later.
            index.reset("the Schema Registry was unreachable during the scan")
        _log.info("trace %r: index complete after %.2fs", lookup.query,
                  time.monotonic() - lookup.started)
        return timeline

    def _scope(self, topics_regex: str | None) -> _Scope:
        """The chosen topics' partitions, offsets and ids, reconciled with the index (a
        topic recreated since it was indexed is dropped from it first)."""
        admin_client = self._admin_client()
        topics = self._topics(topics_regex, admin_client)
        tps = [(t, p) for t, n in sorted(topics.items()) for p in range(n)]
        bounds = offset_bounds(self.cluster, tps, timeout=self.timeout, client=admin_client)
        ids = topic_ids(self.cluster, topics, timeout=self.timeout, client=admin_client)
        notes = self.index.reconcile(bounds, ids, topics)
        if notes:  # a topic was recreated: go on with fresh metadata
            self._admin = None
            admin_client = self._admin_client()
        return _Scope(topics, tps, bounds, ids, notes, admin_client)

    def _answer(self, scan: _Scan, lookup: _Lookup, scope: _Scope) -> Timeline:
        """The timeline from the index (what it covered before) plus this lookup's scan."""
        forms, cutoff_ms, started = lookup.forms, lookup.cutoff_ms, lookup.started
        tps, bounds, topics = scope.tps, scope.bounds, scope.topics
        notes = list(scope.notes)
        live = {tp: bounds[tp][0] for tp in tps}  # earliest offset still on the broker
        found = self._rows(self.index.lookup(lookup.wanted), live)
        scanned = {(t, p, row[0]) for t, p, row in scan.matches}
        found.update({(t, p, row[0]): (t, p, row) for t, p, row in scan.matches
                      if (t, p) in live})
        events = self._events(found.values(), cutoff_ms)
        if not events:
            events, discovery_notes = self._discovered(scan, forms[0], scan.plans, live,
                                                       cutoff_ms)
            notes += discovery_notes
        related, hop_notes = self._related(events, set(forms), live, cutoff_ms, scan)
        events += related
        notes += hop_notes
        events += self._dead_letters_of(events, live, cutoff_ms, scan)
        if len(events) > MAX_EVENTS:
            notes.append(f"{len(events)} events carry this id; showing the {MAX_EVENTS} "
                         "most recent")
            events = sorted(events, key=lambda e: e.timestamp_ms or 0)[-MAX_EVENTS:]
        committed: dict[str, dict] = {}
        if events:
            groups = group_offsets(self.cluster, {e.topic for e in events},
                                   timeout=self.timeout, client=scope.admin_client)
            committed = {g: dict(o) for g, o in groups.offsets.items()}
            notes += [f"committed offsets unavailable for {e}" for e in groups.errors]

        spans = None
        if self.settings.jaeger_url and events:
            fetched = fetch_spans(self.settings.jaeger_url,
                                  [e.trace_id for e in events if e.trace_id],
                                  timeout=self.settings.jaeger_timeout)
            spans, notes = fetched.spans, notes + list(fetched.notes)

        unread = scan.unread
        if unread:
            parts = sorted({f"{r.topic}[{r.partition}]" for r in unread})
            shown = ", ".join(parts[:5]) + (f" +{len(parts) - 5}" if len(parts) > 5 else "")
            notes.append(f"scan cut short: {len(parts)} partition(s) not read to the end "
                         f"({shown}; nothing arrived for a while: is the broker "
                         "reachable?); events may be missing and the index stays incomplete "
                         "there")
        stats = ScanStats(topics=len(topics), partitions=len(tps),
                          scanned_records=scan.scanned,
                          indexed_hits=len({e.position for e in events} - scanned),
                          elapsed_seconds=time.monotonic() - started)
        _log.info("trace %r: %d events, scanned %d records, %d from the index, %.2fs",
                  forms[0], len(events), stats.scanned_records, stats.indexed_hits,
                  stats.elapsed_seconds)
        events = self._with_payloads(events)
        if self.payloads.down:
            notes.append(f"{self.payloads.down}: registry-framed values are shown raw")
        timeline = build_timeline(forms[0], events, committed, now_ms=lookup.now_ms,
                                  stuck_after_ms=int(lookup.stuck_after_seconds * 1000),
                                  url_for=self.settings.url_for, spans=spans,
                                  since_seconds=lookup.since_seconds, notes=notes, stats=stats)
        return replace(timeline, complete=False) if unread else timeline

    def _topics(self, regex: str | None, client) -> dict[str, int]:
        topics = list_topics(self.cluster, timeout=self.timeout, client=client)
        if regex is None:
            return topics
        try:
            pattern = re.compile(regex)
        except re.error as exc:
            raise InvalidValue("topics", f": invalid regex {regex!r} ({exc})") from None
        chosen = {t: n for t, n in topics.items() if pattern.search(t)}
        if not chosen:
            raise NothingMatches("topics", f"{regex!r} ({len(topics)} topics on the cluster)",
                                 lead="no topic matches ")
        return chosen

    def _plan(self, tps: Sequence[tuple[str, int]], bounds, ids, coverage: dict[tuple, Coverage],
              cutoff_ms: int, admin_client) -> dict[tuple[str, int], PartitionPlan]:
        """Per partition: what the index covers, and the head/tail still to read."""
        need_time = [tp for tp in tps if tp not in coverage
                     or (cutoff_ms < coverage[tp].since_ms
                         and coverage[tp].start > bounds[tp][0])]
        starts = offsets_for_times(self.cluster, dict.fromkeys(need_time, max(cutoff_ms, 0)),
                                   timeout=self.timeout, client=admin_client)
        plans: dict[tuple[str, int], PartitionPlan] = {}
        for tp in tps:
            low, high = bounds[tp]
            cov = coverage.get(tp)
            # First offset written at or after the cutoff (none: everything is older).
            found = starts.get(tp)
            since_start = high if found is None else min(max(low, found), high)
            if cov is None:
                tp_id = self.index.incarnation(tp[0], tp[1], ids.get(tp[0]), since_start,
                                               cutoff_ms)
                plans[tp] = PartitionPlan(tp_id, since_start, since_start, None, high, cutoff_ms)
            else:
                head = since_start if tp in starts and since_start < cov.start else None
                plans[tp] = PartitionPlan(cov.tp_id, cov.start, cov.end, head, high,
                                          cov.since_ms)
        return plans

    def _scan(self, plans: dict[tuple[str, int], PartitionPlan], wanted: frozenset[bytes],
              cutoff_ms: int, progress: Progress | None, discover: str | None = None) -> _Scan:
        """Phase 1 over every head/tail range, in this process and in workers if big."""
        scanning = {tp: p for tp, p in plans.items() if p.scanning}
        total = sum(r.size for tp, p in scanning.items() for r in p.ranges(*tp))
        shares = split(scanning, processes_for(total, self.settings.scan_processes))
        own = shares[0] if shares else {}
        workers = None
        if len(shares) > 1:
            workers = Workers(self.cluster, self.index, self.settings, wanted, cutoff_ms,
                              shares[1:], registry=self.registry, discover=discover)

        def report(done: int) -> None:
            if workers is not None:
                workers.poll()
                done += workers.progress
            if progress is not None:
                progress(min(done, total), total)

        fast = FastScan(self.decoder, wanted, progress=report, discover=discover)
        answers: list[ShareAnswer] = []
        planned = tuple(r for tp, p in own.items() for r in p.ranges(*tp))
        try:
            fast.run(self.cluster, list(planned), self.index, plans, cutoff_ms,
                     owned=frozenset(own))
            if workers is not None:
                answers = workers.answers(progress=lambda _: report(fast.done))
        except BaseException:
            if workers is not None:
                workers.stop()
            raise
        return _Scan(fast, plans, frozenset(own), cutoff_ms, workers, answers, planned)

    def _rows(self, hits: dict[tuple[str, int], set[int]],
              live: dict[tuple[str, int], int]) -> dict[tuple[str, int, int], tuple]:
        """Stored rows of hit positions in the chosen topics still on the broker."""
        hits = {tp: {o for o in offs if o >= live[tp]} for tp, offs in hits.items()
                if tp in live}
        return {(t, p, row[0]): (t, p, row) for t, p, row in self.index.rows(hits)}

    @staticmethod
    def _events(rows: Iterable[tuple[str, int, tuple]], cutoff_ms: int) -> list[EventInfo]:
        out = []
        for topic, partition, row in rows:
            event = event_from_row(topic, partition, row)
            if event.timestamp_ms is None or event.timestamp_ms >= cutoff_ms:
                out.append(event)
        return out

    def _related(self, events: Sequence[EventInfo], forms: set[str],
                 live: dict[tuple[str, int], int], cutoff_ms: int,
                 scan: _Scan) -> tuple[list[EventInfo], list[str]]:
        """One hop from the matched events: events sharing their trace or correlation ids.

        This is how an event that carries only a `traceparent` (no order id)
        joins its order. Keys and payload ids are not followed: a key may be a
        customer or a product shared by many orders. Only this order's
        events join: one carrying another order's correlation or payload
        order id does not, and an id that events of `SHARED_ID_ORDERS`
        distinct orders (or more than `MAX_HOP_EVENTS` events) carry is not
        followed at all.
        """
        extra = {e.trace_id for e in events if e.trace_id}
        extra |= {e.correlation_id for e in events if e.correlation_id}
        extra -= forms
        if not extra:
            scan.related(frozenset())  # lets the workers go on to indexing
            return [], []
        notes = []
        if len(extra) > MAX_RELATED_IDS:
            notes.append(f"the events carry {len(extra)} other ids; only {MAX_RELATED_IDS} "
                         "were followed to related events")
            extra = set(sorted(extra)[:MAX_RELATED_IDS])
        mine = set(forms) | {e.correlation_id for e in events if e.correlation_id}
        mine |= {i for e in events for i in e.order_ids}
        have = {e.position for e in events}
        hits: dict[tuple[str, int], set[int]] = {}
        each = self.index.lookup_each(i.encode("utf-8") for i in sorted(extra))
        for ident in sorted(extra):
            found = each.get(ident.encode("utf-8"), {})
            count = sum(len(offs) for offs in found.values())
            if count > MAX_HOP_EVENTS:
                notes.append(f"{_kind(ident, events)} {ident} is carried by {count:,} events; "
                             "not followed (an id that common belongs to a batch or a job, "
                             "not to one order)")
                extra.discard(ident)
                continue
            for tp, offs in found.items():
                hits.setdefault(tp, set()).update(offs)
        rows = self._rows(hits, live)
        ids = frozenset(i.encode("utf-8") for i in extra)
        rows.update({(t, p, row[0]): (t, p, row) for t, p, row in scan.related(ids)
                     if (t, p) in live})
        candidates = self._events(rows.values(), cutoff_ms)
        pool = [*events, *candidates]
        followed = set()
        for ident in sorted(extra):
            orders = set()
            for e in pool:
                if ident in (e.trace_id, e.correlation_id) or ident in e.order_ids:
                    orders |= _order_ids(e)
            if len(orders) >= SHARED_ID_ORDERS:
                shown = ", ".join(sorted(orders)[:3]) + (", ..." if len(orders) > 3 else "")
                notes.append(f"{_kind(ident, events)} {ident} is shared by events of "
                             f"{len(orders)} distinct orders ({shown}); not followed "
                             f"(an id of {SHARED_ID_ORDERS} or more orders is a batch's, "
                             "not this order's)")
            else:
                followed.add(ident)
        out, others = [], 0
        for e in candidates:
            if e.position in have:
                continue
            if not any(i in followed for i in (e.trace_id, e.correlation_id, *e.order_ids)):
                continue
            if _order_ids(e) - mine:
                others += 1  # carries another order's id: not this order's event
                continue
            out.append(e)
        if others:
            notes.append(f"{others} event{'s' if others != 1 else ''} sharing a trace or "
                         "correlation id with this order carry another order's id and were "
                         "left out")
        return out, notes

    def _discovered(self, scan: _Scan, query: str,
                    plans: dict[tuple[str, int], PartitionPlan], live: dict[tuple[str, int], int],
                    cutoff_ms: int) -> tuple[list[EventInfo], list[str]]:
        """The id outside the configured names: in any header value or payload string.

        The scan of this lookup looked already; what the index covered is
        read again (the index only holds the configured names).
        """
        found = list(scan.discovered())
        ranges = [PartitionRange(t, p, max(plan.cov_start, live.get((t, p), 0)), plan.cov_end)
                  for (t, p), plan in plans.items() if plan.cov_end > plan.cov_start]
        ranges = [r for r in ranges if r.size > 0]
        if ranges:
            again = FastScan(self.decoder, frozenset(), discover=query, keep=False)
            again.run(self.cluster, ranges, self.index, plans, cutoff_ms)
            found += again.discovered
        where: defaultdict[str, int]
        events, where = [], defaultdict(int)
        seen = set()
        for topic, partition, row, place in found:
            if (topic, partition) not in live or (topic, partition, row[0]) in seen:
                continue
            seen.add((topic, partition, row[0]))
            for e in self._events([(topic, partition, row)], cutoff_ms):
                corr = e.correlation_id or (query if place.startswith("header") else None)
                events.append(replace(e, found_in=place, correlation_id=corr))
                where[place] += 1
        notes = []
        for place, n in sorted(where.items()):
            setting = ("correlation_headers" if place.startswith("header")
                       else "order_id_paths")
            name = place.split('"')[1]
            notes.append(f"matched {place} in {n} event{'s' if n != 1 else ''}: add "
                         f"{name!r} to [trace].{setting} to index it")
        return events, notes

    def _with_payloads(self, events: Sequence[EventInfo]) -> list[EventInfo]:
        """Each event with its value decoded (registry frames with their schemas)."""
        out = []
        for e in events:
            if isinstance(e.value, int):
                payload = Payload(None, BINARY, note=f"{e.value:,} bytes: larger than "
                                  f"{MAX_KEPT_VALUE:,}, not kept in the correlation index")
            else:
                headers = [("__value_schema_id", e.value_header)] if e.value_header else None
                payload = self.payloads.decode(e.value, headers, e.topic)
            out.append(replace(e, payload=payload))
        return out

    def _dead_letters_of(self, events: Sequence[EventInfo], live: dict[tuple[str, int], int],
                         cutoff_ms: int, scan: _Scan) -> list[EventInfo]:
        """Dead letters that point at the events, even those carrying none of the ids."""
        have = {e.position for e in events}
        if not have:
            return []
        rows = self._rows(self.index.lookup(reference_id(*pos) for pos in have), live)
        rows.update({(t, p, row[0]): (t, p, row) for t, p, row in scan.dead_letters()
                     if (t, p) in live})
        out = []
        for event in self._events((r for pos, r in rows.items() if pos not in have), cutoff_ms):
            if event.dead_letter is not None and event.dead_letter.origin in have:
                out.append(event)
        return out


def _order_ids(e: EventInfo) -> set[str]:
    """The ids that say which order an event belongs to (not its key, not its trace)."""
    out = set(e.order_ids)
    if e.correlation_id:
        out.add(e.correlation_id)
    return out


def _kind(ident: str, events: Sequence[EventInfo]) -> str:
    return "trace id" if any(e.trace_id == ident for e in events) else "correlation id"


def find_timeline(cluster: ClusterConfig, query: str, *, since_seconds: float = DAY,
                  topics_regex: str | None = None, stuck_after_seconds: float = 300.0,
                  settings: TraceSettings | Settings | None = None,
                  progress: Progress | None = None,
                  timeout: float = DEFAULT_TIMEOUT,
                  on_answer: Callable[[Timeline], object] | None = None,
                  registry: RegistryConfig | None = None) -> Timeline:
    """The timeline of one order / correlation id / trace id (one-shot; see `Tracer`).

    `settings` is the `[trace]` section (`TraceSettings`) or the whole config
    file (`Settings`). Raises `UsageError` for a bad id or regex,
    `NotFoundError` when `topics_regex` matches nothing, `BrokerUnavailable`
    when the cluster cannot be reached.
    """
    with Tracer(cluster, settings, timeout=timeout, registry=registry) as tracer:
        return tracer.find(query, since_seconds=since_seconds, topics_regex=topics_regex,
                           stuck_after_seconds=stuck_after_seconds, progress=progress,
                           on_answer=on_answer)


@dataclass(frozen=True)
class IndexedScope:
    """What `Tracer.sync_index` brought up to date: the topics, their partitions and bounds."""

    topics: dict[str, int]
    #: (topic, partition) -> (earliest offset on the broker, end offset)
    bounds: dict[tuple[str, int], tuple[int, int]]
    coverage: dict[tuple[str, int], Coverage]
    scanned_records: int
    notes: tuple[str, ...]
    cutoff_ms: int
    now_ms: int


def sync_index(tracer: Tracer, *, since_seconds: float = DAY, topics_regex: str | None = None,
               progress: Progress | None = None, now_ms: int | None = None) -> IndexedScope:
    """Read and index what the correlation index lacks of the topics within `since`.

    The scan half of a lookup without an id to look for (`lagdeck flows`):
    the same plan (new tails, an older head for a longer `since`), the same
    parallel scan, then the index covers every chosen partition up to its end
    offset as of now.
    """
    now_ms, cutoff_ms = _window(since_seconds, now_ms)
    try:
        index = tracer.index
        scope = tracer._scope(topics_regex)
        plans = tracer._plan(scope.tps, scope.bounds, scope.ids, index.coverage(), cutoff_ms,
                             scope.admin_client)
        scan = tracer._scan(plans, frozenset(), cutoff_ms, progress)
        try:
            scan.finish(index)
        except BaseException:
            scan.abort()
            raise
    except BaseException:
        tracer._admin = None
        raise
    coverage = {tp: c for tp, c in index.coverage().items() if tp in scope.bounds}
    return IndexedScope(scope.topics, dict(scope.bounds), coverage, scan.scanned,
                        tuple(scope.notes), cutoff_ms, now_ms)
